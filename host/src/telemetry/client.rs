//! The HTTP client the OTLP exporters send through: [`crate::outbound`] on a runtime of its
//! own. The SDK exports from its own threads, outside any tokio runtime (and the stdio
//! gateway's runtime has a single thread, which a flush at exit would block), so each request
//! is spawned on one small runtime that lives as long as the process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use opentelemetry_http::{HttpClient, HttpError};

use crate::outbound::{Target, USER_AGENT};

/// A collector's answer is a small protobuf message; more than this is refused.
const MAX_ANSWER_BYTES: usize = 4 << 20;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> Result<tokio::runtime::Handle> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("portcullis-otlp")
        .enable_all()
        .build()
        .context("starting the OTLP exporter's runtime")?;
    Ok(RUNTIME.get_or_init(|| runtime).handle().clone())
}

/// Sends every export to one endpoint, parsed at start.
#[derive(Clone)]
pub(super) struct OtlpClient {
    target: Arc<Target>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtlpClient({:?})", self.target)
    }
}

impl OtlpClient {
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self> {
        Ok(Self {
            target: Arc::new(Target::parse(url, "the OTLP endpoint")?),
            timeout,
            runtime: runtime()?,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let target = self.target.clone();
        parts.uri = target.path.parse()?;
        parts
            .headers
            .insert(header::HOST, target.host_header.parse()?);
        parts.headers.insert(
            header::USER_AGENT,
            header::HeaderValue::from_static(USER_AGENT),
        );
        let request = Request::from_parts(parts, Full::new(body));
        let timeout = self.timeout;
        let sent = self.runtime.spawn(async move {
            match tokio::time::timeout(timeout, target.send(request, MAX_ANSWER_BYTES)).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer from {target:?} within {timeout:?}")),
            }
        });
        Ok(sent.await??)
    }
}
