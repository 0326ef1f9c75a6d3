//! Errors of the HTTP client, with messages written for people (and models).

use std::borrow::Cow;
use std::fmt;

use wasip2::http::types::{self, ErrorCode};
use wasip2::io::streams::StreamError;

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
    pub(super) kind: HttpErrorKind,
    pub(super) message: String,
}

impl HttpError {
    pub(super) fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
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
