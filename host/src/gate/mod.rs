//! The governed call: validate → hash → decide → gate → run.
//!
//! Every `tools/list` entry and every `tools/call` passes through here, whatever the transport.
//! Policy sees the tool as the component describes it and the arguments as they were parsed
//! once; the tool receives exactly those arguments, canonicalised, in an instance that holds
//! exactly what the decision granted.

pub mod args;
mod output;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::catalog::{Catalog, ToolEntry};
use crate::grants::Limits;
use crate::policy::{
    Action, Decision, INPUT_VERSION, Policy, PolicyInput, Principal, RequestContext, ToolFacts,
};
use crate::runner::{Notify, RunReport, Runner};

pub use args::{ArgsCaps, ArgsError, Arguments};

/// Gateway-wide settings for the pipeline.
#[derive(Clone, Debug)]
pub struct GateSettings {
    /// e.g. `dev`, `staging`, `prod`: given to policy, part of the plan hash.
    pub environment: String,
    /// Limits for anything the decision leaves unset.
    pub default_limits: Limits,
    /// The most any decision may grant.
    pub ceilings: Limits,
    pub args: ArgsCaps,
}

/// Why a call did not run (or ran and failed). Each case maps to one MCP answer.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No such tool, or one this principal may not see: the same answer for both.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    #[error("invalid arguments: {0}")]
    Arguments(#[from] ArgsError),
    #[error("the arguments do not match the tool's input schema: {}", .0.join("; "))]
    Schema(Vec<String>),
    #[error("denied by policy: {}", .reasons.join("; "))]
    Denied {
        reasons: Vec<String>,
        plan_hash: String,
    },
    /// No room to run the call within the admission wait: retry shortly.
    #[error(transparent)]
    Busy(#[from] crate::runner::Busy),
    /// The call ran and failed; `report.outcome` holds the error.
    #[error("{}", run_error(report))]
    Run {
        plan_hash: String,
        report: Box<RunReport>,
    },
}

/// A call that ran to completion.
#[derive(Debug)]
pub struct CallOutcome {
    pub plan_hash: String,
    pub decision: Decision,
    pub limits: Limits,
    pub report: RunReport,
}

/// How the caller reached the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
    Cli,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Http => "http",
            Self::Cli => "cli",
        }
    }
}

/// The arguments of one call, as the transport has them.
pub enum RawArgs<'a> {
    /// JSON text (the CLI): caps apply before parsing.
    Text(&'a str),
    /// An object the MCP transport already parsed.
    Object(Option<Map<String, Value>>),
}

/// The catalog, the policy and the runner, joined by the pipeline.
pub struct Gateway {
    pub catalog: Catalog,
    pub policy: Policy,
    pub runner: Runner,
    pub settings: GateSettings,
    requests: AtomicU64,
}

/// Current time as RFC 3339 (UTC, seconds).
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Up to eight schema violations, each with where it is (values masked: they may be secret).
pub fn schema_problems(tool: &ToolEntry, value: &Value) -> Vec<String> {
    tool.validator
        .iter_errors(value)
        .take(8)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() {
                "(root)".to_string()
            } else {
                at
            };
            format!("{at}: {}", e.masked())
        })
        .collect()
}

fn facts(tool: &ToolEntry) -> ToolFacts {
    ToolFacts {
        name: tool.descriptor.name.clone(),
        component: tool.component.name.clone(),
        digest: tool.component.digest.clone(),
        descriptor_digest: tool.descriptor.digest.clone(),
        annotations: tool.descriptor.annotations,
    }
}

/// The facts about a tool that does not exist, for refusing it the way a hidden one is refused.
fn placeholder(name: &str) -> ToolFacts {
    ToolFacts {
        name: name.to_string(),
        component: String::new(),
        digest: String::new(),
        descriptor_digest: String::new(),
        annotations: Default::default(),
    }
}

