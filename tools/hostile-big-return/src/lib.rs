//! Hostile: returns a value far larger than the result cap.
use portcullis_sdk::{Error, Output, Tool, export_tools};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct BigInput {
    /// How many bytes of text to return.
    bytes: usize,
}

struct Big;

impl Tool for Big {
    type Input = BigInput;
    const NAME: &'static str = "big_return";
    const DESCRIPTION: &'static str = "Returns as many bytes as asked for.";

    fn call(input: BigInput) -> Result<Output, Error> {
        Ok(Output::text("x".repeat(input.bytes)))
    }
}

export_tools!(Big);
