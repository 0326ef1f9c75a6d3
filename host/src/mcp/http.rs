//! MCP over streamable HTTP at `/mcp`.
//!
//! Every request passes the front door before rmcp sees it: `Host` and `Origin` are checked
//! (DNS-rebinding protection) → 403; the caller is authenticated by [`crate::identity`] (a
//! static token, an OAuth access token, or the configured anonymous principal) → 401; the body
//! is read up to the message cap and checked for size and depth, then for the scopes an OAuth
//! caller needs → 403. The protected resource metadata is served beside `/mcp`. Requests are
//! served statelessly, but for clients before MCP 2026-07-28 that initialize: they get a
//! session bound to their principal ([`sessions`]). The agent's token is never passed on to
//! tools and never logged.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Handler;
use super::precheck::{self, MessageCaps, Verdict};
use super::throttle::Throttle;
use super::tls::Tls;
use crate::config::{Config, HttpConfig};
use crate::gate::{Gateway, Transport};
use crate::identity::{Identity, Refusal};
use crate::runner::PerKey;

mod origin;
mod poll;
mod reply;
mod sessions;

use reply::{bad_message, busy_response, json_reply, plain, retry_later};
use sessions::{Route, Sessions};

type Body = BoxBody<Bytes, Infallible>;

/// How long a client may take to send its request headers, and then its body.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Back-off after a failed accept, doubling up to the maximum.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a closing connection may take to flush what it owes before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// At most one accept-error line per interval (the rest are counted).
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub use crate::identity::token_hash;

/// Everything the front door needs, built once.
struct FrontDoor {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    /// Served over TLS: the scheme of this server's own origin.
    secure: bool,
    identity: Identity,
    caps: MessageCaps,
    /// Request bodies in flight, in KiB: parsing arguments costs host memory before admission.
    inflight: Arc<Semaphore>,
    /// How long a request may wait for room in `inflight`.
    wait: Duration,
    /// Requests in flight per principal: one principal's flood is refused, others go on.
    per_principal: PerKey,
    /// Requests per second per principal, if limited.
    throttle: Option<Throttle>,
    mcp: StreamableHttpService<Handler, NeverSessionManager>,
    /// Sessions of clients before 2026-07-28 that initialized.
    sessions: Sessions,
}

