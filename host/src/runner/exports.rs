//! What a component exports, found once when it is prepared, and the one way every request
//! reaches it: [`Request`] in, [`Answer`] out.
//!
//! Components of `portcullis:tool@0.2.0` may export `tool`, `resources`, `prompts` and
//! `completion`, any of them; components of 0.1.0 export `tool` only and are answered through
//! the same path (their results are upgraded to the 0.2.0 types, which only add).

use anyhow::{Result, bail};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::exports::portcullis::tool as v02;
use super::bindings::portcullis::tool::types as wit;
use super::bindings::v01::exports::portcullis::tool::tool as v01;
use super::bindings::v01::portcullis::tool::types as old;
use super::items::{self, Answer, CompletionOutput, PromptOutput, ReadOutput};
use super::output;
use super::state::StoreState;
use super::{RunError, ToolInfo};

/// A pre-instantiated component, ready for any number of fresh instances, with its exports.
pub struct Prepared {
    pub(super) pre: InstancePre<StoreState>,
    exports: Exports,
}

enum Exports {
    V01(v01::GuestIndices),
    V02 {
        tool: Option<v02::tool::GuestIndices>,
        resources: Option<v02::resources::GuestIndices>,
        prompts: Option<v02::prompts::GuestIndices>,
        completion: Option<v02::completion::GuestIndices>,
    },
}

/// What a component describes of itself at load.
#[derive(Default)]
pub struct Described {
    pub tools: Vec<ToolInfo>,
    pub resources: Vec<wit::ResourceInfo>,
    pub templates: Vec<wit::ResourceTemplate>,
    pub prompts: Vec<wit::PromptInfo>,
    /// Whether the component answers `completion/complete`.
    pub completes: bool,
}

/// One request to a component.
pub enum Request<'a> {
    Call {
        name: &'a str,
        input: &'a str,
    },
    Read {
        uri: &'a str,
        template: Option<&'a str>,
        variables: &'a [(String, String)],
    },
    Get {
        name: &'a str,
        arguments: &'a [(String, String)],
    },
    Complete(&'a wit::CompletionRequest),
}

impl Request<'_> {
    /// What the request is, for errors: `tool`, `resources`, `prompts` or `completion`.
    fn interface(&self) -> &'static str {
        match self {
            Self::Call { .. } => "tool",
            Self::Read { .. } => "resources",
            Self::Get { .. } => "prompts",
            Self::Complete(_) => "completion",
        }
    }
}

impl Prepared {
    /// Finds the exports of `pre`: a 0.2.0 component needs at least one of its interfaces, a
    /// 0.1.0 component its `tool`.
    pub(super) fn new(pre: InstancePre<StoreState>) -> Result<Self> {
        let exports = match v01::GuestIndices::new(&pre) {
            Ok(tool) => Exports::V01(tool),
            Err(_) => {
                let exports = Exports::V02 {
                    tool: v02::tool::GuestIndices::new(&pre).ok(),
                    resources: v02::resources::GuestIndices::new(&pre).ok(),
                    prompts: v02::prompts::GuestIndices::new(&pre).ok(),
                    completion: v02::completion::GuestIndices::new(&pre).ok(),
                };
                if let Exports::V02 {
                    tool: None,
                    resources: None,
                    prompts: None,
                    completion: None,
                } = exports
                {
                    bail!(
                        "the component exports none of `portcullis:tool/tool`, `resources`, `prompts` or `completion` (0.2.0), nor `portcullis:tool/tool@0.1.0`"
                    );
                }
                exports
            }
        };
        Ok(Self { pre, exports })
    }

