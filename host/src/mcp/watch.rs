//! `notifications/resources/updated`: a client that follows a resource — `resources/subscribe`
//! on a session of a client before MCP 2026-07-28, `resourceSubscriptions` on a
//! `subscriptions/listen` stream after — hears when a call says it changed it (announced by
//! the component that serves it, `gate/follow.rs`), and only while it may still see it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rmcp::model::ErrorData;
use tokio::sync::broadcast::error::RecvError;

use crate::gate::{Gateway, Transport};
use crate::policy::Principal;

/// Resources one client may follow at once.
pub const MAX_WATCHED: usize = 64;

/// The URIs one client follows, shared by its handler and the task that tells it.
#[derive(Clone, Debug, Default)]
pub struct Watched(Arc<Mutex<BTreeSet<String>>>);

impl Watched {
    /// Follows exactly `uris` (at most [`MAX_WATCHED`]).
    pub fn of(uris: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(Mutex::new(
            uris.into_iter().take(MAX_WATCHED).collect(),
        )))
    }

    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add(&self, uri: &str) -> Result<(), ErrorData> {
        let mut set = self.set();
        if set.len() >= MAX_WATCHED && !set.contains(uri) {
            return Err(ErrorData::invalid_params(
                format!("a client may follow at most {MAX_WATCHED} resources; unsubscribe first"),
                None,
            ));
        }
        set.insert(uri.to_string());
        Ok(())
    }

    pub fn remove(&self, uri: &str) {
        self.set().remove(uri);
    }

    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }
}

/// Updates of what one client follows.
pub struct Updates<'a> {
    gateway: &'a Gateway,
    principal: &'a Principal,
    transport: Transport,
    watched: Watched,
    updated: tokio::sync::broadcast::Receiver<Arc<str>>,
}

impl<'a> Updates<'a> {
    pub fn new(
        gateway: &'a Gateway,
        principal: &'a Principal,
        transport: Transport,
        watched: Watched,
    ) -> Self {
        Self {
            updated: gateway.updates(),
            gateway,
            principal,
            transport,
            watched,
        }
    }

    /// Waits until resources this client follows, and may see, changed; `None` when the
    /// gateway has gone. A client that fell behind hears of everything it follows.
    pub async fn next(&mut self) -> Option<Vec<String>> {
        loop {
            let uris: Vec<String> = match self.updated.recv().await {
                Ok(uri) if self.watched.set().contains(&*uri) => vec![uri.to_string()],
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => self.watched.set().iter().cloned().collect(),
                Err(RecvError::Closed) => return None,
            };
            let visible: Vec<String> = uris
                .into_iter()
                .filter(|uri| {
                    self.gateway
                        .may_watch(self.principal, uri, self.transport)
                        .is_ok()
                })
                .collect();
            if !visible.is_empty() {
                return Some(visible);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_follows_a_bounded_set() {
        let watched = Watched::of((0..100).map(|i| format!("test://{i}")));
        assert_eq!(watched.set().len(), MAX_WATCHED);
        assert!(watched.add("test://0").is_ok(), "already followed");
        assert!(watched.add("test://new").is_err());
        watched.remove("test://0");
        assert!(watched.add("test://new").is_ok());
        assert!(!watched.is_empty());
    }
}
