//! Catalog hot reload: a component added, changed or removed in the tool directory is loaded
//! (a changed one is a new digest that policy sees), a broken one or a name clash keeps the last
//! good catalog, and `notifications/tools/list_changed` reaches the clients whose view changed —
//! over streamable HTTP on a `subscriptions/listen` stream, over stdio on the session.

use std::time::Duration;

use rmcp::model::{ClientConfig, ProtocolVersion, ServerNotification, SubscriptionFilter};
use rmcp::service::{NotificationContext, Subscription};
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::gateway::{
    ALICE, BOB, Options, call, http_client_discover, http_server, setup, stdio_client_with, text,
    tool_names,
};
use crate::support;

/// Alice sees every tool, Bob only those of the `data` component; every call is refused with
/// the digest policy saw.
const POLICY: &str = r#"package portcullis
import rego.v1
default decision := {"allow": false, "reasons": ["not listed"]}
decision := {"allow": true} if {
    input.action == "list"
    visible
}
decision := {"allow": false, "reasons": [sprintf("policy saw %s", [input.tool.digest])]} if input.action == "call"
visible if input.principal.id == "alice"
visible if input.tool.component == "data"
"#;

/// `bytes` with a custom section appended: the same component, another digest.
fn with_custom_section(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0, 9, 1, b'x']);
    out.extend_from_slice(b"changed");
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex_string(&sha2::Sha256::digest(bytes)))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The next notification on `subscription`, if one comes within `wait`.
async fn next_within(
    subscription: &mut Subscription,
    wait: Duration,
) -> Option<ServerNotification> {
    tokio::time::timeout(wait, subscription.next())
        .await
        .ok()
        .map(|n| n.expect("subscription stream").expect("subscription ended"))
}

