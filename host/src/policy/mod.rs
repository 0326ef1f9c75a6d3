//! The policy engine: Rego modules and JSON data from a directory (or the embedded defaults),
//! evaluated in process by regorus.
//!
//! Load: parse every `*.rego` and `*.json` (recursively), reject builtins we do not allow,
//! check that `data.portcullis.decision` is defined. Decide: a pooled interpreter gets the
//! input and runs under an explicit wall-clock timer ([`EvalLimits`]) with strict errors: a
//! builtin or arithmetic error anywhere the decision depends on is an error, never "that rule
//! was undefined". Anything but a well-formed decision — an error, an undefined result, a
//! malformed document, the timer, a panic — is a denial (fail closed) whose reason is a
//! reference; the details go to the operator's log. A reload that fails keeps the last good
//! policy.
//!
//! Why the interpreter and not regorus's faster VM (RVM): in regorus 0.14.1 the VM treats an
//! error inside a rule body as "this body is undefined" even with strict builtin errors set
//! (`rvm/vm/rules.rs`, `is_fatal_vm_error`), so a `deny contains …` rule whose builtin fails
//! silently stops denying. The interpreter with strict errors fails the evaluation instead, and
//! it is the engine `policy test` runs: what is tested is what serves. See docs/decisions.md.

mod builtins;
mod decision;
mod memo;
mod rego_tests;
mod sources;
pub mod types;

use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use regorus::utils::limits::ExecutionTimerConfig;
use serde::Serialize;

pub use rego_tests::{TestOutcome, TestReport};
pub use sources::PolicySource;
pub use types::{
    Action, Decision, INPUT_VERSION, LimitsSpec, PolicyInput, Principal, PromptFacts,
    RequestContext, ResourceFacts, ToolFacts,
};

/// The rule every policy must define.
pub const DECISION_RULE: &str = "data.portcullis.decision";

/// Bounds on one evaluation, set explicitly (never regorus's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EvalLimits {
    /// Wall-clock budget of one evaluation; past it the evaluation fails (and so denies).
    #[serde(serialize_with = "as_millis", rename = "timeout_ms")]
    pub timeout: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for EvalLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(50),
        }
    }
}

impl EvalLimits {
    fn timer(&self) -> ExecutionTimerConfig {
        ExecutionTimerConfig {
            limit: self.timeout,
            // The timer is consulted every 32 evaluation steps.
            check_interval: NonZeroU32::MIN.saturating_add(31),
        }
    }
}

/// One loaded policy set, ready to evaluate.
struct Prepared {
    /// Modules and data, strict, with the timer: cloned into the pool as needed.
    engine: regorus::Engine,
    /// Engines ready for another evaluation (reusing one skips its per-clone preparation,
    /// which costs more than the evaluation).
    pool: Mutex<Vec<regorus::Engine>>,
    /// `(file name, source)` of each module, for the test runner.
    modules: Vec<(String, String)>,
    /// `sha256:` over every file (name and bytes) and the gateway's data: the bundle's identity.
    digest: Arc<str>,
    /// Whether any module mentions `usage` (only then is usage looked up per call).
    reads_usage: bool,
    /// Decisions remembered, if the bundle provably cannot tell requests apart by their
    /// context (`memo.rs`).
    memo: Option<memo::Memo>,
}

