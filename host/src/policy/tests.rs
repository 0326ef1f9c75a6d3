use std::time::Duration;

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
        idempotency_key: None,
        trace: crate::telemetry::TraceContext::root(),
        subject_token: None,
    }
}

fn embedded() -> Policy {
    Policy::load(
        PolicySource::Embedded,
        json!({"workspace": "/srv/ws"}),
        EvalLimits::default(),
    )
    .unwrap()
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

fn load_dir(files: &[(&str, &str)], limits: EvalLimits) -> (tempfile::TempDir, Policy) {
    let dir = write_dir(files);
    let policy = Policy::load(PolicySource::Dir(dir.path().into()), json!({}), limits).unwrap();
    (dir, policy)
}

/// The input of a `hash` call by a reader with `args`, as JSON.
fn call_input(args: &serde_json::Value) -> String {
    let p = principal(&["reader"]);
    let ctx = context();
    serde_json::to_string(&PolicyInput {
        version: INPUT_VERSION,
        action: Action::Call,
        principal: &p,
        tool: Some(tool("hash", "data", false)),
        resource: None,
        prompt: None,
        args: Some(args),
        plan_hash: None,
        environment: "dev",
        context: &ctx,
        usage: None,
        approvals: None,
    })
    .unwrap()
}

/// A policy in the default policy's style: allow unless a `deny` rule fires.
fn deny_style(condition: &str) -> String {
    format!(
        "package portcullis\nimport rego.v1\n\
         default decision := {{\"allow\": false, \"reasons\": [\"default\"]}}\n\
         decision := {{\"allow\": true}} if count(deny) == 0\n\
         decision := {{\"allow\": false, \"reasons\": [m | some m in deny]}} if count(deny) > 0\n\
         deny contains \"fired\" if {{ {condition} }}\n"
    )
}

#[test]
fn every_error_kind_fails_closed() {
    // (policy, arguments, what the operator's error must mention)
    let args = json!({"x": "abc", "zero": 0, "s": "text", "n": 5});
    let cases = [
        (deny_style("to_number(input.args.x) > 100"), "to_number"),
        (deny_style("input.args.n / input.args.zero > 1"), ""),
        (deny_style("input.args.n % input.args.zero > 1"), ""),
        (deny_style("regex.match(\"(\", input.args.s)"), ""),
        (deny_style("count(input.args.n) > 1"), ""),
        (deny_style("input.args.s + 1 > 0"), ""),
        (deny_style("input.args.s * 2 > 0"), ""),
        (
            "package portcullis\nimport rego.v1\ndecision := {\"allow\": true} if input.nope\n"
                .into(),
            "undefined",
        ),
        (
            "package portcullis\ndecision := \"yes\"\n".into(),
            "malformed",
        ),
        (
            "package portcullis\ndecision := [true]\n".into(),
            "an array",
        ),
        ("package portcullis\ndecision := 7\n".into(), "a number"),
        (
            "package portcullis\ndecision := {\"allow\": \"true\"}\n".into(),
            "must be a boolean",
        ),
        (
            "package portcullis\ndecision := {\"allow\": true, \"grant\": {}}\n".into(),
            "unknown field `grant`",
        ),
    ];
    let input = call_input(&args);
    for (rego, expected) in &cases {
        let (_dir, policy) = load_dir(&[("p.rego", rego)], EvalLimits::default());
        let error = format!(
            "{:#}",
            policy
                .evaluate_json(&input)
                .expect_err(&format!("decided: {rego}"))
        );
        assert!(error.contains(expected), "{rego}: {error}");
    }
    // With arguments that trip no error the same policy allows: the errors above come from
    // the input, not from a broken policy.
    let fine = call_input(&json!({"x": "5", "zero": 1, "s": "", "n": [1], "missing": "1"}));
    let (_dir, policy) = load_dir(&[("p.rego", &cases[0].0)], EvalLimits::default());
    assert!(policy.evaluate_json(&fine).unwrap().allow);
}

#[test]
fn policy_test_and_serving_give_the_same_answer_on_errors() {
    // A Rego test that expects the call to be allowed: on the serving engine the decision is an
    // error, so the test must not pass either.
    let tests = r#"
test_allows_text if {
	decision.allow with input as {"action": "call", "args": {"x": "abc"}}
}
test_allows_numbers if {
	decision.allow with input as {"action": "call", "args": {"x": "5"}}
}
"#;
    let rego = format!("{}{tests}", deny_style("to_number(input.args.x) > 100"));
    let (_dir, policy) = load_dir(&[("p.rego", &rego)], EvalLimits::default());
    let report = policy.run_tests().unwrap();
    let outcome = |name: &str| report.outcomes.iter().find(|o| o.name == name).unwrap();
    assert!(!outcome("test_allows_text").passed, "{report:?}");
    assert!(
        outcome("test_allows_text")
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("could not parse string as number"),
        "{report:?}"
    );
    assert!(outcome("test_allows_numbers").passed, "{report:?}");
    assert!(
        policy
            .evaluate_json(&call_input(&json!({"x": "abc"})))
            .is_err()
    );
}

#[test]
fn the_agent_sees_a_reference_not_the_policy_internals() {
    let (_dir, policy) = load_dir(
        &[("p.rego", &deny_style("to_number(input.args.x) > 100"))],
        EvalLimits::default(),
    );
    let p = principal(&["reader"]);
    let ctx = context();
    let args = json!({"x": "canary-value-123"});
    let decision = policy.decide(&PolicyInput {
        version: INPUT_VERSION,
        action: Action::Call,
        principal: &p,
        tool: Some(tool("hash", "data", false)),
        resource: None,
        prompt: None,
        args: Some(&args),
        plan_hash: None,
        environment: "dev",
        context: &ctx,
        usage: None,
        approvals: None,
    });
    assert!(!decision.allow);
    let reason = decision.reasons.join(" ");
    assert!(reason.starts_with("policy error (ref pe-"), "{reason}");
    for internal in ["to_number", "canary", "p.rego", "portcullis.decision"] {
        assert!(!reason.contains(internal), "{reason} leaks {internal}");
    }
}

/// Every pair of 1..3000: ~4.5 million steps, far beyond any budget below.
const SLOW: &str = "package portcullis\nimport rego.v1\n\
    n := numbers.range(1, 3000)\n\
    decision := {\"allow\": count([1 | some a in n; some b in n; a < b]) > 0}\n";

#[test]
fn our_timer_stops_a_pathological_policy() {
    for millis in [20u64, 200] {
        let limits = EvalLimits {
            timeout: Duration::from_millis(millis),
        };
        let (_dir, policy) = load_dir(&[("p.rego", SLOW)], limits);
        let started = std::time::Instant::now();
        let error = format!(
            "{:#}",
            policy.evaluate_json(&call_input(&json!({}))).unwrap_err()
        );
        let elapsed = started.elapsed();
        assert!(error.contains("time limit"), "{error}");
        assert!(
            error.contains(&format!("limit={}ns", millis * 1_000_000)),
            "the configured limit, not a default, stopped it: {error}"
        );
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        // Serving goes on: the next evaluation of the same engine pool decides again.
        assert!(policy.evaluate_json(&call_input(&json!({}))).is_err());
    }
    // The default policy decides well within the default budget, call after call.
    let policy = embedded();
    assert_eq!(policy.limits(), EvalLimits::default());
    for _ in 0..3 {
        assert!(
            policy
                .evaluate_json(&call_input(&json!({"text": "x"})))
                .unwrap()
                .allow
        );
    }
}

#[test]
fn a_reused_engine_does_not_carry_one_decision_into_the_next() {
    let (_dir, policy) = load_dir(
        &[("p.rego", &deny_style("input.args.x == \"no\""))],
        EvalLimits::default(),
    );
    for x in ["yes", "no", "yes", "no"] {
        let decision = policy
            .evaluate_json(&call_input(&json!({ "x": x })))
            .unwrap();
        assert_eq!(decision.allow, x == "yes", "{x}");
    }
}

#[test]
fn the_policy_directory_is_read_recursively() {
    let dir = write_dir(&[(
        "main.rego",
        "package portcullis\nimport rego.v1\ndecision := {\"allow\": data.nested.ok}\n",
    )]);
    std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
    std::fs::write(
        dir.path().join("sub/deeper/d.json"),
        r#"{"nested": {"ok": true}}"#,
    )
    .unwrap();
    let policy = Policy::load(
        PolicySource::Dir(dir.path().into()),
        json!({}),
        EvalLimits::default(),
    )
    .unwrap();
    assert!(policy.evaluate_json(&call_input(&json!({}))).unwrap().allow);
}

/// Why the policies in `dir` do not load.
fn load_error(dir: &tempfile::TempDir) -> String {
    let loaded = Policy::load(
        PolicySource::Dir(dir.path().into()),
        json!({}),
        EvalLimits::default(),
    );
    format!("{:#}", loaded.err().expect("the policies loaded"))
}

#[test]
fn load_errors_name_the_file() {
    let dir = write_dir(&[("bad.rego", "package portcullis\ndecision := {")]);
    let error = load_error(&dir);
    assert!(error.contains("bad.rego"), "{error}");

    let dir = write_dir(&[(
        "net.rego",
        "package portcullis\ndecision := {\"allow\": http.send({}).status_code == 200}\n",
    )]);
    let error = load_error(&dir);
    assert!(
        error.contains("net.rego:2: the builtin `http.send` is not allowed"),
        "{error}"
    );

    let dir = write_dir(&[("none.rego", "package other\nx := 1\n")]);
    let error = load_error(&dir);
    assert!(error.contains(DECISION_RULE), "{error}");
}

#[test]
fn a_broken_reload_keeps_the_last_good_policy() {
    let dir = write_dir(&[(
        "p.rego",
        "package portcullis\ndecision := {\"allow\": true}\n",
    )]);
    let policy = Policy::load(
        PolicySource::Dir(dir.path().into()),
        json!({}),
        EvalLimits::default(),
    )
    .unwrap();
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
        tool: Some(tool("hash", "data", false)),
        resource: None,
        prompt: None,
        args: None,
        plan_hash: None,
        environment: "dev",
        context: &ctx,
        usage: None,
        approvals: None,
    };
    assert!(
        policy.decide(&input).allow,
        "the last good policy should still be in force"
    );
}

