//! `portcullis approvals list | show ID | approve ID --as NAME | deny ID --as NAME --reason …`:
//! operators act on pending calls, against the same store the gateway uses (it may be running).
//!
//! `--as` names a principal from the configuration: its roles decide whether it may approve.
//! Whoever can run this command can read the gateway's data directory and configuration, so
//! the CLI trusts them to say who they are; remote approvers use the admin API instead.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use serde_json::json;

use crate::approvals::{VoteError, status_message, vote};
use crate::config::Config;
use crate::state::{Approval, ApprovalStatus, Store, now, sqlite::SqliteStore};
use crate::time::rfc3339;

use super::out;

#[derive(Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// Pending approvals, newest first (`--all` for every status).
    List {
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One approval in full: the exact arguments, the tool's annotations, the decision's
    /// reasons and grants, the votes.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending call as a configured principal.
    Approve {
        id: String,
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a pending call as a configured principal.
    Deny {
        id: String,
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: String,
        #[arg(long)]
        reason: String,
    },
}

fn summary(a: &Approval, at: u64) -> String {
    let state = if a.expired(at) && matches!(a.status, ApprovalStatus::Pending) {
        "expired".to_string()
    } else {
        a.status.as_str().to_string()
    };
    format!(
        "{}  {:<9} {:<16} by {:<12} {}  ({})",
        a.id,
        state,
        a.tool,
        a.principal,
        a.environment,
        status_message(a)
    )
}

/// The approval as an operator reads it.
pub fn detail(a: &Approval) -> serde_json::Value {
    json!({
        "id": a.id,
        "status": a.status,
        "state": status_message(a),
        "expired": a.expired(now()),
        "tool": a.tool,
        "component": a.component,
        "component_digest": a.component_digest,
        "principal": a.principal,
        "environment": a.environment,
        "arguments": a.args,
        "annotations": a.annotations,
        "requirement": a.requirement,
        "reasons": a.reasons,
        "grants": a.grants,
        "plan_hash": a.plan_hash,
        "policy_digest": a.policy_digest,
        "created_at": rfc3339(a.created_at),
        "expires_at": rfc3339(a.expires_at),
        "votes": a.votes.iter().map(|v| json!({
            "approver": v.approver, "roles": v.roles, "approve": v.approve,
            "reason": v.reason, "at": rfc3339(v.at), "origin": v.origin,
        })).collect::<Vec<_>>(),
    })
}

fn origin() -> String {
    format!("cli (uid {})", rustix::process::getuid().as_raw())
}

pub async fn run(config: &Config, command: &ApprovalsCommand) -> Result<ExitCode> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
        &config.data_dir,
        config.state.durability,
    )?);
    match command {
        ApprovalsCommand::List { all, json } => {
            let status = (!all).then_some(ApprovalStatus::Pending);
            let at = now();
            let mut approvals = store.approvals(status, 500).await?;
            if !all {
                approvals.retain(|a| !a.expired(at));
            }
            if *json {
                let list: Vec<_> = approvals.iter().map(detail).collect();
                out(serde_json::to_string_pretty(&list)?);
            } else if approvals.is_empty() {
                out(if *all {
                    "no approvals"
                } else {
                    "no pending approvals"
                });
            } else {
                for a in &approvals {
                    out(summary(a, at));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, json } => {
            let a = store
                .approval(id.clone())
                .await?
                .ok_or_else(|| anyhow!("no approval `{id}`"))?;
            if *json {
                out(serde_json::to_string_pretty(&detail(&a))?);
            } else {
                out(summary(&a, now()));
                out(serde_json::to_string_pretty(&detail(&a))?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve {
            id,
            principal,
            reason,
        } => cast(config, &store, id, principal, true, reason.clone()).await,
        ApprovalsCommand::Deny {
            id,
            principal,
            reason,
        } => cast(config, &store, id, principal, false, Some(reason.clone())).await,
    }
}

async fn cast(
    config: &Config,
    store: &Arc<dyn Store>,
    id: &str,
    principal: &str,
    approve: bool,
    reason: Option<String>,
) -> Result<ExitCode> {
    let voter = config
        .principal(principal, "cli")
        .with_context(|| format!("--as `{principal}`: no such principal in the configuration"))?;
    match vote(store, id, &voter, approve, reason, origin()).await {
        Ok(a) => {
            out(summary(&a, now()));
            let audit = crate::audit::Audit::open(&config.audit, &config.data_dir, store.clone())?;
            audit
                .append(vec![crate::audit::records::vote(&a, &voter.id, &origin())])
                .await?;
            audit.checkpoint().await?;
            let webhook = super::webhook_for(config)?;
            crate::gate::approval::voted(webhook.as_ref(), &a);
            if let Some(webhook) = webhook {
                webhook.flush(std::time::Duration::from_secs(10)).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VoteError::Store(e)) => Err(e),
        Err(e) => {
            eprintln!("portcullis: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
