//! # portcullis-sdk — write a tool for the portcullis gateway
//!
//! A portcullis tool is a WebAssembly component. The gateway runs every call in a fresh instance
//! that holds only the capabilities policy granted for that call: a directory preopened at a
//! guest path, named environment variables, outbound HTTP to granted hosts, named secrets,
//! nothing else. Your code uses plain `std` for files and environment (`std::fs` on the granted
//! path, `std::env::var`), [`http`] for HTTP, [`secret`] for secrets, and cannot reach anything
//! that was not granted.
//!
//! You implement [`Tool`] for a type: a typed `Input` (`serde::Deserialize` + a derived
//! `schemars::JsonSchema`, so your crate depends on `serde` and `schemars` too, which the
//! gateway publishes to clients and validates every call against before your code runs), a name,
//! a description, [`Annotations`], and `call`. Then [`export_tools!`] exports one or more tools
//! as the component.
//!
//! ```no_run
//! use portcullis_sdk::{export_tools, Annotations, Error, Output, Tool};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! /// Input of `greet`. Doc comments become descriptions in the JSON Schema.
//! #[derive(Deserialize, JsonSchema)]
//! struct GreetInput {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! struct Greet;
//!
//! impl Tool for Greet {
//!     type Input = GreetInput;
//!     const NAME: &'static str = "greet";
//!     const DESCRIPTION: &'static str = "Says hello to someone.";
//!     const ANNOTATIONS: Annotations = Annotations::READ_ONLY;
//!
//!     fn call(input: GreetInput) -> Result<Output, Error> {
//!         if input.name.is_empty() {
//!             return Err(Error::invalid_input("name must not be empty"));
//!         }
//!         Ok(Output::text(format!("Hello, {}!", input.name)))
//!     }
//! }
//!
//! export_tools!(Greet);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type `cdylib`); the
//! component is `target/wasm32-wasip2/release/<crate>.wasm`. Put it in the gateway's tool
//! directory.
//!
//! Things to know:
//! - `stdout`/`stderr` go to small bounded buffers kept with the call, never to the client. Use
//!   [`log`] for diagnostics and return results through [`Output`].
//! - Each call starts from a fresh instance: globals and statics never carry over between calls.
//! - Limits (fuel, memory, wall-clock time, output size) are set by the operator's policy; hitting
//!   one ends the call with an error that names the limit.
//! - Mark a top-level string field that names a path inside a granted directory with
//!   `#[schemars(extend("x-portcullis-path" = true))]` ([`PATH_KEYWORD`]). The gateway then gives
//!   it one spelling before policy sees it — `.` segments and repeated `/` removed, absolute
//!   paths and `..` refused with a clear error — and your tool receives exactly that value.
//! - If you declare [`Tool::output_schema`], successful results must carry structured output
//!   that matches it; the gateway turns anything else into a tool error.
//! - **Outbound HTTP** ([`http`]) works only where the call's grant allows it: the gateway checks
//!   every request (scheme, host, port, method, path; no private addresses unless granted; size
//!   and count caps) and refuses the rest with a message that says why, which [`http::HttpError`]
//!   carries verbatim. Where the operator configured it, the gateway also injects the credential
//!   (e.g. an `Authorization` header) into requests to a host: never send credentials yourself.
//!   Redirects are not followed for you.
//! - **Secrets** ([`secret`]) are available only by name and only if the call was granted them;
//!   the gateway scrubs their values from results, logs and errors. For HTTP APIs prefer an
//!   injected credential, which never enters your tool at all.
//! - **Progress** ([`progress`]) of a long call reaches the client as MCP progress notifications
//!   when it asked for them (rate-limited; excess updates are dropped).
#![warn(missing_docs)]

/// The JSON Schema keyword that marks an input field as a workspace path (see the crate docs).
pub const PATH_KEYWORD: &str = "x-portcullis-path";

use std::fmt::Display;

pub use schemars;
pub use serde_json::{self, Value, json};

use schemars::JsonSchema;
use serde::Serialize;

/// The raw bindings generated from the `portcullis:tool` WIT package. Tool authors do not need
/// these; [`Tool`] and [`export_tools!`] wrap them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "server-component",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_component",
        default_bindings_module: "portcullis_sdk::bindings",
    });
}

use bindings::portcullis::tool::types as wit;

