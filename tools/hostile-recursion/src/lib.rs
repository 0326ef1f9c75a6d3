//! Hostile: unbounded recursion. Must trap on the wasm stack limit, not abort the host.
use portcullis_sdk::{Error, Output, Tool, export_tools};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Empty {}

struct Recurse;

#[inline(never)]
#[allow(unconditional_recursion)]
fn deeper(depth: u64, pad: [u64; 8]) -> u64 {
    let pad = std::hint::black_box(pad);
    deeper(depth + 1, pad).wrapping_add(pad[(depth % 8) as usize])
}

impl Tool for Recurse {
    type Input = Empty;
    const NAME: &'static str = "recurse";
    const DESCRIPTION: &'static str = "Recurses until the stack runs out.";

    fn call(_: Empty) -> Result<Output, Error> {
        Ok(Output::text(deeper(0, [1; 8]).to_string()))
    }
}

export_tools!(Recurse);
