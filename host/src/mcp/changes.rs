//! `notifications/tools/list_changed` (and `resources/list_changed`, `prompts/list_changed`):
//! sent to a client when a reload of the catalog or of the policy changes what that client may
//! see — which tools, resources, templates and prompts, their pinned descriptors, their
//! components' digests — and only then, and only for the lists that changed (a reload that
//! changes nothing visible to this principal stays silent). A client before MCP 2026-07-28
//! hears it on its session (stdio, or the GET stream of an HTTP session); a later one on each
//! open `subscriptions/listen` stream that asked for it. Both streams also carry
//! `notifications/resources/updated` for the resources the client follows (`watch.rs`).

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::SubscriptionContext;
use rmcp::{Peer, RoleServer};
use tokio::sync::watch;

use super::watch::{Updates, Watched};
use crate::gate::{Gateway, Transport};
use crate::policy::Principal;

/// What a principal may see of one list: each visible item's name, descriptor digest and
/// component digest.
type List = Vec<(String, String, String)>;

/// What a principal may see: tools, resources and templates, prompts.
#[derive(PartialEq, Eq)]
struct View {
    tools: List,
    resources: List,
    prompts: List,
}

/// Which lists changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub tools: bool,
    pub resources: bool,
    pub prompts: bool,
}

fn view(gateway: &Gateway, principal: &Principal, transport: Transport) -> View {
    let item = |name: &str, digest: &str, component: &str| {
        (name.to_string(), digest.to_string(), component.to_string())
    };
    let tools = gateway
        .visible_tools(principal, transport)
        .iter()
        .map(|t| {
            item(
                &t.descriptor.name,
                &t.descriptor.digest,
                &t.component.digest,
            )
        })
        .collect();
    let (fixed, templates) = gateway.visible_resources(principal, transport);
    let resources = fixed
        .iter()
        .map(|r| item(&r.uri, &r.digest, &r.component.digest))
        .chain(
            templates
                .iter()
                .map(|t| item(t.template.as_str(), &t.digest, &t.component.digest)),
        )
        .collect();
    let prompts = gateway
        .visible_prompts(principal, transport)
        .iter()
        .map(|p| item(&p.text.name, &p.digest, &p.component.digest))
        .collect();
    View {
        tools,
        resources,
        prompts,
    }
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

    /// Waits until what the principal may see differs from what it saw last, and says which
    /// lists differ; `None` when the gateway has gone.
    pub async fn next(&mut self) -> Option<Changed> {
        loop {
            self.changes.changed().await.ok()?;
            let now = view(self.gateway, self.principal, self.transport);
            let changed = Changed {
                tools: now.tools != self.seen.tools,
                resources: now.resources != self.seen.resources,
                prompts: now.prompts != self.seen.prompts,
            };
            if changed != Changed::default() {
                self.seen = now;
                return Some(changed);
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
    let accepted = subscription.accepted();
    let wants = Changed {
        tools: accepted.tools_list_changed == Some(true),
        resources: accepted.resources_list_changed == Some(true),
        prompts: accepted.prompts_list_changed == Some(true),
    };
    let watched = Watched::of(accepted.resource_subscriptions.clone().unwrap_or_default());
    if wants == Changed::default() && watched.is_empty() {
        tokio::select! {
            _ = subscription.cancelled() => {}
            _ = super::drain::draining() => {}
        }
        return;
    }
    let mut follower = Follower::new(gateway, principal, transport);
    let mut updates = Updates::new(gateway, principal, transport, watched);
    loop {
        tokio::select! {
            _ = subscription.cancelled() => return,
            _ = super::drain::draining() => return,
            uris = updates.next() => {
                let Some(uris) = uris else { return };
                for uri in uris {
                    if subscription.sink().notify_resource_updated(uri).await.is_err() {
                        return;
                    }
                }
            }
            changed = follower.next() => {
                let Some(changed) = changed else { return };
                let sink = subscription.sink();
                let sent = async {
                    if changed.tools && wants.tools {
                        sink.notify_tool_list_changed().await?;
                    }
                    if changed.resources && wants.resources {
                        sink.notify_resource_list_changed().await?;
                    }
                    if changed.prompts && wants.prompts {
                        sink.notify_prompt_list_changed().await?;
                    }
                    Ok::<(), rmcp::service::SubscriptionSendError>(())
                };
                if sent.await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How often a session that hears of changes is checked for having gone.
const GONE_CHECK: Duration = Duration::from_secs(5);

/// Tells the client on a session of a client before 2026-07-28 (`peer`) of changes to what
/// `principal` may see, and of updates to the resources it follows (`watched`), until the
/// session or the gateway ends.
pub async fn tell(
    gateway: Arc<Gateway>,
    principal: Arc<Principal>,
    transport: Transport,
    peer: Peer<RoleServer>,
    watched: Watched,
) {
    let mut follower = Follower::new(&gateway, &principal, transport);
    let mut updates = Updates::new(&gateway, &principal, transport, watched);
    let mut gone = tokio::time::interval(GONE_CHECK);
    loop {
        let changed = tokio::select! {
            _ = super::drain::draining() => return,
            _ = gone.tick() => {
                if peer.is_transport_closed() {
                    return;
                }
                continue;
            }
            uris = updates.next() => {
                let Some(uris) = uris else { return };
                for uri in uris {
                    let update = ResourceUpdatedNotificationParam::new(uri);
                    if peer.notify_resource_updated(update).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            changed = follower.next() => changed,
        };
        let Some(changed) = changed else { return };
        let sent = async {
            if changed.tools {
                peer.notify_tool_list_changed().await?;
            }
            if changed.resources {
                peer.notify_resource_list_changed().await?;
            }
            if changed.prompts {
                peer.notify_prompt_list_changed().await?;
            }
            Ok::<(), rmcp::ServiceError>(())
        };
        if sent.await.is_err() {
            return;
        }
    }
}
