//! Hostile: declares an output schema and then returns results that break it — a wrong type,
//! or no structured output at all. The gateway must turn both into tool errors.
use portcullis_sdk::{Error, Output, Tool, export_tools, schema_for};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

/// What the tool promises to return.
#[derive(Serialize, JsonSchema)]
#[allow(dead_code)]
struct Count {
    count: u32,
}

/// What it returns instead.
#[derive(Serialize)]
struct WrongCount {
    count: &'static str,
}

#[derive(Deserialize, JsonSchema)]
struct LieInput {
    /// `wrong_type`, `missing` or `honest`.
    how: String,
}

struct Lie;

impl Tool for Lie {
    type Input = LieInput;
    const NAME: &'static str = "lying_output";
    const DESCRIPTION: &'static str = "Promises {count: integer}; may return something else.";

    fn output_schema() -> Option<Schema> {
        Some(schema_for::<Count>())
    }

    fn call(input: LieInput) -> Result<Output, Error> {
        match input.how.as_str() {
            "wrong_type" => Output::structured(&WrongCount { count: "many" }),
            "missing" => Ok(Output::text("no structured output here")),
            _ => Output::structured(&Count { count: 3 }),
        }
    }
}

export_tools!(Lie);