#[test]
fn a_reload_whose_rego_tests_fail_keeps_the_last_good_policy() {
    let dir = write_dir(&[(
        "p.rego",
        "package portcullis\ndecision := {\"allow\": true}\ntest_allows if decision.allow\n",
    )]);
    let policy = Policy::load(
        PolicySource::Dir(dir.path().into()),
        json!({}),
        EvalLimits::default(),
    )
    .unwrap();
    let before = policy.digest();
    // Compiles, but its own test says it is wrong.
    std::fs::write(
        dir.path().join("p.rego"),
        "package portcullis\ndecision := {\"allow\": false}\ntest_allows if decision.allow\n",
    )
    .unwrap();
    let error = format!("{:#}", policy.reload().unwrap_err());
    assert!(
        error.contains("1 of 1 Rego tests fail") && error.contains("p.rego: test_allows"),
        "{error}"
    );
    assert_eq!(policy.digest(), before);
    // Fixed: it takes effect.
    std::fs::write(
        dir.path().join("p.rego"),
        "package portcullis\n# fixed\ndecision := {\"allow\": true}\ntest_allows if decision.allow\n",
    )
    .unwrap();
    policy.reload().unwrap();
    assert_ne!(policy.digest(), before);
}

#[test]
fn the_served_input_and_its_json_text_decide_alike() {
    // `decide` builds regorus's value from a JSON value; `policy eval` parses JSON text. The
    // second policy echoes the whole input it sees, so any difference shows.
    let policy = embedded();
    let (_dir, echo) = load_dir(
        &[(
            "p.rego",
            "package portcullis\nimport rego.v1\ndecision := {\"allow\": false, \"reasons\": [json.marshal(input)]}\n",
        )],
        EvalLimits::default(),
    );
    let ctx = context();
    let args = json!({"path": "notes.md", "content": "x", "n": 1.5, "big": 9007199254740992u64,
                      "nested": {"a": [1, -2, "three", null, true]}, "mode": "overwrite"});
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
                        tool: Some(tool(name, component, destructive)),
                        resource: None,
                        prompt: None,
                        args: (action == Action::Call).then_some(&args),
                        plan_hash: Some("sha256:00"),
                        environment: env,
                        context: &ctx,
                        usage: None,
                        approvals: None,
                    };
                    let text = serde_json::to_string(&input).unwrap();
                    for policy in [&policy, &echo] {
                        let served = policy.evaluate(&input).unwrap();
                        let parsed = policy.evaluate_json(&text).unwrap();
                        assert_eq!(served, parsed, "{roles:?} {name} {env} {action:?}");
                    }
                }
            }
        }
    }
}

