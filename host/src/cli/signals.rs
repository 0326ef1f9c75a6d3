//! What signals and files do to a serving gateway. SIGTERM and SIGINT: drain the HTTP front
//! door, seal the audit trail, commit the store, exit. Reloading the policy and the tools: on
//! `kill -HUP`, and when a file in the policy directory or the tool directory changes. A new
//! policy bundle must compile and pass its own Rego tests before it replaces the one in force
//! ([`crate::policy::Policy::reload`]); a new catalog must load whole
//! ([`crate::catalog::Live::reload`]). Either way a bad one keeps the last good one and the log
//! says why; calls under way finish on what they started with.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gate::Gateway;

/// How often the policy and tool directories are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

fn reload_policy(gateway: &Gateway, why: &str) {
    match gateway.reload_policy() {
        Ok(()) => tracing::info!(
            policy = %gateway.policy.source(),
            digest = %gateway.policy.digest(),
            "policy reloaded ({why})"
        ),
        Err(e) => tracing::error!(
            "policy reload failed ({why}); the last good policy stays in force: {e:#}"
        ),
    }
}

async fn reload_tools(gateway: &Gateway, why: &str) {
    match gateway.reload_catalog().await {
        Ok(reloaded) if reloaded.changed_anything() => {
            tracing::info!("tools reloaded ({why}): {reloaded}");
        }
        Ok(_) => tracing::info!("tools unchanged ({why})"),
        Err(e) => tracing::error!(
            "tool reload failed ({why}); the last good catalog stays in force: {e:#}"
        ),
    }
}

/// `kill -HUP` reloads the policies and the tools.
pub(super) fn on_sighup(gateway: &Arc<Gateway>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let gateway = gateway.clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reload_policy(&gateway, "SIGHUP");
            reload_tools(&gateway, "SIGHUP").await;
        }
    });
    Ok(())
}

/// A directory's look: reload when it changed and has then looked the same for one more look
/// (an editor's save, or a copy, is several writes).
struct Settled<T> {
    loaded: T,
    previous: T,
}

impl<T: Clone + PartialEq> Settled<T> {
    fn new(now: T) -> Self {
        Self {
            loaded: now.clone(),
            previous: now,
        }
    }

    /// Whether to reload now that the directory looks like `now`.
    fn due(&mut self, now: T) -> bool {
        let due = now != self.loaded && now == self.previous;
        if due {
            self.loaded = now.clone();
        }
        self.previous = now;
        due
    }
}

/// Reloads when a policy file or a component is added, removed or changed (size or
/// modification time), once the directory has settled. On a thread of its own: compiling a
/// bundle or a component must not hold up the runtime that serves.
pub(super) fn watch(gateway: &Arc<Gateway>, policies: bool, tools: bool) {
    let mut policy = policies
        .then(|| gateway.policy.fingerprint())
        .flatten() // the embedded policies do not change
        .map(Settled::new);
    let mut catalog = tools
        .then(|| gateway.catalog.fingerprint())
        .flatten()
        .map(Settled::new);
    if policy.is_none() && catalog.is_none() {
        return;
    }
    let gateway = gateway.clone();
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("reload-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(WATCH_EVERY);
                if let Some(settled) = &mut policy
                    && let Some(now) = gateway.policy.fingerprint()
                    && settled.due(now)
                {
                    reload_policy(&gateway, "a policy file changed");
                }
                if let Some(settled) = &mut catalog
                    && let Some(now) = gateway.catalog.fingerprint()
                    && settled.due(now)
                {
                    runtime.block_on(reload_tools(&gateway, "a component file changed"));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("not watching the policy and tool directories: {e}");
    }
}

/// At exit: seals the audit trail and commits what was queued but not waited for.
pub(super) async fn seal_and_flush(
    audit: &crate::audit::Audit,
    state: &dyn crate::state::Store,
) -> Result<()> {
    if let Err(e) = audit.checkpoint().await {
        tracing::error!("sealing the audit trail at exit failed: {e:#}");
    }
    state.flush().await
}

/// SIGINT or SIGTERM: new HTTP requests get 503 while those in flight finish (at most
/// `grace`), then the audit trail is sealed, what is queued committed, and the process exits.
/// Calls still running after the grace period are cut off; their intents are on record.
pub(super) fn seal_on_signal(gateway: &Arc<Gateway>, grace: std::time::Duration) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let gateway = gateway.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        let left = crate::mcp::drain::drain(grace).await;
        if left > 0 {
            tracing::warn!(
                left,
                "shutting down with requests still in flight after {} s",
                grace.as_secs()
            );
        }
        if let Err(e) = seal_and_flush(&gateway.audit, &*gateway.state).await {
            tracing::error!("committing the state store at exit failed: {e:#}");
        }
        std::process::exit(0);
    });
    Ok(())
}
