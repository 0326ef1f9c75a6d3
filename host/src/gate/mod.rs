//! The governed call: validate → hash → decide → gate → idempotency → approval → rate → run.
//!
//! Every `tools/list` entry and every `tools/call` passes through here, whatever the transport.
//! Policy sees the tool as the component describes it and the arguments as they were parsed
//! once; the tool receives exactly those arguments, canonicalised, in an instance that holds
//! exactly what the decision granted.

pub mod approval;
pub mod args;
mod budget;
mod error;
mod follow;
pub mod idempotency;
mod items;
mod output;
mod rate;
mod run;
mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tracing::Instrument;

use crate::catalog::{Catalog, Live, Reloaded, ToolEntry};
use crate::grants::Limits;
use crate::policy::types::ApprovalSeen;
use crate::policy::{
    Action, Decision, INPUT_VERSION, Policy, PolicyInput, Principal, RequestContext, ToolFacts,
};
use crate::runner::{RunReport, Runner};
use crate::state::{Store, Usage};
use crate::telemetry::STAGE;

pub use args::{ArgsCaps, ArgsError, Arguments};
pub use error::GateError;
pub use idempotency::MAX_KEY_BYTES;
pub use items::{CompleteRef, ItemOutcome};
pub use spans::{decision_name, finish as finish_span};

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
    /// How long an idempotency key's outcome is kept, in seconds.
    pub idempotency_retention_s: u64,
    /// How long the MCP layer holds a call that waits for approval before answering "pending".
    pub approval_hold: std::time::Duration,
}

/// A call that ran to completion.
#[derive(Debug)]
pub struct CallOutcome {
    /// The job id: the call's records in the audit trail (`portcullis audit show`).
    pub job: String,
    /// The W3C trace id the call belongs to.
    pub trace_id: String,
    pub plan_hash: String,
    /// The policy bundle that decided.
    pub policy_digest: Arc<str>,
    pub decision: Decision,
    pub limits: Limits,
    pub report: RunReport,
    /// The idempotency key, and whether this outcome is the stored one of an earlier run.
    pub idempotency: Option<KeyUse>,
}

/// How a call used its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    pub key: String,
    pub replayed: bool,
}

/// Finds a configured principal by id and authentication method.
pub type PrincipalLookup = dyn Fn(&str, &'static str) -> Option<Principal> + Send + Sync;

/// What the agent sent with a call besides its arguments: an idempotency key, a trace context.
#[derive(Clone, Debug, Default)]
pub struct Asked {
    pub idempotency_key: Option<String>,
    /// The agent's W3C trace context (`_meta.traceparent`); `None` starts a new trace.
    pub trace: Option<crate::telemetry::TraceContext>,
    /// The agent's OAuth access token, for grants that inject a token exchanged for it.
    pub subject_token: Option<crate::delegation::SubjectToken>,
}

impl Asked {
    /// Just an idempotency key (or none).
    pub fn key(idempotency_key: Option<String>) -> Self {
        Self {
            idempotency_key,
            trace: None,
            subject_token: None,
        }
    }
}

/// How the caller reached the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
    Cli,
}

impl Transport {
    pub fn name(self) -> &'static str {
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

/// The catalog, the policy, the state store and the runner, joined by the pipeline.
pub struct Gateway {
    /// The catalog in force; a reload swaps it whole.
    pub catalog: Live,
    pub policy: Policy,
    pub runner: Runner,
    pub settings: GateSettings,
    pub state: Arc<dyn Store>,
    /// This process among the store's users, held for as long as it lives.
    owner: Arc<crate::state::Lease>,
    inflight: Arc<idempotency::InFlight>,
    budgets: budget::Budgets,
    /// Where approval events go, if configured.
    webhook: Option<crate::webhook::Webhook>,
    /// The configured principals, for calls run later on someone's behalf (tasks).
    principals: Option<Arc<PrincipalLookup>>,
    /// Where every call, refusal and approval event is recorded.
    pub audit: Arc<crate::audit::Audit>,
    pub metrics: Arc<crate::metrics::Metrics>,
    requests: AtomicU64,
    /// What followers hear of (`follow.rs`).
    follow: follow::Follow,
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
    pub fn new(
        catalog: Catalog,
        policy: Policy,
        runner: Runner,
        settings: GateSettings,
        state: Arc<dyn Store>,
        owner: crate::state::Lease,
    ) -> anyhow::Result<Self> {
        let audit = Arc::new(crate::audit::Audit::off(state.clone())?);
        Ok(Self {
            catalog: Live::fixed(catalog),
            policy,
            runner,
            settings,
            state,
            audit,
            metrics: Arc::new(crate::metrics::Metrics::new()?),
            owner: Arc::new(owner),
            inflight: Arc::default(),
            budgets: budget::Budgets::default(),
            webhook: None,
            principals: None,
            requests: AtomicU64::new(0),
            follow: follow::Follow::default(),
        })
    }

