//! The stages after the decision: gate → idempotency → approval → delegate → admit → rate →
//! run → record.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::audit::Redactor;
use crate::audit::records::{self, Facts};
use crate::grants::Limits;
use crate::policy::Principal;
use crate::runner::{CallOutput, Notify, RunError, RunReport};
use crate::state::{StoredOutcome, now};
use crate::telemetry::STAGE;

use super::idempotency::{KeyGuard, Started};
use super::{
    Asked, CallOutcome, GateError, Gated, Gateway, KeyUse, Plan, RawArgs, Transport, output, rate,
};

fn state_error(e: anyhow::Error) -> GateError {
    GateError::State(format!("{e:#}"))
}

impl Gateway {
    /// One governed call: [`Self::plan`], then [`Self::execute`]. Progress and log notices of
    /// the tool go to `notify`, if given.
    pub async fn call(
        self: &Arc<Self>,
        principal: &Principal,
        tool_name: &str,
        raw: RawArgs<'_>,
        transport: Transport,
        asked: Asked,
        notify: Option<Notify>,
    ) -> Result<CallOutcome, GateError> {
        let plan = self
            .plan(principal, tool_name, raw, transport, asked)
            .await?;
        self.execute(principal, plan, notify).await
    }

    /// Gates and runs a plan: exactly what was decided runs, or nothing does. With an
    /// idempotency key the run goes on to its recorded outcome even if the caller goes away.
    ///
    /// Audited: a call that does not run leaves a `refused` record; one that runs, its
    /// `intent` (before) and `outcome` (after).
    pub async fn execute(
        self: &Arc<Self>,
        principal: &Principal,
        plan: Plan,
        notify: Option<Notify>,
    ) -> Result<CallOutcome, GateError> {
        let trail = self.audit.enabled().then(|| {
            let (args, redactor) = records::redacted_args(&plan);
            Arc::new(Trail {
                facts: Facts::of(&plan, args, &redactor),
                redactor,
            })
        });
        let (job, transport) = (plan.context.request_id.clone(), plan.context.transport);
        let trace_id = plan.context.trace.trace_id.clone();
        let tool = plan.tool.clone();
        let result = self
            .execute_in(principal, plan, notify, trail.clone())
            .await;
        if let Err(error) = &result
            && !matches!(
                error,
                GateError::Run { .. }
                    | GateError::Replayed { .. }
                    | GateError::OutcomeUnrecorded { .. }
            )
        {
            let tool = tool.descriptor.name.as_str();
            self.metrics
                .refused(Some(tool), records::refusal_code(error));
            if let Some(trail) = &trail {
                let who = self.subject(&job, &trace_id, principal, transport, tool);
                let record = records::refused(&who, Some(&trail.facts), error, &trail.redactor);
                self.audit
                    .record(record)
                    .instrument(record_span("refused"))
                    .await;
            }
        }
        result
    }

    async fn execute_in(
        self: &Arc<Self>,
        principal: &Principal,
        plan: Plan,
        notify: Option<Notify>,
        trail: Option<Arc<Trail>>,
    ) -> Result<CallOutcome, GateError> {
        let gated = self.gate_or_deny(principal, &plan)?;
        let Some(key) = plan.context.idempotency_key.clone() else {
            return self
                .run_governed(principal, plan, gated, None, notify, trail)
                .await;
        };
        let started = self
            .inflight
            .begin(
                &self.state,
                &self.owner,
                self.settings.ceilings.timeout + Duration::from_secs(30),
                &principal.id,
                &key,
                &plan.plan_hash,
                self.settings.idempotency_retention_s,
            )
            .instrument(tracing::info_span!(target: STAGE, "idempotency"))
            .await?;
        match started {
            Started::Replay(stored) => {
                if trail.is_some() {
                    let who = self.subject(
                        &plan.context.request_id,
                        &plan.context.trace.trace_id,
                        principal,
                        plan.context.transport,
                        &plan.tool.descriptor.name,
                    );
                    self.audit
                        .record(records::replayed(&who, &plan, &key))
                        .instrument(record_span("replayed"))
                        .await;
                }
                replay(plan, gated.limits, key, &stored)
            }
            Started::Owner(guard) => {
                let gateway = self.clone();
                let principal = principal.clone();
                tokio::spawn(
                    async move {
                        gateway
                            .run_governed(&principal, plan, gated, Some(guard), notify, trail)
                            .await
                    }
                    .in_current_span(),
                )
                .await
                .map_err(|e| GateError::State(format!("the call's task failed: {e}")))?
            }
        }
    }

