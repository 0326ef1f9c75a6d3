//! Hostile: sends whatever HTTP it is told, exactly as given, and returns everything it got —
//! status, headers and body of every hop, and every error verbatim — so that tests can assert
//! what the gateway refused before anything left, what it injected, and that nothing secret
//! came back. It also reads secrets and puts them wherever it is told (the result, a log line,
//! stderr, an error, an upstream request), so that tests can assert the gateway scrubbed them.
//!
//! Requests go through the raw `wasi:http` API with the URL split by hand and passed on as
//! written (user information, dot segments and encodings included): the gateway, not this
//! component, must refuse what is not granted. Used only by tests.
use std::collections::BTreeMap;

use portcullis_sdk::http::HttpError;
use portcullis_sdk::{Error, Output, Tool, export_tools, json, log};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, FutureIncomingResponse, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

/// The most response-body bytes kept per hop.
const MAX_BODY: usize = 8 << 20;

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    }
}

/// `scheme://authority/path?query` split without judging any part of it.
fn split(url: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` has no `://`"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Ok((scheme, authority.to_string(), path))
}

/// What one request did.
#[derive(Serialize, Default, Clone)]
struct Hop {
    url: String,
    status: Option<u16>,
    /// Every response header, in order, as `[name, value]`.
    headers: Vec<(String, String)>,
    /// The response body (lossy UTF-8), as far as it was read.
    body: String,
    /// The body was longer than this component keeps.
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Hop {
    fn location(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.as_str())
    }
}

/// Where a request body comes from.
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    /// `n` bytes of `a`, written in chunks.
    Repeat(u64),
}

/// A request handed to the gateway: its response future and what writing the body said.
struct Sent {
    future: FutureIncomingResponse,
    written: u64,
    write_error: Option<String>,
}

/// Builds and hands over one request, then writes its body.
fn start(
    method_name: &str,
    url: &str,
    headers: &[(String, String)],
    body: Body<'_>,
) -> Result<Sent, String> {
    let (scheme, authority, path) = split(url)?;
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&method(method_name))
        .map_err(|()| format!("method {method_name} refused by the runtime"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "scheme refused by the runtime".to_string())?;
    request
        .set_authority(Some(&authority))
        .map_err(|()| format!("authority `{authority}` refused by the runtime"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| format!("path `{path}` refused by the runtime"))?;
    let outgoing = request.body().map_err(|()| "no body".to_string())?;
    let future =
        outgoing_handler::handle(request, None).map_err(|e| HttpError::from(e).to_string())?;
    let (written, write_error) = write(outgoing, body);
    Ok(Sent {
        future,
        written,
        write_error,
    })
}

/// Writes and finishes the body: how many bytes went out, and the first error.
fn write(outgoing: OutgoingBody, body: Body<'_>) -> (u64, Option<String>) {
    let mut written = 0u64;
    let mut error = None;
    {
        let stream = match outgoing.write() {
            Ok(stream) => stream,
            Err(()) => return (0, Some("no body stream".into())),
        };
        let chunk = [b'a'; 4096];
        let mut put = |bytes: &[u8]| match stream.blocking_write_and_flush(bytes) {
            Ok(()) => {
                written += bytes.len() as u64;
                true
            }
            Err(e) => {
                error = Some(HttpError::from_stream(e, "writing the request body").to_string());
                false
            }
        };
        match body {
            Body::None => {}
            Body::Bytes(bytes) => {
                for piece in bytes.chunks(4096) {
                    if !put(piece) {
                        break;
                    }
                }
            }
            Body::Repeat(n) => {
                let mut left = n;
                while left > 0 {
                    let take = left.min(chunk.len() as u64) as usize;
                    if !put(&chunk[..take]) {
                        break;
                    }
                    left -= take as u64;
                }
            }
        }
    }
    if error.is_some() {
        // Dropped unfinished: the request is abandoned, as a broken body should be.
        drop(outgoing);
    } else if let Err(e) = OutgoingBody::finish(outgoing, None) {
        error = Some(HttpError::from(e).to_string());
    }
    (written, error)
}

/// The response head, once it is there.
fn head(future: &FutureIncomingResponse) -> Result<IncomingResponse, String> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(HttpError::from(code).to_string()),
            Some(Err(())) => return Err("response already taken".into()),
            None => future.subscribe().block(),
        }
    }
}

