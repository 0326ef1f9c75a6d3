//! What signals and files do to a serving gateway. SIGTERM and SIGINT: drain the HTTP front
//! door, seal the audit trail, commit the store, exit. Reloading the policy: on `kill -HUP`,
//! and when a file in the policy directory changes. Either way the new bundle must compile and pass its own Rego tests before it
//! replaces the one in force ([`crate::policy::Policy::reload`]); a bad bundle keeps the last
//! good one and the log says why. Calls being decided finish on the bundle they started with.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gate::Gateway;

/// How often the policy directory is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

fn reload(gateway: &Gateway, why: &str) {
    match gateway.policy.reload() {
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

/// `kill -HUP` reloads the policies.
pub(super) fn on_sighup(gateway: &Arc<Gateway>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let gateway = gateway.clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reload(&gateway, "SIGHUP");
        }
    });
    Ok(())
}

/// Reloads when a policy file is added, removed or changed (size or modification time), once
/// the directory has looked the same for one more look (an editor's save is several writes).
/// On a thread of its own: compiling a bundle must not hold up the runtime that serves.
pub(super) fn watch(gateway: &Arc<Gateway>) {
    let Some(mut loaded) = gateway.policy.fingerprint() else {
        return; // the embedded policies do not change
    };
    let gateway = gateway.clone();
    let spawned = std::thread::Builder::new()
        .name("policy-watch".into())
        .spawn(move || {
            let mut previous = loaded.clone();
            loop {
                std::thread::sleep(WATCH_EVERY);
                let Some(now) = gateway.policy.fingerprint() else {
                    continue;
                };
                if now != loaded && now == previous {
                    reload(&gateway, "a policy file changed");
                    loaded = now.clone();
                }
                previous = now;
            }
        });
    if let Err(e) = spawned {
        tracing::error!("not watching the policy directory: {e}");
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
