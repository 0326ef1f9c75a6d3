//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! ```no_run
//! use portcullis_sdk::http::Request;
//!
//! # fn run() -> Result<(), portcullis_sdk::http::HttpError> {
//! let response = Request::get("https://api.example.com/v1/items?limit=10")
//!     .header("accept", "application/json")
//!     .send()?;
//! if response.is_success() {
//!     let items: portcullis_sdk::Value = response.json()?;
//!     # let _ = items;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What to know:
//! - **Only granted requests leave the gateway.** Every request is checked against the call's
//!   grant (scheme, host, port, method, path, private addresses, size and count caps). A refused
//!   request fails with [`HttpErrorKind::Gateway`] and the gateway's reason as the message, e.g.
//!   `denied by the gateway: port 8080 is not granted for host api.example.com (granted: 443)`.
//!   Pass that message on to the model: it says what the operator would have to grant.
//! - **Do not send credentials.** Where the operator's grant says so, the gateway injects the
//!   credential (e.g. an `Authorization` header) into requests to that host itself, so the secret
//!   never enters your tool. Don't read a token with [`crate::secret`] to build such a header,
//!   and don't put credentials in URLs (`user:pass@host` is refused here).
//! - **No redirects are followed.** A 3xx answer comes back as a [`Response`] with its
//!   `location` header; following it is a new request, which the grant checks again.
//! - **Bodies are bounded.** A response body longer than [`Request::max_response_bytes`]
//!   (default [`DEFAULT_MAX_RESPONSE_BYTES`], 1 MiB) is an [`HttpErrorKind::TooLarge`] error, or
//!   is cut there with [`Response::truncated`] set if you asked for [`Request::truncate`].
//! - Everything blocks the (single-threaded) call until done; use [`send_all`] to have several
//!   requests in flight at once.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    self, ErrorCode, FutureIncomingResponse, HeaderError, IncomingResponse, OutgoingBody,
};
use wasip2::io::streams::StreamError;

/// The response body limit when the caller sets none: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Bytes read from the response body per host call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes written to the request body per host call (the most `blocking-write-and-flush` takes).
const WRITE_CHUNK: usize = 4096;

// ------------------------------------------------------------------------------------------
// Errors

/// What kind of failure an [`HttpError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The request could not be built: a bad URL, method or header. Nothing was sent.
    InvalidRequest,
    /// The gateway stopped the request (not granted, a private address, a cap hit) or failed it
    /// for its own reason; the message is the gateway's, verbatim.
    Gateway,
    /// A timeout: DNS, connect, first byte, between bytes or the whole response.
    Timeout,
    /// Anything else on the way: DNS, connection, TLS, HTTP protocol errors.
    Transport,
    /// The response body is longer than [`Request::max_response_bytes`].
    TooLarge,
    /// The response arrived but is not what was asked for: not UTF-8 for [`Response::text`],
    /// not the expected JSON for [`Response::json`].
    Decode,
}

/// A request that failed, with a message written for people (and models).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    kind: HttpErrorKind,
    message: String,
}

impl HttpError {
    fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(HttpErrorKind::InvalidRequest, message)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> HttpErrorKind {
        self.kind
    }