/// Hints about a tool's behaviour, shown to clients and to the operator's policy (which may, for
/// example, ask for approval before a destructive tool runs). Declare them truthfully: policy
/// trusts them because they come from your component, not from the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// The tool changes nothing outside the call.
    pub read_only: bool,
    /// The tool may destroy or overwrite data.
    pub destructive: bool,
    /// Repeating a call with the same input has no further effect.
    pub idempotent: bool,
    /// The tool talks to an open world of external systems.
    pub open_world: bool,
}

impl Annotations {
    /// No claims at all: the tool may change things, not idempotent.
    pub const NONE: Self = Self {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: false,
    };
    /// Reads only; repeating it is harmless.
    pub const READ_ONLY: Self = Self {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };
    /// Changes or destroys data.
    pub const DESTRUCTIVE: Self = Self {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: false,
    };

    /// The same annotations, marked idempotent.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// The same annotations, marked open-world.
    pub const fn open_world(mut self) -> Self {
        self.open_world = true;
        self
    }
}

/// One tool. Implement it for a unit struct and list the struct in [`export_tools!`].
pub trait Tool {
    /// The input, deserialised from the call's JSON arguments. Its derived JSON Schema is
    /// published to clients and enforced by the gateway before `call` runs.
    type Input: serde::de::DeserializeOwned + JsonSchema;

    /// The tool's name: `[a-zA-Z0-9_-]{1,64}`, unique across the gateway.
    const NAME: &'static str;
    /// A short title for people.
    const TITLE: Option<&'static str> = None;
    /// What the tool does and when to use it, written for the model.
    const DESCRIPTION: &'static str;
    /// Behaviour hints (see [`Annotations`]).
    const ANNOTATIONS: Annotations = Annotations::NONE;

    /// The JSON Schema of the structured output, if the tool returns one. Use
    /// [`schema_for`] on a `JsonSchema` type; it must describe an object.
    fn output_schema() -> Option<schemars::Schema> {
        None
    }

    /// Runs the tool.
    fn call(input: Self::Input) -> Result<Output, Error>;
}

/// The JSON Schema of `T`, for [`Tool::output_schema`] (and the input schema): JSON Schema
/// 2020-12 without the spellings strict validators and some clients refuse ([`schema`]).
pub fn schema_for<T: JsonSchema>() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .with_transform(schema::portable)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// One item of a result's content.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// A JSON value, shown to clients as JSON text.
    Json(Value),
    /// An image with its MIME type.
    Image {
        /// The bytes.
        data: Vec<u8>,
        /// e.g. `image/png`.
        mime_type: String,
    },
    /// Audio with its MIME type.
    Audio {
        /// The bytes.
        data: Vec<u8>,
        /// e.g. `audio/wav`.
        mime_type: String,
    },
    /// A text resource returned inline.
    Resource {
        /// The resource's URI.
        uri: String,
        /// Its MIME type, if known.
        mime_type: Option<String>,
        /// Its text.
        text: String,
    },
    /// A resource returned inline: text or bytes.
    Embedded(Contents),
    /// A link to a resource the client may read (`resources/read`).
    Link(ResourceLink),
    /// An item with MCP annotations (audience, priority, last modified); see
    /// [`Content::annotated`].
    Annotated(Box<Content>, ContentAnnotations),
}

impl Content {
    /// This item with `annotations`.
    pub fn annotated(self, annotations: ContentAnnotations) -> Self {
        match self {
            Self::Annotated(inner, _) => Self::Annotated(inner, annotations),
            item => Self::Annotated(Box::new(item), annotations),
        }
    }
}

/// A pointer to a resource, for [`Content::Link`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceLink {
    /// The resource's URI.
    pub uri: String,
    /// Its name.
    pub name: String,
    /// A title for people.
    pub title: Option<String>,
    /// What it holds.
    pub description: Option<String>,
    /// Its MIME type.
    pub mime_type: Option<String>,
    /// Its size in bytes.
    pub size: Option<u64>,
}

/// MCP's content annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContentAnnotations {
    /// Who the item is for; empty means unspecified.
    pub audience: Vec<Role>,
    /// 0.0 (least important) to 1.0 (most important).
    pub priority: Option<f64>,
    /// ISO 8601 time of the last change.
    pub last_modified: Option<String>,
}

