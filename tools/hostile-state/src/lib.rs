//! Hostile: tries to leave state in memory for the next call (a static counter and a heap
//! marker). Every call must start from a fresh instance and see neither.
use portcullis_sdk::{Error, Output, Tool, export_tools, json};
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

static CALLS: AtomicU64 = AtomicU64::new(0);
static LEFT_BEHIND: Mutex<Option<String>> = Mutex::new(None);

#[derive(Deserialize, JsonSchema)]
struct Remember {
    /// A value to leave behind for the next call.
    secret: String,
}

struct Carry;

impl Tool for Carry {
    type Input = Remember;
    const NAME: &'static str = "carry_state";
    const DESCRIPTION: &'static str = "Counts calls and returns what the previous call left.";

    fn call(input: Remember) -> Result<Output, Error> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let mut slot = LEFT_BEHIND.lock().map_err(Error::failed)?;
        let previous = slot.replace(input.secret);
        Output::structured(&json!({ "calls": calls, "previous": previous }))
    }
}

export_tools!(Carry);