impl Gateway {
    pub fn new(catalog: Catalog, policy: Policy, runner: Runner, settings: GateSettings) -> Self {
        Self {
            catalog,
            policy,
            runner,
            settings,
            requests: AtomicU64::new(0),
        }
    }

    fn context(&self, transport: Transport) -> RequestContext {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        RequestContext {
            time: now_rfc3339(),
            request_id: format!("{}-{n}", std::process::id()),
            transport: transport.name(),
        }
    }

    fn may_list(&self, principal: &Principal, tool: ToolFacts, context: &RequestContext) -> bool {
        let input = PolicyInput {
            version: INPUT_VERSION,
            action: Action::List,
            principal,
            tool,
            args: None,
            plan_hash: None,
            environment: &self.settings.environment,
            context,
        };
        self.policy.decide(&input).allow
    }

    /// The tools `principal` may see (policy action `list`), sorted by name.
    pub fn visible_tools(
        &self,
        principal: &Principal,
        transport: Transport,
    ) -> Vec<Arc<ToolEntry>> {
        let context = self.context(transport);
        self.catalog
            .tools()
            .filter(|tool| self.may_list(principal, facts(tool), &context))
            .cloned()
            .collect()
    }

    /// Looks up, validates, hashes and decides, without running: what `call` would do.
    ///
    /// A tool the principal may not list (policy action `list`) is reported as unknown whenever
    /// the call does not go ahead — bad arguments or a denial — so nothing reveals that it
    /// exists. A tool that does not exist goes through the same steps (with a placeholder for
    /// the tool: no schema, no component) before it is reported unknown, so both refusals cost
    /// the same. An allowed call costs one policy evaluation; `list` is consulted on failure.
    pub fn plan(
        &self,
        principal: &Principal,
        tool_name: &str,
        raw: RawArgs<'_>,
        transport: Transport,
    ) -> Result<Plan, GateError> {
        let context = self.context(transport);
        let found = self.catalog.get(tool_name);
        let tool_facts = found.map_or_else(|| placeholder(tool_name), |tool| facts(tool));
        let no_paths = Vec::new();
        let path_fields = found.map_or(&no_paths, |tool| &tool.path_fields);
        // Whether the refusal must say "unknown tool" (and the `list` evaluation it costs).
        let unknown = || {
            let visible = self.may_list(principal, tool_facts.clone(), &context);
            (found.is_none() || !visible).then(|| GateError::UnknownTool(tool_name.to_string()))
        };
        let checked = match raw {
            RawArgs::Text(text) => args::from_text(text, self.settings.args, path_fields),
            RawArgs::Object(object) => args::from_object(object, self.settings.args, path_fields),
        };
        let arguments = match checked {
            Ok(arguments) => arguments,
            Err(e) => return Err(unknown().unwrap_or(e.into())),
        };
        let problems = found.map(|tool| schema_problems(tool, &arguments.value));
        if let Some(problems) = problems.filter(|p| !p.is_empty()) {
            return Err(unknown().unwrap_or(GateError::Schema(problems)));
        }
        let plan_hash = args::plan_hash(
            &tool_facts.name,
            &tool_facts.digest,
            &arguments.value,
            &principal.id,
            &self.settings.environment,
        );
        let input = PolicyInput {
            version: INPUT_VERSION,
            action: Action::Call,
            principal,
            tool: tool_facts.clone(),
            args: Some(&arguments.value),
            plan_hash: Some(&plan_hash),
            environment: &self.settings.environment,
            context: &context,
        };
        let decision = self.policy.decide(&input);
        let tool = match found {
            Some(tool) if decision.allow => tool.clone(),
            _ => {
                if let Some(refusal) = unknown() {
                    return Err(refusal);
                }
                // Known and visible, but denied: the gate reports the policy's reasons.
                found
                    .cloned()
                    .ok_or_else(|| GateError::UnknownTool(tool_name.to_string()))?
            }
        };
        Ok(Plan {
            tool,
            arguments,
            plan_hash,
            decision,
        })
    }