/// What a successful call returns: content for the model, optional structured output, and
/// whether the tool is reporting a failure the model should read (`is_error`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// The content items, in order.
    pub content: Vec<Content>,
    /// Structured output, matching [`Tool::output_schema`].
    pub structured: Option<Value>,
    /// The tool ran but failed in a way the model can act on (e.g. "no such file").
    pub is_error: bool,
}

impl Output {
    /// A result with one text item.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![Content::Text(text.into())],
            ..Self::default()
        }
    }

    /// A result whose structured output is `value`; the same JSON is also the text content, so
    /// clients without structured-output support see it too.
    pub fn structured<T: Serialize>(value: &T) -> Result<Self, Error> {
        let value = serde_json::to_value(value).map_err(Error::failed)?;
        Ok(Self {
            content: vec![Content::Json(value.clone())],
            structured: Some(value),
            is_error: false,
        })
    }

    /// A failure the model should read and may correct (the call itself completed).
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            content: vec![Content::Text(message.into())],
            structured: None,
            is_error: true,
        }
    }

    /// Adds a content item.
    pub fn with(mut self, item: Content) -> Self {
        self.content.push(item);
        self
    }
}

/// A call that could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input does not fit the tool (beyond what its schema already checks).
    InvalidInput(String),
    /// Anything else.
    Failed(String),
}

impl Error {
    /// An [`Error::InvalidInput`] with a message for the model.
    pub fn invalid_input(message: impl Display) -> Self {
        Self::InvalidInput(message.to_string())
    }

    /// An [`Error::Failed`] with a message for the model.
    pub fn failed(message: impl Display) -> Self {
        Self::Failed(message.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::Failed(error.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::Failed(error.to_string())
    }
}

/// Diagnostics recorded with the call by the gateway (bounded: excess lines are dropped).
pub mod log {
    use crate::bindings::portcullis::tool::host::{Level, log};

    /// A debug line.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// An informational line.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// A warning.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// An error.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

mod ask;
pub mod http;
mod items;
pub mod schema;

pub use ask::{Elicited, Sampled, Sampling, elicit, elicit_form, elicit_url, sample};
pub use items::{
    Argument, Arguments, Body, Completion, Contents, Message, Prompt, Resource, ResourceTemplate,
    Role,
};

/// The value of the secret `name`, if this call was granted it (`grants.secrets` in policy).
///
/// Any other name fails with the same error as an unknown one, so a tool cannot probe which
/// secrets exist. The gateway scrubs every granted secret's value from the call's result, logs,
/// stderr and errors; still, don't echo it.
///
/// For an HTTP API, an http grant that *injects* the credential is better than reading it
/// here: the gateway adds the header itself and the value never enters the tool. Use `secret`
/// only for credentials that cannot travel that way (e.g. a key that signs a payload).
pub fn secret(name: &str) -> Result<String, Error> {
    bindings::portcullis::tool::host::secret(name).map_err(Error::Failed)
}

/// Reports progress of the running call: `done` out of `total` units (if known), with an
/// optional message, e.g. `progress(1, Some(3), Some("uploaded"))`.
///
/// The client sees it as an MCP progress notification if its request asked for progress;
/// otherwise, and beyond the gateway's per-call rate limit, updates are dropped. Cheap to call;
/// never fails.
pub fn progress(done: u64, total: Option<u64>, message: Option<&str>) {
    bindings::portcullis::tool::host::progress(done, total, message);
}

/// Tells clients that follow `uri` (`resources/subscribe`) that it changed, once this call
/// ends: for a tool that changed what one of this component's own resources reads, e.g.
/// `resource_updated("notes://today")` after writing today's notes.
///
/// The gateway delivers it only if this component serves `uri` (a fixed URI or one its
/// templates match; others are dropped with a warning in the gateway's log), and only to
/// followers that may see the resource. At most 16 per call, each at most 2 KiB and free of
/// the call's secrets; beyond that it fails.
pub fn resource_updated(uri: &str) -> Result<(), Error> {
    bindings::portcullis::tool::host::resource_updated(uri).map_err(Error::Failed)
}

/// What [`export_tools!`] expands to call. Not part of the stable API.
#[doc(hidden)]
#[path = "export.rs"]
pub mod __private;