    /// The message (the same text as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error for a WASI HTTP error code: the gateway's own message verbatim for
    /// `internal-error` (its refusals and cap hits), a short description otherwise (e.g.
    /// `connection refused`, `DNS error`, `connection timeout`). Also available as
    /// `HttpError::from(code)`, for tools that use `wasip2::http` directly.
    pub fn from_code(code: ErrorCode) -> Self {
        use HttpErrorKind::{Gateway, Timeout, TooLarge, Transport};
        let (kind, message): (HttpErrorKind, Cow<'static, str>) = match code {
            ErrorCode::InternalError(Some(message)) => (Gateway, message.into()),
            ErrorCode::InternalError(None) => (Gateway, "internal error in the gateway".into()),
            ErrorCode::DnsTimeout => (Timeout, "DNS timeout".into()),
            ErrorCode::DnsError(p) => {
                let mut text = String::from("DNS error");
                if let Some(rcode) = p.rcode {
                    text.push_str(&format!(" ({rcode})"));
                }
                (Transport, text.into())
            }
            ErrorCode::DestinationNotFound => (Transport, "destination not found".into()),
            ErrorCode::DestinationUnavailable => (Transport, "destination unavailable".into()),
            ErrorCode::DestinationIpProhibited => {
                (Transport, "destination IP address prohibited".into())
            }
            ErrorCode::DestinationIpUnroutable => {
                (Transport, "destination IP address unroutable".into())
            }
            ErrorCode::ConnectionRefused => (Transport, "connection refused".into()),
            ErrorCode::ConnectionTerminated => (Transport, "connection terminated".into()),
            ErrorCode::ConnectionTimeout => (Timeout, "connection timeout".into()),
            ErrorCode::ConnectionReadTimeout => (Timeout, "connection read timeout".into()),
            ErrorCode::ConnectionWriteTimeout => (Timeout, "connection write timeout".into()),
            ErrorCode::ConnectionLimitReached => (Transport, "connection limit reached".into()),
            ErrorCode::TlsProtocolError => (Transport, "TLS protocol error".into()),
            ErrorCode::TlsCertificateError => (Transport, "TLS certificate error".into()),
            ErrorCode::TlsAlertReceived(p) => {
                let mut text = String::from("TLS alert received");
                if let Some(message) = p.alert_message {
                    text.push_str(&format!(": {message}"));
                } else if let Some(id) = p.alert_id {
                    text.push_str(&format!(" (alert {id})"));
                }
                (Transport, text.into())
            }
            ErrorCode::HttpRequestDenied => (Transport, "HTTP request denied".into()),
            ErrorCode::HttpRequestLengthRequired => {
                (Transport, "HTTP request length required".into())
            }
            ErrorCode::HttpRequestBodySize(n) => (
                TooLarge,
                with_size("HTTP request body too large", n.map(|n| n.to_string())).into(),
            ),
            ErrorCode::HttpRequestMethodInvalid => {
                (Transport, "HTTP request method invalid".into())
            }
            ErrorCode::HttpRequestUriInvalid => (Transport, "HTTP request URI invalid".into()),
            ErrorCode::HttpRequestUriTooLong => (Transport, "HTTP request URI too long".into()),
            ErrorCode::HttpRequestHeaderSectionSize(n) => (
                TooLarge,
                with_size(
                    "HTTP request header section too large",
                    n.map(|n| n.to_string()),
                )
                .into(),
            ),
            ErrorCode::HttpRequestHeaderSize(p) => (
                TooLarge,
                field_size("HTTP request header too large", p.as_ref()).into(),
            ),
            ErrorCode::HttpRequestTrailerSectionSize(_) => {
                (TooLarge, "HTTP request trailer section too large".into())
            }
            ErrorCode::HttpRequestTrailerSize(p) => (
                TooLarge,
                field_size("HTTP request trailer too large", Some(&p)).into(),
            ),
            ErrorCode::HttpResponseIncomplete => (Transport, "HTTP response incomplete".into()),
            ErrorCode::HttpResponseHeaderSectionSize(n) => (
                TooLarge,
                with_size(
                    "HTTP response header section too large",
                    n.map(|n| n.to_string()),
                )
                .into(),
            ),
            ErrorCode::HttpResponseHeaderSize(p) => (
                TooLarge,
                field_size("HTTP response header too large", Some(&p)).into(),
            ),
            ErrorCode::HttpResponseBodySize(n) => (
                TooLarge,
                with_size("HTTP response body too large", n.map(|n| n.to_string())).into(),
            ),
            ErrorCode::HttpResponseTrailerSectionSize(_) => {
                (TooLarge, "HTTP response trailer section too large".into())
            }
            ErrorCode::HttpResponseTrailerSize(p) => (
                TooLarge,
                field_size("HTTP response trailer too large", Some(&p)).into(),
            ),
            ErrorCode::HttpResponseTransferCoding(c) => (
                Transport,
                with_size("unsupported HTTP response transfer coding", c).into(),
            ),
            ErrorCode::HttpResponseContentCoding(c) => (
                Transport,
                with_size("unsupported HTTP response content coding", c).into(),
            ),
            ErrorCode::HttpResponseTimeout => (Timeout, "HTTP response timeout".into()),
            ErrorCode::HttpUpgradeFailed => (Transport, "HTTP upgrade failed".into()),
            ErrorCode::HttpProtocolError => (Transport, "HTTP protocol error".into()),
            ErrorCode::LoopDetected => (Transport, "loop detected".into()),
            ErrorCode::ConfigurationError => (Transport, "configuration error".into()),
        };
        Self::new(kind, message)
    }

