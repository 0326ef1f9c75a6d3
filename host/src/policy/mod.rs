//! The policy engine: Rego modules and JSON data from a directory (or the embedded defaults),
//! evaluated in process by regorus.
//!
//! Load: parse every `*.rego` and `*.json`, reject builtins we do not allow, compile the
//! decision rule `data.portcullis.decision` to regorus's VM (RVM) once. Decide: a pooled VM gets
//! the input and runs under an execution timer. Anything but a well-formed decision — an error,
//! an undefined result, a malformed document, a timeout, a panic — is a denial with a reason
//! (fail closed). A reload that fails keeps the last good policy.

mod builtins;
mod rego_tests;
pub mod types;

use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use regorus::rvm::program::Program;
use regorus::utils::limits::ExecutionTimerConfig;

pub use rego_tests::{TestOutcome, TestReport};
pub use types::{
    Action, Decision, INPUT_VERSION, LimitsSpec, PolicyInput, Principal, RequestContext, ToolFacts,
};

/// The rule every policy must define.
pub const DECISION_RULE: &str = "data.portcullis.decision";
/// How long one evaluation may run.
pub const EVAL_TIMEOUT: Duration = Duration::from_millis(50);

/// The default policies, built into the binary (the same files as `policies/`).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "portcullis.rego",
        include_str!("../../../policies/portcullis.rego"),
    ),
    (
        "portcullis_test.rego",
        include_str!("../../../policies/portcullis_test.rego"),
    ),
    ("data.json", include_str!("../../../policies/data.json")),
];

/// Where policies come from.
#[derive(Clone, Debug)]
pub enum PolicySource {
    Dir(PathBuf),
    Embedded,
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Embedded => write!(f, "the embedded default policies"),
        }
    }
}

/// One loaded policy set, ready to evaluate.
struct Prepared {
    /// The interpreter, with modules and data: for `policy test` and as the fallback.
    engine: regorus::Engine,
    /// The decision rule compiled for the VM.
    program: Arc<Program>,
    data: regorus::Value,
    /// Reused VMs (creating one per call costs more than evaluating).
    vms: Mutex<Vec<RegoVM>>,
    /// `(file name, source)` of each module, for the test runner.
    modules: Vec<(String, String)>,
}

/// The policy engine shared by all requests.
pub struct Policy {
    source: PolicySource,
    gateway_data: serde_json::Value,
    current: RwLock<Arc<Prepared>>,
}

fn timer() -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: EVAL_TIMEOUT,
        check_interval: NonZeroU32::MIN.saturating_add(31),
    }
}

/// Reads `(name, text)` of every `.rego` and `.json` file in `source`.
fn read_sources(source: &PolicySource) -> Result<Vec<(String, String)>> {
    match source {
        PolicySource::Embedded => Ok(EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()),
        PolicySource::Dir(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("reading the policy directory {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|ext| ext == "rego" || ext == "json")
                })
                .collect();
            files.sort();
            files
                .into_iter()
                .map(|path| {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Ok((name, text))
                })
                .collect()
        }
    }
}

fn prepare(source: &PolicySource, gateway_data: &serde_json::Value) -> Result<Prepared> {
    let files = read_sources(source)?;
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    engine.set_execution_timer_config(timer());
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
    let data = engine.get_data();
    let entry: regorus::Rc<str> = DECISION_RULE.into();
    let compiled = engine
        .compile_with_entrypoint(&entry)
        .map_err(|e| anyhow!("compiling `{DECISION_RULE}` (is it defined?): {e}"))?;
    let program = Compiler::compile_from_policy(&compiled, &[DECISION_RULE])
        .map_err(|e| anyhow!("compiling `{DECISION_RULE}` for the VM: {e}"))?;
    Ok(Prepared {
        engine,
        program,
        data,
        vms: Mutex::new(Vec::new()),
        modules,
    })
}

impl Policy {
    /// Loads and compiles the policies; errors name the file and the problem.
    /// `gateway_data` is visible to policy as `data.gateway`.
    pub fn load(source: PolicySource, gateway_data: serde_json::Value) -> Result<Self> {
        let prepared = prepare(&source, &gateway_data)
            .with_context(|| format!("loading policies from {source}"))?;
        Ok(Self {
            source,
            gateway_data,
            current: RwLock::new(Arc::new(prepared)),
        })
    }

