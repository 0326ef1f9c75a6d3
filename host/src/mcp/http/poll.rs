//! SSE polling (SEP-1699): the SSE stream of a session's request that is still open after
//! `[http] sse_poll_after` is closed by the gateway, after an event that tells the client when
//! to come back (`retry`); the client resumes with `Last-Event-ID` on the GET stream, where the
//! rest (the answer, a question for the user) arrives. A long call then holds no connection
//! through proxies and load balancers that cut long responses.
//!
//! rmcp keeps each request's events for resumption and can close a request's stream; which
//! stream is the request's is read from the first event's id (`<index>/<stream>`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::Frame;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio::sync::oneshot;

use super::Body;

/// How a stream is found and closed.
pub struct Poller {
    pub manager: Arc<LocalSessionManager>,
    pub after: Duration,
    pub retry: Duration,
}

/// The stream number in the first event of an SSE body (`id: 0/7` → 7).
fn stream_of(event: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(event).ok()?;
    let id = text
        .lines()
        .find_map(|line| line.strip_prefix("id:"))?
        .trim();
    id.split_once('/')?.1.parse().ok()
}

/// A body that reports its first event's stream, and its end (by being dropped).
struct Watched {
    body: Body,
    first: Option<oneshot::Sender<u64>>,
    _done: oneshot::Sender<()>,
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(stream) = stream_of(data)
            && let Some(first) = self.first.take()
        {
            let _ = first.send(stream);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Poller {
    /// `response` (an SSE stream of session `session`), closed early if still open after
    /// `after`.
    pub fn watch(&self, session: String, response: Response<Body>) -> Response<Body> {
        let (first, stream) = oneshot::channel();
        let (done, ended) = oneshot::channel::<()>();
        let (manager, after, retry) = (self.manager.clone(), self.after, self.retry);
        tokio::spawn(async move {
            let Ok(stream) = stream.await else { return };
            tokio::select! {
                _ = ended => return,
                () = tokio::time::sleep(after) => {}
            }
            let handle = manager.sessions.read().await.get(session.as_str()).cloned();
            if let Some(handle) = handle {
                tracing::debug!(stream, "closing a long SSE stream; the client resumes it");
                let _ = handle.close_sse_stream(stream, Some(retry)).await;
            }
        });
        response.map(|body| {
            Watched {
                body,
                first: Some(first),
                _done: done,
            }
            .boxed()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_read_from_the_first_event_id() {
        assert_eq!(stream_of(b"data: \nid: 0/7\nretry: 3000\n\n"), Some(7));
        assert_eq!(stream_of(b"id:0/12\n\n"), Some(12));
        // The GET stream's events carry no stream number.
        assert_eq!(stream_of(b"id: 3\ndata: {}\n\n"), None);
        assert_eq!(stream_of(b"data: {}\n\n"), None);
    }
}
