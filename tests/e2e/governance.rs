//! Approvals end to end: the real binary, the default policies, the `ops` component and the
//! demo control plane. A prod restart waits for two approvals from `sre`, given through the
//! `portcullis approvals` CLI against the store the running gateway uses; the identical call
//! then runs exactly once. Anything that changes the plan, the policy bundle or the component
//! voids the approval; the requester cannot approve their own call; a pending approval
//! survives a restart.

use std::process::Output;

use rmcp::model::CallToolResult;
use serde_json::{Value, json};

use crate::gateway::{Setup, binary, call, http_client, http_server, stdio_client, text};
use crate::ops::{TOKEN, ops_setup_with};
use crate::upstream::ControlPlane;

/// Two SRE approvers, and a second deployer.
pub const APPROVERS: &str = r#"
[principals.sam]
roles = ["sre"]

[principals.sue]
roles = ["sre", "oncall"]

[principals.dan]
roles = ["deploy"]
"#;

/// `portcullis approvals ARGS…` against `s`'s configuration.
pub fn approvals(s: &Setup, args: &[&str]) -> Output {
    std::process::Command::new(binary())
        .arg("--config")
        .arg(&s.config)
        .arg("approvals")
        .args(args)
        .output()
        .expect("run portcullis approvals")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The pending approval a result names in `_meta["portcullis/approval"]`.
pub fn approval(result: &CallToolResult) -> Value {
    result
        .meta
        .as_ref()
        .and_then(|m| m.0.get("portcullis/approval"))
        .cloned()
        .unwrap_or_else(|| panic!("no approval in {result:?}"))
}

pub fn approval_id(result: &CallToolResult) -> String {
    approval(result)["id"].as_str().unwrap().to_string()
}

/// Approves `id` as `who`, asserting it was taken.
pub fn approve(s: &Setup, id: &str, who: &str) -> String {
    let o = approvals(s, &["approve", id, "--as", who]);
    assert!(o.status.success(), "approve as {who}: {}", stderr(&o));
    stdout(&o)
}

async fn restarts(cp: &ControlPlane, service: &str) -> usize {
    let path = format!("/v1/services/{service}/restart");
    cp.requests()
        .await
        .iter()
        .filter(|r| r["path"] == path.as_str())
        .count()
}

#[tokio::test]
async fn a_prod_restart_waits_for_two_approvers_then_runs_exactly_once() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), APPROVERS);
    let client = stdio_client(&s).await; // as dora (deploy)
    let args = json!({"name": "web"});

    let first = call(&client, "restart_service", args.clone())
        .await
        .unwrap();
    assert_eq!(first.is_error, Some(true));
    let t = text(&first);
    assert!(t.contains("approval pending"), "{t}");
    assert!(t.contains("Repeat this identical call"), "{t}");
    let meta = approval(&first);
    assert_eq!(meta["approvers"], 2);
    assert_eq!(meta["roles"], json!(["sre"]));
    assert_eq!(meta["given"], 0);
    let id = approval_id(&first);
    assert!(id.starts_with("ap_"), "{id}");

    // The operator sees exactly what will run.
    let listed = approvals(&s, &["list"]);
    assert!(stdout(&listed).contains(&id), "{}", stdout(&listed));
    let shown: Value =
        serde_json::from_str(&stdout(&approvals(&s, &["show", &id, "--json"]))).unwrap();
    assert_eq!(shown["arguments"], args);
    assert_eq!(shown["principal"], "dora");
    assert_eq!(shown["tool"], "restart_service");
    assert_eq!(shown["requirement"]["approvers"], 2);
    assert!(
        shown["grants"]["http"][0]["paths"][0] == "/v1/services/web/restart",
        "{shown}"
    );

    // The requester may not approve their own call; an approver without `sre` may not either.
    let own = approvals(&s, &["approve", &id, "--as", "dora"]);
    assert!(!own.status.success());
    assert!(
        stderr(&own).contains("requested this call"),
        "{}",
        stderr(&own)
    );
    let norole = approvals(&s, &["approve", &id, "--as", "dan"]);
    assert!(!norole.status.success());
    assert!(
        stderr(&norole).contains("holds none of the roles"),
        "{}",
        stderr(&norole)
    );

    assert!(approve(&s, &id, "sam").contains("1 given"));
    let twice = approvals(&s, &["approve", &id, "--as", "sam"]);
    assert!(
        stderr(&twice).contains("already voted"),
        "{}",
        stderr(&twice)
    );
    // One approval is not enough: the same pending approval, one given.
    let again = call(&client, "restart_service", args.clone())
        .await
        .unwrap();
    assert_eq!(approval_id(&again), id);
    assert_eq!(approval(&again)["given"], 1);
    assert!(
        text(&again).contains("waiting for 2 approvals from sre, 1 given"),
        "{}",
        text(&again)
    );
    assert_eq!(restarts(&cp, "web").await, 0);

    assert!(approve(&s, &id, "sue").contains("approved"));
    let ran = call(&client, "restart_service", args.clone())
        .await
        .unwrap();
    assert_eq!(ran.is_error, Some(false), "{}", text(&ran));
    assert_eq!(restarts(&cp, "web").await, 1);
    let digest = ran.meta.as_ref().unwrap().0["portcullis/policy_digest"].clone();
    assert!(digest.as_str().unwrap().starts_with("sha256:"), "{digest}");

    // Consumed: the identical call again asks for a new approval and runs nothing.
    let after = call(&client, "restart_service", args.clone())
        .await
        .unwrap();
    assert_eq!(after.is_error, Some(true));
    assert_ne!(approval_id(&after), id);
    assert_eq!(restarts(&cp, "web").await, 1);
    let shown: Value =
        serde_json::from_str(&stdout(&approvals(&s, &["show", &id, "--json"]))).unwrap();
    assert_eq!(shown["status"], "consumed");
    assert_eq!(shown["votes"].as_array().unwrap().len(), 2);
    assert!(
        shown["votes"][0]["origin"]
            .as_str()
            .unwrap()
            .starts_with("cli"),
        "{shown}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_approval_is_void_for_other_arguments_another_principal_or_a_denial() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), APPROVERS);
    let dora = stdio_client(&s).await;
    let web = call(&dora, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    let id = approval_id(&web);
    approve(&s, &id, "sam");
    approve(&s, &id, "sue");

    // Other arguments: another plan, its own pending approval.
    let api = call(&dora, "restart_service", json!({"name": "api"}))
        .await
        .unwrap();
    assert_eq!(api.is_error, Some(true));
    assert_ne!(approval_id(&api), id);
    // Another principal with the identical arguments: not theirs.
    let dan = crate::gateway::stdio_client_as(&s, Some("dan")).await;
    let theirs = call(&dan, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(theirs.is_error, Some(true));
    assert_ne!(approval_id(&theirs), id);
    assert_eq!(restarts(&cp, "web").await + restarts(&cp, "api").await, 0);

    // A denial by an eligible approver ends it, and the agent is told who and why.
    let api_id = approval_id(&api);
    let denied = approvals(&s, &["deny", &api_id, "--as", "sam", "--reason", "freeze"]);
    assert!(denied.status.success(), "{}", stderr(&denied));
    let refused = call(&dora, "restart_service", json!({"name": "api"}))
        .await
        .unwrap();
    assert!(
        text(&refused).contains("denied by sam: freeze"),
        "{}",
        text(&refused)
    );
    let late = approvals(&s, &["approve", &api_id, "--as", "sue"]);
    assert!(stderr(&late).contains("is denied"), "{}", stderr(&late));
    assert_eq!(restarts(&cp, "api").await, 0);

    // The original approval still holds for exactly its plan.
    let ran = call(&dora, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(ran.is_error, Some(false), "{}", text(&ran));
    assert_eq!(restarts(&cp, "web").await, 1);
    dora.cancel().await.unwrap();
    dan.cancel().await.unwrap();
}

/// The policy bundle and the component are part of what was approved.
#[tokio::test]
async fn a_changed_policy_bundle_or_component_voids_an_approval() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), APPROVERS);
    // A private copy of the policies, so that the test can change them.
    let policies = s.dir.path().join("my-policies");
    std::fs::create_dir(&policies).unwrap();
    for entry in std::fs::read_dir(crate::support::root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
    }
    let text_of = std::fs::read_to_string(&s.config).unwrap();
    let policy_line = text_of
        .lines()
        .find(|l| l.starts_with("policy_dir"))
        .unwrap()
        .to_string();
    std::fs::write(
        &s.config,
        text_of.replace(
            &policy_line,
            &format!("policy_dir = \"{}\"", policies.display()),
        ),
    )
    .unwrap();

    let client = stdio_client(&s).await;
    let first = call(&client, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    let id = approval_id(&first);
    approve(&s, &id, "sam");
    approve(&s, &id, "sue");
    client.cancel().await.unwrap();

    // An edit anywhere in the bundle (here: a comment) makes it another bundle.
    let rego = policies.join("ops.rego");
    let mut source = std::fs::read_to_string(&rego).unwrap();
    source.push_str("\n# reviewed\n");
    std::fs::write(&rego, &source).unwrap();
    let client = stdio_client(&s).await;
    let other = call(&client, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(other.is_error, Some(true), "{}", text(&other));
    let other_id = approval_id(&other);
    assert_ne!(other_id, id);
    client.cancel().await.unwrap();

    // Back to the approved bundle, but another build of the component (same tools, other
    // bytes: a custom section appended): another digest, another plan.
    source.truncate(source.len() - "\n# reviewed\n".len());
    std::fs::write(&rego, &source).unwrap();
    let wasm = s.dir.path().join("tools/ops.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes.extend_from_slice(&[0x00, 0x05, 0x04, b'n', b'o', b't', b'e']);
    std::fs::write(&wasm, bytes).unwrap();
    let client = stdio_client(&s).await;
    let rebuilt = call(&client, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(rebuilt.is_error, Some(true), "{}", text(&rebuilt));
    assert!(![id.as_str(), other_id.as_str()].contains(&approval_id(&rebuilt).as_str()));
    assert_eq!(restarts(&cp, "web").await, 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_pending_approval_survives_a_restart_and_runs_after_it() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let more = format!("{APPROVERS}\n[principals.dora.claims]\nnote = \"http\"\n");
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), &more);
    let server = http_server(&s).await;
    let client = http_client(&server, crate::ops::DORA).await;
    let first = call(&client, "restart_service", json!({"name": "worker"}))
        .await
        .unwrap();
    let id = approval_id(&first);
    client.cancel().await.unwrap();
    drop(server); // killed

    // Approved while no gateway runs, against the same store.
    approve(&s, &id, "sam");
    approve(&s, &id, "sue");
    let server = http_server(&s).await;
    let client = http_client(&server, crate::ops::DORA).await;
    let ran = call(&client, "restart_service", json!({"name": "worker"}))
        .await
        .unwrap();
    assert_eq!(ran.is_error, Some(false), "{}", text(&ran));
    assert_eq!(restarts(&cp, "worker").await, 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_expired_approval_is_not_valid() {
    let policy = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
decision := {"allow": true, "requires_approval": {"approvers": 1, "reason": "short-lived", "ttl_s": 2}} if input.action == "call"
"#;
    let s = crate::gateway::setup(crate::gateway::Options {
        policy: Some(policy),
        extra: "[principals.sam]\nroles = [\"sre\"]\n",
        ..Default::default()
    });
    let client = stdio_client(&s).await;
    let first = call(&client, "hash", json!({"text": "a"})).await.unwrap();
    let id = approval_id(&first);
    approve(&s, &id, "sam");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let late = call(&client, "hash", json!({"text": "a"})).await.unwrap();
    assert_eq!(late.is_error, Some(true), "{}", text(&late));
    assert_ne!(
        approval_id(&late),
        id,
        "an expired approval must not run the call"
    );
    // A pending approval past its lifetime takes no votes.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let vote = approvals(&s, &["approve", &approval_id(&late), "--as", "sam"]);
    assert!(!vote.status.success());
    assert!(stderr(&vote).contains("expired"), "{}", stderr(&vote));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_held_call_runs_as_soon_as_it_is_approved() {
    let policy = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
decision := {"allow": true, "requires_approval": {"approvers": 1, "reason": "held"}} if input.action == "call"
"#;
    let s = crate::gateway::setup(crate::gateway::Options {
        policy: Some(policy),
        extra: "[principals.sam]\nroles = [\"sre\"]\n[state]\napproval_hold = \"10s\"\n",
        ..Default::default()
    });
    let client = stdio_client(&s).await;
    let peer = client.peer().clone();
    let held = tokio::spawn(async move { call(&peer, "hash", json!({"text": "a"})).await });
    let id = loop {
        let listed = stdout(&approvals(&s, &["list"]));
        if let Some(id) = listed
            .split_whitespace()
            .next()
            .filter(|w| w.starts_with("ap_"))
        {
            break id.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(!held.is_finished(), "the call is held while it waits");
    approve(&s, &id, "sam");
    let result = held.await.unwrap().unwrap();
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn policy_sees_the_approvals_given_and_may_still_deny() {
    let policy = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
sam_approved if {
	some a in input.approvals
	a.approver == "sam"
	"sre" in a.roles
}
decision := {"allow": false, "reasons": ["approvals from sam are not accepted for this tool"]} if {
	input.action == "call"
	sam_approved
}
decision := {"allow": true, "requires_approval": {"approvers": 1, "reason": "one"}} if {
	input.action == "call"
	not sam_approved
}
"#;
    let s = crate::gateway::setup(crate::gateway::Options {
        policy: Some(policy),
        extra: "[principals.sam]\nroles = [\"sre\"]\n",
        ..Default::default()
    });
    let client = stdio_client(&s).await;
    let first = call(&client, "hash", json!({"text": "a"})).await.unwrap();
    approve(&s, &approval_id(&first), "sam");
    let after = call(&client, "hash", json!({"text": "a"})).await.unwrap();
    assert_eq!(after.is_error, Some(true));
    assert_eq!(
        text(&after),
        "denied by policy: approvals from sam are not accepted for this tool"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn policy_may_ask_for_more_approvals_once_it_sees_them() {
    // One approval is asked for; once there is one, two are.
    let policy = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
needed := 2 if count(object.get(input, "approvals", [])) > 0 else := 1
decision := {"allow": true, "requires_approval": {"approvers": needed, "roles": ["sre"], "reason": "more on sight"}} if input.action == "call"
"#;
    let s = crate::gateway::setup(crate::gateway::Options {
        policy: Some(policy),
        extra: "[principals.sam]\nroles = [\"sre\"]\n[principals.sue]\nroles = [\"sre\"]\n",
        ..Default::default()
    });
    let client = stdio_client(&s).await;
    let first = call(&client, "hash", json!({"text": "a"})).await.unwrap();
    let id = approval_id(&first);
    assert!(approve(&s, &id, "sam").contains("approved"));
    let more = call(&client, "hash", json!({"text": "a"})).await.unwrap();
    assert_eq!(more.is_error, Some(true), "{}", text(&more));
    assert_eq!(
        approval_id(&more),
        id,
        "the same approval, waiting for one more"
    );
    approve(&s, &id, "sue");
    let ran = call(&client, "hash", json!({"text": "a"})).await.unwrap();
    assert_eq!(ran.is_error, Some(false), "{}", text(&ran));
    client.cancel().await.unwrap();
}