    /// Reloads from the same source. On failure the last good policy stays in force and the
    /// error is returned for the operator.
    pub fn reload(&self) -> Result<()> {
        let prepared = prepare(&self.source, &self.gateway_data)
            .with_context(|| format!("reloading policies from {}", self.source))?;
        let mut current = self
            .current
            .write()
            .map_err(|_| anyhow!("policy lock poisoned"))?;
        *current = Arc::new(prepared);
        Ok(())
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    fn prepared(&self) -> Result<Arc<Prepared>> {
        self.current
            .read()
            .map(|p| p.clone())
            .map_err(|_| anyhow!("policy lock poisoned"))
    }

    /// The decision for `input`. Never fails: every failure is a denial whose reason says the
    /// policy could not decide (details go to the log, not to the agent).
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        match self.evaluate(input) {
            Ok(decision) => decision,
            Err(e) => {
                tracing::error!(tool = %input.tool.name, "policy failed, denying: {e:#}");
                Decision::deny(format!(
                    "the policy could not decide, so the request is denied ({e})"
                ))
            }
        }
    }

    /// The decision for `input`, or why there is none.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Result<Decision> {
        let input_json = serde_json::to_string(input).context("serialising the input")?;
        self.evaluate_json(&input_json)
    }

    /// The decision for an input document given as JSON (e.g. `portcullis policy eval`).
    pub fn evaluate_json(&self, input_json: &str) -> Result<Decision> {
        let prepared = self.prepared()?;
        let result = catch_unwind(AssertUnwindSafe(|| run_vm(&prepared, input_json)))
            .map_err(|_| anyhow!("the policy engine panicked"))??;
        parse_decision(&result)
    }

    /// Evaluates with the interpreter instead of the VM (for `policy eval` and differential
    /// tests; slower).
    pub fn evaluate_interpreted(&self, input_json: &str) -> Result<Decision> {
        let prepared = self.prepared()?;
        let mut engine = prepared.engine.clone();
        engine
            .set_input_json(input_json)
            .map_err(|e| anyhow!("input: {e}"))?;
        let value = catch_unwind(AssertUnwindSafe(|| {
            engine.eval_rule(DECISION_RULE.to_string())
        }))
        .map_err(|_| anyhow!("the policy engine panicked"))?
        .map_err(|e| anyhow!("{e}"))?;
        parse_decision(&value)
    }

    /// Runs every `test_*` rule of every module.
    pub fn run_tests(&self) -> Result<TestReport> {
        let prepared = self.prepared()?;
        Ok(rego_tests::run(&prepared.engine, &prepared.modules))
    }
}

fn run_vm(prepared: &Prepared, input_json: &str) -> Result<regorus::Value> {
    let input = regorus::Value::from_json_str(input_json).map_err(|e| anyhow!("input: {e}"))?;
    let pooled = prepared.vms.lock().ok().and_then(|mut vms| vms.pop());
    let mut vm = match pooled {
        Some(vm) => vm,
        None => {
            let mut vm = RegoVM::new();
            vm.load_program(prepared.program.clone());
            vm.set_data(prepared.data.clone())
                .map_err(|e| anyhow!("policy data: {e}"))?;
            vm.set_execution_timer_config(Some(timer()));
            vm
        }
    };
    vm.set_input(input);
    let result = vm.execute().map_err(|e| anyhow!("{e}"));
    if let Ok(mut vms) = prepared.vms.lock() {
        vms.push(vm);
    }
    result
}

fn parse_decision(value: &regorus::Value) -> Result<Decision> {
    if *value == regorus::Value::Undefined {
        bail!("`{DECISION_RULE}` is undefined for this input");
    }
    let json = value.to_json_str().map_err(|e| anyhow!("{e}"))?;
    serde_json::from_str::<Decision>(&json)
        .map_err(|e| anyhow!("`{DECISION_RULE}` is malformed: {e}"))
}

