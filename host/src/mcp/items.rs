//! `resources/*`, `prompts/*` and `completion/complete`: the gateway's answers in MCP's types.
//!
//! Refusals are JSON-RPC errors (these results have no `isError`): an unknown or hidden
//! resource is -32002, an unknown prompt or bad arguments -32602, and everything the gate
//! refuses or a run that fails is [`REFUSED`] with the reason, the refusal code and the plan.

use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, ErrorCode, ErrorData, GetPromptResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, Prompt, PromptArgument,
    ReadResourceResult, Reference, Resource, ResourceTemplate,
};
use serde_json::json;

use super::content;
use crate::catalog::{PromptEntry, ResourceEntry, TemplateEntry};
use crate::gate::{CompleteRef, GateError, ItemOutcome};
use crate::runner::{Answer, RunError, ToolFailureKind};

/// The JSON-RPC error code of a read, prompt or completion the gateway refused or whose run
/// failed (the message says which; `data["portcullis/refusal"]` has the code).
pub const REFUSED: ErrorCode = ErrorCode(-32010);

pub fn resource(entry: &ResourceEntry) -> Resource {
    let mut resource = Resource::new(entry.uri.clone(), entry.text.name.clone());
    resource.title = entry.text.title.clone();
    resource.description = entry.text.description.clone();
    resource.mime_type = entry.mime_type.clone();
    resource.size = entry.size;
    resource
}

pub fn template(entry: &TemplateEntry) -> ResourceTemplate {
    let mut template = ResourceTemplate::new(entry.template.as_str(), entry.text.name.clone());
    template.title = entry.text.title.clone();
    template.description = entry.text.description.clone();
    template.mime_type = entry.mime_type.clone();
    template
}

pub fn prompt(entry: &PromptEntry) -> Prompt {
    let arguments = entry
        .arguments
        .iter()
        .map(|a| {
            let mut argument = PromptArgument::new(a.name.clone());
            argument.title = a.title.clone();
            argument.description = a.description.clone();
            argument.required = Some(a.required);
            argument
        })
        .collect();
    let mut prompt = Prompt::new(
        entry.text.name.clone(),
        entry.text.description.clone(),
        Some(arguments),
    );
    prompt.title = entry.text.title.clone();
    prompt
}

pub fn resources(fixed: &[std::sync::Arc<ResourceEntry>]) -> ListResourcesResult {
    ListResourcesResult::with_all_items(fixed.iter().map(|r| resource(r)).collect())
}

pub fn templates(templates: &[std::sync::Arc<TemplateEntry>]) -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(templates.iter().map(|t| template(t)).collect())
}

pub fn prompts(prompts: &[std::sync::Arc<PromptEntry>]) -> ListPromptsResult {
    ListPromptsResult::with_all_items(prompts.iter().map(|p| prompt(p)).collect())
}

/// What a completion request refers to.
pub fn reference(request: &CompleteRequestParams) -> Result<CompleteRef<'_>, ErrorData> {
    match &request.r#ref {
        Reference::Prompt(p) => Ok(CompleteRef::Prompt(&p.name)),
        Reference::Resource(r) => Ok(CompleteRef::Template(&r.uri)),
        _ => Err(ErrorData::invalid_params(
            "completion/complete: `ref` must be ref/prompt or ref/resource",
            None,
        )),
    }
}

fn unexpected() -> ErrorData {
    ErrorData::internal_error("the component answered with something else", None)
}

pub fn read(result: Result<ItemOutcome, GateError>) -> Result<ReadResourceResult, ErrorData> {
    match result?.answer {
        Answer::Read(read) => Ok(ReadResourceResult::new(
            read.contents.iter().map(content::contents).collect(),
        )),
        _ => Err(unexpected()),
    }
}

pub fn got(result: Result<ItemOutcome, GateError>) -> Result<GetPromptResult, ErrorData> {
    match result?.answer {
        Answer::Get(prompt) => {
            let result =
                GetPromptResult::new(prompt.messages.iter().map(content::message).collect());
            Ok(match prompt.description {
                Some(d) => result.with_description(d),
                None => result,
            })
        }
        _ => Err(unexpected()),
    }
}

pub fn completed(result: Result<ItemOutcome, GateError>) -> Result<CompleteResult, ErrorData> {
    match result?.answer {
        Answer::Complete(done) => {
            let mut info =
                CompletionInfo::new(done.values).map_err(|e| ErrorData::internal_error(e, None))?;
            info.total = done.total;
            info.has_more = Some(done.has_more);
            Ok(CompleteResult::new(info))
        }
        _ => Err(unexpected()),
    }
}

impl From<GateError> for ErrorData {
    fn from(error: GateError) -> Self {
        let message = error.to_string();
        let data = json!({
            "portcullis/refusal": crate::audit::records::refusal_code(&error),
            "portcullis/plan_hash": error.plan_hash(),
        });
        match &error {
            GateError::UnknownItem {
                kind: "resource", ..
            } => ErrorData::resource_not_found(message, None),
            GateError::UnknownItem { .. }
            | GateError::UnknownTool(_)
            | GateError::Arguments(_)
            | GateError::Schema(_) => ErrorData::invalid_params(message, None),
            GateError::Run { report, .. } => match &report.outcome {
                Err(RunError::Tool {
                    kind: ToolFailureKind::UnknownTool,
                    ..
                }) => ErrorData::resource_not_found(message, Some(data)),
                Err(RunError::Tool {
                    kind: ToolFailureKind::InvalidInput,
                    ..
                }) => ErrorData::invalid_params(message, Some(data)),
                _ => ErrorData::new(REFUSED, message, Some(data)),
            },
            _ => ErrorData::new(REFUSED, message, Some(data)),
        }
    }
}
