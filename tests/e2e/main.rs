//! End-to-end tests: the runner and catalog with real components, and (in later modules) the
//! real `portcullis` binary driven by real MCP clients.
//!
//! Components are built by `scripts/build-tools` into `.portcullis/tools` (examples) and
//! `.portcullis/hostile` (one hostile component per threat).

mod admin;
mod audit;
mod catalog;
mod catalog_reload;
mod cli;
mod delegation;
mod egress;
mod elicit;
mod examples;
mod failclosed;
mod frontdoor;
mod gateway;
mod governance;
mod hidden;
mod hostile;
mod idempotency;
mod identity;
mod issuer;
mod items;
mod jsonrpc;
mod languages;
mod mcp;
mod ops;
mod otlp;
mod python;
mod reload;
mod results;
mod rounds;
mod sessions;
mod support;
mod tasks;
mod tls;
mod trace;
mod typescript;
mod updates;
mod upstream;
mod webhook;
