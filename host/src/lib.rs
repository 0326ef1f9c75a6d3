//! portcullis: a gateway that lets AI agents call tools over MCP without holding the keys.
//!
//! Every tool is a WebAssembly component; every call runs in a fresh instance that holds only
//! what the call was granted. See `docs/architecture.md` for the map of modules.

// The request path must not panic: errors are values, and a failure is a clear error.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod capabilities;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod delegation;
pub mod egress;
pub mod gate;
pub mod grants;
pub mod identity;
pub mod ijson;
pub mod mcp;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod redact;
pub mod runner;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod time;
pub mod webhook;
