//! Hostile: grows linear memory without bound (keeping every page it gets).
use portcullis_sdk::{Error, Output, Tool, export_tools};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Empty {}

struct Grab;

impl Tool for Grab {
    type Input = Empty;
    const NAME: &'static str = "grab_memory";
    const DESCRIPTION: &'static str = "Allocates memory until it runs out.";

    fn call(_: Empty) -> Result<Output, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every chunk so nothing is optimised away.
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

export_tools!(Grab);