impl FrontDoor {
    /// The answer to a request refused at the door (401, 403 with a challenge; 400; 503).
    fn refuse(&self, refusal: &Refusal) -> Response<Body> {
        let answer = self.identity.answer(refusal);
        let mut response = if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            busy_response(&answer.message)
        } else {
            plain(answer.status, &answer.message)
        };
        if let Some(challenge) = answer
            .challenge
            .and_then(|c| hyper::header::HeaderValue::try_from(c).ok())
        {
            response
                .headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let Some(_in_flight) = super::drain::enter() else {
            let mut response = busy_response("shutting down: this gateway is draining; retry");
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return response;
        };
        if let Err((status, message)) = self.check_origin(&request) {
            return plain(status, message);
        }
        if request.uri().path() != "/mcp" {
            if let Some(document) = self.identity.metadata(request.uri().path()) {
                return json_reply(document);
            }
            return plain(StatusCode::NOT_FOUND, "not found: the MCP endpoint is /mcp");
        }
        let authorization = request.headers().get(hyper::header::AUTHORIZATION);
        let caller = match self.identity.authenticate(authorization).await {
            Ok(caller) => caller,
            Err(refusal) => return self.refuse(&refusal),
        };
        let principal = caller.principal.clone();
        if let Some(Err(wait)) = self.throttle.as_ref().map(|t| t.take(&principal.id)) {
            let mut response = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests: this principal is over its request rate; retry shortly",
            );
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(wait.as_secs().max(1)),
            );
            return response;
        }
        let Ok(_own) = self
            .per_principal
            .permits(&principal.id)
            .try_acquire_owned()
        else {
            return busy_response(
                "busy: too many requests in flight for this principal; retry shortly",
            );
        };
        // Room for this body (its declared length, or the cap) among the bodies being parsed
        // and served, so a flood of large requests cannot grow host memory without bound.
        let declared = request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(self.caps.max_bytes)
            .min(self.caps.max_bytes);
        let kib = u32::try_from(declared.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let room = self.inflight.clone().acquire_many_owned(kib);
        let Ok(Ok(_room)) = tokio::time::timeout(self.wait, room).await else {
            return busy_response("busy: too many large requests in flight; retry shortly");
        };
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(principal.clone());
        if let Some(subject) = caller.subject.clone() {
            parts.extensions.insert(subject);
        }
        if let Some(hidden) = self.identity.out_of_reach(&caller) {
            parts.extensions.insert(hidden);
        }
        let busy = BusySignal::default();
        parts.extensions.insert(busy.clone());
        // The token has done its job; nothing after this point (rmcp, handlers, their logs)
        // gets to see it — but the token exchange, which gets it as a `SubjectToken` (whose
        // Debug is redacted) when `[token_exchange]` is on.
        parts.headers.remove(hyper::header::AUTHORIZATION);
        let read = tokio::time::timeout(BODY_TIMEOUT, read_capped(body, self.caps.max_bytes));
        let (bytes, complete) = match read.await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request body: {e}"),
                );
            }
            Err(_) => {
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "the request body did not arrive within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                );
            }
        };
        let verdict = if parts.method != hyper::Method::POST {
            // GET (the stream) and DELETE (the session) carry no message; rmcp answers them.
            Verdict::Pass
        } else if complete {
            precheck::check(&bytes, self.caps)
        } else {
            precheck::oversized(&bytes, self.caps)
        };
        match verdict {
            Verdict::Pass => {
                if let Err(refusal) = self.identity.authorize(&caller, &bytes) {
                    return self.refuse(&refusal);
                }
            }
            Verdict::Refuse(Some(reply)) => return json_reply(reply),
            Verdict::Malformed(reply) => return bad_message(reply),
            Verdict::Refuse(None) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request is over the size or depth cap",
                );
            }
        }
        let json = parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        let message = bytes.clone();
        let streams = parts.method == hyper::Method::POST;
        let route = self.sessions.route(&parts, &bytes, &principal);
        let request = Request::from_parts(parts, Full::new(bytes));
        let mut response = match route {
            Route::Unknown => return Sessions::unknown(),
            Route::Session => self.sessions.handle(request, &principal).await,
            Route::Stateless => self.mcp.handle(request).await,
        };
        if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE && json {
            // rmcp's answer to a JSON object that is no JSON-RPC message: the body was JSON,
            // so it is a bad request, answered in JSON-RPC.
            let reply = precheck::invalid(
                &message,
                "not a JSON-RPC message (a request has `jsonrpc`, `method` and `id`)",
            );
            response = bad_message(reply);
        }
        if busy.raised() {
            // The JSON-RPC answer (a "busy, retry" tool error) stays the body.
            retry_later(&mut response);
        }
        if streams && sessions::is_sse(&response) {
            // The answer comes as the stream goes (a `subscriptions/listen` stream never
            // ends): the request holds its room and its place among the principal's requests
            // until the stream ends.
            return response.map(|body| {
                Held {
                    body,
                    _held: (_room, _own),
                }
                .boxed()
            });
        }
        drop(_room);
        response
    }
}

/// Raised by the handler when a call was refused as busy (no room within the admission
/// wait), so that the front door answers 503 with `Retry-After`.
#[derive(Clone, Default)]
pub struct BusySignal(Arc<std::sync::atomic::AtomicBool>);