    /// Makes the catalog reloadable from the tool directory it was loaded from.
    pub fn reloadable_from(
        mut self,
        dir: &std::path::Path,
        cache_dir: Option<&std::path::Path>,
    ) -> Self {
        self.catalog = self.catalog.reloadable_from(dir, cache_dir);
        self
    }

    /// Reloads the policy bundle (see [`Policy::reload`]) and tells the clients that follow
    /// changes.
    pub fn reload_policy(&self) -> anyhow::Result<()> {
        self.policy.reload()?;
        self.announce_change();
        Ok(())
    }

    /// Reloads the tool directory (see [`Live::reload`]) and, if anything changed, tells the
    /// clients that follow changes.
    pub async fn reload_catalog(&self) -> anyhow::Result<Reloaded> {
        let reloaded = self.catalog.reload(&self.runner).await?;
        if reloaded.changed_anything() {
            self.announce_change();
        }
        Ok(reloaded)
    }

    /// Looks principals up with `lookup` (by id and how they authenticated).
    pub fn with_principals(mut self, lookup: Arc<PrincipalLookup>) -> Self {
        self.principals = Some(lookup);
        self
    }

    /// The principal `id` as configured now, if it still is.
    pub fn current_principal(&self, id: &str, how: &'static str) -> Option<Principal> {
        self.principals.as_ref().and_then(|lookup| lookup(id, how))
    }

    /// Records calls, refusals and approval events in `audit`.
    pub fn with_audit(mut self, audit: Arc<crate::audit::Audit>) -> Self {
        self.audit = audit;
        self
    }

    /// Sends approval events to `webhook`.
    pub fn with_webhook(mut self, webhook: Option<crate::webhook::Webhook>) -> Self {
        self.webhook = webhook;
        self
    }

    /// This process's owner id in the store.
    pub fn owner_id(&self) -> &str {
        self.owner.id()
    }

    /// Whether the gateway process holding `owner` is alive.
    pub fn owner_alive(&self, owner: &str) -> bool {
        self.owner.alive(owner)
    }

    /// A new request's context; its `request_id` is the job id of the audit trail, unique
    /// across the processes sharing the store.
    fn context(&self, transport: Transport, asked: Asked) -> RequestContext {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        RequestContext {
            time: crate::time::now_rfc3339(),
            request_id: format!("{}-{n}", self.owner.id()),
            transport: transport.name(),
            idempotency_key: asked.idempotency_key,
            trace: asked
                .trace
                .unwrap_or_else(crate::telemetry::TraceContext::current),
            subject_token: asked.subject_token,
        }
    }

    fn may_list(&self, principal: &Principal, tool: ToolFacts, context: &RequestContext) -> bool {
        self.may_see(principal, Some(tool), None, None, context)
    }

    /// The `list` decision about one tool, resource or prompt (exactly one is given).
    fn may_see(
        &self,
        principal: &Principal,
        tool: Option<ToolFacts>,
        resource: Option<crate::policy::ResourceFacts>,
        prompt: Option<crate::policy::PromptFacts>,
        context: &RequestContext,
    ) -> bool {
        let input = PolicyInput {
            version: INPUT_VERSION,
            action: Action::List,
            principal,
            tool,
            resource,
            prompt,
            args: None,
            plan_hash: None,
            environment: &self.settings.environment,
            context,
            usage: None,
            approvals: None,
        };
        self.policy.decide(&input).allow
    }

