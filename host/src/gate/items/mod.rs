//! Resources, prompts and completion, governed like tool calls: look up → check arguments →
//! decide (`read`, `get`, `complete`) → gate → delegate → admit → rate → record intent → run
//! in a fresh instance holding only the decision's grants → record outcome.
//!
//! Listing is the policy's `list` action with `input.resource` or `input.prompt`. An item the
//! principal may not list is reported as unknown whenever the request does not go ahead.
//! Approvals and idempotency keys are for tool calls: a decision that asks for approval here is
//! refused (nothing waits), and a read is not keyed.

use serde_json::{Map, Value, json};
use tracing::Instrument;

mod target;

use super::{Asked, GateError, Gateway, Transport, args};
use crate::audit::Redactor;
use crate::audit::records::{self, Facts};
use crate::policy::{Action, INPUT_VERSION, PolicyInput, Principal};
use crate::runner::{
    Answer, CompletionOutput, CompletionRequest, CompletionTarget, Request, RunError, RunReport,
};
use crate::telemetry::STAGE;
use target::Target;

/// A read, prompt or completion that ran.
#[derive(Debug)]
pub struct ItemOutcome {
    pub job: String,
    pub plan_hash: String,
    pub answer: Answer,
}

/// What a completion is for, as the client named it.
pub enum CompleteRef<'a> {
    Prompt(&'a str),
    Template(&'a str),
}
/// No such item, or one the principal may not see.
pub(super) fn unknown(kind: &'static str, name: &str) -> GateError {
    GateError::UnknownItem {
        kind,
        name: name.to_string(),
    }
}

/// Argument values as strings (MCP's prompt arguments and completion context are strings).
fn strings(object: &Value) -> Result<Vec<(String, String)>, GateError> {
    let mut out = Vec::new();
    for (name, value) in object.as_object().into_iter().flatten() {
        let Value::String(text) = value else {
            return Err(GateError::Schema(vec![format!(
                "/{name}: arguments are strings"
            )]));
        };
        out.push((name.clone(), text.clone()));
    }
    Ok(out)
}
impl Gateway {
    /// `resources/read`: the fixed resource or the template `uri` leads to, read in a fresh
    /// instance under the `read` decision.
    pub async fn read_resource(
        &self,
        principal: &Principal,
        uri: &str,
        transport: Transport,
        asked: Asked,
    ) -> Result<ItemOutcome, GateError> {
        let (target, template, variables) = self.resolve(uri)?;
        let args: Map<String, Value> = variables
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let request = Request::Read {
            uri,
            template: template.as_deref(),
            variables: &variables,
        };
        self.serve(
            principal,
            Action::Read,
            target,
            Value::Object(args),
            &request,
            transport,
            asked,
        )
        .await
    }

    /// `prompts/get`: the prompt's messages, produced in a fresh instance under the `get`
    /// decision. Arguments are strings; required ones must be there, undeclared ones may not.
    pub async fn get_prompt(
        &self,
        principal: &Principal,
        name: &str,
        arguments: Option<Map<String, Value>>,
        transport: Transport,
        asked: Asked,
    ) -> Result<ItemOutcome, GateError> {
        let catalog = self.catalog.current();
        let entry = catalog
            .prompt(name)
            .ok_or_else(|| unknown("prompt", name))?;
        let target = Target::prompt(entry);
        let checked = args::from_object(arguments, self.settings.args, &[])?;
        let given = strings(&checked.value)?;
        let mut problems: Vec<String> = entry
            .arguments
            .iter()
            .filter(|a| a.required && !given.iter().any(|(n, _)| n == &a.name))
            .map(|a| format!("the required argument `{}` is missing", a.name))
            .collect();
        problems.extend(
            given
                .iter()
                .filter(|(n, _)| !entry.arguments.iter().any(|a| &a.name == n))
                .map(|(n, _)| format!("the prompt has no argument `{n}`")),
        );
        if !problems.is_empty() {
            return Err(self.hidden_or(principal, &target, transport, GateError::Schema(problems)));
        }
        let request = Request::Get {
            name,
            arguments: &given,
        };
        self.serve(
            principal,
            Action::Get,
            target,
            checked.value,
            &request,
            transport,
            asked,
        )
        .await
    }

    /// `completion/complete` for a prompt argument or a template variable, under the
    /// `complete` decision. A component that offers no completion answers nothing, without
    /// running.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete(
        &self,
        principal: &Principal,
        reference: CompleteRef<'_>,
        argument: &str,
        value: &str,
        context: Option<Map<String, Value>>,
        transport: Transport,
        asked: Asked,
    ) -> Result<ItemOutcome, GateError> {
        let catalog = self.catalog.current();
        let (target, declared, wit_target) = match reference {
            CompleteRef::Prompt(name) => {
                let entry = catalog
                    .prompt(name)
                    .ok_or_else(|| unknown("prompt", name))?;
                let declared = entry.arguments.iter().any(|a| a.name == argument);
                (
                    Target::prompt(entry),
                    declared,
                    CompletionTarget::Prompt(name.to_string()),
                )
            }
            CompleteRef::Template(text) => {
                let entry = catalog
                    .template(text)
                    .ok_or_else(|| unknown("resource template", text))?;
                let declared = entry.template.variables().any(|v| v == argument);
                let wit_target = CompletionTarget::ResourceTemplate(text.to_string());
                (Target::template(entry, text), declared, wit_target)
            }
        };
        if !declared {
            let problem = format!("`{argument}` is not an argument of {}", target.asked);
            return Err(self.hidden_or(
                principal,
                &target,
                transport,
                GateError::Schema(vec![problem]),
            ));
        }
        let checked = args::from_object(context, self.settings.args, &[])?;
        let given = strings(&checked.value)?;
        let args =
            json!({"argument": {"name": argument, "value": value}, "context": checked.value});
        if !target.component.completes {
            self.hidden_or_ok(principal, &target, transport)?;
            return Ok(ItemOutcome {
                job: String::new(),
                plan_hash: String::new(),
                answer: Answer::Complete(CompletionOutput {
                    values: Vec::new(),
                    total: Some(0),
                    has_more: false,
                }),
            });
        }
        let asked_for = CompletionRequest {
            target: wit_target,
            argument: argument.to_string(),
            value: value.to_string(),
            context: given,
        };
        let request = Request::Complete(&asked_for);
        self.serve(
            principal,
            Action::Complete,
            target,
            args,
            &request,
            transport,
            asked,
        )
        .await
    }
    /// Decides, gates and runs one item request; audited like a call.
    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        principal: &Principal,
        action: Action,
        target: Target,
        args: Value,
        request: &Request<'_>,
        transport: Transport,
        asked: Asked,
    ) -> Result<ItemOutcome, GateError> {
        let context = self.context(
            transport,
            Asked {
                idempotency_key: None,
                ..asked
            },
        );
        let job = context.request_id.clone();
        let trace_id = context.trace.trace_id.clone();
        let plan_hash = args::plan_hash(
            &target.label,
            &target.component.digest,
            &args,
            &principal.id,
            &self.settings.environment,
        );
        let input = PolicyInput {
            version: INPUT_VERSION,
            action,
            principal,
            tool: None,
            resource: target.resource.clone(),
            prompt: target.prompt.clone(),
            args: Some(&args),
            plan_hash: Some(&plan_hash),
            environment: &self.settings.environment,
            context: &context,
            usage: None,
            approvals: None,
        };
        let deciding = std::time::Instant::now();
        let (decision, policy_digest) = tracing::info_span!(target: STAGE, "decide")
            .in_scope(|| self.policy.decide_in_bundle(&input));
        let decide_ns = deciding.elapsed().as_nanos() as u64;
        self.metrics.decided(deciding.elapsed());
        let mut redacted = args.clone();
        let redactor = if decision.allow {
            Redactor::apply(&mut redacted, &decision.redact)
        } else {
            Redactor::leaves(&mut redacted)
        };
        let facts = Facts::item(
            plan_hash.clone(),
            policy_digest,
            &target.component,
            redacted,
            decide_ns,
            &decision,
            &redactor,
        );
        let who = self.subject(&job, &trace_id, principal, transport.name(), &target.label);
        let result = self
            .serve_decided(
                &target, &decision, request, &context, &who, &facts, &redactor,
            )
            .await;
        let report = match result {
            Ok(report) => report,
            Err(error) => {
                let error = match &error {
                    GateError::Denied { .. } => {
                        self.hidden_or(principal, &target, transport, error)
                    }
                    _ => error,
                };
                self.metrics
                    .refused(Some(&target.label), records::refusal_code(&error));
                let record = records::refused(&who, Some(&facts), &error, &redactor);
                self.audit.record(record).await;
                return Err(error);
            }
        };
        match report.outcome {
            Ok(answer) => Ok(ItemOutcome {
                job,
                plan_hash,
                answer,
            }),
            Err(error) => Err(GateError::Run {
                plan_hash,
                report: Box::new(
                    RunReport::<Answer> {
                        outcome: Err(error),
                        ..report
                    }
                    .map(|_| {
                        Err(RunError::Internal(anyhow::anyhow!(
                            "unreachable: the run failed"
                        )))
                    }),
                ),
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve_decided(
        &self,
        target: &Target,
        decision: &crate::policy::Decision,
        request: &Request<'_>,
        context: &crate::policy::RequestContext,
        who: &records::Subject<'_>,
        facts: &Facts,
        redactor: &Redactor,
    ) -> Result<RunReport<Answer>, GateError> {
        let denied = |reasons| GateError::Denied {
            reasons,
            plan_hash: facts.plan_hash.clone(),
        };
        let gated = self.gate(decision).map_err(denied)?;
        if decision.requires_approval.is_some() {
            return Err(denied(vec![
                "the policy asks for approval, but only tool calls can wait for one; reads, prompts and completions are allowed or denied".into(),
            ]));
        }
        let delegated = self
            .runner
            .delegate(&decision.grants, context.subject_token.as_ref())
            .await
            .map_err(GateError::Delegation)?;
        let ticket = self
            .runner
            .admit(&who.principal.id, &gated.limits)
            .instrument(tracing::info_span!(target: STAGE, "admit"))
            .await?;
        self.charge(gated.charges.calls, &gated.charges.fuel)
            .instrument(tracing::info_span!(target: STAGE, "rate"))
            .await?;
        let started_ms = crate::time::now_ms();
        if self.audit.enabled() {
            let intent = records::item_intent(
                who,
                facts,
                &gated.limits,
                context.trace.parent_id.as_deref(),
            );
            self.audit
                .append(vec![intent])
                .await
                .map_err(|e| GateError::Unrecorded(format!("{e:#}")))?;
        }
        let report = self
            .runner
            .run_admitted(
                ticket,
                &target.component.prepared,
                request,
                &decision.grants,
                &gated.limits,
                None,
                &delegated,
            )
            .await;
        let (code, _) = records::outcome_code(&report);
        self.metrics.ran(
            &target.label,
            code,
            (report.instantiated, report.elapsed - report.instantiated),
            report.fuel_used,
        );
        if !gated.charges.fuel.is_empty() {
            self.budgets
                .charge(&gated.charges.fuel, report.fuel_used, crate::state::now());
        }
        if self.audit.enabled() {
            let outcome = records::outcome(who, &facts.plan_hash, &report, started_ms, redactor);
            self.audit
                .append(vec![outcome])
                .await
                .map_err(|e| GateError::OutcomeUnrecorded {
                    plan_hash: facts.plan_hash.clone(),
                    error: format!("{e:#}"),
                })?;
        }
        Ok(report)
    }
}