/// Loads the policies from `dir`, or the embedded defaults when `dir` is `None`.
pub fn source_for(dir: Option<&Path>) -> PolicySource {
    dir.map_or(PolicySource::Embedded, |d| {
        PolicySource::Dir(d.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ToolAnnotations;
    use serde_json::json;

    fn principal(roles: &[&str]) -> Principal {
        Principal {
            id: "alice".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            claims: Default::default(),
            authenticated_by: "token",
        }
    }

    fn tool(name: &str, component: &str, destructive: bool) -> ToolFacts {
        ToolFacts {
            name: name.into(),
            component: component.into(),
            digest: "sha256:00".into(),
            descriptor_digest: "sha256:01".into(),
            annotations: ToolAnnotations {
                read_only: !destructive,
                destructive,
                idempotent: !destructive,
                open_world: false,
            },
        }
    }

    fn context() -> RequestContext {
        RequestContext {
            time: "2026-11-22T00:00:00Z".into(),
            request_id: "r1".into(),
            transport: "cli",
        }
    }

    fn embedded() -> Policy {
        Policy::load(PolicySource::Embedded, json!({"workspace": "/srv/ws"})).unwrap()
    }

    fn write_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn embedded_rego_tests_pass() {
        let report = embedded().run_tests().unwrap();
        let failed: Vec<_> = report.outcomes.iter().filter(|o| !o.passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(report.passed() >= 10);
    }

    #[test]
    fn the_vm_and_the_interpreter_agree() {
        let policy = embedded();
        let ctx = context();
        let args = json!({"path": "notes.md", "content": "x", "mode": "overwrite"});
        for roles in [&["reader"][..], &["writer"], &["admin"], &[]] {
            let p = principal(roles);
            for (name, component, destructive) in [
                ("read_file", "workspace", false),
                ("write_file", "workspace", true),
                ("hash", "data", false),
            ] {
                for env in ["dev", "prod"] {
                    for action in [Action::List, Action::Call] {
                        let input = PolicyInput {
                            version: INPUT_VERSION,
                            action,
                            principal: &p,
                            tool: tool(name, component, destructive),
                            args: (action == Action::Call).then_some(&args),
                            plan_hash: Some("sha256:00"),
                            environment: env,
                            context: &ctx,
                        };
                        let vm = policy.evaluate(&input).unwrap();
                        let interp = policy
                            .evaluate_interpreted(&serde_json::to_string(&input).unwrap())
                            .unwrap();
                        assert_eq!(vm, interp, "{roles:?} {name} {env} {action:?}");
                    }
                }
            }
        }
    }

    fn decide_with(files: &[(&str, &str)]) -> Decision {
        let dir = write_dir(files);
        let policy = Policy::load(PolicySource::Dir(dir.path().into()), json!({})).unwrap();
        let p = principal(&["reader"]);
        let ctx = context();
        policy.decide(&PolicyInput {
            version: INPUT_VERSION,
            action: Action::Call,
            principal: &p,
            tool: tool("hash", "data", false),
            args: Some(&json!({})),
            plan_hash: None,
            environment: "dev",
            context: &ctx,
        })
    }

    #[test]
    fn failures_fail_closed_with_a_reason() {
        // (policy, what the denial's reason must mention; "" when any reason will do)
        let cases = [
            (
                "package portcullis\nimport rego.v1\ndecision := {\"allow\": true} if input.nope\n",
                "undefined",
            ),
            ("package portcullis\ndecision := \"yes\"\n", "malformed"),
            (
                "package portcullis\ndecision := {\"allow\": true, \"grant\": {}}\n",
                "unknown field `grant`",
            ),
            (
                "package portcullis\nimport rego.v1\ndecision := {\"allow\": to_number(\"x\") > 0}\n",
                "",
            ),
        ];
        for (rego, reason) in cases {
            let decision = decide_with(&[("p.rego", rego)]);
            assert!(!decision.allow, "{rego}: {decision:?}");
            assert!(decision.reasons[0].contains(reason), "{rego}: {decision:?}");
        }
    }

    #[test]
    fn a_pathological_policy_trips_the_timer() {
        let slow = "package portcullis\nimport rego.v1\n\
            n := numbers.range(1, 3000)\n\
            decision := {\"allow\": count([1 | some a in n; some b in n; a < b]) > 0}\n";
        let started = std::time::Instant::now();
        let decision = decide_with(&[("p.rego", slow)]);
        assert!(!decision.allow, "{decision:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = write_dir(&[("bad.rego", "package portcullis\ndecision := {")]);
        let error = format!(
            "{:#}",
            Policy::load(PolicySource::Dir(dir.path().into()), json!({}))
                .err()
                .unwrap()
        );
        assert!(error.contains("bad.rego"), "{error}");

        let dir = write_dir(&[(
            "net.rego",
            "package portcullis\ndecision := {\"allow\": http.send({}).status_code == 200}\n",
        )]);
        let error = format!(
            "{:#}",
            Policy::load(PolicySource::Dir(dir.path().into()), json!({}))
                .err()
                .unwrap()
        );
        assert!(
            error.contains("net.rego:2: the builtin `http.send` is not allowed"),
            "{error}"
        );

        let dir = write_dir(&[("none.rego", "package other\nx := 1\n")]);
        let error = format!(
            "{:#}",
            Policy::load(PolicySource::Dir(dir.path().into()), json!({}))
                .err()
                .unwrap()
        );
        assert!(error.contains(DECISION_RULE), "{error}");
    }

    #[test]
    fn a_broken_reload_keeps_the_last_good_policy() {
        let dir = write_dir(&[(
            "p.rego",
            "package portcullis\ndecision := {\"allow\": true}\n",
        )]);
        let policy = Policy::load(PolicySource::Dir(dir.path().into()), json!({})).unwrap();
        std::fs::write(
            dir.path().join("p.rego"),
            "package portcullis\ndecision := {",
        )
        .unwrap();
        assert!(policy.reload().is_err());
        let p = principal(&[]);
        let ctx = context();
        let input = PolicyInput {
            version: INPUT_VERSION,
            action: Action::List,
            principal: &p,
            tool: tool("hash", "data", false),
            args: None,
            plan_hash: None,
            environment: "dev",
            context: &ctx,
        };
        assert!(
            policy.decide(&input).allow,
            "the last good policy should still be in force"
        );
    }
}