    /// The tools `principal` may see (policy action `list`), sorted by name.
    pub fn visible_tools(
        &self,
        principal: &Principal,
        transport: Transport,
    ) -> Vec<Arc<ToolEntry>> {
        let context = self.context(transport, Asked::default());
        self.catalog
            .current()
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
    /// `asked.idempotency_key` is the agent's, checked here and shown to policy.
    pub async fn plan(
        &self,
        principal: &Principal,
        tool_name: &str,
        raw: RawArgs<'_>,
        transport: Transport,
        asked: Asked,
    ) -> Result<Plan, GateError> {
        let checked = asked
            .idempotency_key
            .as_deref()
            .map_or(Ok(()), idempotency::check_key);
        let context = self.context(transport, asked);
        let job = context.request_id.clone();
        // On the request span (`spans.rs`), for refusals as for runs.
        tracing::Span::current().record("portcullis.job", job.as_str());
        let trace_id = context.trace.trace_id.clone();
        let planned = match checked {
            Ok(()) => self.plan_in(principal, tool_name, raw, context).await,
            Err(e) => Err(e),
        };
        if let Err(error) = &planned {
            let catalog = self.catalog.current();
            let known = catalog.get(tool_name).map(|t| t.descriptor.name.as_str());
            self.metrics
                .refused(known, crate::audit::records::refusal_code(error));
            let who = self.subject(&job, &trace_id, principal, transport.name(), tool_name);
            let refused = crate::audit::records::refused(&who, None, error, &Default::default());
            self.audit.record(refused).await;
        }
        planned
    }

    /// Who is asking for what, for the audit records of one call.
    pub(crate) fn subject<'a>(
        &'a self,
        job: &'a str,
        trace_id: &'a str,
        principal: &'a Principal,
        transport: &'a str,
        tool: &'a str,
    ) -> crate::audit::records::Subject<'a> {
        crate::audit::records::Subject {
            job,
            principal,
            transport,
            environment: &self.settings.environment,
            tool,
            trace_id,
        }
    }