    /// The error for a failed read or write on a request or response body stream: the HTTP
    /// error code behind it if there is one (see [`HttpError::from_code`]), else `what` and the
    /// runtime's description. For tools that use `wasip2` streams directly.
    pub fn from_stream(error: StreamError, what: &str) -> Self {
        match error {
            StreamError::LastOperationFailed(e) => match types::http_error_code(&e) {
                Some(code) => Self::from_code(code),
                None => Self::new(
                    HttpErrorKind::Transport,
                    format!("{what} failed: {}", e.to_debug_string()),
                ),
            },
            StreamError::Closed => {
                Self::new(HttpErrorKind::Transport, format!("{what} stream closed"))
            }
        }
    }
}

fn with_size(text: &str, detail: Option<String>) -> String {
    match detail {
        Some(detail) => format!("{text} ({detail})"),
        None => text.to_string(),
    }
}

fn field_size(text: &str, payload: Option<&types::FieldSizePayload>) -> String {
    match payload.and_then(|p| p.field_name.as_deref()) {
        Some(name) => format!("{text} ({name})"),
        None => text.to_string(),
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        Self::from_code(code)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::Error {
    fn from(error: HttpError) -> Self {
        crate::Error::Failed(error.message)
    }
}

// ------------------------------------------------------------------------------------------
// URLs

/// The URL schemes the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http://` (plain text; the grant must allow it).
    Http,
    /// `https://`.
    Https,
}

/// An `http` or `https` URL split the way WASI HTTP wants it. The fragment (`#...`) is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// `host` or `host:port` (an IPv6 host in brackets), as written.
    pub authority: String,
    /// The path and query, starting with `/` (`/` when the URL has no path).
    pub path_and_query: String,
}

impl Url {
    /// Parses `url`: `http://` or `https://`, a host with an optional port, then an optional
    /// path and query. Refuses other schemes, credentials (`user@host`), an empty host, a bad
    /// port, and spaces or control characters anywhere (percent-encode them).
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |why: &str| HttpError::invalid(format!("invalid URL `{url}`: {why}"));
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "it contains whitespace or control characters (percent-encode them)",
            ));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected `http://` or `https://` followed by a host"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => {
                return Err(bad(&format!(
                    "scheme `{other}` is not supported (only http and https)"
                )));
            }
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(
                "credentials in URLs are not supported (the gateway injects credentials where the operator granted them)",
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|why| bad(&why))?;
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if let Some(port) = port
            && !matches!(port.parse::<u16>(), Ok(p) if p != 0 && !port.starts_with('+'))
        {
            return Err(bad(&format!("`{port}` is not a port (1-65535)")));
        }
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    /// The URL as text (without a fragment).
    pub fn as_string(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// Splits `host[:port]` / `[v6][:port]`; the port is `None` when absent.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| "unclosed `[` in the host".to_string())?;
        let host = &rest[..close];
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("`[{host}]` is not an IPv6 address"));
        }
        return match &rest[close + 1..] {
            "" => Ok((host, None)),
            after => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected `{after}` after the IPv6 address")),
            },
        };
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '%')))
    {
        return Err(format!("`{c}` is not allowed in a host name"));
    }
    Ok((host, port))
}

// ------------------------------------------------------------------------------------------
// Requests

/// An HTTP method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// Any other method token, sent as written (methods are case-sensitive).
    Other(String),
}

impl Method {
    /// The method as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(other) => other,
        }
    }

    fn to_wasi(&self) -> types::Method {
        match self {
            Method::Get => types::Method::Get,
            Method::Head => types::Method::Head,
            Method::Post => types::Method::Post,
            Method::Put => types::Method::Put,
            Method::Patch => types::Method::Patch,
            Method::Delete => types::Method::Delete,
            Method::Options => types::Method::Options,
            Method::Other(other) => types::Method::Other(other.clone()),
        }
    }
}

