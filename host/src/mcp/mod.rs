//! The MCP side: one rmcp `ServerHandler` served over stdio and streamable HTTP, and the one
//! mapping from gateway outcomes to MCP answers.
//!
//! Following the MCP error split: denials, schema violations and limit hits are tool results
//! with `isError: true` that the model can read and act on; an unknown tool (including one the
//! principal may not see) is a JSON-RPC "invalid params" error, like any unroutable request.

// MCP logging (`logging/setLevel`, `notifications/message`) is deprecated by SEP-2577 but part
// of the revisions clients speak today; rmcp marks its types deprecated.
#![allow(deprecated)]

mod changes;
pub mod drain;
mod hold;
pub mod http;
mod notices;
mod params;
pub mod precheck;
pub mod stdio;
pub mod tasks;
mod throttle;
pub mod tls;

use std::sync::Arc;

use base64::Engine as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CreateTaskResult, ErrorData, GetTaskParams, GetTaskResult, Implementation, InitializeResult,
    ListToolsResult, LoggingLevel, MetaObject, PaginatedRequestParams, ResourceContents,
    ServerCapabilities, SetLevelRequestParams, SubscriptionFilter, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::catalog::ToolEntry;
use crate::gate::{CallOutcome, GateError, Gateway, KeyUse, RawArgs, Transport};
use crate::grants::show_bytes;
use crate::policy::Principal;
use crate::runner::{ContentItem, RunReport};

/// Instructions shown to clients at initialisation.
const INSTRUCTIONS: &str = "portcullis runs each tool in a fresh sandbox with only the \
capabilities policy grants for that call. A result with isError explains a denial or a \
limit; read the reason and adjust the request.";

/// The MCP handler. Cheap to clone: one per connection (stdio) or request (HTTP).
#[derive(Clone)]
pub struct Handler {
    gateway: Arc<Gateway>,
    /// Set for stdio; for HTTP the principal comes with each request.
    principal: Option<Arc<Principal>>,
    transport: Transport,
    /// The level a session set with `logging/setLevel` (stdio; HTTP requests carry theirs).
    log_level: Arc<std::sync::Mutex<Option<LoggingLevel>>>,
}

impl Handler {
    pub fn new(
        gateway: Arc<Gateway>,
        principal: Option<Arc<Principal>>,
        transport: Transport,
    ) -> Self {
        Self {
            gateway,
            principal,
            transport,
            log_level: Arc::default(),
        }
    }

    fn principal(&self, context: &RequestContext<RoleServer>) -> Result<Arc<Principal>, ErrorData> {
        if let Some(principal) = &self.principal {
            return Ok(principal.clone());
        }
        context
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Principal>>())
            .cloned()
            .ok_or_else(|| {
                ErrorData::internal_error("request has no authenticated principal", None)
            })
    }
}

/// A catalog entry as an MCP tool.
pub fn mcp_tool(entry: &ToolEntry) -> Tool {
    let d = &entry.descriptor;
    let object = |value: &Value| match value {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let annotations = ToolAnnotations::new()
        .read_only(d.annotations.read_only)
        .destructive(d.annotations.destructive)
        .idempotent(d.annotations.idempotent)
        .open_world(d.annotations.open_world);
    let mut tool = Tool::new(
        d.name.clone(),
        d.description.clone(),
        Arc::new(object(&d.input_schema)),
    )
    .with_annotations(annotations)
    .with_meta(MetaObject(Map::from_iter([
        ("portcullis/component".into(), json!(entry.component.name)),
        ("portcullis/digest".into(), json!(entry.component.digest)),
    ])));
    if let Some(title) = &d.title {
        tool = tool.with_title(title.clone());
    }
    if let Some(schema) = &d.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(object(schema)));
    }
    tool
}

fn content(item: &ContentItem) -> ContentBlock {
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    match item {
        ContentItem::Text { text } => ContentBlock::text(text.clone()),
        ContentItem::Image { data, mime_type } => ContentBlock::image(b64(data), mime_type.clone()),
        ContentItem::Audio { data, mime_type } => ContentBlock::audio(b64(data), mime_type.clone()),
        ContentItem::Resource {
            uri,
            mime_type,
            text,
            blob,
        } => {
            let contents = match (text, blob) {
                (Some(text), _) => ResourceContents::text(text.clone(), uri.clone()),
                (None, Some(blob)) => ResourceContents::blob(b64(blob), uri.clone()),
                (None, None) => ResourceContents::text(String::new(), uri.clone()),
            };
            let contents = match mime_type {
                Some(mime) => contents.with_mime_type(mime.clone()),
                None => contents,
            };
            ContentBlock::resource(contents)
        }
    }
}

