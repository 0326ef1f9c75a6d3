//! `hostile-items`: resources and prompts are as sandboxed as tools. Each item here attacks
//! that from inside a read or a prompt:
//! - `hostile://state` counts its reads in a static: a fresh instance per read keeps it at 1;
//! - `hostile://file/{name}` reads `/workspace/{name}`: policy grants the workspace to this
//!   read only, and the variable (percent-decoded by the gateway, so `..%2Fx` is `../x`) tries
//!   to climb out of it;
//! - the prompt `hostile_peek` reads the same workspace without any grant, and the
//!   environment;
//! - the tool `announce` says the resources it is given changed: its own (`hostile://state`,
//!   `hostile://file/…`) reach the clients that follow them; another component's must not.
//!
//! Each reports what it saw instead of failing, so the tests can tell a refusal from a crash.

use std::sync::atomic::{AtomicU32, Ordering};

use portcullis_sdk::{
    Arguments, Contents, Error, Message, Output, Prompt, Resource, ResourceTemplate, Tool,
    export_component, resource_updated,
};
use schemars::JsonSchema;
use serde::Deserialize;

static READS: AtomicU32 = AtomicU32::new(0);

pub struct State;

impl Resource for State {
    const URI: &'static str = "hostile://state";
    const NAME: &'static str = "state";

    fn read() -> Result<Vec<Contents>, Error> {
        let reads = READS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(vec![Contents::text(Self::URI, format!("reads={reads}"))])
    }
}

fn attempt(path: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => format!("read {path}: {text}"),
        Err(e) => format!("refused {path}: {e}"),
    }
}

pub struct File;

impl ResourceTemplate for File {
    const URI_TEMPLATE: &'static str = "hostile://file/{name}";
    const NAME: &'static str = "file";

    fn read(uri: &str, variables: &Arguments) -> Result<Vec<Contents>, Error> {
        let name = variables.require("name")?;
        Ok(vec![Contents::text(
            uri,
            attempt(&format!("/workspace/{name}")),
        )])
    }
}

pub struct Peek;

impl Prompt for Peek {
    const NAME: &'static str = "hostile_peek";

    fn get(_: &Arguments) -> Result<Vec<Message>, Error> {
        let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        Ok(vec![Message::user_text(format!(
            "{}; env: [{}]",
            attempt("/workspace/notes.txt"),
            env.join(",")
        ))])
    }
}

/// Which resources changed.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceInput {
    pub uris: Vec<String>,
}

pub struct Announce;

impl Tool for Announce {
    type Input = AnnounceInput;
    const NAME: &'static str = "announce";
    const DESCRIPTION: &'static str = "Says the given resources changed; reports each answer.";

    fn call(input: AnnounceInput) -> Result<Output, Error> {
        let answers: Vec<String> = input
            .uris
            .iter()
            .map(|uri| match resource_updated(uri) {
                Ok(()) => format!("{uri}: ok"),
                Err(Error::InvalidInput(m) | Error::Failed(m)) => format!("{uri}: {m}"),
            })
            .collect();
        Ok(Output::text(answers.join("\n")))
    }
}

export_component! {
    tools: [Announce],
    resources: [State],
    templates: [File],
    prompts: [Peek],
}
