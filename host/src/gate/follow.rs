//! What clients that follow the gateway hear of: replacements of the catalog or the policy
//! (which may change what they may see: `list_changed`), and resources a call said it changed
//! (`notifications/resources/updated`, announced by the component that serves them).

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::Gateway;
use crate::catalog::LoadedComponent;

/// Updates kept for a follower that has not caught up; one that falls further behind is told
/// that everything it follows may have changed.
const UPDATES_KEPT: usize = 256;

pub(super) struct Follow {
    /// Bumped whenever the catalog or the policy is replaced.
    changes: watch::Sender<u64>,
    /// URIs of resources that changed.
    updated: broadcast::Sender<Arc<str>>,
}

impl Default for Follow {
    fn default() -> Self {
        Self {
            changes: watch::Sender::new(0),
            updated: broadcast::Sender::new(UPDATES_KEPT),
        }
    }
}

impl Gateway {
    /// Follows replacements of the catalog and the policy.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.follow.changes.subscribe()
    }

    /// Follows resources that calls changed.
    pub fn updates(&self) -> broadcast::Receiver<Arc<str>> {
        self.follow.updated.subscribe()
    }

    pub(super) fn announce_change(&self) {
        self.follow.changes.send_modify(|n| *n += 1);
    }

    /// Announces the resources a run of `component` said it changed, each only if that same
    /// component serves it now: a component cannot make clients reread another's resources.
    pub(super) fn announce_updates(&self, component: &LoadedComponent, uris: &[String]) {
        for uri in uris {
            if self.serves(component, uri) {
                // No follower is not an error.
                let _ = self.follow.updated.send(Arc::from(uri.as_str()));
            } else {
                tracing::warn!(
                    component = %component.name,
                    uri = %uri,
                    "a call announced an update of a resource its component does not serve; dropped"
                );
            }
        }
    }
}