/// Where an agent puts its idempotency key: `params._meta["portcullis/idempotency_key"]`.
pub const IDEMPOTENCY_KEY_META: &str = "portcullis/idempotency_key";

fn meta(plan_hash: Option<&str>, report: Option<&RunReport>) -> Option<MetaObject> {
    let mut map = Map::new();
    if let Some(hash) = plan_hash {
        map.insert("portcullis/plan_hash".into(), json!(hash));
    }
    if let Some(report) = report {
        map.insert("portcullis/fuel_used".into(), json!(report.fuel_used));
        map.insert(
            "portcullis/elapsed_us".into(),
            json!(report.elapsed.as_micros() as u64),
        );
        if !report.egress.is_empty() {
            map.insert("portcullis/egress".into(), json!(report.egress));
        }
    }
    (!map.is_empty()).then_some(MetaObject(map))
}

/// How long a client told "busy" should wait before it tries again.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The largest JSON-RPC message the gateway sends. MCP clients drop longer ones (rmcp's stdio
/// lines and SSE events stop at 16 MiB, silently), so a result that encodes to more is
/// reported as an output limit instead of being sent and lost.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Room for the JSON-RPC envelope around a result.
const ENVELOPE_BYTES: usize = 1024;

/// `Some(size)` when `result` encodes to more than [`MAX_MESSAGE_BYTES`]. Only a call whose
/// output limit allows results near that size pays for measuring.
fn oversized(result: &CallToolResult, output_limit: u64) -> Option<usize> {
    if output_limit < (MAX_MESSAGE_BYTES / 8) as u64 {
        // Escaping at most sextuples text (`\u0000`) and base64 adds a third.
        return None;
    }
    // A result that cannot even be encoded counts as too large.
    let size = serde_json::to_vec(result)
        .map_or(usize::MAX, |bytes| bytes.len())
        .saturating_add(ENVELOPE_BYTES);
    (size > MAX_MESSAGE_BYTES).then_some(size)
}