impl From<&str> for Method {
    /// The standard methods from their upper-case names, anything else as [`Method::Other`].
    fn from(method: &str) -> Self {
        match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP request being built. Nothing is sent until [`Request::send`]; a problem found while
/// building (a bad URL, a body that does not serialise) is reported by `send`.
#[derive(Clone, Debug)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    max_response_bytes: usize,
    truncate: bool,
    timeouts: [Option<Duration>; 3],
    error: Option<HttpError>,
}

impl Request {
    /// A `GET` request for `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A request with any method, e.g. `Request::new("POST", url)` or
    /// `Request::new(Method::Delete, url)`.
    pub fn new(method: impl Into<Method>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            truncate: false,
            timeouts: [None; 3],
            error: None,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a header (repeating a name adds another value). Names the runtime forbids (`host`,
    /// `connection`, `transfer-encoding`, ...) make `send` fail. Don't add credentials: the
    /// gateway injects them where the operator granted them (see the module docs).
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Sets the request body. A `content-length` header is added unless you set one.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the body to `value` as JSON and the `content-type` to `application/json` (unless
    /// a content-type header was already added).
    pub fn json(mut self, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                if !self.has_header("content-type") {
                    self = self.header("content-type", "application/json");
                }
                self.body = Some(body);
            }
            Err(e) => {
                self.error = Some(HttpError::invalid(format!(
                    "the request body does not serialise to JSON: {e}"
                )));
            }
        }
        self
    }

    /// The most response-body bytes to accept (default [`DEFAULT_MAX_RESPONSE_BYTES`]). A longer
    /// body fails the request with [`HttpErrorKind::TooLarge`], unless [`Request::truncate`]
    /// was asked for.
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// With `true`, a response body longer than [`Request::max_response_bytes`] is cut at the
    /// limit and [`Response::truncated`] is set, instead of failing the request.
    pub fn truncate(mut self, truncate: bool) -> Self {
        self.truncate = truncate;
        self
    }

    /// Timeouts for connecting, for the first byte of the response, and between bytes of the
    /// response (`None` leaves the gateway's default). The gateway also applies its own caps;
    /// the shorter wins.
    pub fn timeouts(
        mut self,
        connect: Option<Duration>,
        first_byte: Option<Duration>,
        between_bytes: Option<Duration>,
    ) -> Self {
        self.timeouts = [connect, first_byte, between_bytes];
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Sends the request and reads the whole response (up to the body limit). A 3xx, 4xx or
    /// 5xx status is a successful `send`: look at [`Response::status`].
    pub fn send(self) -> Result<Response, HttpError> {
        let limits = (self.max_response_bytes, self.truncate);
        self.start()?.finish(limits)
    }

    /// Builds the WASI request, hands it to the gateway and writes the body.
    fn start(self) -> Result<InFlight, HttpError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let url = Url::parse(&self.url)?;
        let headers = types::Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value)
                .map_err(|e| header_error(name, e))?;
        }
        if let Some(body) = &self.body
            && !self.has_header("content-length")
        {
            headers
                .append("content-length", body.len().to_string().as_bytes())
                .map_err(|e| header_error("content-length", e))?;
        }
        let request = types::OutgoingRequest::new(headers);
        request.set_method(&self.method.to_wasi()).map_err(|()| {
            HttpError::invalid(format!("`{}` is not a valid HTTP method", self.method))
        })?;
        let scheme = match url.scheme {
            Scheme::Http => types::Scheme::Http,
            Scheme::Https => types::Scheme::Https,
        };
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| HttpError::invalid(format!("invalid scheme in `{}`", self.url)))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| HttpError::invalid(format!("invalid host in `{}`", self.url)))?;
        request
            .set_path_with_query(Some(&url.path_and_query))
            .map_err(|()| HttpError::invalid(format!("invalid path in `{}`", self.url)))?;
        let options = request_options(self.timeouts)?;
        let body = request
            .body()
            .map_err(|()| HttpError::invalid("the request body was already taken"))?;
        let future = outgoing_handler::handle(request, options).map_err(HttpError::from_code)?;
        // The body is written after the request is handed over, so that a body larger than the
        // runtime's buffer streams instead of blocking. A failure here is reported only if the
        // response does not say something better (e.g. the gateway's refusal, or a 413).
        let write_error = write_body(body, self.body.as_deref().unwrap_or_default()).err();
        Ok(InFlight {
            future,
            write_error,
        })
    }
}

