//! What a call produced, successful or not, as the gate records and answers it.

use std::time::{Duration, Instant};

use super::{CallOutput, LogLine, RunError, output};
use crate::egress::{EgressEvent, Scrubber};

/// Everything a call produced, successful or not.
#[derive(Debug)]
pub struct RunReport {
    pub outcome: Result<CallOutput, RunError>,
    /// Fuel consumed by instantiation and the call.
    pub fuel_used: u64,
    pub elapsed: Duration,
    /// The part of `elapsed` until the fresh instance was ready (store, grants,
    /// instantiation); the rest is the call.
    pub instantiated: Duration,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
    /// The outbound HTTP requests the call made (or tried).
    pub egress: Vec<EgressEvent>,
    /// Progress and log notices the call's rate limit dropped.
    pub notices_dropped: usize,
}

impl RunReport {
    pub(super) fn failed(error: RunError, started: Instant) -> Self {
        Self::empty(Err(error), 0, started.elapsed())
    }

    /// The report of an earlier run's output, replayed (nothing ran now).
    pub fn replayed(output: CallOutput, fuel_used: u64, elapsed: Duration) -> Self {
        Self::empty(Ok(output), fuel_used, elapsed)
    }

    fn empty(outcome: Result<CallOutput, RunError>, fuel_used: u64, elapsed: Duration) -> Self {
        Self {
            outcome,
            fuel_used,
            elapsed,
            instantiated: elapsed,
            stdout: Vec::new(),
            stderr: Vec::new(),
            logs: Vec::new(),
            logs_dropped: 0,
            egress: Vec::new(),
            notices_dropped: 0,
        }
    }

    /// Replaces every secret value of the call in everything the report carries.
    pub(super) fn scrub(&mut self, scrubber: &Scrubber) {
        if scrubber.is_empty() {
            return;
        }
        match &mut self.outcome {
            Ok(output) => output::scrub(output, scrubber),
            Err(RunError::Tool { message, .. }) | Err(RunError::Trap(message)) => {
                scrubber.text_in_place(message);
            }
            Err(_) => {}
        }
        self.stdout = scrubber.bytes(&self.stdout);
        self.stderr = scrubber.bytes(&self.stderr);
        for line in &mut self.logs {
            scrubber.text_in_place(&mut line.message);
        }
    }
}
