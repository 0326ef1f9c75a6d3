//! What a call produced, successful or not, as the gate records and answers it.

use std::time::{Duration, Instant};

use super::{Answer, CallOutput, LogLine, RunError, output};
use crate::egress::{EgressEvent, Scrubber};

/// What a run may answer: scrubbed of the call's secrets, and perhaps a failure the tool
/// reported itself (`is_error`).
pub trait Reply {
    fn scrub(&mut self, scrubber: &Scrubber);
    fn is_error(&self) -> bool;
}

impl Reply for CallOutput {
    fn scrub(&mut self, scrubber: &Scrubber) {
        output::scrub(self, scrubber);
    }
    fn is_error(&self) -> bool {
        self.is_error
    }
}

impl Reply for Answer {
    fn scrub(&mut self, scrubber: &Scrubber) {
        Answer::scrub(self, scrubber);
    }
    fn is_error(&self) -> bool {
        matches!(self, Answer::Call(call) if call.is_error)
    }
}

/// Everything a call produced, successful or not: a tool call's output, or (`RunReport<Answer>`)
/// whatever the request asked the component for.
#[derive(Debug)]
pub struct RunReport<T = CallOutput> {
    pub outcome: Result<T, RunError>,
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
    /// Resources the component said the call changed, for the gate to announce.
    pub updated: Vec<String>,
}

impl RunReport {
    /// The report of an earlier run's output, replayed (nothing ran now).
    pub fn replayed(output: CallOutput, fuel_used: u64, elapsed: Duration) -> Self {
        Self::empty(Ok(output), fuel_used, elapsed)
    }
}

impl<T: Reply> RunReport<T> {
    pub(super) fn failed(error: RunError, started: Instant) -> Self {
        Self::empty(Err(error), 0, started.elapsed())
    }

    /// The same report with its answer turned into `U` (or into an error).
    pub fn map<U>(self, f: impl FnOnce(T) -> Result<U, RunError>) -> RunReport<U> {
        RunReport {
            outcome: self.outcome.and_then(f),
            fuel_used: self.fuel_used,
            elapsed: self.elapsed,
            instantiated: self.instantiated,
            stdout: self.stdout,
            stderr: self.stderr,
            logs: self.logs,
            logs_dropped: self.logs_dropped,
            egress: self.egress,
            notices_dropped: self.notices_dropped,
            updated: self.updated,
        }
    }

    fn empty(outcome: Result<T, RunError>, fuel_used: u64, elapsed: Duration) -> Self {
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
            updated: Vec::new(),
        }
    }

    /// Replaces every secret value of the call in everything the report carries.
    pub(super) fn scrub(&mut self, scrubber: &Scrubber) {
        if scrubber.is_empty() {
            return;
        }
        match &mut self.outcome {
            Ok(output) => output.scrub(scrubber),
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