    async fn plan_in(
        &self,
        principal: &Principal,
        tool_name: &str,
        raw: RawArgs<'_>,
        context: RequestContext,
    ) -> Result<Plan, GateError> {
        let catalog = self.catalog.current();
        let found = catalog.get(tool_name);
        let tool_facts = found.map_or_else(|| placeholder(tool_name), |tool| facts(tool));
        let no_paths = Vec::new();
        let path_fields = found.map_or(&no_paths, |tool| &tool.path_fields);
        // Whether the refusal must say "unknown tool" (and the `list` evaluation it costs).
        let unknown = || {
            let visible = self.may_list(principal, tool_facts.clone(), &context);
            (found.is_none() || !visible).then(|| GateError::UnknownTool(tool_name.to_string()))
        };
        let arguments = {
            let _validate = tracing::info_span!(target: STAGE, "validate").entered();
            let checked = match raw {
                RawArgs::Text(text) => args::from_text(text, self.settings.args, path_fields),
                RawArgs::Object(object) => {
                    args::from_object(object, self.settings.args, path_fields)
                }
            };
            let arguments = match checked {
                Ok(arguments) => arguments,
                Err(e) => return Err(unknown().unwrap_or(e.into())),
            };
            let problems = found.map(|tool| schema_problems(tool, &arguments.value));
            if let Some(problems) = problems.filter(|p| !p.is_empty()) {
                return Err(unknown().unwrap_or(GateError::Schema(problems)));
            }
            arguments
        };
        let plan_hash = args::plan_hash(
            &tool_facts.name,
            &tool_facts.digest,
            &arguments.value,
            &principal.id,
            &self.settings.environment,
        );
        let usage = match found {
            Some(_) if self.policy.reads_usage() => Some(
                self.state
                    .usage(
                        principal.id.clone(),
                        tool_name.to_string(),
                        crate::state::now(),
                    )
                    .instrument(
                        tracing::info_span!(target: STAGE, "state", portcullis.read = "usage"),
                    )
                    .await
                    .map_err(|e| GateError::State(format!("{e:#}")))?,
            ),
            _ => None,
        };
        let input = PolicyInput {
            version: INPUT_VERSION,
            action: Action::Call,
            principal,
            tool: Some(tool_facts.clone()),
            resource: None,
            prompt: None,
            args: Some(&arguments.value),
            plan_hash: Some(&plan_hash),
            environment: &self.settings.environment,
            context: &context,
            usage: usage.as_ref(),
            approvals: None,
        };
        let stage = tracing::info_span!(
            target: STAGE,
            "decide",
            portcullis.plan_hash = plan_hash.as_str(),
            portcullis.decision = tracing::field::Empty,
            portcullis.policy.digest = tracing::field::Empty,
        );
        let deciding = std::time::Instant::now();
        let (decision, policy_digest) = stage.in_scope(|| self.policy.decide_in_bundle(&input));
        let took = deciding.elapsed();
        stage.record("portcullis.decision", decision_name(&decision));
        stage.record("portcullis.policy.digest", &*policy_digest);
        self.metrics.decided(took);
        let decide_ns = took.as_nanos() as u64;
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
            policy_digest,
            context,
            usage,
            decide_ns,
        })
    }

    /// Decides `plan` again, with the approvals given for it in `input.approvals`.
    fn redecide(
        &self,
        principal: &Principal,
        plan: &mut Plan,
        approvals: &[ApprovalSeen],
    ) -> Result<(), GateError> {
        let input = PolicyInput {
            version: INPUT_VERSION,
            action: Action::Call,
            principal,
            tool: Some(facts(&plan.tool)),
            resource: None,
            prompt: None,
            args: Some(&plan.arguments.value),
            plan_hash: Some(&plan.plan_hash),
            environment: &self.settings.environment,
            context: &plan.context,
            usage: plan.usage.as_ref(),
            approvals: Some(approvals),
        };
        let (decision, digest) = self.policy.decide_in_bundle(&input);
        if digest != plan.policy_digest {
            // The policy was reloaded in between: the approval belongs to the old bundle.
            return Err(GateError::State(
                "the policy was reloaded while this call was being decided; repeat the call".into(),
            ));
        }
        plan.decision = decision;
        Ok(())
    }

    /// Applies the gate to a decision: what the runner cannot honour is a denial, never a
    /// silent narrowing.
    fn gate(&self, decision: &Decision) -> Result<Gated, Vec<String>> {
        let _gate = tracing::info_span!(target: STAGE, "gate").entered();
        if !decision.allow {
            let mut reasons = decision.reasons.clone();
            if reasons.is_empty() {
                reasons.push("denied by policy (no reason given)".into());
            }
            return Err(reasons);
        }
        let mut refusals = Vec::new();
        if let Some(approval) = &decision.requires_approval
            && approval.approvers == 0
        {
            refusals.push("requires_approval.approvers must be at least 1".into());
        }
        let charges = rate::charges(&decision.rate).map_err(|problems| refusals.extend(problems));
        refusals.extend(self.runner.capabilities().check(&decision.grants));
        let limits = decision
            .limits
            .resolve(&self.settings.default_limits, &self.settings.ceilings);
        if let Err(e) = &limits {
            refusals.push(e.clone());
        }
        match (limits, charges) {
            (Ok(limits), Ok(charges)) if refusals.is_empty() => Ok(Gated { limits, charges }),
            _ => Err(refusals),
        }
    }
}

/// What the gate lets through: the effective limits and the decision's rate rules as charges.
pub(crate) struct Gated {
    pub limits: Limits,
    pub charges: rate::Charges,
}

/// A validated, decided call that has not run.
pub struct Plan {
    pub tool: Arc<ToolEntry>,
    pub arguments: Arguments,
    pub plan_hash: String,
    pub decision: Decision,
    /// The policy bundle that decided: approvals are bound to it.
    pub policy_digest: Arc<str>,
    pub context: RequestContext,
    pub usage: Option<Usage>,
    /// How long the policy took to decide, in nanoseconds (for the decision log).
    pub decide_ns: u64,
}