/// The one mapping from a gateway outcome to an MCP answer.
pub fn to_mcp(result: Result<CallOutcome, GateError>) -> Result<CallToolResult, ErrorData> {
    match result {
        Ok(outcome) => {
            let output = outcome.report.outcome.as_ref().map_err(|e| {
                ErrorData::internal_error(format!("inconsistent outcome: {e}"), None)
            })?;
            let mut result = CallToolResult::success(output.content.iter().map(content).collect());
            result.structured_content = output.structured.clone();
            result.is_error = Some(output.is_error);
            if let Some(size) = oversized(&result, outcome.limits.output_bytes) {
                result = CallToolResult::error(vec![ContentBlock::text(format!(
                    "output limit reached: the result encodes to {} as an MCP message; a message may be at most {}",
                    show_bytes(size as u64),
                    show_bytes(MAX_MESSAGE_BYTES as u64)
                ))]);
            }
            let mut meta =
                meta(Some(&outcome.plan_hash), Some(&outcome.report)).unwrap_or_default();
            meta.insert("portcullis/job".into(), json!(outcome.job));
            meta.insert("portcullis/trace_id".into(), json!(outcome.trace_id));
            meta.insert(
                "portcullis/policy_digest".into(),
                json!(outcome.policy_digest),
            );
            if let Some(KeyUse { key, replayed }) = &outcome.idempotency {
                meta.insert(
                    "portcullis/idempotency".into(),
                    json!({ "key": key, "replayed": replayed }),
                );
            }
            Ok(result.with_meta(Some(meta)))
        }
        Err(GateError::UnknownTool(name)) => Err(ErrorData::invalid_params(
            format!("unknown tool `{name}`"),
            None,
        )),
        Err(
            error @ (GateError::Arguments(_)
            | GateError::Schema(_)
            | GateError::BadKey(_)
            | GateError::Delegation(_)
            | GateError::State(_)
            | GateError::Unrecorded(_)),
        ) => Ok(CallToolResult::error(vec![ContentBlock::text(
            error.to_string(),
        )])),
        Err(ref error @ (GateError::PendingApproval(ref a) | GateError::ApprovalDenied(ref a))) => {
            let mut meta = meta(Some(&a.plan_hash), None).unwrap_or_default();
            meta.insert("portcullis/approval".into(), approval_meta(a));
            Ok(
                CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                    .with_meta(Some(meta)),
            )
        }
        Err(ref error @ GateError::KeyConflict { .. })
        | Err(ref error @ GateError::InDoubt { .. }) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(
                error.to_string(),
            )]))
        }
        Err(ref error @ GateError::RateLimited { ref limit, .. }) => {
            let mut meta = Map::new();
            meta.insert(
                "portcullis/rate_limit".into(),
                json!({ "key": limit.key, "max": limit.max, "window_s": limit.window_s, "used": limit.used, "resets_at": crate::time::rfc3339(limit.resets_at) }),
            );
            Ok(
                CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                    .with_meta(Some(MetaObject(meta))),
            )
        }
        Err(
            ref error @ (GateError::Replayed { ref plan_hash, .. }
            | GateError::OutcomeUnrecorded { ref plan_hash, .. }),
        ) => Ok(
            CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                .with_meta(meta(Some(plan_hash), None)),
        ),
        Err(ref error @ GateError::Denied { ref plan_hash, .. }) => Ok(CallToolResult::error(
            vec![ContentBlock::text(error.to_string())],
        )
        .with_meta(meta(Some(plan_hash), None))),
        Err(error @ GateError::Busy(_)) => {
            let mut meta = Map::new();
            meta.insert(
                "portcullis/retry_after_ms".into(),
                json!(RETRY_AFTER.as_millis() as u64),
            );
            Ok(
                CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                    .with_meta(Some(MetaObject(meta))),
            )
        }
        Err(
            ref error @ GateError::Run {
                ref plan_hash,
                ref report,
            },
        ) => Ok(
            CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                .with_meta(meta(Some(plan_hash), Some(report))),
        ),
    }
}

/// An approval as the agent sees it: what it waits for and what to do.
fn approval_meta(a: &crate::state::Approval) -> Value {
    json!({
        "id": a.id,
        "status": a.status,
        "state": crate::approvals::status_message(a),
        "reason": a.requirement.reason,
        "approvers": a.requirement.approvers,
        "roles": a.requirement.roles,
        "given": crate::approvals::counted(&a.requirement, &a.principal, &a.votes).len(),
        "expires_at": crate::time::rfc3339(a.expires_at),
        "policy_digest": a.policy_digest,
        "next": "repeat this identical call after approval; it runs once",
    })
}

/// Whether the request speaks a protocol version before 2026-07-28 (by its
/// `MCP-Protocol-Version` header over HTTP — absent means 2025-03-26 — or the session's).
fn legacy(context: &RequestContext<RoleServer>) -> bool {
    let stateless = rmcp::model::ProtocolVersion::V_2026_07_28;
    match context.extensions.get::<::http::request::Parts>() {
        Some(parts) => parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|version| version < stateless.as_str()),
        None => context
            .peer
            .peer_info()
            .is_some_and(|info| info.protocol_version < stateless),
    }
}

/// The agent's W3C trace context (`_meta.traceparent`, `_meta.tracestate`), if it sent a
/// valid one; anything else starts a new trace, as the W3C specification says.
fn trace_context(context: &RequestContext<RoleServer>) -> Option<crate::telemetry::TraceContext> {
    let parent = context.meta.get("traceparent")?.as_str()?;
    let state = context.meta.get("tracestate").and_then(Value::as_str);
    crate::telemetry::TraceContext::parse(parent, state)
}

/// The agent's idempotency key, if it sent one; not a string is an error.
fn idempotency_key(context: &RequestContext<RoleServer>) -> Result<Option<String>, String> {
    match context.meta.get(IDEMPOTENCY_KEY_META) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) => Ok(Some(key.clone())),
        Some(_) => Err(format!("`_meta.{IDEMPOTENCY_KEY_META}` must be a string")),
    }
}