fn header_error(name: &str, error: HeaderError) -> HttpError {
    HttpError::invalid(match error {
        HeaderError::InvalidSyntax => format!("header `{name}` has an invalid name or value"),
        HeaderError::Forbidden => format!("header `{name}` may not be set by a tool"),
        HeaderError::Immutable => format!("header `{name}` cannot be changed"),
    })
}

fn request_options(
    [connect, first_byte, between]: [Option<Duration>; 3],
) -> Result<Option<types::RequestOptions>, HttpError> {
    if connect.is_none() && first_byte.is_none() && between.is_none() {
        return Ok(None);
    }
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let options = types::RequestOptions::new();
    let unsupported = |what: &str| HttpError::invalid(format!("the runtime refused the {what}"));
    if let Some(d) = connect {
        options
            .set_connect_timeout(Some(nanos(d)))
            .map_err(|()| unsupported("connect timeout"))?;
    }
    if let Some(d) = first_byte {
        options
            .set_first_byte_timeout(Some(nanos(d)))
            .map_err(|()| unsupported("first-byte timeout"))?;
    }
    if let Some(d) = between {
        options
            .set_between_bytes_timeout(Some(nanos(d)))
            .map_err(|()| unsupported("between-bytes timeout"))?;
    }
    Ok(Some(options))
}

/// Writes `bytes` to the request body and finishes it.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    {
        let stream = body
            .write()
            .map_err(|()| HttpError::invalid("the request body stream was already taken"))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| HttpError::from_stream(e, "writing the request body"))?;
        }
        // The stream must go before the body is finished.
    }
    OutgoingBody::finish(body, None).map_err(HttpError::from_code)
}

/// A request handed to the gateway whose response has not been read yet.
struct InFlight {
    future: FutureIncomingResponse,
    write_error: Option<HttpError>,
}

impl InFlight {
    /// The response head, if it has arrived (or failed).
    fn poll(&self) -> Option<Result<IncomingResponse, HttpError>> {
        self.future.get().map(|outer| match outer {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(HttpError::from_code(code)),
            Err(()) => Err(HttpError::new(
                HttpErrorKind::Transport,
                "the response was already taken",
            )),
        })
    }

    /// Waits for the response and reads its body.
    fn finish(self, (limit, truncate): (usize, bool)) -> Result<Response, HttpError> {
        let head = loop {
            if let Some(head) = self.poll() {
                break head;
            }
            self.future.subscribe().block();
        };
        match head {
            Ok(response) => read_response(response, limit, truncate),
            // The response's error usually explains more than a broken body stream, except
            // when the gateway itself stopped the body (e.g. a size cap) while it was written.
            Err(error) => Err(match self.write_error {
                Some(write) if write.kind == HttpErrorKind::Gateway => write,
                _ => error,
            }),
        }
    }
}

/// Reads status, headers and at most `limit` body bytes.
fn read_response(
    response: IncomingResponse,
    limit: usize,
    truncate: bool,
) -> Result<Response, HttpError> {
    let status = response.status();
    let headers: Vec<(String, String)> = {
        let fields = response.headers();
        let entries = fields.entries();
        entries
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect()
    };
    let too_large = || {
        HttpError::new(
            HttpErrorKind::TooLarge,
            format!(
                "HTTP response body too large: more than the limit of {limit} bytes (max_response_bytes)"
            ),
        )
    };
    let declared = header_in(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if !truncate && declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body = response
        .consume()
        .map_err(|()| HttpError::new(HttpErrorKind::Transport, "the response body was taken"))?;
    let mut bytes = Vec::new();
    let mut truncated = false;
    {
        let stream = body.stream().map_err(|()| {
            HttpError::new(
                HttpErrorKind::Transport,
                "the response body stream was taken",
            )
        })?;
        loop {
            // One byte more than the limit tells a body of exactly `limit` from a longer one.
            let want = (limit + 1 - bytes.len()).min(READ_CHUNK);
            match stream.blocking_read(want as u64) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(HttpError::from_stream(e, "reading the response body")),
            }
            if bytes.len() > limit {
                if !truncate {
                    return Err(too_large());
                }
                bytes.truncate(limit);
                truncated = true;
                break;
            }
        }
        // The stream goes before its body, the body before its response.
    }
    drop(body);
    drop(response);
    Ok(Response {
        status,
        headers,
        body: bytes,
        truncated,
    })
}

