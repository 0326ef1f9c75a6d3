//! Reloading the policy while serving: on `kill -HUP`, and when a file in the policy directory
//! changes. Either way the new bundle must compile and pass its own Rego tests before it
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
