//! The approval webhook: tells operators about approvals (pending, approved, denied).
//!
//! [`Webhook::send`] puts an event on a bounded queue (`webhook.queue`) and returns at once; when
//! the queue is full the event is dropped and a warning logged, so a slow or failing webhook never
//! holds up the gateway. One task delivers the events, one at a time and in order: it POSTs
//! `{"id": "ev_…", "event": …, "at": <RFC 3339 UTC>, "data": …}` with the headers
//! `X-Portcullis-Event` and `X-Portcullis-Delivery` (the id, the same on every attempt; use it to
//! de-duplicate). With a key, `X-Portcullis-Signature: sha256=<hex>` is the HMAC-SHA256 of the
//! exact body bytes: the receiver recomputes it over the raw body and compares in constant time.
//! A 2xx answer is delivered; anything else (another status, a connection error, no answer within
//! `webhook.timeout`) is retried after 200 ms, doubling up to 10 s, for `webhook.max_attempts`
//! attempts in all, then given up with a warning.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use tokio::sync::{Notify, mpsc};
use zeroize::Zeroizing;

use crate::config::WebhookConfig;
use crate::outbound::{Target, USER_AGENT};

type Signer = hmac::Hmac<sha2::Sha256>;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Sends approval events to the configured webhook. Cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    tx: mpsc::Sender<Job>,
    state: Arc<State>,
}

/// Shared with the delivery task (which must not hold `tx`, so it ends with the last `Webhook`).
struct State {
    /// Events queued or being delivered.
    pending: AtomicUsize,
    idle: Notify,
}

struct Job {
    id: String,
    event: String,
    body: Bytes,
}

struct Worker {
    target: Target,
    key: Option<Zeroizing<Vec<u8>>>,
    max_attempts: u32,
    timeout: Duration,
    backoff: Duration,
}

impl Webhook {
    /// Spawns the delivery task on the current tokio runtime. `key`: the HMAC key, if any.
    pub fn start(config: &WebhookConfig, key: Option<Zeroizing<Vec<u8>>>) -> Result<Self> {
        Self::start_with(config, key, FIRST_BACKOFF)
    }

    fn start_with(
        config: &WebhookConfig,
        key: Option<Zeroizing<Vec<u8>>>,
        backoff: Duration,
    ) -> Result<Self> {
        if let Some(key) = &key {
            Signer::new_from_slice(key).map_err(|_| anyhow!("webhook: unusable HMAC key"))?;
        }
        let runtime = tokio::runtime::Handle::try_current()
            .context("webhook: must be started inside the tokio runtime")?;
        let worker = Worker {
            target: Target::parse(&config.url, "webhook.url")?,
            key,
            max_attempts: config.max_attempts.max(1),
            timeout: config.timeout,
            backoff,
        };
        let (tx, mut rx) = mpsc::channel::<Job>(config.queue.max(1));
        let state = Arc::new(State {
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        let shared = state.clone();
        runtime.spawn(async move {
            while let Some(job) = rx.recv().await {
                worker.deliver(&job).await;
                shared.pending.fetch_sub(1, Ordering::AcqRel);
                shared.idle.notify_waiters();
            }
        });
        Ok(Self { tx, state })
    }

    /// Queues one event; never blocks, never fails. A full queue drops the event, with a warning.
    pub fn send(&self, event: &str, data: serde_json::Value) {
        let id = match crate::time::random_hex(12) {
            Ok(hex) => format!("ev_{hex}"),
            Err(e) => {
                tracing::warn!(event, error = %format!("{e:#}"), "webhook: no event id; event dropped");
                return;
            }
        };
        let body = serde_json::json!({
            "id": id,
            "event": event,
            "at": crate::time::now_rfc3339(),
            "data": data,
        });
        let body = match serde_json::to_vec(&body) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::warn!(%id, event, error = %e, "webhook: cannot encode event; dropped");
                return;
            }
        };
        let job = Job {
            id,
            event: event.to_string(),
            body,
        };
        self.state.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.tx.try_send(job) {
            self.state.pending.fetch_sub(1, Ordering::AcqRel);
            self.state.idle.notify_waiters();
            let (why, job) = match e {
                mpsc::error::TrySendError::Full(job) => ("the webhook queue is full", job),
                mpsc::error::TrySendError::Closed(job) => ("the webhook task has stopped", job),
            };
            tracing::warn!(id = %job.id, event = %job.event, "{why}; event dropped");
        }
    }