/// `cargo test --release -p portcullis --lib decision_loop -- --ignored --nocapture`: the
/// default policy's call decision in a loop, to profile (`perf record`) or time it.
#[test]
#[ignore]
fn decision_loop() {
    let policy = match std::env::var_os("POLICY_DIR") {
        Some(dir) => Policy::load(
            PolicySource::Dir(dir.into()),
            json!({"workspace": "/srv/ws"}),
            EvalLimits::default(),
        )
        .unwrap(),
        None => embedded(),
    };
    let p = principal(&["writer"]);
    let ctx = context();
    let args = json!({"text": "abc"});
    let input = PolicyInput {
        version: INPUT_VERSION,
        action: Action::Call,
        principal: &p,
        tool: Some(tool("hash", "data", false)),
        resource: None,
        prompt: None,
        args: Some(&args),
        plan_hash: Some("sha256:00"),
        environment: "dev",
        context: &ctx,
        usage: None,
        approvals: None,
    };
    let n: u32 = std::env::var("LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for _ in 0..200 {
        assert!(policy.decide(&input).allow);
    }
    let started = std::time::Instant::now();
    for _ in 0..n {
        assert!(policy.decide(&input).allow);
    }
    println!("decision: {:?} each", started.elapsed() / n);
}

/// A call input for `memo` tests: `hash` by `p`, with `args` (plan hash `plan`) and `usage`.
fn memo_input<'a>(
    p: &'a Principal,
    args: &'a serde_json::Value,
    plan: &'a str,
    context: &'a RequestContext,
    usage: Option<&'a crate::state::Usage>,
) -> PolicyInput<'a> {
    PolicyInput {
        version: INPUT_VERSION,
        action: Action::Call,
        principal: p,
        tool: Some(tool("hash", "data", false)),
        resource: None,
        prompt: None,
        args: Some(args),
        plan_hash: Some(plan),
        environment: "dev",
        context,
        usage,
        approvals: None,
    }
}