    fn gate_or_deny(&self, principal: &Principal, plan: &Plan) -> Result<Gated, GateError> {
        self.gate(&plan.decision).map_err(|reasons| {
            // Reasons can quote arguments: they go to the agent (and the audit trail), not the log.
            tracing::info!(tool = plan.tool.descriptor.name.as_str(), principal = %principal.id, plan = %plan.plan_hash, reasons = reasons.len(), "denied");
            GateError::Denied {
                reasons,
                plan_hash: plan.plan_hash.clone(),
            }
        })
    }

    async fn run_governed(
        &self,
        principal: &Principal,
        mut plan: Plan,
        mut gated: Gated,
        mut guard: Option<KeyGuard>,
        notify: Option<Notify>,
        trail: Option<Arc<Trail>>,
    ) -> Result<CallOutcome, GateError> {
        let admitted = self
            .admit_approval(principal, &mut plan)
            .instrument(tracing::info_span!(target: STAGE, "approval"))
            .await?;
        if admitted.consume.is_some() {
            // Decided again with the approvals: gate that decision.
            gated = self.gate_or_deny(principal, &plan)?;
        }
        let Gated { limits, charges } = gated;
        // Before admission, the rate and the key's run: a slow or failing token endpoint holds
        // no slot, uses no rate or approval, and leaves the key free for a retry.
        let delegated = self
            .runner
            .delegate(&plan.decision.grants, plan.context.subject_token.as_ref())
            .await
            .map_err(GateError::Delegation)?;
        let ticket = self
            .runner
            .admit(&principal.id, &limits)
            .instrument(tracing::info_span!(target: STAGE, "admit"))
            .await?;
        self.charge(charges.calls, &charges.fuel)
            .instrument(tracing::info_span!(target: STAGE, "rate"))
            .await?;
        if let Some(id) = &admitted.consume {
            self.consume_approval(id)
                .instrument(
                    tracing::info_span!(target: STAGE, "approval", portcullis.approval = %id),
                )
                .await?;
            tracing::info!(approval = %id, tool = %plan.tool.descriptor.name, "approval consumed");
        }
        let tool_name = plan.tool.descriptor.name.as_str();
        let who = self.subject(
            &plan.context.request_id,
            &plan.context.trace.trace_id,
            principal,
            plan.context.transport,
            tool_name,
        );
        let started_ms = crate::time::now_ms();
        if let Some(trail) = &trail {
            // Durable before the tool runs: no intent, no run.
            let intent = records::intent(
                &who,
                &plan,
                &limits,
                admitted.consume.as_deref(),
                &trail.facts,
                &trail.redactor,
            );
            self.audit
                .append(vec![intent])
                .instrument(record_span("intent"))
                .await
                .map_err(|e| GateError::Unrecorded(format!("{e:#}")))?;
        }
        if let Some(guard) = &mut guard {
            guard.started();
        }
        let running = self.metrics.running();
        let mut report = self
            .runner
            .call_admitted(
                ticket,
                &plan.tool.component.prepared,
                tool_name,
                &plan.arguments.canonical,
                &plan.decision.grants,
                &limits,
                notify,
                &delegated,
            )
            .await;
        drop(running);
        output::enforce_schema(&plan.tool, &mut report);
        self.announce_updates(&plan.tool.component, &report.updated);
        let (code, _) = records::outcome_code(&report);
        self.metrics.ran(
            tool_name,
            code,
            (report.instantiated, report.elapsed - report.instantiated),
            report.fuel_used,
        );
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
        if !charges.fuel.is_empty() || self.policy.reads_usage() {
            // Queued now, in order with everything after it (the next call's budget check sees
            // it), but not waited for: the answer does not depend on it. A crash before its
            // commit loses this one run's usage; see docs/architecture.md ("State").
            let at = now();
            self.budgets.charge(&charges.fuel, report.fuel_used, at);
            let recorded = self.state.record_run(
                principal.id.clone(),
                tool_name.to_string(),
                report.fuel_used,
                charges.fuel,
                at,
            );
            tokio::spawn(async move {
                if let Err(e) = recorded.await {
                    tracing::error!("recording a run's usage failed: {e:#}");
                }
            });
        }
        if let Some(trail) = &trail {
            // Durable before the result is answered: a result the agent saw has its outcome.
            let outcome =
                records::outcome(&who, &plan.plan_hash, &report, started_ms, &trail.redactor);
            let appended = self
                .audit
                .append(vec![outcome])
                .instrument(record_span("outcome"))
                .await;
            if let Err(e) = appended {
                tracing::error!(job = %plan.context.request_id, "recording a call's outcome failed: {e:#}");
                let error = format!("{e:#}");
                if let Some(guard) = guard {
                    // A repeat under the key must not hand out the result the trail lacks.
                    guard.finish(StoredOutcome {
                        result: None,
                        error: Some(format!(
                            "the call ran, but the audit trail could not record its outcome ({error}); its result is withheld"
                        )),
                        fuel_used: report.fuel_used,
                        finished_at: now(),
                    });
                }
                return Err(GateError::OutcomeUnrecorded {
                    plan_hash: plan.plan_hash,
                    error,
                });
            }
        }
        let idempotency = match guard {
            // A round that stopped at a question is not the call's outcome: the retry with
            // the answer runs under the same key.
            Some(guard) if matches!(report.outcome, Err(RunError::Deferred(_))) => {
                guard.release();
                None
            }
            Some(guard) => {
                let key = guard.key().to_string();
                guard.finish(stored(&report));
                Some(KeyUse {
                    key,
                    replayed: false,
                })
            }
            None => None,
        };
        if report.outcome.is_err() {
            return Err(GateError::Run {
                plan_hash: plan.plan_hash,
                report: Box::new(report),
            });
        }
        Ok(CallOutcome {
            job: plan.context.request_id,
            trace_id: plan.context.trace.trace_id,
            plan_hash: plan.plan_hash,
            policy_digest: plan.policy_digest,
            decision: plan.decision,
            limits,
            report,
            idempotency,
        })
    }
}