    /// Waits until every queued event has been delivered or given up, or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) {
        let drained = async {
            loop {
                let notified = self.state.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.state.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(timeout, drained).await.is_err() {
            let pending = self.state.pending.load(Ordering::Acquire);
            tracing::warn!(pending, "webhook: events still undelivered at exit");
        }
    }
}

impl Worker {
    async fn deliver(&self, job: &Job) {
        let signature = match &self.key {
            None => None,
            Some(key) => match Signer::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(&job.body);
                    Some(format!(
                        "sha256={}",
                        hex::encode(mac.finalize().into_bytes())
                    ))
                }
                Err(_) => {
                    tracing::warn!(id = %job.id, "webhook: unusable HMAC key; event dropped");
                    return;
                }
            },
        };
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            if attempt > 1 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            let once = self.attempt(job, signature.as_deref());
            match tokio::time::timeout(self.timeout, once).await {
                Ok(Ok(status)) if status.is_success() => {
                    tracing::debug!(id = %job.id, event = %job.event, attempt, "webhook delivered");
                    return;
                }
                Ok(Ok(status)) => last = format!("HTTP status {status}"),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {:?}", self.timeout),
            }
            tracing::debug!(id = %job.id, attempt, error = %last, "webhook attempt failed");
        }
        tracing::warn!(id = %job.id, event = %job.event, attempts = self.max_attempts,
            error = %last, "webhook delivery given up");
    }

    /// One connection, one request; the status of the answer.
    async fn attempt(&self, job: &Job, signature: Option<&str>) -> Result<StatusCode, String> {
        let t = &self.target;
        let mut request = Request::post(t.path.as_str())
            .header(header::HOST, t.host_header.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .header("x-portcullis-event", job.event.as_str())
            .header("x-portcullis-delivery", job.id.as_str());
        if let Some(signature) = signature {
            request = request.header("x-portcullis-signature", signature);
        }
        let request = request
            .body(Full::new(job.body.clone()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        // Only the status matters.
        self.target
            .send(request, 0)
            .await
            .map(|response| response.status())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;

    use super::*;

    type Seen = Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>;

    #[derive(Clone, Copy)]
    enum Mode {
        FailFirst,
        AlwaysFail,
        Hang,
    }

    /// A receiver on 127.0.0.1 that records every request and answers as `mode` says.
    async fn receiver(mode: Mode) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/approvals?x=1",
            listener.local_addr().unwrap()
        );
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push((parts.headers, body));
                            log.len()
                        };
                        let status = match mode {
                            Mode::FailFirst if n > 1 => 200,
                            Mode::Hang => {
                                tokio::time::sleep(Duration::from_secs(60)).await;
                                200
                            }
                            _ => 500,
                        };
                        let response = http::Response::builder().status(status);
                        Ok::<_, hyper::Error>(response.body(Full::new(Bytes::new())).unwrap())
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        (url, seen)
    }

    fn config(url: &str, queue: usize, max_attempts: u32) -> WebhookConfig {
        WebhookConfig {
            url: url.to_string(),
            secret: None,
            queue,
            max_attempts,
            timeout: Duration::from_secs(2),
        }
    }

    fn start(config: &WebhookConfig, key: Option<&[u8]>) -> Webhook {
        let key = key.map(|k| Zeroizing::new(k.to_vec()));
        Webhook::start_with(config, key, Duration::from_millis(5)).unwrap()
    }

    fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn delivered_after_one_retry_and_signed() {
        let (url, seen) = receiver(Mode::FailFirst).await;
        let hook = start(&config(&url, 10, 3), Some(b"k3y"));
        hook.send("approval.pending", serde_json::json!({"approval": "ap_1"}));
        hook.flush(Duration::from_secs(10)).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "one failure, one delivery");
        let (headers, body) = &seen[1];
        let id = header(headers, "x-portcullis-delivery").unwrap();
        assert_eq!(header(&seen[0].0, "x-portcullis-delivery"), Some(id));
        assert!(id.len() == 27 && id.starts_with("ev_"), "{id}");
        assert_eq!(
            header(headers, "x-portcullis-event"),
            Some("approval.pending")
        );
        assert_eq!(header(headers, "content-type"), Some("application/json"));
        assert_eq!(header(headers, "user-agent"), Some(USER_AGENT));
        assert_eq!(header(headers, "host"), url.split('/').nth(2));
        let signature = header(headers, "x-portcullis-signature").unwrap();
        let tag = hex::decode(signature.strip_prefix("sha256=").unwrap()).unwrap();
        let mut mac = Signer::new_from_slice(b"k3y").unwrap();
        mac.update(body);
        mac.verify_slice(&tag).unwrap();
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["id"], id);
        assert_eq!(json["event"], "approval.pending");
        assert_eq!(json["data"], serde_json::json!({"approval": "ap_1"}));
        assert!(json["at"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let (url, seen) = receiver(Mode::AlwaysFail).await;
        let hook = start(&config(&url, 10, 2), None);
        hook.send("approval.denied", serde_json::json!({}));
        let started = Instant::now();
        hook.flush(Duration::from_secs(10)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(hook.state.pending.load(Ordering::Acquire), 0);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn full_queue_drops_without_blocking() {
        let (url, _seen) = receiver(Mode::Hang).await;
        let hook = start(&config(&url, 1, 1), None);
        let started = Instant::now();
        for n in 0..50 {
            hook.send("approval.pending", serde_json::json!({ "n": n }));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "send blocked"
        );
        // At most one in flight and one queued: the rest were dropped.
        assert!(hook.state.pending.load(Ordering::Acquire) <= 2);
        let started = Instant::now();
        hook.flush(Duration::from_millis(50)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "flush ignored its timeout"
        );
    }

    #[tokio::test]
    async fn unsigned_without_a_key() {
        let (url, seen) = receiver(Mode::FailFirst).await;
        let hook = start(&config(&url, 10, 2), None);
        hook.send("approval.approved", serde_json::json!({"by": "op"}));
        hook.flush(Duration::from_secs(10)).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(
            seen.iter()
                .all(|(h, _)| h.get("x-portcullis-signature").is_none())
        );
    }

    #[tokio::test]
    async fn parses_urls() {
        for url in [
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "/relative",
        ] {
            assert!(Webhook::start(&config(url, 1, 1), None).is_err(), "{url}");
        }
        assert!(Webhook::start(&config("https://example.com", 1, 1), None).is_ok());
    }
}