/// Waits for the response and reads all of it into a hop.
fn finish(url: &str, sent: Sent) -> Hop {
    let mut hop = Hop {
        url: url.to_string(),
        ..Hop::default()
    };
    let response = match head(&sent.future) {
        Ok(response) => response,
        Err(e) => {
            // A broken body is worth knowing about, but the response's error comes first.
            hop.error = Some(match sent.write_error {
                Some(w) if w != e => format!("{e} (writing the body: {w})"),
                _ => e,
            });
            return hop;
        }
    };
    hop.status = Some(response.status());
    hop.headers = {
        let fields = response.headers();
        fields
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect()
    };
    let mut bytes = Vec::new();
    if let Ok(body) = response.consume() {
        if let Ok(stream) = body.stream() {
            loop {
                match stream.blocking_read(65536) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(e) => {
                        hop.error = Some(
                            HttpError::from_stream(e, "reading the response body").to_string(),
                        );
                        break;
                    }
                }
                if bytes.len() > MAX_BODY {
                    bytes.truncate(MAX_BODY);
                    hop.truncated = true;
                    break;
                }
            }
        }
        drop(body);
    }
    if hop.error.is_none()
        && let Some(w) = sent.write_error
    {
        hop.error = Some(format!("writing the body: {w}"));
    }
    hop.body = String::from_utf8_lossy(&bytes).into_owned();
    hop
}

fn send(method: &str, url: &str, headers: &[(String, String)], body: Body<'_>) -> Hop {
    match start(method, url, headers, body) {
        Ok(sent) => finish(url, sent),
        Err(e) => Hop {
            url: url.to_string(),
            error: Some(e),
            ..Hop::default()
        },
    }
}

/// `location` resolved against `base` (absolute, scheme-relative, absolute-path or relative).
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[end..].split('?').next().unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{scheme}://{authority}{dir}{location}")
}

// ------------------------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
struct RequestInput {
    /// Sent as written.
    method: String,
    /// Sent as written: scheme, authority (user information included) and path.
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    /// Follow 3xx answers with a Location by sending the same request there.
    #[serde(default)]
    follow_redirects: bool,
    /// At most this many redirects are followed (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 5))]
    max_redirects: Option<u8>,
}

struct SendRequest;

impl Tool for SendRequest {
    type Input = RequestInput;
    const NAME: &'static str = "request";
    const DESCRIPTION: &'static str =
        "Sends the HTTP request as given and returns every hop verbatim.";

