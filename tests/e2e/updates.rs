//! `notifications/resources/updated`: a tool says one of its component's resources changed
//! (`resource_updated`), and the clients that follow that resource hear it — on the session of
//! a 2025-11-25 client that sent `resources/subscribe`, on the `subscriptions/listen` stream of
//! a 2026-07-28 client that named it — but only while they may see it. A component that
//! announces another component's resource is not heard.

// `resources/subscribe` is legacy-only in rmcp, but it is what 2025-11-25 clients send.
#![allow(deprecated)]

use std::time::Duration;

use rmcp::model::{
    ClientConfig, ProtocolVersion, ResourceUpdatedNotificationParam, ServerNotification,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, Subscription};
use rmcp::{ClientHandler, RoleClient};
use serde_json::json;
use tokio::sync::mpsc;

use crate::gateway::{
    ALICE, BOB, Options, call, http_client_discover, http_server, post, raw_http, setup,
    stdio_client_with, text,
};

/// Everyone may do everything, but Bob may not see the `hostile://file/{name}` template.
const POLICY: &str = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action != "list"
decision := {"allow": true} if {
    input.action == "list"
    not hidden
}
hidden if {
    input.principal.id == "bob"
    input.resource.template == "hostile://file/{name}"
}
"#;

const WAIT: Duration = Duration::from_secs(20);

/// A 2025-11-25 client that says which resource it was told changed.
#[derive(Clone)]
struct Follower(mpsc::UnboundedSender<String>);

impl ClientHandler for Follower {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        info
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params.uri);
    }
}

async fn next_uri(heard: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, heard.recv())
        .await
        .expect("an update within the wait")
        .expect("the client is still there")
}

#[tokio::test]
async fn a_session_hears_updates_of_what_it_subscribed_to_from_the_component_that_serves_it() {
    let s = setup(Options {
        components: &["hostile-items", "conformance"],
        policy: Some(POLICY),
        stdio_principal: "alice",
        ..Options::default()
    });
    let (told, mut heard) = mpsc::unbounded_channel();
    let client = stdio_client_with(&s, None, Follower(told)).await;
    let peer = client.peer();
    for uri in [
        "hostile://state",
        "hostile://file/a.txt",
        "test://static-text",
    ] {
        peer.subscribe(SubscribeRequestParams::new(uri))
            .await
            .unwrap_or_else(|e| panic!("subscribe {uri}: {e}"));
    }
    let unknown = peer
        .subscribe(SubscribeRequestParams::new("hostile://nope"))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");

    let long = format!("hostile://file/{}", "a".repeat(3000));
    let result = call(
        &client,
        "announce",
        json!({"uris": ["hostile://state", "hostile://file/a.txt", "test://static-text",
                        "hostile://nope", long]}),
    )
    .await
    .unwrap();
    let answers = text(&result);
    assert!(answers.starts_with("hostile://state: ok\n"), "{answers}");
    assert!(answers.contains("longer than 2048 bytes"), "{answers}");
    assert_eq!(next_uri(&mut heard).await, "hostile://state");
    assert_eq!(next_uri(&mut heard).await, "hostile://file/a.txt");

    // `test://static-text` is the conformance component's: had it been heard, it would come
    // before this update.
    call(&client, "announce", json!({"uris": ["hostile://state"]}))
        .await
        .unwrap();
    assert_eq!(next_uri(&mut heard).await, "hostile://state");

    // Unsubscribed: no longer heard.
    peer.unsubscribe(UnsubscribeRequestParams::new("hostile://state"))
        .await
        .unwrap();
    call(
        &client,
        "announce",
        json!({"uris": ["hostile://state", "hostile://file/a.txt"]}),
    )
    .await
    .unwrap();
    assert_eq!(next_uri(&mut heard).await, "hostile://file/a.txt");
    client.cancel().await.unwrap();
}

/// The URI of the next `resources/updated` on `stream`.
async fn next_update(stream: &mut Subscription) -> String {
    let next = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an update within the wait");
    match next {
        Ok(Some(ServerNotification::ResourceUpdatedNotification(n))) => n.params.uri,
        other => panic!("not an update: {other:?}"),
    }
}

#[tokio::test]
async fn a_listen_stream_hears_updates_of_what_it_named_and_may_see() {
    let s = setup(Options {
        components: &["hostile-items"],
        policy: Some(POLICY),
        ..Options::default()
    });
    let server = http_server(&s).await;
    let alice = http_client_discover(&server, ALICE, ()).await;
    let bob = http_client_discover(&server, BOB, ()).await;
    let filter = SubscriptionFilter::builder()
        .resource_subscriptions(["hostile://file/a.txt", "hostile://state"])
        .build();
    let mut alice_hears = alice.peer().listen(filter.clone()).await.expect("listen");
    let mut bob_hears = bob.peer().listen(filter).await.expect("listen");

    call(
        &alice,
        "announce",
        json!({"uris": ["hostile://file/a.txt", "hostile://state"]}),
    )
    .await
    .unwrap();
    assert_eq!(next_update(&mut alice_hears).await, "hostile://file/a.txt");
    assert_eq!(next_update(&mut alice_hears).await, "hostile://state");
    // Bob may not see the file template: he hears only the state (which came after it).
    assert_eq!(next_update(&mut bob_hears).await, "hostile://state");

    // A stateless request of an earlier revision has nowhere to hear updates: refused, saying
    // what would work, rather than accepted and never answered.
    let subscribe = r#"{"jsonrpc":"2.0","id":7,"method":"resources/subscribe","params":{"uri":"hostile://state"}}"#;
    let header = "mcp-protocol-version: 2025-11-25\r\n";
    let refused = raw_http(&server, &post(&server, ALICE, header, subscribe)).await;
    assert!(
        refused.contains("resources/subscribe needs a session"),
        "{refused}"
    );
}
