//! Hostile: an infinite loop. Must be stopped by fuel or the epoch deadline.
use portcullis_sdk::{Error, Output, Tool, export_tools};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Empty {}

struct Spin;

impl Tool for Spin {
    type Input = Empty;
    const NAME: &'static str = "spin";
    const DESCRIPTION: &'static str = "Loops forever.";

    fn call(_: Empty) -> Result<Output, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export_tools!(Spin);
