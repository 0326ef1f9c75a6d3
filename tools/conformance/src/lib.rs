//! `conformance`: the tools the MCP conformance suite (`@modelcontextprotocol/conformance`)
//! calls, each as it describes them. Nothing of the suite is built into the gateway: these are
//! ordinary components, governed by policy like any other (see `policy/` beside this crate),
//! and what they return goes through the same WIT contract and the same checks.

use std::time::Duration;

use portcullis_sdk::{Content, Error, Output, Tool, export_component, log, progress};
use schemars::JsonSchema;
use serde::Deserialize;

/// No arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

/// A 1×1 red PNG.
const PNG: [u8; 69] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

fn png() -> Content {
    Content::Image {
        data: PNG.to_vec(),
        mime_type: "image/png".into(),
    }
}

/// A WAV file of 1 ms of silence (8 kHz, 8-bit mono).
fn wav() -> Vec<u8> {
    let samples = [0x80u8; 8];
    let mut wav = Vec::with_capacity(44 + samples.len());
    let chunk = |wav: &mut Vec<u8>, id: &[u8], len: u32| {
        wav.extend_from_slice(id);
        wav.extend_from_slice(&len.to_le_bytes());
    };
    chunk(&mut wav, b"RIFF", 36 + samples.len() as u32);
    wav.extend_from_slice(b"WAVE");
    chunk(&mut wav, b"fmt ", 16);
    for (value, bytes) in [(1u32, 2), (1, 2), (8000, 4), (8000, 4), (1, 2), (8, 2)] {
        wav.extend_from_slice(&value.to_le_bytes()[..bytes]);
    }
    chunk(&mut wav, b"data", samples.len() as u32);
    wav.extend_from_slice(&samples);
    wav
}

macro_rules! fixed_tool {
    ($ty:ident, $name:literal, $description:literal, $body:expr) => {
        pub struct $ty;
        impl Tool for $ty {
            type Input = Nothing;
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = $description;
            fn call(_: Nothing) -> Result<Output, Error> {
                $body
            }
        }
    };
}

fixed_tool!(
    SimpleText,
    "test_simple_text",
    "Returns a simple text response.",
    Ok(Output::text("This is a simple text response for testing."))
);

fixed_tool!(
    ImageContent,
    "test_image_content",
    "Returns a 1x1 red PNG.",
    Ok(Output::default().with(png()))
);

fixed_tool!(
    AudioContent,
    "test_audio_content",
    "Returns a short WAV file.",
    Ok(Output::default().with(Content::Audio {
        data: wav(),
        mime_type: "audio/wav".into(),
    }))
);

fixed_tool!(
    EmbeddedResource,
    "test_embedded_resource",
    "Returns an embedded text resource.",
    Ok(Output::default().with(Content::Resource {
        uri: "test://embedded-resource".into(),
        mime_type: Some("text/plain".into()),
        text: "This is an embedded resource content.".into(),
    }))
);

fixed_tool!(
    MultipleContentTypes,
    "test_multiple_content_types",
    "Returns text, an image and an embedded resource.",
    Ok(Output::text("Multiple content types test:")
        .with(png())
        .with(Content::Resource {
            uri: "test://mixed-content-resource".into(),
            mime_type: Some("application/json".into()),
            text: r#"{"test":"data","value":123}"#.into(),
        }))
);

fixed_tool!(
    WithLogging,
    "test_tool_with_logging",
    "Logs three lines at info level, 50 ms apart.",
    {
        log::info("Tool execution started");
        std::thread::sleep(Duration::from_millis(50));
        log::info("Tool processing data");
        std::thread::sleep(Duration::from_millis(50));
        log::info("Tool execution completed");
        Ok(Output::text("Tool with logging executed successfully"))
    }
);

fixed_tool!(
    ErrorHandling,
    "test_error_handling",
    "Always fails, as a tool error the model can read.",
    Ok(Output::failure(
        "This tool intentionally returns an error for testing"
    ))
);

fixed_tool!(
    WithProgress,
    "test_tool_with_progress",
    "Reports progress 0, 50 and 100 of 100, 50 ms apart.",
    {
        for (i, done) in [0, 50, 100].into_iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
            progress(done, Some(100), None);
        }
        Ok(Output::text("Tool with progress executed successfully"))
    }
);

/// A postal address (`$defs/address`, as the suite expects).
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "address")]
pub struct Address {
    pub street: Option<String>,
    pub city: Option<String>,
}

/// JSON Schema 2020-12 keywords: `$schema`, `$defs` with a `$ref`, `additionalProperties`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schema2020 {
    pub name: Option<String>,
    pub address: Option<Address>,
}

pub struct JsonSchema2020;

impl Tool for JsonSchema2020 {
    type Input = Schema2020;
    const NAME: &'static str = "json_schema_2020_12_tool";
    const DESCRIPTION: &'static str = "Tool with JSON Schema 2020-12 features";

    fn call(input: Schema2020) -> Result<Output, Error> {
        let city = input.address.and_then(|a| a.city);
        Ok(Output::text(format!(
            "name: {}, city: {}",
            input.name.as_deref().unwrap_or("-"),
            city.as_deref().unwrap_or("-")
        )))
    }
}

/// The message to show with the question.
#[derive(Deserialize, JsonSchema)]
pub struct AskInput {
    /// What to tell the user.
    message: String,
}

/// What the suite's client is asked for.
#[derive(Deserialize, JsonSchema)]
pub struct UserInfo {
    /// A user name.
    username: String,
    /// An e-mail address.
    email: String,
}

pub struct Elicitation;

impl Tool for Elicitation {
    type Input = AskInput;
    const NAME: &'static str = "test_elicitation";
    const DESCRIPTION: &'static str = "Asks the user for a user name and an e-mail address.";

    fn call(input: AskInput) -> Result<Output, Error> {
        Ok(Output::text(
            match portcullis_sdk::elicit::<UserInfo>(&input.message)? {
                portcullis_sdk::Elicited::Accepted(info) => format!(
                    "User provided: username={}, email={}",
                    info.username, info.email
                ),
                portcullis_sdk::Elicited::Declined => "User declined".to_string(),
                portcullis_sdk::Elicited::Cancelled => "User cancelled".to_string(),
            },
        ))
    }
}

mod ask;
mod items;

export_component! {
    tools: [
        SimpleText,
        ImageContent,
        AudioContent,
        EmbeddedResource,
        MultipleContentTypes,
        WithLogging,
        ErrorHandling,
        WithProgress,
        JsonSchema2020,
        Elicitation,
        ask::Sample,
        ask::Sep1034Defaults,
        ask::Sep1330Enums,
        ask::Reconnection,
    ],
    resources: [items::StaticText, items::StaticBinary, items::Watched],
    templates: [items::TemplateData],
    prompts: [items::SimplePrompt, items::WithArguments, items::WithEmbeddedResource, items::WithImage],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_media_are_what_they_say() {
        assert_eq!(&PNG[1..4], b"PNG");
        assert_eq!(&PNG[PNG.len() - 8..PNG.len() - 4], b"IEND");
        let wav = wav();
        assert_eq!((&wav[0..4], &wav[8..12]), (&b"RIFF"[..], &b"WAVE"[..]));
        assert_eq!(
            u32::from_le_bytes(wav[4..8].try_into().unwrap()) as usize,
            wav.len() - 8
        );
    }
}
