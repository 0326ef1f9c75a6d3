//! The audit stage: a tamper-evident record of every call, refusal and approval.
//!
//! Records go into the state store's hash chain ([`crate::state::audit`]): for a call, an
//! `intent` committed before the tool runs and an `outcome` committed before the result is
//! answered; if either cannot be written the call fails closed. Refusals and approval events
//! are written before they are answered too; failing to write one is logged, since a refusal
//! stands either way. Every `checkpoint_every` a checkpoint signed with
//! the gateway's ed25519 key seals the chain's tail, and the latest one is also kept beside
//! the store (the head, `audit-head.json`), so that a trail cut short is caught too. Pruning
//! (`retention`) leaves a signed marker naming the last record it removed. See
//! docs/architecture.md ("Audit").

pub mod decisions;
pub mod records;
mod sign;
pub mod verify;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

pub use crate::redact::Redactor;
pub use sign::{Signer, parse_public_key};
pub use verify::{Head, Problem, Report, Verifier};

use crate::config::AuditConfig;
use crate::state::{AuditAppend, AuditRow, Pending, Sealer, Store};

/// The head file's name in the data directory.
pub const HEAD_FILE: &str = "audit-head.json";

/// The audit trail of one gateway process.
pub struct Audit {
    store: Arc<dyn Store>,
    signer: Arc<Signer>,
    enabled: bool,
    head: PathBuf,
    trusted: BTreeSet<String>,
    /// Whether records were appended since the last checkpoint.
    dirty: AtomicBool,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("enabled", &self.enabled)
            .field("key", &self.signer.public_key())
            .finish()
    }
}

impl Audit {
    /// The trail in `store`, signed with the configured key (generated if it is missing).
    pub fn open(config: &AuditConfig, data_dir: &Path, store: Arc<dyn Store>) -> Result<Self> {
        let (signer, created) =
            Signer::load_or_create(&config.signing_key).context("audit.signing_key")?;
        if created {
            tracing::info!(
                key = signer.public_key(),
                file = %config.signing_key.display(),
                "generated the audit signing key; keep a copy of its public key elsewhere (`portcullis audit key`) to verify the trail with"
            );
        }
        let mut trusted: BTreeSet<String> = config.trusted_keys.iter().cloned().collect();
        trusted.insert(signer.public_key().to_string());
        Ok(Self {
            store,
            signer: Arc::new(signer),
            enabled: config.enabled,
            head: data_dir.join(HEAD_FILE),
            trusted,
            dirty: AtomicBool::new(false),
        })
    }

