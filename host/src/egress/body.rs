//! Bodies on the way out (capped) and on the way back (capped, timed, scrubbed, and returning
//! their connection to the pool when read to the end).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime_wasi_http::Error;

use super::connect::PoolKey;
use super::scrub::StreamScrubber;
use super::{Body, Egress, EventLog, capped, describe};

/// The guest's request body, refused past the cap.
pub struct RequestBody {
    pub inner: Body,
    pub limit: u64,
    pub sent: u64,
    pub events: EventLog,
    pub index: Option<usize>,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.sent += data.len() as u64;
            let (sent, index) = (self.sent, self.index);
            update(&self.events, index, |e| e.bytes_out = sent);
            if self.sent > self.limit {
                let error = capped("the request body", self.limit, "max_request_body");
                let message = describe(&error);
                update(&self.events, index, |e| e.error = Some(message));
                return Poll::Ready(Some(Err(error)));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Changes the call's record of request `index`.
pub fn update(
    events: &EventLog,
    index: Option<usize>,
    change: impl FnOnce(&mut super::EgressEvent),
) {
    if let Some(i) = index {
        let mut events = events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(event) = events.get_mut(i) {
            change(event);
        }
    }
}

/// The upstream's response body as the guest reads it.
pub struct ResponseBody {
    pub inner: hyper::body::Incoming,
    pub limit: u64,
    pub received: u64,
    pub scrubber: StreamScrubber,
    pub between_bytes: Duration,
    pub timer: Pin<Box<tokio::time::Sleep>>,
    /// Whether the last poll found no data (the timer runs from then, not from when the guest
    /// last read: a tool busy elsewhere is not a slow upstream).
    pub waiting: bool,
    /// The connection, given back to the pool when the body ends.
    pub connection: Option<(PoolKey, SendRequest<Body>, Arc<Egress>)>,
    pub permit: Option<OwnedSemaphorePermit>,
    pub events: EventLog,
    pub index: Option<usize>,
    pub done: bool,
}

impl ResponseBody {
    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let message = describe(&error);
        update(&self.events, self.index, |e| e.error = Some(message));
        self.done = true;
        self.connection = None;
        self.permit = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = tokio::time::Instant::now() + this.between_bytes;
                    this.timer.as_mut().reset(deadline);
                }
                ready!(this.timer.as_mut().poll(cx));
                this.fail(Error::ConnectionReadTimeout)
            }
            Poll::Ready(Some(Err(e))) => this.fail(if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::Hyper(e)
            }),
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                let Ok(data) = frame.into_data() else {
                    // Trailers are not passed on: they could carry anything, unscrubbed.
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
                };
                this.received += data.len() as u64;
                let received = this.received;
                update(&this.events, this.index, |e| e.bytes_in = received);
                if this.received > this.limit {
                    return this.fail(capped("the response body", this.limit, "max_response_body"));
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(
                    this.scrubber.push(&data),
                )))))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.permit = None;
                if let Some((key, sender, egress)) = this.connection.take() {
                    egress.pool.put(key, sender);
                }
                let tail = this.scrubber.finish();
                if tail.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail)))))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