    /// The WIT package version the component was built against.
    pub fn version(&self) -> &'static str {
        match self.exports {
            Exports::V01(_) => "0.1.0",
            Exports::V02 { .. } => "0.2.0",
        }
    }

    /// Calls every `describe` the component exports, in `instance`.
    pub(super) async fn describe(
        &self,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Described> {
        let mut described = Described::default();
        match &self.exports {
            Exports::V01(tool) => {
                let tools = tool
                    .load(&mut *store, instance)?
                    .call_describe(store)
                    .await?;
                described.tools = tools.into_iter().map(upgrade_info).collect();
            }
            Exports::V02 {
                tool,
                resources,
                prompts,
                completion,
            } => {
                if let Some(tool) = tool {
                    let guest = tool.load(&mut *store, instance)?;
                    described.tools = guest.call_describe(&mut *store).await?;
                }
                if let Some(resources) = resources {
                    let guest = resources.load(&mut *store, instance)?;
                    let list = guest.call_describe(&mut *store).await?;
                    described.resources = list.resources;
                    described.templates = list.templates;
                }
                if let Some(prompts) = prompts {
                    let guest = prompts.load(&mut *store, instance)?;
                    described.prompts = guest.call_describe(&mut *store).await?;
                }
                described.completes = completion.is_some();
            }
        }
        Ok(described)
    }

    /// Runs `request` in `instance`: a trap is the outer error, the component's own refusal
    /// or a malformed answer the inner one.
    pub(super) async fn invoke(
        &self,
        store: &mut Store<StoreState>,
        instance: &Instance,
        request: &Request<'_>,
        cap: u64,
    ) -> wasmtime::Result<Result<Answer, RunError>> {
        let missing = || {
            Ok(Err(RunError::Tool {
                kind: super::ToolFailureKind::UnknownTool,
                message: format!(
                    "the component does not export `portcullis:tool/{}`",
                    request.interface()
                ),
            }))
        };
        let (tool, resources, prompts, completion) = match &self.exports {
            Exports::V01(tool) => {
                let Request::Call { name, input } = request else {
                    return missing();
                };
                let guest = tool.load(&mut *store, instance)?;
                return Ok(match guest.call_call(store, name, input).await? {
                    Ok(result) => output::convert(upgrade_result(result), cap).map(Answer::Call),
                    Err(error) => Err(output::tool_failure(upgrade_error(error))),
                });
            }
            Exports::V02 {
                tool,
                resources,
                prompts,
                completion,
            } => (tool, resources, prompts, completion),
        };
        Ok(match request {
            Request::Call { name, input } => {
                let Some(tool) = tool else { return missing() };
                let guest = tool.load(&mut *store, instance)?;
                match guest.call_call(store, name, input).await? {
                    Ok(result) => output::convert(result, cap).map(Answer::Call),
                    Err(error) => Err(output::tool_failure(error)),
                }
            }
            Request::Read {
                uri,
                template,
                variables,
            } => {
                let Some(resources) = resources else {
                    return missing();
                };
                let guest = resources.load(&mut *store, instance)?;
                match guest.call_read(store, uri, *template, variables).await? {
                    Ok(contents) => ReadOutput::convert(uri, contents, cap).map(Answer::Read),
                    Err(error) => Err(items::read_failure(error)),
                }
            }
            Request::Get { name, arguments } => {
                let Some(prompts) = prompts else {
                    return missing();
                };
                let guest = prompts.load(&mut *store, instance)?;
                match guest.call_get(store, name, arguments).await? {
                    Ok(result) => PromptOutput::convert(result, cap).map(Answer::Get),
                    Err(error) => Err(items::prompt_failure(error)),
                }
            }
            Request::Complete(asked) => {
                let Some(completion) = completion else {
                    return missing();
                };
                let guest = completion.load(&mut *store, instance)?;
                match guest.call_complete(store, asked).await? {
                    Ok(done) => CompletionOutput::convert(done, cap).map(Answer::Complete),
                    Err(message) => Err(RunError::Tool {
                        kind: super::ToolFailureKind::Failed,
                        message,
                    }),
                }
            }
        })
    }
}

fn upgrade_info(info: old::ToolInfo) -> ToolInfo {
    let a = info.annotations;
    ToolInfo {
        name: info.name,
        title: info.title,
        description: info.description,
        input_schema: info.input_schema,
        output_schema: info.output_schema,
        annotations: wit::Annotations {
            read_only: a.read_only,
            destructive: a.destructive,
            idempotent: a.idempotent,
            open_world: a.open_world,
        },
    }
}

fn upgrade_result(result: old::CallResult) -> wit::CallResult {
    let media = |m: old::Media| wit::Media {
        data: m.data,
        mime_type: m.mime_type,
    };
    let content = result
        .content
        .into_iter()
        .map(|item| wit::Content {
            kind: match item {
                old::Content::Text(text) => wit::ContentKind::Text(text),
                old::Content::Json(text) => wit::ContentKind::Json(text),
                old::Content::Image(m) => wit::ContentKind::Image(media(m)),
                old::Content::Audio(m) => wit::ContentKind::Audio(media(m)),
                old::Content::Embedded(r) => wit::ContentKind::Embedded(wit::EmbeddedResource {
                    uri: r.uri,
                    mime_type: r.mime_type,
                    text: r.text,
                    blob: r.blob,
                }),
            },
            annotations: None,
        })
        .collect();
    wit::CallResult {
        content,
        structured: result.structured,
        is_error: result.is_error,
    }
}

fn upgrade_error(error: old::ToolError) -> wit::ToolError {
    match error {
        old::ToolError::UnknownTool(m) => wit::ToolError::UnknownTool(m),
        old::ToolError::InvalidInput(m) => wit::ToolError::InvalidInput(m),
        old::ToolError::Failed(m) => wit::ToolError::Failed(m),
    }
}