impl BusySignal {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Reads at most `limit` bytes of `body`; `false` when there was more (the rest is not read).
async fn read_capped(mut body: Incoming, limit: usize) -> Result<(Bytes, bool), hyper::Error> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buffer.len() + data.len() > limit {
                let room = limit - buffer.len();
                buffer.extend_from_slice(&data[..room]);
                return Ok((buffer.freeze(), false));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok((buffer.freeze(), true))
}

/// Serves MCP over HTTP on `listener` (over TLS with `tls`) until the process ends.
pub async fn serve(
    gateway: Arc<Gateway>,
    config: &Config,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
) -> Result<()> {
    let identity = Identity::new(config)?;
    let caps = MessageCaps::for_args(config.args);
    let mut mcp_config = StreamableHttpServerConfig::default();
    mcp_config.legacy_session_mode = false;
    mcp_config.json_response = true;
    mcp_config.max_request_body_bytes = caps.max_bytes;
    // Host and Origin are checked once, by `FrontDoor::check_origin`; a second check with
    // other rules would only hide a gap in the first from the tests.
    let mcp_config = mcp_config.disable_allowed_hosts().disable_allowed_origins();
    let sessions = Sessions::new(gateway.clone(), &config.http, mcp_config.clone());
    let factory_gateway = gateway.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Handler::new(factory_gateway.clone(), None, Transport::Http)),
        Arc::new(NeverSessionManager::default()),
        mcp_config,
    );
    let door = Arc::new(FrontDoor {
        allowed_hosts: config.http.allowed_hosts.clone(),
        allowed_origins: config.http.allowed_origins.clone(),
        secure: tls.is_some(),
        identity,
        caps,
        inflight: Arc::new(Semaphore::new(
            usize::try_from(config.http.max_inflight_bytes.div_ceil(1024)).unwrap_or(usize::MAX),
        )),
        wait: config.admission.wait,
        per_principal: PerKey::new(config.http.max_requests_per_principal),
        throttle: config.http.max_rate_per_principal.map(Throttle::new),
        mcp,
        sessions,
    });
    // The issuer's keys are fetched (and kept fresh) beside serving: a token that arrives
    // before they are waits for them.
    let keys = door.clone();
    tokio::spawn(async move { keys.identity.keep_keys_fresh().await });
    if let Some(tls) = &tls {
        tls.watch();
    }
    accept_loop(listener, door, &config.http, tls).await
}

/// Accepts connections, at most `max_connections` at once. Accept errors (out of file
/// descriptors, say) back off instead of spinning, and are logged once per interval.
async fn accept_loop(
    listener: TcpListener,
    door: Arc<FrontDoor>,
    http: &HttpConfig,
    tls: Option<Arc<Tls>>,
) -> Result<()> {
    let open = Arc::new(Semaphore::new(http.max_connections));
    let idle_timeout = http.idle_timeout;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut last_logged: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(e) => {
                if last_logged.is_none_or(|at| at.elapsed() >= ACCEPT_LOG_INTERVAL) {
                    tracing::warn!(
                        suppressed,
                        "accept failed, backing off {} ms: {e}",
                        backoff.as_millis()
                    );
                    last_logged = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let (door, tls) = (door.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(door, stream, idle_timeout).await,
                // The handshake runs on the connection's task, under the header timeout, so
                // a client that never finishes it holds only its own slot, and not for long.
                Some(tls) => {
                    let handshake = tls.acceptor().accept(stream);
                    match tokio::time::timeout(HEADER_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => serve_connection(door, stream, idle_timeout).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
            tracing::trace!(%peer, "connection closed");
        });
    }
}

/// Answers a connection over the limit with 503 and `Retry-After`, then closes it.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    // Written by hand: no hyper connection is set up for a connection over the limit.
    use tokio::io::AsyncWriteExt;
    const MESSAGE: &str = "busy: too many open connections; retry shortly\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {}\r\ncontent-type: text/plain\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{MESSAGE}",
        super::RETRY_AFTER.as_secs(),
        MESSAGE.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
}

/// Serves one connection; closes it once it has had no request in flight for `idle_timeout`.
async fn serve_connection<S>(door: Arc<FrontDoor>, stream: S, idle_timeout: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |request| {
        let door = door.clone();
        let tracker = tracker.clone();
        async move {
            let busy = tracker.begin();
            // The connection is busy until the body has been sent, not just the headers: a
            // `subscriptions/listen` stream is one long response.
            let response = door.handle(request).await;
            Ok::<_, Infallible>(response.map(|body| Held { body, _held: busy }.boxed()))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .max_headers(64)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let check = (idle_timeout / 4).max(Duration::from_millis(50));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = tokio::time::sleep(check) => {
                match closing {
                    // A graceful close waits for pending writes; a client that never reads
                    // would hold the connection (and its slot) forever. After the grace
                    // period it is dropped.
                    Some(since) if since.elapsed() >= CLOSE_GRACE => return,
                    Some(_) => {}
                    None if activity.idle_for() >= idle_timeout => {
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    None => {}
                }
            }
        }
    }
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when a request last ended (0: none yet).
    last_ms: AtomicU64,
    opened: Instant,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            opened: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::SeqCst)),
        )
    }
}

/// A response body that holds something (its request marked in flight, its permits) until
/// it is done.
struct Held<T> {
    body: Body,
    _held: T,
}

impl<T: Unpin> hyper::body::Body for Held<T> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