fn is_tools_changed(notification: &ServerNotification) -> bool {
    matches!(
        notification,
        ServerNotification::ToolListChangedNotification(_)
    )
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn components_added_changed_and_removed_are_loaded_and_listeners_told() {
    let s = setup(Options {
        components: &["data"],
        policy: Some(POLICY),
        rust_log: "portcullis=info",
        ..Options::default()
    });
    let tools = s.dir.path().join("tools");
    let server = http_server(&s).await;
    let alice = http_client_discover(&server, ALICE, ()).await;
    let bob = http_client_discover(&server, BOB, ()).await;
    let filter = SubscriptionFilter::builder().tools_list_changed().build();
    let mut alice_hears = alice.peer().listen(filter.clone()).await.expect("listen");
    let mut bob_hears = bob.peer().listen(filter).await.expect("listen");
    let data_tools = tool_names(&alice).await;
    assert!(data_tools.contains(&"hash".to_string()), "{data_tools:?}");

    // Added: Alice may see the new tools and is told; Bob's view is unchanged, so he is not.
    std::fs::copy(
        support::component("workspace"),
        tools.join("workspace.wasm"),
    )
    .unwrap();
    let heard = next_within(&mut alice_hears, WAIT)
        .await
        .expect("alice told");
    assert!(is_tools_changed(&heard), "{heard:?}");
    assert!(tool_names(&alice).await.contains(&"list_dir".to_string()));
    assert_eq!(tool_names(&bob).await, data_tools);
    assert!(
        next_within(&mut bob_hears, Duration::from_secs(1))
            .await
            .is_none(),
        "bob was told of a change he cannot see"
    );

    // Changed: same tools, a new digest; everyone who sees it is told, and policy sees it.
    let old = std::fs::read(support::component("data")).unwrap();
    let new = with_custom_section(&old);
    std::fs::write(tools.join("data.wasm"), &new).unwrap();
    assert!(is_tools_changed(
        &next_within(&mut bob_hears, WAIT).await.expect("bob told")
    ));
    assert!(is_tools_changed(
        &next_within(&mut alice_hears, WAIT)
            .await
            .expect("alice told")
    ));
    let listed = bob.list_all_tools().await.unwrap();
    let hash = listed.iter().find(|t| t.name == "hash").unwrap();
    let digest = hash
        .meta
        .as_ref()
        .unwrap()
        .get("portcullis/digest")
        .cloned();
    assert_eq!(digest, Some(Value::String(sha256(&new))));
    let refused = call(&bob, "hash", json!({"text": "x"})).await.unwrap();
    assert!(text(&refused).contains(&sha256(&new)), "{}", text(&refused));

    // Broken, then a tool name offered twice: refused, the last good catalog stays, nobody told.
    std::fs::write(tools.join("broken.wasm"), b"\0asm not really").unwrap();
    server.wait_for_log("tool reload failed").await;
    std::fs::remove_file(tools.join("broken.wasm")).unwrap();
    std::fs::copy(support::component("data"), tools.join("data2.wasm")).unwrap();
    server.wait_for_log("is offered by both").await;
    assert!(tool_names(&alice).await.contains(&"list_dir".to_string()));
    std::fs::remove_file(tools.join("data2.wasm")).unwrap();
    server.wait_for_log("tools unchanged").await;

    // Removed: gone from the list, and calling it is an unknown tool.
    std::fs::remove_file(tools.join("workspace.wasm")).unwrap();
    assert!(is_tools_changed(
        &next_within(&mut alice_hears, WAIT)
            .await
            .expect("alice told")
    ));
    assert!(!tool_names(&alice).await.contains(&"list_dir".to_string()));
    let gone = call(&alice, "list_dir", json!({"path": "."})).await;
    assert!(gone.is_err(), "{gone:?}");
    assert!(
        next_within(&mut bob_hears, Duration::from_secs(1))
            .await
            .is_none(),
        "bob was told of a change he cannot see"
    );
}

/// A client of an earlier protocol revision, which learns of changes on its session: it says
/// which list changed.
#[derive(Clone)]
struct Legacy(mpsc::UnboundedSender<&'static str>);

impl ClientHandler for Legacy {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        info
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.0.send("tools");
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.0.send("resources");
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.0.send("prompts");
    }
}

#[tokio::test]
async fn a_stdio_session_is_told_when_a_component_is_added() {
    let s = setup(Options {
        components: &["data"],
        policy: Some(POLICY),
        stdio_principal: "alice",
        ..Options::default()
    });
    let (told, mut heard) = mpsc::unbounded_channel();
    let client = stdio_client_with(&s, None, Legacy(told)).await;
    let before = client.list_all_tools().await.unwrap().len();
    std::fs::copy(
        support::component("workspace"),
        s.dir.path().join("tools/workspace.wasm"),
    )
    .unwrap();
    let told = tokio::time::timeout(WAIT, heard.recv())
        .await
        .expect("list_changed within the wait")
        .unwrap();
    assert_eq!(told, "tools", "a component of tools only changes the tools");
    let after = client.list_all_tools().await.unwrap();
    assert!(after.len() > before);
    assert!(after.iter().any(|t| t.name == "list_dir"));
}

#[tokio::test]
async fn a_component_with_resources_and_prompts_changes_those_lists_too() {
    let s = setup(Options {
        components: &["data"],
        policy: Some(
            "package portcullis\nimport rego.v1\ndecision := {\"allow\": input.action == \"list\"}\n",
        ),
        ..Options::default()
    });
    let (told, mut heard) = mpsc::unbounded_channel();
    let client = stdio_client_with(&s, None, Legacy(told)).await;
    assert!(client.list_all_resources().await.unwrap().is_empty());
    std::fs::copy(
        support::component("conformance"),
        s.dir.path().join("tools/conformance.wasm"),
    )
    .unwrap();
    let mut lists = Vec::new();
    for _ in 0..3 {
        let list = tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("list_changed within the wait")
            .unwrap();
        lists.push(list);
    }
    lists.sort();
    assert_eq!(lists, ["prompts", "resources", "tools"]);
    assert_eq!(client.list_all_resources().await.unwrap().len(), 3);
    assert_eq!(client.list_all_prompts().await.unwrap().len(), 4);
}