#[test]
fn remembered_decisions_follow_everything_but_the_context() {
    // The default policy reads its input by path and never its context: remembered.
    assert!(embedded().memoizes());
    let policy = r#"package portcullis
import rego.v1
decision := {"allow": true} if {
	"reader" in input.principal.roles
	input.args.n < 3
	not input.usage.principal.calls["1m"] > 5
	object.get(input, "x", 0) == 0
}
default decision := {"allow": false, "reasons": ["no"]}
"#;
    // `input` passed whole: not remembered, and still right.
    let (_d, whole) = load_dir(&[("p.rego", policy)], EvalLimits::default());
    assert!(!whole.memoizes());
    let by_path = policy.replace("\tobject.get(input, \"x\", 0) == 0\n", "");
    let (_d2, memo) = load_dir(&[("p.rego", &by_path)], EvalLimits::default());
    assert!(memo.memoizes());
    let (reader, writer) = (principal(&["reader"]), principal(&["writer"]));
    let ctx = context();
    let (small, big) = (json!({"n": 1}), json!({"n": 5}));
    let busy = crate::state::Usage {
        principal: crate::state::Windows {
            calls: crate::state::Spans {
                minute: 9,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    for policy in [&whole, &memo] {
        for _ in 0..2 {
            let allow =
                |p, args, plan, usage| policy.decide(&memo_input(p, args, plan, &ctx, usage)).allow;
            assert!(allow(&reader, &small, "sha256:1", None));
            assert!(!allow(&reader, &big, "sha256:2", None), "the arguments");
            assert!(
                !allow(&writer, &small, "sha256:1", None),
                "the principal's roles"
            );
            assert!(
                !allow(&reader, &small, "sha256:1", Some(&busy)),
                "the usage"
            );
        }
    }
    // A policy that reads the context is evaluated afresh: the request id decides here.
    let (_d3, fresh) = load_dir(
        &[(
            "p.rego",
            "package portcullis\nimport rego.v1\ndecision := {\"allow\": input.context.request_id == \"r1\"}\n",
        )],
        EvalLimits::default(),
    );
    assert!(!fresh.memoizes());
    let mut other = context();
    other.request_id = "r2".into();
    assert!(
        fresh
            .decide(&memo_input(&reader, &small, "sha256:1", &ctx, None))
            .allow
    );
    assert!(
        !fresh
            .decide(&memo_input(&reader, &small, "sha256:1", &other, None))
            .allow
    );
}
