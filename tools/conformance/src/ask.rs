//! The tools that ask the client: its model (`test_sampling`), and its user with hand-written
//! schemas (defaults, SEP-1034; every enum form, SEP-1330); and the one that takes long
//! enough for the gateway to close its stream (`test_reconnection`, SEP-1699).

use portcullis_sdk::{Elicited, Error, Output, Sampling, Tool, elicit_form, json, sample};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Nothing;

/// What to ask the model.
#[derive(Deserialize, JsonSchema)]
pub struct PromptInput {
    /// The prompt for the model.
    prompt: String,
}

pub struct Sample;

impl Tool for Sample {
    type Input = PromptInput;
    const NAME: &'static str = "test_sampling";
    const DESCRIPTION: &'static str = "Asks the client's model to answer a prompt.";

    fn call(input: PromptInput) -> Result<Output, Error> {
        let answer = sample(Sampling::ask(input.prompt, 100))?;
        let text = answer
            .text()
            .ok_or_else(|| Error::failed("the model did not answer with text"))?;
        Ok(Output::text(format!("LLM response: {text}")))
    }
}

fn completed(
    answer: Elicited<portcullis_sdk::serde_json::Map<String, portcullis_sdk::Value>>,
) -> Output {
    let (action, content) = match answer {
        Elicited::Accepted(content) => ("accept", portcullis_sdk::Value::Object(content)),
        Elicited::Declined => ("decline", json!({})),
        Elicited::Cancelled => ("cancel", json!({})),
    };
    Output::text(format!(
        "Elicitation completed: action={action}, content={content}"
    ))
}

pub struct Sep1034Defaults;

impl Tool for Sep1034Defaults {
    type Input = Nothing;
    const NAME: &'static str = "test_elicitation_sep1034_defaults";
    const DESCRIPTION: &'static str = "Asks the user with a default for every primitive type.";

    fn call(_: Nothing) -> Result<Output, Error> {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active"
                },
                "verified": {"type": "boolean", "description": "Verified", "default": true}
            }
        });
        Ok(completed(elicit_form(
            "Please review and update the form fields",
            &schema,
        )?))
    }
}

pub struct Sep1330Enums;

impl Tool for Sep1330Enums {
    type Input = Nothing;
    const NAME: &'static str = "test_elicitation_sep1330_enums";
    const DESCRIPTION: &'static str =
        "Asks the user with every enum form: titled, untitled, multi-select.";

    fn call(_: Nothing) -> Result<Output, Error> {
        let titled = |values: [(&str, &str); 3]| -> Vec<portcullis_sdk::Value> {
            values
                .iter()
                .map(|(value, title)| json!({"const": value, "title": title}))
                .collect()
        };
        let schema = json!({
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {
                    "type": "string",
                    "oneOf": titled([("value1", "First Option"), ("value2", "Second Option"), ("value3", "Third Option")])
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]
                },
                "untitledMulti": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
                },
                "titledMulti": {
                    "type": "array",
                    "items": {"anyOf": titled([("value1", "First Choice"), ("value2", "Second Choice"), ("value3", "Third Choice")])}
                }
            }
        });
        Ok(completed(elicit_form(
            "Please choose from each list",
            &schema,
        )?))
    }
}

pub struct Reconnection;

impl Tool for Reconnection {
    type Input = Nothing;
    const NAME: &'static str = "test_reconnection";
    const DESCRIPTION: &'static str = "Takes 1.5 s: long enough for a gateway with sse_poll_after to close its stream, which the client resumes.";

    fn call(_: Nothing) -> Result<Output, Error> {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        Ok(Output::text("Reconnection test completed successfully"))
    }
}