/// Sends several requests at once and returns their outcomes in the same order. All requests
/// are handed to the gateway first and their responses awaited together; bodies are then read
/// one after another. The gateway may cap how many requests a call has in flight or in total;
/// requests beyond a cap fail with its message.
pub fn send_all(requests: impl IntoIterator<Item = Request>) -> Vec<Result<Response, HttpError>> {
    let mut results: Vec<Option<Result<Response, HttpError>>> = Vec::new();
    let mut waiting: Vec<(usize, InFlight, (usize, bool))> = Vec::new();
    for (index, request) in requests.into_iter().enumerate() {
        let limits = (request.max_response_bytes, request.truncate);
        match request.start() {
            Ok(in_flight) => {
                results.push(None);
                waiting.push((index, in_flight, limits));
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    while !waiting.is_empty() {
        let ready = {
            let pollables: Vec<_> = waiting
                .iter()
                .map(|(_, f, _)| f.future.subscribe())
                .collect();
            let refs: Vec<_> = pollables.iter().collect();
            wasip2::io::poll::poll(&refs)
        };
        // Highest position first, so that removing one does not move the others.
        let mut ready: Vec<usize> = ready.into_iter().map(|i| i as usize).collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        ready.dedup();
        for position in ready {
            let (index, in_flight, limits) = waiting.swap_remove(position);
            results[index] = Some(in_flight.finish(limits));
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every request has an outcome"))
        .collect()
}

// ------------------------------------------------------------------------------------------
// Responses

/// A response: status, headers and the body read so far (all of it unless `truncated`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The headers in order, names in lower case as the runtime gives them, values as text
    /// (invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// The body (at most the request's `max_response_bytes`).
    pub body: Vec<u8>,
    /// The body was longer than the limit and has been cut (only with [`Request::truncate`]).
    pub truncated: bool,
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The status is 3xx (a redirect is never followed for you; see `location`).
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// The body as UTF-8 text; fails with [`HttpErrorKind::Decode`] if it is not UTF-8. A
    /// truncated body may end inside a character: use [`Response::text_lossy`] for that.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body).map_err(|e| {
            HttpError::new(
                HttpErrorKind::Decode,
                format!("the response body is not UTF-8 text: {e}"),
            )
        })
    }

    /// The body as text, invalid UTF-8 replaced by U+FFFD.
    pub fn text_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON into `T`; fails with [`HttpErrorKind::Decode`] if it does not
    /// parse or does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let what = if self.truncated {
                "the (truncated) response body"
            } else {
                "the response body"
            };
            HttpError::new(
                HttpErrorKind::Decode,
                format!("{what} is not the expected JSON: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let url = Url::parse("https://api.example.com:8443/v1/x?y=1#frag").unwrap();
        assert_eq!(url.scheme, Scheme::Https);
        assert_eq!(url.authority, "api.example.com:8443");
        assert_eq!(url.path_and_query, "/v1/x?y=1");
        assert_eq!(Url::parse("HTTP://h").unwrap().path_and_query, "/");
        assert_eq!(Url::parse("http://h?q").unwrap().path_and_query, "/?q");
        assert_eq!(
            Url::parse("http://[::1]:80/").unwrap().authority,
            "[::1]:80"
        );
    }

    #[test]
    fn bad_urls_say_why() {
        let err = |u: &str| Url::parse(u).unwrap_err().message;
        assert!(err("ftp://h/").contains("only http and https"));
        assert!(err("h/path").contains("expected `http://`"));
        assert!(err("http://u:p@h/").contains("credentials"));
        assert!(err("http:///x").contains("host is empty"));
        assert!(err("http://h:0/").contains("not a port"));
        assert!(err("http://h:99999/").contains("not a port"));
        assert!(err("http://h/a b").contains("whitespace"));
        assert!(err("http://[::1/").contains("unclosed"));
    }
}
