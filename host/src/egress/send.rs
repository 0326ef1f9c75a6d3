//! The send hook: every outbound request of a guest, from the grant check to the response.
//!
//! Order: grant (scheme, host, port, method, path) → caps on the request → resolve → every
//! address against the deny ranges → connect to a checked address (pooled) → inject the
//! credential → send → caps, content coding and scrubbing on the response. Redirects are never
//! followed here: a 3xx goes back to the guest as it is.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use tracing::Instrument;
use wasmtime_wasi_http::{Error, RequestOptions, WasiHttpHooks};

use super::address::Host;
use super::body::{RequestBody, ResponseBody, update};
use super::connect::{self, Framing, PoolKey};
use super::grant::{HttpRule, RequestFacts, match_request};
use super::ranges::deny_reason;
use super::{Body, CallEgress, Caps, Egress, EgressEvent, EventLog, MAX_EVENTS, refused};
use crate::secrets::CallSecrets;
use crate::telemetry::STAGE;

/// Request-body writes wasmtime-wasi-http buffers per request, and the most one write takes.
const OUTGOING_BODY_BUFFER_CHUNKS: usize = 1;
const OUTGOING_BODY_CHUNK_BYTES: usize = 1024 * 1024;

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(Response<Body>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for CallEgress {
    fn set_host_header(&mut self) -> bool {
        // The hook sets Host itself, from the checked host.
        false
    }

    // Stated, not inherited: one buffered write of at most this much per request body.
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        request: Request<Body>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> SendFuture {
        self.requests = self.requests.saturating_add(1);
        let attempt = Attempt {
            egress: self.shared.clone(),
            rules: self.rules.clone(),
            secrets: self.secrets.clone(),
            scrubber: self.scrubber.clone(),
            inflight: self.inflight.clone(),
            events: self.events.clone(),
            number: self.requests,
        };
        // A child of the call's span: the guest's host call creates it.
        let span = tracing::info_span!(
            target: STAGE,
            "egress",
            otel.kind = "client",
            http.request.method = request.method().as_str(),
            server.address = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        Box::new(
            async move {
                let response = attempt.run(request, options).await?;
                Ok((response, Box::new(async { Ok(()) }) as IoFuture))
            }
            .instrument(span),
        )
    }
}

/// One request, with what it needs from the call.
struct Attempt {
    egress: Arc<Egress>,
    rules: Arc<Vec<HttpRule>>,
    secrets: CallSecrets,
    scrubber: super::Scrubber,
    inflight: Arc<tokio::sync::Semaphore>,
    events: EventLog,
    number: u32,
}

/// The smaller of the guest's timeout and the cap.
fn effective(guest: Option<Duration>, cap: Duration) -> Duration {
    guest.map_or(cap, |g| g.min(cap))
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

fn internal(message: String) -> Error {
    Error::InternalError(Some(message))
}

impl Attempt {
    fn caps(&self) -> Caps {
        self.egress.caps
    }

    fn record(&self, event: EgressEvent) -> Option<usize> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        (events.len() < MAX_EVENTS).then(|| {
            events.push(event);
            events.len() - 1
        })
    }

    async fn run(
        self,
        request: Request<Body>,
        options: Option<RequestOptions>,
    ) -> Result<Response<Body>, Error> {
        let method = request.method().as_str().to_string();
        let index = self.record(EgressEvent {
            method,
            url: String::new(),
            status: None,
            bytes_out: 0,
            bytes_in: 0,
            error: None,
            injected: false,
        });
        let result = self.send(request, options, index).await;
        if let Err(e) = &result {
            let message = self.scrubber.text(&super::describe(e));
            update(&self.events, index, |ev| ev.error = Some(message));
        }
        self.trace(index, result.is_err());
        result
    }

    /// The request's host and status on its span (not its path or query: they can hold data).
    fn trace(&self, index: Option<usize>, failed: bool) {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return;
        }
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(event) = index.and_then(|i| events.get(i)) {
            let authority = event.url.split("://").nth(1).unwrap_or_default();
            let host = authority.split('/').next().unwrap_or_default();
            if !host.is_empty() {
                span.record("server.address", host);
            }
            if let Some(status) = event.status {
                span.record("http.response.status_code", status);
            }
        }
        if failed {
            span.record("error.type", "refused_or_failed");
        }
    }

    async fn send(
        &self,
        request: Request<Body>,
        options: Option<RequestOptions>,
        index: Option<usize>,
    ) -> Result<Response<Body>, Error> {
        // No grant: nothing is looked up or opened.
        if self.rules.is_empty() {
            return Err(refused("this call has no http grant".into()));
        }
        let caps = self.caps();
        if self.number > caps.max_requests {
            return Err(internal(format!(
                "this call made more than {} requests, the gateway's limit (egress.max_requests)",
                caps.max_requests
            )));
        }
        let (mut parts, body) = request.into_parts();
        let https = match parts.uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                return Err(refused(format!(
                    "scheme {} is not http or https",
                    other.unwrap_or("(none)")
                )));
            }
        };
        let authority = parts
            .uri
            .authority()
            .ok_or_else(|| refused("the request has no host".into()))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(refused(
                "user information in the URL is not accepted".into(),
            ));
        }
        let (host_text, port) = super::split_port(authority.as_str()).map_err(refused)?;
        let host = super::parse_host(host_text).map_err(refused)?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let path = path_and_query.split('?').next().unwrap_or("/");
        let scheme = if https { "https" } else { "http" };
        let url = self
            .scrubber
            .text(&format!("{scheme}://{host}:{port}{path}"));
        update(&self.events, index, |e| e.url = url);

        let rule = match_request(
            &self.rules,
            &RequestFacts {
                https,
                host: &host,
                port,
                method: parts.method.as_str(),
                path_and_query: &path_and_query,
            },
        )
        .map_err(refused)?;

        if parts.headers.len() > caps.max_headers {
            return Err(internal(format!(
                "the request has {} headers, more than the gateway's limit of {} (egress.max_headers)",
                parts.headers.len(),
                caps.max_headers
            )));
        }
        if header_bytes(&parts.headers) > caps.max_header_bytes {
            return Err(super::capped(
                "the request's headers",
                caps.max_header_bytes as u64,
                "max_header_bytes",
            ));
        }
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > caps.max_request_body) {
            return Err(super::capped(
                "the request body",
                caps.max_request_body,
                "max_request_body",
            ));
        }
        let connect_timeout = effective(
            options.and_then(|o| o.connect_timeout),
            caps.connect_timeout,
        );
        let first_byte = effective(
            options.and_then(|o| o.first_byte_timeout),
            caps.first_byte_timeout,
        );
        let between_bytes = effective(
            options.and_then(|o| o.between_bytes_timeout),
            caps.between_bytes_timeout,
        )
        .max(Duration::from_millis(1));

        let addrs = self.addresses(&host, port, rule, connect_timeout).await?;
        let permit = self.inflight.clone().try_acquire_owned().map_err(|_| {
            internal(format!(
                "this call already has {} requests in flight, the gateway's limit (egress.max_concurrent)",
                caps.max_concurrent
            ))
        })?;

        // The request as it goes out: origin-form target, Host from the checked host, the
        // injected credential in place of whatever the guest set under that name.
        let default_port = port == if https { 443 } else { 80 };
        let host_header = if default_port {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        parts.headers.remove(HOST);
        parts.headers.insert(
            HOST,
            HeaderValue::from_str(&host_header).map_err(|_| refused("bad host".into()))?,
        );
        let injected = match &rule.inject {
            None => false,
            Some(inject) => {
                let secret = self.secrets.get(&inject.secret).ok_or_else(|| {
                    refused(format!(
                        "secret {} is not available to this call",
                        inject.secret
                    ))
                })?;
                let mut value = HeaderValue::from_str(&format!(
                    "{}{secret}{}",
                    inject.before, inject.after
                ))
                .map_err(|_| {
                    refused(format!(
                        "secret {} cannot be sent in a header (it contains control characters)",
                        inject.secret
                    ))
                })?;
                value.set_sensitive(true);
                parts.headers.remove(&inject.header);
                parts.headers.insert(inject.header.clone(), value);
                // Scrubbing matches bytes: ask for an uncompressed answer.
                parts
                    .headers
                    .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
                true
            }
        };
        update(&self.events, index, |e| e.injected = injected);
        parts.uri = http::Uri::try_from(path_and_query.as_str())
            .map_err(|_| refused(format!("`{path_and_query}` is not a valid request target")))?;
        let body = RequestBody {
            inner: body,
            limit: caps.max_request_body,
            sent: 0,
            events: self.events.clone(),
            index,
        };
        let request = Request::from_parts(parts, body.boxed_unsync());

        let tls_name = https.then(|| match &host {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        });
        let (key, sender, response) = self
            .exchange(&addrs, port, tls_name, request, connect_timeout, first_byte)
            .await?;

        let (mut head, incoming) = response.into_parts();
        update(&self.events, index, |e| {
            e.status = Some(head.status.as_u16())
        });
        if head.headers.len() > caps.max_headers
            || header_bytes(&head.headers) > caps.max_header_bytes
        {
            return Err(internal(format!(
                "the response's headers exceed the gateway's limits ({} headers, {} bytes; egress.max_headers, egress.max_header_bytes)",
                caps.max_headers, caps.max_header_bytes
            )));
        }
        if injected
            && let Some(coding) = head.headers.get(CONTENT_ENCODING)
            && !coding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(refused(format!(
                "the response to a request carrying an injected credential is compressed ({}); the gateway only passes uncompressed answers to such requests, so that it can scrub them",
                String::from_utf8_lossy(coding.as_bytes())
            )));
        }
        if !self.scrubber.is_empty() {
            scrub_headers(&self.scrubber, &mut head.headers);
        }
        let declared_in = head
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_in.is_some_and(|n| n > caps.max_response_body) {
            return Err(super::capped(
                "the response body",
                caps.max_response_body,
                "max_response_body",
            ));
        }
        if !self.scrubber.is_empty() {
            // Scrubbing can change the length.
            head.headers.remove(CONTENT_LENGTH);
        }
        let body = ResponseBody {
            inner: incoming,
            limit: caps.max_response_body,
            received: 0,
            scrubber: self.scrubber.stream(),
            between_bytes,
            timer: Box::pin(tokio::time::sleep(between_bytes)),
            waiting: false,
            connection: Some((key, sender, self.egress.clone())),
            permit: Some(permit),
            events: self.events.clone(),
            index,
            done: false,
        };
        Ok(Response::from_parts(head, body.boxed_unsync()))
    }

    /// The checked addresses of `host`: every one outside the deny ranges, or named by the grant.
    async fn addresses(
        &self,
        host: &Host,
        port: u16,
        rule: &HttpRule,
        timeout: Duration,
    ) -> Result<Vec<IpAddr>, Error> {
        let ips = match host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                match tokio::time::timeout(timeout, self.egress.resolver.resolve(name, port)).await
                {
                    Err(_) => return Err(Error::DnsTimeout),
                    Ok(Err(e)) => {
                        return Err(Error::DnsError {
                            rcode: Some(e),
                            info_code: None,
                        });
                    }
                    Ok(Ok(ips)) => ips,
                }
            }
        };
        for ip in &ips {
            if let Some(why) = deny_reason(*ip)
                && !rule.allows_private(*ip)
            {
                let subject = match host {
                    Host::Ip(_) => format!("{host} is {why}"),
                    Host::Name(_) => format!("{host} resolves to {ip}, {why}"),
                };
                return Err(refused(format!(
                    "{subject}; the grant does not name it (allow_private)"
                )));
            }
        }
        Ok(ips)
    }

    /// Sends on a pooled connection to a checked address, or on a new one; a pooled connection
    /// that turns out closed before the request went out is replaced once.
    async fn exchange(
        &self,
        addrs: &[IpAddr],
        port: u16,
        tls: Option<String>,
        request: Request<Body>,
        connect_timeout: Duration,
        first_byte: Duration,
    ) -> Result<(PoolKey, SendRequest<Body>, Response<hyper::body::Incoming>), Error> {
        let caps = self.caps();
        let framing = Framing {
            max_headers: caps.max_headers,
            max_header_bytes: caps.max_header_bytes,
        };
        let mut request = Some(request);
        let mut last_error = String::from("no address to connect to");
        for ip in addrs {
            let key = PoolKey {
                addr: SocketAddr::new(*ip, port),
                tls: tls.clone(),
            };
            let pooled = self.egress.pool.take(&key);
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                None => match tokio::time::timeout(
                    connect_timeout,
                    connect::open(&key, &self.egress.tls, framing),
                )
                .await
                {
                    Err(_) => {
                        last_error = format!("connecting to {} timed out", key.addr);
                        continue;
                    }
                    Ok(Err(e)) => {
                        last_error = e;
                        continue;
                    }
                    Ok(Ok(sender)) => sender,
                },
            };
            let Some(req) = request.take() else { break };
            match tokio::time::timeout(first_byte, sender.try_send_request(req)).await {
                Err(_) => return Err(Error::ConnectionReadTimeout),
                Ok(Ok(response)) => return Ok((key, sender, response)),
                Ok(Err(mut e)) => {
                    let message = e.take_message();
                    if reused && let Some(req) = message {
                        // The pooled connection had closed: once more, on a fresh one.
                        let mut fresh = tokio::time::timeout(
                            connect_timeout,
                            connect::open(&key, &self.egress.tls, framing),
                        )
                        .await
                        .map_err(|_| Error::ConnectionTimeout)?
                        .map_err(internal)?;
                        return match tokio::time::timeout(first_byte, fresh.send_request(req)).await
                        {
                            Err(_) => Err(Error::ConnectionReadTimeout),
                            Ok(Ok(response)) => Ok((key, fresh, response)),
                            Ok(Err(e)) => Err(from_hyper(e)),
                        };
                    }
                    return Err(from_hyper(e.into_error()));
                }
            }
        }
        Err(internal(last_error))
    }
}

/// A hyper error, or the gateway's own refusal it carries (a request body over its cap fails
/// inside hyper, which wraps the body's error).
fn from_hyper(error: hyper::Error) -> Error {
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        if let Some(Error::InternalError(Some(message))) = inner.downcast_ref::<Error>() {
            return Error::InternalError(Some(message.clone()));
        }
        source = inner.source();
    }
    Error::Hyper(error)
}

/// Replaces secret values in response headers; a value that no longer is a valid header value
/// is dropped.
fn scrub_headers(scrubber: &super::Scrubber, headers: &mut HeaderMap) {
    let scrub = |v: &HeaderValue| scrubber.text(&String::from_utf8_lossy(v.as_bytes()));
    let names: Vec<http::HeaderName> = headers
        .iter()
        .filter(|(_, v)| scrub(v).as_bytes() != v.as_bytes())
        .map(|(name, _)| name.clone())
        .collect();
    for name in names {
        let values: Vec<HeaderValue> = headers
            .get_all(&name)
            .iter()
            .filter_map(|v| HeaderValue::from_str(&scrub(v)).ok())
            .collect();
        headers.remove(&name);
        for v in values {
            headers.append(name.clone(), v);
        }
    }
}
