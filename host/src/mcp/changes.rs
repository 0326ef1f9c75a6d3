//! `notifications/tools/list_changed`: sent to a client when a reload of the catalog or of the
//! policy changes what that client may see — which tools, their pinned descriptors, their
//! components' digests — and only then (a reload that changes nothing visible to this principal
//! stays silent). Over stdio it goes to the session; over streamable HTTP to each open
//! `subscriptions/listen` stream (MCP 2026-07-28) that asked for `toolsListChanged`.

use rmcp::service::SubscriptionContext;
use tokio::sync::watch;

use crate::gate::{Gateway, Transport};
use crate::policy::Principal;

/// What a principal may see: each visible tool's name, descriptor digest and component digest.
type View = Vec<(String, String, String)>;

fn view(gateway: &Gateway, principal: &Principal, transport: Transport) -> View {
    gateway
        .visible_tools(principal, transport)
        .iter()
        .map(|t| {
            (
                t.descriptor.name.clone(),
                t.descriptor.digest.clone(),
                t.component.digest.clone(),
            )
        })
        .collect()
}

/// One client's view, followed across reloads.
pub struct Follower<'a> {
    gateway: &'a Gateway,
    principal: &'a Principal,
    transport: Transport,
    changes: watch::Receiver<u64>,
    seen: View,
}

impl<'a> Follower<'a> {
    /// Starts from what `principal` may see now.
    pub fn new(gateway: &'a Gateway, principal: &'a Principal, transport: Transport) -> Self {
        let changes = gateway.changes();
        Self {
            seen: view(gateway, principal, transport),
            gateway,
            principal,
            transport,
            changes,
        }
    }

    /// Waits until what the principal may see differs from what it saw last; `false` when the
    /// gateway has gone.
    pub async fn next(&mut self) -> bool {
        loop {
            if self.changes.changed().await.is_err() {
                return false;
            }
            let now = view(self.gateway, self.principal, self.transport);
            if now != self.seen {
                self.seen = now;
                return true;
            }
        }
    }
}

/// Serves one `subscriptions/listen` stream until the client cancels it, the connection goes,
/// or the gateway shuts down (which ends the stream with its final result).
pub async fn listen(
    gateway: &Gateway,
    principal: &Principal,
    transport: Transport,
    subscription: SubscriptionContext,
) {
    if subscription.accepted().tools_list_changed != Some(true) {
        tokio::select! {
            _ = subscription.cancelled() => {}
            _ = super::drain::draining() => {}
        }
        return;
    }
    let mut follower = Follower::new(gateway, principal, transport);
    loop {
        tokio::select! {
            _ = subscription.cancelled() => return,
            _ = super::drain::draining() => return,
            more = follower.next() => {
                if !more || subscription.sink().notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        }
    }
}
