//! Hostile: blocks inside a host call (a WASI clock wait). Epochs and fuel cannot interrupt it;
//! only the gateway's wall-clock timeout can.
use portcullis_sdk::{Error, Output, Tool, export_tools};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Empty {}

struct Sleep;

impl Tool for Sleep {
    type Input = Empty;
    const NAME: &'static str = "sleep_forever";
    const DESCRIPTION: &'static str = "Sleeps for an hour.";

    fn call(_: Empty) -> Result<Output, Error> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(Output::text("woke up"))
    }
}

export_tools!(Sleep);
