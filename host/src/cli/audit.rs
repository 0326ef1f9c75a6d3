//! `portcullis audit verify|tail|show|export|key|prune`: the operator's view of the trail.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;

use super::out;
use crate::audit::{Audit, parse_public_key, verify_trail};
use crate::config::Config;
use crate::state::sqlite::SqliteStore;
use crate::state::{AuditQuery, AuditRow, Store};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole trail: the hash chain, every signature, and that it was not cut short.
    /// Names the first bad record and why; exits 1 if there is one.
    Verify {
        /// Trust only this public key (`ed25519:<hex>` or a PEM file), not the key file beside
        /// the store: pin the key you exported, since whoever can edit the store may be able to
        /// replace that file too. Repeatable.
        #[arg(long = "public-key", value_name = "KEY")]
        public_keys: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The newest records, one line each; `-f` keeps printing new ones.
    Tail {
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing records as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Print each record's whole JSON instead of a summary line.
        #[arg(long)]
        json: bool,
    },
    /// Every record of one job (the job id is in `tail`, the result's `_meta` and errors).
    Show { job: String },
    /// Records as JSON lines, for a SIEM. With `--format jsonl` each line is a record's exact
    /// body followed by its `"hash"`; with `--format opa`, each policy decision (of a call that
    /// ran or was refused) as an OPA decision-log event.
    Export {
        /// `jsonl` (the records) or `opa` (the decision log).
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[command(flatten)]
        filter: Filter,
    },
    /// The public key that verifies the trail's signatures.
    Key {
        /// As a PEM SubjectPublicKeyInfo instead of `ed25519:<hex>`.
        #[arg(long)]
        pem: bool,
    },
    /// Remove records older than a time, behind a signed marker so that the trail still
    /// verifies.
    Prune {
        /// RFC 3339 time, or an age such as `90d`.
        #[arg(long, value_name = "TIME")]
        before: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Filter {
    /// Records at or after this RFC 3339 time, or this long ago (`1h`, `7d`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Records before this RFC 3339 time, or this long ago.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    tool: Option<String>,
    /// `ok`, `tool_error`, `limit`, `denied`, `schema`, `rate_limited`, `approval_pending`, …
    #[arg(long)]
    outcome: Option<String>,
    /// `intent`, `outcome`, `refused`, `replayed`, `approval`, `task`, `checkpoint`, `pruned`.
    #[arg(long)]
    kind: Option<String>,
}

/// An RFC 3339 time or an age before now, in ms since the epoch.
fn time_arg(text: &str) -> Result<u64> {
    if let Some(ms) = crate::time::parse_rfc3339_ms(text) {
        return Ok(ms);
    }
    let age = crate::grants::parse_duration(text)
        .map_err(|e| anyhow!("`{text}` is neither an RFC 3339 time nor an age like `7d`: {e}"))?;
    Ok(crate::time::now_ms().saturating_sub(age.as_millis() as u64))
}

fn summary(row: &AuditRow) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    format!(
        "{:>8}  {}  {:<10} {:<16} {:<12} {:<20} {}",
        row.seq,
        crate::time::rfc3339_ms(row.at_ms),
        row.kind,
        dash(&row.outcome),
        dash(&row.principal),
        dash(&row.tool),
        dash(&row.job),
    )
}

/// The exact body with its hash after it.
fn line(row: &AuditRow) -> String {
    let body = row.body.trim_end();
    let open = body.strip_suffix('}').unwrap_or(body);
    format!("{open},\"hash\":\"{}\"}}", row.hash)
}

/// The gateway's signing key, as a trail to seal or to check with: never made here (reading
/// a trail must not mint the key it is checked with).
fn existing_audit(config: &Config, store: &Arc<dyn Store>) -> Result<Audit> {
    let key = &config.audit.signing_key;
    if !key.exists() {
        bail!(
            "no audit signing key at {}: the gateway generates it when it first starts (audit.signing_key)",
            key.display()
        );
    }
    Audit::open(&config.audit, &config.data_dir, store.clone())
}

pub async fn run(config: &Config, command: &AuditCommand) -> Result<ExitCode> {
    let db = config.data_dir.join("state.sqlite3");
    if !db.exists() {
        bail!(
            "no state store at {}: nothing was recorded under this configuration's data_dir (is this the gateway's configuration?)",
            db.display()
        );
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
        &config.data_dir,
        config.state.durability,
    )?);
    match command {
        AuditCommand::Verify { public_keys, json } => {
            let trusted: BTreeSet<String> = if public_keys.is_empty() {
                let mut trusted: BTreeSet<String> =
                    config.audit.trusted_keys.iter().cloned().collect();
                if config.audit.signing_key.exists() {
                    trusted.extend(
                        existing_audit(config, &store)?
                            .trusted_keys()
                            .iter()
                            .cloned(),
                    );
                }
                if trusted.is_empty() {
                    bail!(
                        "no key to verify with: no signing key at {} and no audit.trusted_keys; pass --public-key",
                        config.audit.signing_key.display()
                    );
                }
                trusted
            } else {
                public_keys
                    .iter()
                    .map(|k| {
                        let text = if std::path::Path::new(k).is_file() {
                            std::fs::read_to_string(k).with_context(|| format!("reading {k}"))?
                        } else {
                            k.clone()
                        };
                        parse_public_key(&text).with_context(|| format!("--public-key `{k}`"))
                    })
                    .collect::<Result<_>>()?
            };
            let head = config.data_dir.join(crate::audit::HEAD_FILE);
            let report = verify_trail(&*store, &trusted, &head).await?;
            if *json {
                out(serde_json::to_string_pretty(&report)?);
            } else if let Some(problem) = &report.problem {
                out(format!(
                    "audit trail: BROKEN at record {}: {}",
                    problem.seq, problem.why
                ));
                out(format!("({} records checked before it)", report.records));
            } else {
                let span = match (report.first_seq, report.last_seq) {
                    (Some(a), Some(b)) => format!("records {a}–{b}"),
                    _ => format!("no records yet in {}", db.display()),
                };
                let plural =
                    |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                out(format!(
                    "audit trail: OK — {} ({}, {}){}",
                    span,
                    plural(report.records, "record"),
                    plural(report.checkpoints, "checkpoint"),
                    report.pruned_up_to.map_or(String::new(), |p| format!(
                        ", pruned up to {p} by a signed marker"
                    )),
                ));
                if report.unsealed > 0 {
                    out(format!(
                        "{} records after the last checkpoint are not sealed yet (a gateway is running, or one stopped without sealing)",
                        report.unsealed
                    ));
                }
                out(format!(
                    "signed by: {}",
                    report.keys.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            Ok(if report.problem.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => {
            let mut newest = store
                .audit_read(AuditQuery {
                    newest_first: true,
                    limit: *lines,
                    ..Default::default()
                })
                .await?;
            newest.reverse();
            let print = |row: &AuditRow| {
                out(if *json {
                    row.body.clone()
                } else {
                    summary(row)
                })
            };
            newest.iter().for_each(print);
            let mut after = newest.last().map_or(0, |r| r.seq);
            if !*follow {
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let rows = store
                    .audit_read(AuditQuery {
                        after,
                        limit: 1_000,
                        ..Default::default()
                    })
                    .await?;
                rows.iter().for_each(print);
                after = rows.last().map_or(after, |r| r.seq);
            }
        }
        AuditCommand::Show { job } => {
            let rows = store
                .audit_read(AuditQuery {
                    job: Some(job.clone()),
                    limit: 1_000,
                    ..Default::default()
                })
                .await?;
            if rows.is_empty() {
                bail!("no audit records for job `{job}`");
            }
            for row in &rows {
                let body: serde_json::Value = serde_json::from_str(&row.body)?;
                out(serde_json::to_string_pretty(&body)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { format, filter } => {
            let opa = match format.as_str() {
                "jsonl" => false,
                "opa" => true,
                _ => bail!("--format `{format}`: use `jsonl` (records) or `opa` (decisions)"),
            };
            let mut query = AuditQuery {
                since_ms: filter.since.as_deref().map(time_arg).transpose()?,
                until_ms: filter.until.as_deref().map(time_arg).transpose()?,
                principal: filter.principal.clone(),
                tool: filter.tool.clone(),
                outcome: filter.outcome.clone(),
                kind: filter.kind.clone(),
                limit: 5_000,
                ..Default::default()
            };
            loop {
                let rows = store.audit_read(query.clone()).await?;
                let Some(last) = rows.last() else {
                    break;
                };
                query.after = last.seq;
                for row in &rows {
                    if !opa {
                        out(line(row));
                    } else if let Some(event) = serde_json::from_str(&row.body)
                        .ok()
                        .and_then(|body| crate::audit::decisions::opa_event(&body))
                    {
                        out(event);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Key { pem } => {
            let audit = existing_audit(config, &store)?;
            out(if *pem {
                audit.signer().public_pem().trim_end().to_string()
            } else {
                audit.public_key().to_string()
            });
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prune { before } => {
            let before = time_arg(before)?;
            let audit = existing_audit(config, &store)?;
            match audit.prune(before).await? {
                Some(n) => out(format!(
                    "pruned {n} records older than {}; a signed marker records it",
                    crate::time::rfc3339_ms(before)
                )),
                None => out("nothing to prune"),
            }
            audit.checkpoint().await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
