//! Resources, resource templates and prompts: as easy as a tool — a trait on a unit struct,
//! listed in [`export_component!`](crate::export_component).
//!
//! ```no_run
//! use portcullis_sdk::{export_component, Argument, Arguments, Contents, Error, Message, Prompt, Resource};
//!
//! struct Readme;
//!
//! impl Resource for Readme {
//!     const URI: &'static str = "docs://readme";
//!     const NAME: &'static str = "readme";
//!     const MIME_TYPE: Option<&'static str> = Some("text/markdown");
//!
//!     fn read() -> Result<Vec<Contents>, Error> {
//!         Ok(vec![Contents::text(Self::URI, "# Hello")])
//!     }
//! }
//!
//! struct Review;
//!
//! impl Prompt for Review {
//!     const NAME: &'static str = "review";
//!     const DESCRIPTION: Option<&'static str> = Some("Asks for a review of a file.");
//!     const ARGUMENTS: &'static [Argument] = &[Argument::required("path", "The file to review")];
//!
//!     fn get(arguments: &Arguments) -> Result<Vec<Message>, Error> {
//!         let path = arguments.require("path")?;
//!         Ok(vec![Message::user_text(format!("Please review {path}."))])
//!     }
//! }
//!
//! export_component! {
//!     resources: [Readme],
//!     prompts: [Review],
//! }
//! ```

use std::collections::BTreeMap;

use crate::{Content, Error};

/// A resource's contents: text or bytes, with its URI and MIME type.
#[derive(Clone, Debug, PartialEq)]
pub struct Contents {
    /// The URI these contents are of.
    pub uri: String,
    /// e.g. `text/plain`, `image/png`.
    pub mime_type: Option<String>,
    /// The contents themselves.
    pub body: Body,
}

/// Text or bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// Text.
    Text(String),
    /// Bytes (sent to the client as base64).
    Blob(Vec<u8>),
}

impl Contents {
    /// Text contents of `uri`, as `text/plain`.
    pub fn text(uri: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            mime_type: Some("text/plain".into()),
            body: Body::Text(text.into()),
        }
    }

    /// Binary contents of `uri` with their MIME type.
    pub fn blob(uri: impl Into<String>, mime_type: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            uri: uri.into(),
            mime_type: Some(mime_type.into()),
            body: Body::Blob(data),
        }
    }

    /// The same contents with another MIME type.
    pub fn with_mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }
}

/// A resource with a fixed URI. Reads run in a fresh instance with only the grants policy gave
/// that read (policy action `read`).
pub trait Resource {
    /// The URI, unique across the gateway, e.g. `docs://readme`.
    const URI: &'static str;
    /// A short name.
    const NAME: &'static str;
    /// A title for people.
    const TITLE: Option<&'static str> = None;
    /// What it holds, for the model and the user.
    const DESCRIPTION: Option<&'static str> = None;
    /// The MIME type of its contents.
    const MIME_TYPE: Option<&'static str> = None;

    /// Reads the resource.
    fn read() -> Result<Vec<Contents>, Error>;
}

/// The values of a template's variables, or a prompt's arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arguments(BTreeMap<String, String>);

impl Arguments {
    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name`, or an invalid-input error naming it.
    pub fn require(&self, name: &str) -> Result<&str, Error> {
        self.get(name)
            .ok_or_else(|| Error::invalid_input(format!("`{name}` is missing")))
    }

    /// Every name and value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl FromIterator<(String, String)> for Arguments {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Suggested values for an argument being typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// At most 100 values.
    pub values: Vec<String>,
    /// How many there are in all, if known.
    pub total: Option<u32>,
    /// Whether there are more than `values`.
    pub has_more: bool,
}

impl Completion {
    /// The values of `all` that start with `prefix`, at most 100.
    pub fn matching<'a>(all: impl IntoIterator<Item = &'a str>, prefix: &str) -> Self {
        let hits: Vec<String> = all
            .into_iter()
            .filter(|v| v.starts_with(prefix))
            .map(str::to_string)
            .collect();
        let total = u32::try_from(hits.len()).ok();
        let has_more = hits.len() > 100;
        Self {
            values: hits.into_iter().take(100).collect(),
            total,
            has_more,
        }
    }
}

/// A family of resources under an RFC 6570 URI template of simple expressions, e.g.
/// `db://tables/{table}`. The gateway matches the URI, gives policy the variables, and gives
/// `read` the same values.
pub trait ResourceTemplate {
    /// The template, unique across the gateway.
    const URI_TEMPLATE: &'static str;
    /// A short name.
    const NAME: &'static str;
    /// A title for people.
    const TITLE: Option<&'static str> = None;
    /// What the resources hold.
    const DESCRIPTION: Option<&'static str> = None;
    /// The MIME type of their contents.
    const MIME_TYPE: Option<&'static str> = None;

    /// Reads the resource at `uri`, whose variables are `variables`.
    fn read(uri: &str, variables: &Arguments) -> Result<Vec<Contents>, Error>;

    /// Suggests values for `variable` starting from `value` (none by default).
    fn complete(variable: &str, value: &str, context: &Arguments) -> Completion {
        let _ = (variable, value, context);
        Completion::default()
    }
}

/// One argument of a prompt (all prompt arguments are strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argument {
    /// `[a-zA-Z0-9_-]{1,64}`.
    pub name: &'static str,
    /// A title for people.
    pub title: Option<&'static str>,
    /// What to give.
    pub description: Option<&'static str>,
    /// Whether the gateway refuses a request without it.
    pub required: bool,
}

impl Argument {
    /// A required argument.
    pub const fn required(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            title: None,
            description: Some(description),
            required: true,
        }
    }

    /// An optional argument.
    pub const fn optional(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            title: None,
            description: Some(description),
            required: false,
        }
    }
}

/// Who a prompt message is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The user.
    User,
    /// The assistant.
    Assistant,
}

/// One message of a prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Who it is from.
    pub role: Role,
    /// What it says or shows.
    pub content: Content,
}

impl Message {
    /// A user message with `content`.
    pub fn user(content: Content) -> Self {
        Self {
            role: Role::User,
            content,
        }
    }

    /// An assistant message with `content`.
    pub fn assistant(content: Content) -> Self {
        Self {
            role: Role::Assistant,
            content,
        }
    }

    /// A user message of plain text.
    pub fn user_text(text: impl Into<String>) -> Self {
        Self::user(Content::Text(text.into()))
    }
}

/// A prompt: messages built from string arguments. Runs in a fresh instance with only the
/// grants policy gave it (policy action `get`).
pub trait Prompt {
    /// `[a-zA-Z0-9_-]{1,64}`, unique across the gateway.
    const NAME: &'static str;
    /// A title for people.
    const TITLE: Option<&'static str> = None;
    /// What the prompt is for.
    const DESCRIPTION: Option<&'static str> = None;
    /// Its arguments; the gateway checks that required ones are given and no others.
    const ARGUMENTS: &'static [Argument] = &[];

    /// The prompt's messages.
    fn get(arguments: &Arguments) -> Result<Vec<Message>, Error>;

    /// Suggests values for `argument` starting from `value` (none by default).
    fn complete(argument: &str, value: &str, context: &Arguments) -> Completion {
        let _ = (argument, value, context);
        Completion::default()
    }
}
