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

mod error;
mod url;

pub use error::{HttpError, HttpErrorKind};
pub use url::{Scheme, Url};

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    self, FutureIncomingResponse, HeaderError, IncomingResponse, OutgoingBody,
};
use wasip2::io::streams::StreamError;

/// The response body limit when the caller sets none: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Bytes read from the response body per host call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes written to the request body per host call (the most `blocking-write-and-flush` takes).
const WRITE_CHUNK: usize = 4096;

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
