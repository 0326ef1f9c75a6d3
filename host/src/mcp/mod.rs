//! The MCP side: one rmcp `ServerHandler` served over stdio and streamable HTTP, and the one
//! mapping from gateway outcomes to MCP answers.
//!
//! Following the MCP error split: denials, schema violations and limit hits are tool results
//! with `isError: true` that the model can read and act on; an unknown tool (including one the
//! principal may not see) is a JSON-RPC "invalid params" error, like any unroutable request.

// MCP logging (`logging/setLevel`, `notifications/message`) is deprecated by SEP-2577 but part
// of the revisions clients speak today; rmcp marks its types deprecated.
#![allow(deprecated)]

mod answer;
mod ask;
mod changes;
mod content;
pub mod drain;
mod hold;
pub mod http;
mod items;
mod notices;
mod params;
pub mod precheck;
mod rounds;
pub mod stdio;
pub mod tasks;
mod throttle;
pub mod tls;
mod watch;

pub use answer::{IDEMPOTENCY_KEY_META, MAX_MESSAGE_BYTES, RETRY_AFTER, to_mcp};

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CreateTaskResult, ErrorData,
    GetTaskParams, GetTaskResult, Implementation, InitializeResult, ListToolsResult, LoggingLevel,
    MetaObject, PaginatedRequestParams, ServerCapabilities, SetLevelRequestParams,
    SubscriptionFilter, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::catalog::ToolEntry;
use crate::gate::{GateError, Gateway, RawArgs, Transport};
use crate::policy::Principal;

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
    /// Serves an HTTP session of a client before 2026-07-28 (one handler per session).
    session: bool,
    /// The resources this session follows (`resources/subscribe`).
    watched: watch::Watched,
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
            session: false,
            watched: watch::Watched::default(),
        }
    }

    /// The handler of one HTTP session: the client can be asked, and told of changes.
    pub fn in_session(mut self) -> Self {
        self.session = true;
        self
    }

    /// The resources this handler's session follows.
    pub fn watched(&self) -> watch::Watched {
        self.watched.clone()
    }

    /// Whether requests to the client can travel (a stdio session, or an HTTP one).
    fn has_session(&self) -> bool {
        self.transport == Transport::Stdio || self.session
    }

    /// The request span of a read or a prompt.
    fn span(
        &self,
        method: &'static str,
        name: &str,
        principal: &Principal,
        asked: &crate::gate::Asked,
    ) -> tracing::Span {
        self.gateway.request_span(
            method,
            name,
            principal,
            self.transport,
            asked.trace.as_ref(),
        )
    }

    /// What a read, prompt or completion carries besides its parameters (no idempotency key).
    fn asked(&self, context: &RequestContext<RoleServer>) -> crate::gate::Asked {
        crate::gate::Asked {
            idempotency_key: None,
            trace: trace_context(context),
            subject_token: subject_token(context),
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

/// The caller's OAuth access token (HTTP), for grants that inject a token exchanged for it.
fn subject_token(context: &RequestContext<RoleServer>) -> Option<crate::delegation::SubjectToken> {
    context
        .extensions
        .get::<::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<crate::delegation::SubjectToken>())
        .cloned()
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
        mut request: CallToolRequestParams,
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
        let signer = self.gateway.audit.signer();
        let rounds = rounds::begin(
            signer,
            !legacy(&context),
            &context,
            &principal.id,
            &mut request,
        )?;
        let notices = delivery.as_ref().map(|d| d.notify.clone());
        let notify = match &rounds {
            Some(rounds) => Some(rounds::joined(notices, rounds)),
            None => ask::joined(
                notices,
                self.has_session() && legacy(&context),
                &context.peer,
            ),
        };
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
        let asked = crate::gate::Asked {
            idempotency_key: key,
            trace,
            subject_token: subject_token(&context),
        };
        let mut result = self
            .gateway
            .call(
                &principal,
                &request.name,
                RawArgs::Object(request.arguments),
                self.transport,
                asked.clone(),
                notify.clone(),
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
                    notify.clone(),
                )
                .await;
        }
        // The call is over: its notices end, so their delivery can finish.
        drop(notify);
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
        if let Some(asked) = rounds::stopped(signer, rounds.as_ref(), &result) {
            return asked.map(CallToolResponse::InputRequired);
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
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_completions()
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

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        let principal = self.principal(&context)?;
        let (fixed, _) = self.gateway.visible_resources(&principal, self.transport);
        Ok(items::resources(&fixed))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        let principal = self.principal(&context)?;
        let (_, templates) = self.gateway.visible_resources(&principal, self.transport);
        Ok(items::templates(&templates))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let asked = self.asked(&context);
        let span = self.span("resources/read", &request.uri, &principal, &asked);
        let result = self
            .gateway
            .read_resource(&principal, &request.uri, self.transport, asked)
            .instrument(span)
            .await;
        items::read(result).map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        let principal = self.principal(&context)?;
        let prompts = self.gateway.visible_prompts(&principal, self.transport);
        Ok(items::prompts(&prompts))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let asked = self.asked(&context);
        let span = self.span("prompts/get", &request.name, &principal, &asked);
        let result = self
            .gateway
            .get_prompt(
                &principal,
                &request.name,
                request.arguments,
                self.transport,
                asked,
            )
            .instrument(span)
            .await;
        items::got(result).map(Into::into)
    }

    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        let principal = self.principal(&context)?;
        let asked = self.asked(&context);
        let given = request.context.as_ref().and_then(|c| c.arguments.as_ref());
        let given = given.map(|args| {
            args.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Map<String, Value>>()
        });
        let result = self
            .gateway
            .complete(
                &principal,
                items::reference(&request)?,
                &request.argument.name,
                &request.argument.value,
                given,
                self.transport,
                asked,
            )
            .await;
        items::completed(result)
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.principal(&context)?;
        self.gateway
            .may_watch(&principal, &request.uri, self.transport)
            .map_err(ErrorData::from)?;
        if !self.has_session() {
            // This handler lives for one request: nothing could ever be delivered.
            return Err(ErrorData::invalid_request(
                "resources/subscribe needs a session (stdio, or streamable HTTP with an \
                 Mcp-Session-Id); on MCP 2026-07-28 name the resource in a \
                 subscriptions/listen stream's resourceSubscriptions instead",
                None,
            ));
        }
        self.watched.add(&request.uri)
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.watched.remove(&request.uri);
        Ok(())
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
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Every URI asked for is accepted (up to the bound), known or not, visible or not:
        // the acknowledgement tells nothing; only what the principal may see is delivered.
        let uris = requested.resource_subscriptions.iter().flatten();
        Some(
            SubscriptionFilter::builder()
                .tools_list_changed()
                .resources_list_changed()
                .prompts_list_changed()
                .resource_subscriptions(uris.take(watch::MAX_WATCHED).cloned())
                .build(),
        )
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

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        // An HTTP session hears of changes on its GET stream (stdio starts its own).
        if !self.session {
            return;
        }
        let principal = context
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Principal>>())
            .cloned();
        if let Some(principal) = principal {
            let (gateway, peer) = (self.gateway.clone(), context.peer.clone());
            let watched = self.watched.clone();
            tokio::spawn(changes::tell(
                gateway,
                principal,
                self.transport,
                peer,
                watched,
            ));
        }
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