impl Handler {
    /// `tools/call` inside its request span.
    async fn call_tool_in(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
        principal: Arc<Principal>,
        trace: Option<crate::telemetry::TraceContext>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Clients before 2026-07-28 set a level for a session, which stateless HTTP does not
        // keep, and many never set one: they get info and above unless they asked otherwise.
        let level = context
            .meta
            .log_level()
            .or_else(|| *self.log_level.lock().unwrap_or_else(|e| e.into_inner()))
            .or_else(|| legacy(&context).then_some(LoggingLevel::Info));
        let delivery = notices::Delivery::start(
            context.peer.clone(),
            context.meta.get_progress_token(),
            level,
        );
        let key = match idempotency_key(&context) {
            Ok(key) => key,
            Err(message) => {
                return to_mcp(Err(GateError::BadKey(message))).map(CallToolResponse::from);
            }
        };
        // A call that waits for approval becomes a task for clients that take tasks.
        let tasks = context
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        let hold = self.gateway.settings.approval_hold;
        let keep_args = tasks || !hold.is_zero();
        let kept_args = keep_args.then(|| request.arguments.clone()).flatten();
        let subject_token = context
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<crate::delegation::SubjectToken>())
            .cloned();
        let asked = crate::gate::Asked {
            idempotency_key: key,
            trace,
            subject_token,
        };
        let mut result = self
            .gateway
            .call(
                &principal,
                &request.name,
                RawArgs::Object(request.arguments),
                self.transport,
                asked.clone(),
                delivery.as_ref().map(|d| d.notify.clone()),
            )
            .await;
        if !tasks
            && let Err(GateError::PendingApproval(approval)) = &result
            && hold::until_decided(&self.gateway, &approval.id, hold).await
        {
            // Decided while held: the identical call again runs it (or reports the denial).
            result = self
                .gateway
                .call(
                    &principal,
                    &request.name,
                    RawArgs::Object(kept_args.clone()),
                    self.transport,
                    asked,
                    delivery.as_ref().map(|d| d.notify.clone()),
                )
                .await;
        }
        crate::gate::finish_span(&tracing::Span::current(), &result);
        let task_args = kept_args;
        if tasks && let Err(GateError::PendingApproval(approval)) = &result {
            if let Some(delivery) = delivery {
                delivery.finish().await;
            }
            let task = tasks::create(
                &self.gateway,
                &principal,
                &request.name,
                task_args,
                self.transport,
                approval,
            )
            .await?;
            return Ok(CallToolResponse::Task(CreateTaskResult::new(task)));
        }
        if let Some(delivery) = delivery {
            delivery.finish().await;
        }
        if matches!(result, Err(GateError::Busy(_))) {
            // Over HTTP the front door turns this into 503 + Retry-After.
            if let Some(busy) = context
                .extensions
                .get::<::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<http::BusySignal>())
            {
                busy.raise();
            }
        }
        to_mcp(result).map(CallToolResponse::from)
    }
}

impl ServerHandler for Handler {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_logging()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("portcullis", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let principal = self.principal(&context)?;
        let hidden = context
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<crate::identity::OutOfReach>());
        let tools = self
            .gateway
            .visible_tools(&principal, self.transport)
            .iter()
            .filter(|entry| hidden.is_none_or(|h| !h.hides(&entry.descriptor.name)))
            .map(|entry| mcp_tool(entry))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let trace = trace_context(&context);
        let span = self.gateway.request_span(
            "tools/call",
            &request.name,
            &principal,
            self.transport,
            trace.as_ref(),
        );
        self.call_tool_in(request, context, principal, trace)
            .instrument(span)
            .await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let principal = self.principal(&context)?;
        tasks::get(&self.gateway, &principal, &request.task_id).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.principal(&context)?;
        tasks::cancel(&self.gateway, &principal, &request.task_id).await
    }

    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), ErrorData> {
        let principal = self.principal(subscription.request_context())?;
        changes::listen(&self.gateway, &principal, self.transport, subscription).await;
        Ok(())
    }

    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        Err(
            params::invalid(&request.method, request.params.as_ref()).unwrap_or_else(|| {
                ErrorData::new(
                    rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                    format!("method not found: {}", request.method),
                    None,
                )
            }),
        )
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner()) = Some(request.level);
        Ok(())
    }
}