    /// Applies the gate to a decision: what the runner cannot honour is a denial, never a
    /// silent narrowing.
    fn gate(&self, decision: &Decision) -> Result<Limits, Vec<String>> {
        if !decision.allow {
            let mut reasons = decision.reasons.clone();
            if reasons.is_empty() {
                reasons.push("denied by policy (no reason given)".into());
            }
            return Err(reasons);
        }
        let mut refusals = Vec::new();
        if let Some(approval) = &decision.requires_approval {
            refusals.push(format!(
                "the policy requires approval by {} approver(s) ({}), and approvals are not available in this version",
                approval.approvers, approval.reason
            ));
        }
        if !decision.rate.is_empty() {
            refusals.push(
                "the policy sets rate limits, and rate limits are not enforced in this version"
                    .into(),
            );
        }
        refusals.extend(self.runner.capabilities().check(&decision.grants));
        let limits = decision
            .limits
            .resolve(&self.settings.default_limits, &self.settings.ceilings);
        if let Err(e) = &limits {
            refusals.push(e.clone());
        }
        match limits {
            Ok(limits) if refusals.is_empty() => Ok(limits),
            _ => Err(refusals),
        }
    }

    /// One governed call: [`Self::plan`], then [`Self::execute`]. Progress and log notices of
    /// the tool go to `notify`, if given.
    pub async fn call(
        &self,
        principal: &Principal,
        tool_name: &str,
        raw: RawArgs<'_>,
        transport: Transport,
        notify: Option<Notify>,
    ) -> Result<CallOutcome, GateError> {
        let plan = self.plan(principal, tool_name, raw, transport)?;
        self.execute(principal, plan, notify).await
    }

    /// Gates and runs a plan: exactly what was decided runs, or nothing does.
    pub async fn execute(
        &self,
        principal: &Principal,
        plan: Plan,
        notify: Option<Notify>,
    ) -> Result<CallOutcome, GateError> {
        let tool_name = plan.tool.descriptor.name.as_str();
        let limits = match self.gate(&plan.decision) {
            Ok(limits) => limits,
            Err(reasons) => {
                // Reasons can quote arguments: they go to the agent (and the audit trail), not the log.
                tracing::info!(tool = tool_name, principal = %principal.id, plan = %plan.plan_hash, reasons = reasons.len(), "denied");
                return Err(GateError::Denied {
                    reasons,
                    plan_hash: plan.plan_hash,
                });
            }
        };
        let ticket = self.runner.admit(&principal.id, &limits).await?;
        let mut report = self
            .runner
            .call_admitted(
                ticket,
                &plan.tool.component.prepared,
                &plan.tool.descriptor.name,
                &plan.arguments.canonical,
                &plan.decision.grants,
                &limits,
                notify,
            )
            .await;
        output::enforce_schema(&plan.tool, &mut report);
        tracing::info!(
            tool = tool_name,
            principal = %principal.id,
            plan = %plan.plan_hash,
            fuel = report.fuel_used,
            elapsed_us = report.elapsed.as_micros() as u64,
            ok = report.outcome.is_ok(),
            egress = report.egress.len(),
            "call"
        );
        if report.outcome.is_err() {
            return Err(GateError::Run {
                plan_hash: plan.plan_hash,
                report: Box::new(report),
            });
        }
        Ok(CallOutcome {
            plan_hash: plan.plan_hash,
            decision: plan.decision,
            limits,
            report,
        })
    }
}

fn run_error(report: &RunReport) -> String {
    match &report.outcome {
        Err(error) => error.to_string(),
        Ok(_) => "the call failed".to_string(),
    }
}

/// A validated, decided call that has not run.
pub struct Plan {
    pub tool: Arc<ToolEntry>,
    pub arguments: Arguments,
    pub plan_hash: String,
    pub decision: Decision,
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_is_well_formed() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
}
