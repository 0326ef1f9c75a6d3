//! `legacy-v01`: a tool built against `portcullis:tool@0.1.0` (`wit/legacy/0.1`) with
//! wit-bindgen alone, as components were before 0.2.0. The gateway must keep loading, listing
//! and calling it; the e2e tests do.

wit_bindgen::generate!({
    world: "tool-component",
    path: "../../wit/legacy/0.1",
});

use exports::portcullis::tool::tool::Guest;
use portcullis::tool::host::{Level, log};
use portcullis::tool::types::{
    Annotations, CallResult, Content, EmbeddedResource, ToolError, ToolInfo,
};

struct Legacy;

impl Guest for Legacy {
    fn describe() -> Vec<ToolInfo> {
        vec![ToolInfo {
            name: "legacy_echo".into(),
            title: Some("Echo (0.1.0)".into()),
            description: "Echoes its input as text and as an embedded resource.".into(),
            input_schema:
                r#"{"type":"object","properties":{"say":{"type":"string"}},"required":["say"]}"#
                    .into(),
            output_schema: None,
            annotations: Annotations {
                read_only: true,
                destructive: false,
                idempotent: true,
                open_world: false,
            },
        }]
    }

    fn call(name: String, input: String) -> Result<CallResult, ToolError> {
        if name != "legacy_echo" {
            return Err(ToolError::UnknownTool(name));
        }
        log(Level::Info, "legacy echo");
        Ok(CallResult {
            content: vec![
                Content::Text(format!("echo: {input}")),
                Content::Embedded(EmbeddedResource {
                    uri: "legacy://echo".into(),
                    mime_type: Some("application/json".into()),
                    text: Some(input),
                    blob: None,
                }),
            ],
            structured: None,
            is_error: false,
        })
    }
}

export!(Legacy);