impl Gateway {
    /// Checks the decision's fuel budgets and charges its call-rate rules: over any, the call
    /// does not run.
    pub(super) async fn charge(
        &self,
        calls: Vec<crate::state::Charge>,
        fuel: &[crate::state::Charge],
    ) -> Result<(), GateError> {
        let at = now();
        if !fuel.is_empty()
            && let Some(limit) = self
                .budgets
                .exhausted(&*self.state, fuel, at)
                .await
                .map_err(state_error)?
        {
            let message = rate::describe(&limit, true, at);
            return Err(GateError::RateLimited { limit, message });
        }
        if !calls.is_empty()
            && let Err(limit) = self.state.charge(calls, at).await.map_err(state_error)?
        {
            let message = rate::describe(&limit, false, at);
            return Err(GateError::RateLimited { limit, message });
        }
        Ok(())
    }
}

/// The span of one audit write (`kind`: intent, outcome, refused, replayed).
fn record_span(kind: &'static str) -> tracing::Span {
    tracing::info_span!(target: STAGE, "record", portcullis.record = kind)
}

/// What the audit records of one call share: the plan's facts and its redactions.
pub(super) struct Trail {
    facts: Facts,
    redactor: Redactor,
}

/// What a keyed run leaves for its repeats.
fn stored(report: &RunReport) -> StoredOutcome {
    let (result, error) = match &report.outcome {
        Ok(output) => (serde_json::to_value(output).ok(), None),
        Err(e) => (None, Some(e.to_string())),
    };
    StoredOutcome {
        result,
        error,
        fuel_used: report.fuel_used,
        finished_at: now(),
    }
}

/// The stored outcome of the earlier run under the same key: nothing runs.
fn replay(
    plan: Plan,
    limits: Limits,
    key: String,
    stored: &StoredOutcome,
) -> Result<CallOutcome, GateError> {
    let output = match (&stored.result, &stored.error) {
        (Some(result), None) => serde_json::from_value::<CallOutput>(result.clone())
            .map_err(|e| GateError::State(format!("the stored outcome is unreadable: {e}")))?,
        (_, error) => {
            return Err(GateError::Replayed {
                plan_hash: plan.plan_hash,
                error: error.clone().unwrap_or_else(|| "the call failed".into()),
            });
        }
    };
    Ok(CallOutcome {
        job: plan.context.request_id,
        trace_id: plan.context.trace.trace_id,
        plan_hash: plan.plan_hash,
        policy_digest: plan.policy_digest,
        decision: plan.decision,
        limits,
        report: RunReport::replayed(output, stored.fuel_used, Duration::ZERO),
        idempotency: Some(KeyUse {
            key,
            replayed: true,
        }),
    })
}