/// The bundle digest: every file's name and bytes, in name order, and the gateway data.
fn bundle_digest(files: &[(String, String)], gateway_data: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    let mut hash = Sha256::new();
    for (name, text) in sorted {
        for part in [name.as_bytes(), text.as_bytes()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
    }
    hash.update(gateway_data.to_string().as_bytes());
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// The policy engine shared by all requests.
pub struct Policy {
    source: PolicySource,
    gateway_data: serde_json::Value,
    limits: EvalLimits,
    current: RwLock<Arc<Prepared>>,
    /// Numbers the references of policy errors (`pe-<pid>-<n>`).
    errors: AtomicU64,
}

fn prepare(
    source: &PolicySource,
    gateway_data: &serde_json::Value,
    limits: EvalLimits,
) -> Result<Prepared> {
    let files = sources::read(source)?;
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    engine.set_execution_timer_config(limits.timer());
    // A builtin that fails is an error, never "undefined": a `deny` rule whose builtin fails
    // must not silently stop denying.
    engine.set_strict_builtin_errors(true);
    let mut modules = Vec::new();
    for (name, text) in &files {
        if name.ends_with(".rego") {
            builtins::check(name, text)?;
            engine
                .add_policy(name.clone(), text.clone())
                .map_err(|e| anyhow!("{name}: {e}"))?;
            modules.push((name.clone(), text.clone()));
        } else {
            let value = regorus::Value::from_json_str(text)
                .map_err(|e| anyhow!("{name}: not valid JSON: {e}"))?;
            engine.add_data(value).map_err(|e| anyhow!("{name}: {e}"))?;
        }
    }
    if modules.is_empty() {
        bail!("no .rego files in {source}");
    }
    engine
        .add_data(regorus::Value::from(
            serde_json::json!({ "gateway": gateway_data }),
        ))
        .map_err(|e| anyhow!("adding gateway data: {e}"))?;
    let entry: regorus::Rc<str> = DECISION_RULE.into();
    engine
        .clone()
        .compile_with_entrypoint(&entry)
        .map_err(|e| anyhow!("compiling `{DECISION_RULE}` (is it defined?): {e}"))?;
    // Any mention of `usage` (`input.usage`, `input["usage"]`, an alias's `.usage`) counts:
    // supplying usage to a policy that does not read it costs a store read, while withholding
    // it from one that does would silently disable its rules.
    let reads_usage = modules.iter().any(|(_, text)| text.contains("usage"));
    let memo = match memo::unrepeatable(&modules) {
        None => Some(memo::Memo::default()),
        Some(why) => {
            tracing::info!("policy decisions are made afresh for every request: {why}");
            None
        }
    };
    Ok(Prepared {
        engine,
        pool: Mutex::new(Vec::new()),
        modules,
        digest: bundle_digest(&files, gateway_data).into(),
        reads_usage,
        memo,
    })
}

impl Policy {
    /// Loads and compiles the policies; errors name the file and the problem.
    /// `gateway_data` is visible to policy as `data.gateway`.
    pub fn load(
        source: PolicySource,
        gateway_data: serde_json::Value,
        limits: EvalLimits,
    ) -> Result<Self> {
        let prepared = prepare(&source, &gateway_data, limits)
            .with_context(|| format!("loading policies from {source}"))?;
        Ok(Self {
            source,
            gateway_data,
            limits,
            current: RwLock::new(Arc::new(prepared)),
            errors: AtomicU64::new(0),
        })
    }

    /// Reloads from the same source: the new bundle is compiled and its Rego tests (`test_*`)
    /// are run before it replaces the one in force; calls being decided finish on the old one.
    /// On failure (a file that does not compile, a failing test) the last good policy stays in
    /// force and the error, naming the failing tests, is returned for the operator.
    pub fn reload(&self) -> Result<()> {
        let prepared = prepare(&self.source, &self.gateway_data, self.limits)
            .with_context(|| format!("reloading policies from {}", self.source))?;
        let tests = rego_tests::run(&prepared.engine, &prepared.modules);
        if tests.failed() > 0 {
            let failing: Vec<String> = tests
                .outcomes
                .iter()
                .filter(|o| !o.passed)
                .take(5)
                .map(|o| format!("{}: {}", o.file, o.name))
                .collect();
            bail!(
                "reloading policies from {}: {} of {} Rego tests fail ({}{})",
                self.source,
                tests.failed(),
                tests.outcomes.len(),
                failing.join(", "),
                if tests.failed() > 5 { ", …" } else { "" }
            );
        }
        let mut current = self
            .current
            .write()
            .map_err(|_| anyhow!("policy lock poisoned"))?;
        *current = Arc::new(prepared);
        Ok(())
    }

    /// Each policy file's path, size and modification time (`None` for the embedded
    /// policies): what a watcher compares to see a change.
    pub fn fingerprint(&self) -> Option<Vec<(std::path::PathBuf, u64, std::time::SystemTime)>> {
        sources::fingerprint(&self.source)
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// The digest of the policy bundle in force (it changes with any file or the gateway data).
    pub fn digest(&self) -> Arc<str> {
        self.prepared()
            .map_or_else(|_| "sha256:unavailable".into(), |p| p.digest.clone())
    }

    /// Whether the policy in force reads `input.usage`.
    pub fn reads_usage(&self) -> bool {
        self.prepared().is_ok_and(|p| p.reads_usage)
    }

    /// The bounds every evaluation runs under.
    pub fn limits(&self) -> EvalLimits {
        self.limits
    }

    fn prepared(&self) -> Result<Arc<Prepared>> {
        self.current
            .read()
            .map(|p| p.clone())
            .map_err(|_| anyhow!("policy lock poisoned"))
    }

    /// The decision for `input`. Never fails: every failure is a denial. The agent is told only
    /// that the policy failed, with a reference; the details, under the same reference, go to
    /// the operator's log (they can quote policy internals and argument values).
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        self.decide_in_bundle(input).0
    }

    /// [`Self::decide`], with the digest of the bundle that decided (a reload may land between
    /// two calls; this pair is always consistent).
    pub fn decide_in_bundle(&self, input: &PolicyInput<'_>) -> (Decision, Arc<str>) {
        let prepared = match self.prepared() {
            Ok(prepared) => prepared,
            Err(e) => return (self.failed(input, &e), "sha256:unavailable".into()),
        };
        let decision = match self.evaluate_in(&prepared, input) {
            Ok(decision) => decision,
            Err(e) => self.failed(input, &e),
        };
        (decision, prepared.digest.clone())
    }

    fn failed(&self, input: &PolicyInput<'_>, e: &anyhow::Error) -> Decision {
        // A policy error can quote the value a builtin failed on; arguments never reach the log.
        let detail = format!("{e:#}");
        let detail = match input.args {
            Some(args) => crate::redact::Redactor::strings_of(args).scrub(&detail),
            None => detail,
        };
        let n = self.errors.fetch_add(1, Ordering::Relaxed);
        let reference = format!("pe-{}-{n}", std::process::id());
        tracing::error!(
            reference = %reference,
            // Debug-escaped: for a tool that does not exist the name is the client's.
            tool = ?input.tool.as_ref().map(|t| &t.name),
            resource = ?input.resource.as_ref().map(|r| &r.uri),
            prompt = ?input.prompt.as_ref().map(|p| &p.name),
            principal = %input.principal.id,
            action = ?input.action,
            "policy error, denying: {detail}"
        );
        Decision::deny(format!(
            "policy error (ref {reference}); the operator can look up the details"
        ))
    }

    /// The decision for `input`, or why there is none.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Result<Decision> {
        self.evaluate_in(&*self.prepared()?, input)
    }

    fn evaluate_in(&self, prepared: &Prepared, input: &PolicyInput<'_>) -> Result<Decision> {
        let evaluate = || {
            // Through a JSON value, not JSON text: a few µs less per decision than printing
            // and re-parsing the document.
            let document = serde_json::to_value(input).context("serialising the input")?;
            let input = <regorus::Value as serde::Deserialize>::deserialize(document)
                .map_err(|e| anyhow!("input: {e}"))?;
            evaluate_prepared(prepared, input)
        };
        match &prepared.memo {
            Some(memo) => memo.get_or(input, evaluate),
            None => evaluate(),
        }
    }

    /// Whether decisions of the bundle in force are remembered (see `memo.rs`).
    pub fn memoizes(&self) -> bool {
        self.prepared().is_ok_and(|p| p.memo.is_some())
    }

    /// The decision for an input document given as JSON (e.g. `portcullis policy eval`), on
    /// the engine that serves.
    pub fn evaluate_json(&self, input_json: &str) -> Result<Decision> {
        let input = regorus::Value::from_json_str(input_json).map_err(|e| anyhow!("input: {e}"))?;
        self.evaluate_value(input)
    }

    fn evaluate_value(&self, input: regorus::Value) -> Result<Decision> {
        evaluate_prepared(&*self.prepared()?, input)
    }

    /// Runs every `test_*` rule of every module, on the engine that serves.
    pub fn run_tests(&self) -> Result<TestReport> {
        let prepared = self.prepared()?;
        Ok(rego_tests::run(&prepared.engine, &prepared.modules))
    }
}

fn evaluate_prepared(prepared: &Prepared, input: regorus::Value) -> Result<Decision> {
    let pooled = prepared.pool.lock().ok().and_then(|mut pool| pool.pop());
    let mut engine = pooled.unwrap_or_else(|| prepared.engine.clone());
    engine.set_input(input);
    let result = catch_unwind(AssertUnwindSafe(|| {
        engine.eval_rule(DECISION_RULE.to_string())
    }))
    .map_err(|_| anyhow!("the policy engine panicked"))?
    .map_err(|e| anyhow!("{e}"));
    // Only an engine that finished cleanly goes back to the pool.
    if result.is_ok()
        && let Ok(mut pool) = prepared.pool.lock()
    {
        pool.push(engine);
    }
    decision::parse(&result?)
}

/// Loads the policies from `dir`, or the embedded defaults when `dir` is `None`.
pub fn source_for(dir: Option<&Path>) -> PolicySource {
    dir.map_or(PolicySource::Embedded, |d| {
        PolicySource::Dir(d.to_path_buf())
    })
}

#[cfg(test)]
mod tests;