    /// A trail that records nothing (tests, benchmarks; `audit.enabled = false`).
    pub fn off(store: Arc<dyn Store>) -> Result<Self> {
        Ok(Self {
            store,
            signer: Arc::new(Signer::ephemeral()?),
            enabled: false,
            head: PathBuf::new(),
            trusted: BTreeSet::new(),
            dirty: AtomicBool::new(false),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The signing key's public key, `ed25519:<hex>`.
    pub fn public_key(&self) -> &str {
        self.signer.public_key()
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The keys whose signatures verify: the signing key and `audit.trusted_keys`.
    pub fn trusted_keys(&self) -> &BTreeSet<String> {
        &self.trusted
    }

    pub fn head_path(&self) -> &Path {
        &self.head
    }

    /// Queues `records`; the future resolves once they are committed (the last one's number;
    /// 0 with the audit off).
    pub fn append(&self, records: Vec<AuditAppend>) -> Pending<u64> {
        if !self.enabled {
            return Box::pin(async { Ok(0) });
        }
        self.dirty.store(true, Ordering::Relaxed);
        self.store.audit_append(records)
    }

    /// Writes `record` and waits for its commit; a failure to write it is logged (what it
    /// records, a refusal or an event, stands either way).
    pub async fn record(&self, record: AuditAppend) {
        if let Err(e) = self.append(vec![record]).await {
            tracing::error!("writing an audit record failed: {e:#}");
        }
    }

    /// Queues `record` without waiting (for callers that cannot wait): a failure to write it
    /// is logged.
    pub fn note(&self, record: AuditAppend) {
        if !self.enabled {
            return;
        }
        let written = self.append(vec![record]);
        tokio::spawn(async move {
            if let Err(e) = written.await {
                tracing::error!("writing an audit record failed: {e:#}");
            }
        });
    }

    /// Seals what was recorded since the last checkpoint and updates the head: the
    /// checkpoint's number, if one was written.
    pub async fn checkpoint(&self) -> Result<Option<u64>> {
        if !self.enabled {
            return Ok(None);
        }
        self.dirty.store(false, Ordering::Relaxed);
        let sealer: Arc<dyn Sealer> = self.signer.clone();
        let Some(row) = self.store.audit_checkpoint(sealer).await? else {
            return Ok(None);
        };
        let head = self.head.clone();
        let seq = row.seq;
        tokio::task::spawn_blocking(move || write_head(&head, &row))
            .await
            .context("writing the audit head")??;
        Ok(Some(seq))
    }

    /// Seals the trail every `every` while records come in, and prunes past `retention`
    /// once an hour.
    pub fn spawn_sealer(
        self: &Arc<Self>,
        every: std::time::Duration,
        retention: Option<std::time::Duration>,
    ) {
        if !self.enabled {
            return;
        }
        let audit = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut pruned = std::time::Instant::now() - std::time::Duration::from_secs(3600);
            loop {
                tick.tick().await;
                if audit.dirty.load(Ordering::Relaxed)
                    && let Err(e) = audit.checkpoint().await
                {
                    tracing::error!("sealing the audit trail failed: {e:#}");
                }
                if let Some(retention) = retention
                    && pruned.elapsed() >= std::time::Duration::from_secs(3600)
                {
                    pruned = std::time::Instant::now();
                    let before = crate::time::now_ms().saturating_sub(retention.as_millis() as u64);
                    match audit.prune(before).await {
                        Ok(Some(n)) => {
                            tracing::info!(removed = n, "audit records past their retention pruned")
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!("pruning the audit trail failed: {e:#}"),
                    }
                }
            }
        });
    }

    /// Removes the records older than `before_ms` behind a signed marker: how many.
    pub async fn prune(&self, before_ms: u64) -> Result<Option<u64>> {
        let sealer: Arc<dyn Sealer> = self.signer.clone();
        let pruned = self.store.audit_prune(before_ms, sealer).await?;
        self.dirty.store(true, Ordering::Relaxed);
        Ok(pruned.map(|p| p.removed))
    }
}

/// Checks the whole trail in `store` against `trusted` keys and the head at `head_path`.
pub async fn verify_trail(
    store: &dyn Store,
    trusted: &BTreeSet<String>,
    head_path: &Path,
) -> Result<Report> {
    let head = read_head(head_path)?;
    if let Some(head) = &head
        && !verify::head_is_signed(head, trusted)
    {
        return Ok(Report {
            problem: Some(Problem {
                seq: head.seq,
                why: format!(
                    "{} is not a checkpoint signed by a trusted key: it was edited, or the trail is checked with the wrong key",
                    head_path.display()
                ),
            }),
            ..Report::default()
        });
    }
    let mut verifier = Verifier::new(trusted.clone(), head);
    let mut after = 0;
    loop {
        let page = store
            .audit_read(crate::state::AuditQuery {
                after,
                limit: 2_000,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for row in &page {
            if verifier.push(row).is_err() {
                return Ok(verifier.finish());
            }
        }
    }
    Ok(verifier.finish())
}

/// Replaces the head with the checkpoint `row`, unless the head is already further along
/// (another process sealed later).
fn write_head(path: &Path, row: &AuditRow) -> Result<()> {
    if let Some(current) = read_head(path)?
        && current.seq >= row.seq
    {
        return Ok(());
    }
    let head = Head {
        seq: row.seq,
        hash: row.hash.clone(),
        body: row.body.clone(),
    };
    let temporary = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&temporary, serde_json::to_vec_pretty(&head)?)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))
}

/// The head kept at `path`, if there is one.
pub fn read_head(path: &Path) -> Result<Option<Head>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a readable audit head", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests;