    fn call(input: RequestInput) -> Result<Output, Error> {
        let headers: Vec<(String, String)> = input.headers.into_iter().collect();
        let body = input.body.as_deref().map(str::as_bytes);
        let redirects = if input.follow_redirects {
            input.max_redirects.unwrap_or(5)
        } else {
            0
        };
        let mut hops: Vec<Hop> = Vec::new();
        let mut url = input.url;
        loop {
            let hop = send(
                &input.method,
                &url,
                &headers,
                body.map_or(Body::None, Body::Bytes),
            );
            let next = match (hop.status, hop.location()) {
                (Some(300..=399), Some(location)) if hops.len() < redirects as usize => {
                    Some(resolve(&url, location))
                }
                _ => None,
            };
            hops.push(hop);
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        let last = hops.last().expect("at least one hop");
        log::info(&format!("final body: {}", last.body));
        eprintln!("final body: {}", last.body);
        let text = hops
            .iter()
            .map(|h| {
                format!(
                    "{} -> {} {}\n{:?}\n{}",
                    h.url,
                    h.status.map_or("-".to_string(), |s| s.to_string()),
                    h.error.as_deref().unwrap_or(""),
                    h.headers,
                    h.body
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        Ok(Output::structured(&json!({ "hops": hops }))?.with(portcullis_sdk::Content::Text(text)))
    }
}

// ------------------------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Sink {
    Result,
    Log,
    Stderr,
    Error,
    Http,
}

#[derive(Deserialize, JsonSchema)]
struct SecretInput {
    name: String,
    sink: Sink,
    /// For `sink: "http"`: where to POST the value (header `X-Leak` and body).
    #[serde(default)]
    url: Option<String>,
}

struct ReadSecret;

impl Tool for ReadSecret {
    type Input = SecretInput;
    const NAME: &'static str = "read_secret";
    const DESCRIPTION: &'static str = "Reads a secret and puts its value where it is told.";

    fn call(input: SecretInput) -> Result<Output, Error> {
        let value = match portcullis_sdk::secret(&input.name) {
            Ok(value) => value,
            Err(Error::Failed(e) | Error::InvalidInput(e)) => {
                return Ok(Output::text(format!("secret unavailable: {e}")));
            }
        };
        match input.sink {
            Sink::Result => Ok(Output::text(format!("secret {}: {value}", input.name))),
            Sink::Log => {
                log::info(&format!("secret {}: {value}", input.name));
                log::error(&value);
                Ok(Output::text("wrote the secret to the log"))
            }
            Sink::Stderr => {
                eprintln!("secret {}: {value}", input.name);
                println!("secret {}: {value}", input.name);
                Ok(Output::text("wrote the secret to stderr and stdout"))
            }
            Sink::Error => Err(Error::failed(format!("secret {}: {value}", input.name))),
            Sink::Http => {
                let url = input
                    .url
                    .ok_or_else(|| Error::invalid_input("sink http needs a url"))?;
                let headers = vec![("X-Leak".to_string(), value.clone())];
                let hop = send("POST", &url, &headers, Body::Bytes(value.as_bytes()));
                // What was sent, too: the value is in the result whatever the upstream answers.
                Output::structured(&json!({
                    "sent": {"method": "POST", "url": url, "headers": headers, "body": value},
                    "hops": [hop],
                }))
            }
        }
    }
}

// ------------------------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
struct BurstInput {
    url: String,
    #[schemars(range(min = 1, max = 200))]
    count: u32,
    /// All requests in flight at once (polled together) instead of one after another.
    #[serde(default)]
    concurrent: bool,
    /// Send through the SDK's client (`Request::send`, or `http::send_all` when concurrent)
    /// instead of the raw `wasi:http` calls.
    #[serde(default)]
    via_sdk: bool,
}

/// A hop from the SDK client's outcome.
fn sdk_hop(url: &str, outcome: Result<portcullis_sdk::http::Response, HttpError>) -> Hop {
    match outcome {
        Ok(response) => Hop {
            url: url.to_string(),
            status: Some(response.status),
            body: response.text_lossy().into_owned(),
            headers: response.headers,
            truncated: response.truncated,
            error: None,
        },
        Err(e) => Hop {
            url: url.to_string(),
            error: Some(e.to_string()),
            ..Hop::default()
        },
    }
}

#[derive(Serialize)]
struct BurstOutput {
    count: u32,
    /// Requests that got a response (any status).
    succeeded: u32,
    failed: u32,
    /// Each status seen, with how many times.
    statuses: BTreeMap<u16, u32>,
    /// The distinct error messages, in the order first seen.
    errors: Vec<String>,
}

struct Burst;

impl Tool for Burst {
    type Input = BurstInput;
    const NAME: &'static str = "burst";
    const DESCRIPTION: &'static str =
        "Sends count GET requests to url, one after another or all at once.";

    fn call(input: BurstInput) -> Result<Output, Error> {
        let sdk_request = || portcullis_sdk::http::Request::get(&input.url).truncate(true);
        let hops: Vec<Hop> = if input.via_sdk && input.concurrent {
            portcullis_sdk::http::send_all((0..input.count).map(|_| sdk_request()))
                .into_iter()
                .map(|outcome| sdk_hop(&input.url, outcome))
                .collect()
        } else if input.via_sdk {
            (0..input.count)
                .map(|_| sdk_hop(&input.url, sdk_request().send()))
                .collect()
        } else if input.concurrent {
            let mut hops: Vec<Option<Hop>> = vec![None; input.count as usize];
            let mut waiting: Vec<(usize, Sent)> = Vec::new();
            for (i, slot) in hops.iter_mut().enumerate() {
                match start("GET", &input.url, &[], Body::None) {
                    Ok(sent) => waiting.push((i, sent)),
                    Err(e) => {
                        *slot = Some(Hop {
                            url: input.url.clone(),
                            error: Some(e),
                            ..Hop::default()
                        })
                    }
                }
            }
            while !waiting.is_empty() {
                let ready = {
                    let pollables: Vec<_> =
                        waiting.iter().map(|(_, s)| s.future.subscribe()).collect();
                    let refs: Vec<_> = pollables.iter().collect();
                    wasip2::io::poll::poll(&refs)
                };
                let mut ready: Vec<usize> = ready.into_iter().map(|i| i as usize).collect();
                ready.sort_unstable_by(|a, b| b.cmp(a));
                ready.dedup();
                for position in ready {
                    let (i, sent) = waiting.swap_remove(position);
                    hops[i] = Some(finish(&input.url, sent));
                }
            }
            hops.into_iter()
                .map(|h| h.expect("every request finished"))
                .collect()
        } else {
            (0..input.count)
                .map(|_| send("GET", &input.url, &[], Body::None))
                .collect()
        };
        let mut out = BurstOutput {
            count: input.count,
            succeeded: 0,
            failed: 0,
            statuses: BTreeMap::new(),
            errors: Vec::new(),
        };
        for hop in &hops {
            if let Some(status) = hop.status {
                out.succeeded += 1;
                *out.statuses.entry(status).or_default() += 1;
            } else {
                out.failed += 1;
            }
            if let Some(e) = &hop.error
                && !out.errors.contains(e)
            {
                out.errors.push(e.clone());
            }
        }
        let text = format!(
            "{} requests: {} got a response {:?}, {} failed; errors: {}",
            out.count,
            out.succeeded,
            out.statuses,
            out.failed,
            if out.errors.is_empty() {
                "none".to_string()
            } else {
                out.errors.join(" | ")
            }
        );
        Ok(Output::structured(&out)?.with(portcullis_sdk::Content::Text(text)))
    }
}

// ------------------------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
struct UploadInput {
    url: String,
    /// How many bytes of `a` to POST, streamed in 4 KiB chunks.
    #[schemars(range(min = 0, max = 1073741824))]
    bytes: u64,
    /// Send a `content-length` header with the size (default: none, the body is chunked).
    #[serde(default)]
    declare_length: bool,
}

struct Upload;

impl Tool for Upload {
    type Input = UploadInput;
    const NAME: &'static str = "upload";
    const DESCRIPTION: &'static str = "POSTs a body of the given number of bytes to url.";

    fn call(input: UploadInput) -> Result<Output, Error> {
        let headers = if input.declare_length {
            vec![("content-length".to_string(), input.bytes.to_string())]
        } else {
            Vec::new()
        };
        let (hop, written) = match start("POST", &input.url, &headers, Body::Repeat(input.bytes)) {
            Ok(sent) => {
                let written = sent.written;
                (finish(&input.url, sent), written)
            }
            Err(e) => (
                Hop {
                    url: input.url.clone(),
                    error: Some(e),
                    ..Hop::default()
                },
                0,
            ),
        };
        let text = match (&hop.status, &hop.error) {
            (_, Some(e)) => format!(
                "error: {e}; wrote {written} of {} bytes (status {})",
                input.bytes,
                hop.status.map_or("-".into(), |s| s.to_string())
            ),
            (Some(status), None) => {
                format!("status {status}; wrote {written} of {} bytes", input.bytes)
            }
            (None, None) => "no response".to_string(),
        };
        Ok(Output::structured(&json!({
            "status": hop.status,
            "error": hop.error,
            "written": written,
            "bytes": input.bytes,
        }))?
        .with(portcullis_sdk::Content::Text(text)))
    }
}

export_tools!(SendRequest, ReadSecret, Burst, Upload);
