//! Body types: the response body sent to clients (which ends each request's
//! bookkeeping when it finishes or is dropped) and the counted request body
//! sent upstream. Both stream frame by frame; nothing is buffered here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::access::AccessRecord;
use crate::metrics::Metrics;

/// Rewrites a streamed body chunk by chunk, holding back at most a
/// bounded tail between chunks (what may be the start of something to
/// rewrite).
pub trait Transform: Send {
    /// The bytes to send for `data` (possibly fewer, held back).
    fn chunk(&mut self, data: Bytes) -> Bytes;
    /// What is still held back, at the end of the body.
    fn finish(&mut self) -> Bytes;
}

/// The body of every response the proxy sends.
pub struct ProxyBody {
    head: Option<Bytes>,
    rest: Option<Incoming>,
    /// Applied to `rest`'s data frames, when set.
    transform: Option<Box<dyn Transform>>,
    /// A trailers frame held while the transform's tail goes first.
    held: Option<Frame<Bytes>>,
    /// The request's bookkeeping; dropped (and so written) when the body
    /// ends or is dropped.
    record: Option<AccessRecord>,
}

/// Request body bytes on their way upstream, counted into the metrics.
pub struct CountedBody {
    inner: Option<Incoming>,
    metrics: Arc<Metrics>,
    /// The request's place in the budget, until the upload is done (or
    /// cut off because its answer is).
    permit: Option<Arc<crate::budget::SharedPermit>>,
}

// === impl ProxyBody ===

impl ProxyBody {
    /// A body held in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::new((!bytes.is_empty()).then_some(bytes), None)
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::new(None, None)
    }

    /// The upstream's body, streamed; `head` (bytes already read from it)
    /// goes first.
    pub fn upstream(head: Option<Bytes>, rest: Incoming) -> Self {
        Self::new(head, Some(rest))
    }

    /// The upstream's body, streamed through `transform`.
    pub fn transformed(rest: Incoming, transform: Box<dyn Transform>) -> Self {
        let mut body = Self::new(None, Some(rest));
        body.transform = Some(transform);
        body
    }

    fn new(head: Option<Bytes>, rest: Option<Incoming>) -> Self {
        Self {
            head,
            rest,
            transform: None,
            held: None,
            record: None,
        }
    }

    /// Attaches the request's bookkeeping, written when the body ends.
    pub fn with_access_record(mut self, record: AccessRecord) -> Self {
        self.record = Some(record);
        self
    }

    fn end(&mut self, complete: bool) {
        if let Some(mut record) = self.record.take() {
            record.complete = complete;
        }
    }

    /// The transform's held-back tail, once, when non-empty.
    fn finish_transform(&mut self) -> Option<Bytes> {
        let tail = self.transform.take()?.finish();
        (!tail.is_empty()).then_some(tail)
    }

    fn count(&mut self, n: usize) {
        if let Some(record) = &mut self.record {
            record.count(n as u64);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            this.count(head.len());
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        loop {
            let Some(rest) = this.rest.as_mut() else {
                this.end(true);
                return Poll::Ready(None);
            };
            let frame = match Pin::new(rest).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.rest = None;
                    if let Some(tail) = this.finish_transform() {
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                    this.end(true);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.end(false);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => return Poll::Pending,
            };
            let frame = match (frame.into_data(), this.transform.as_mut()) {
                (Ok(data), Some(t)) => {
                    let out = t.chunk(data);
                    if out.is_empty() {
                        // All held back: read on.
                        continue;
                    }
                    Frame::data(out)
                }
                (Ok(data), None) => Frame::data(data),
                (Err(trailers), _) => match this.finish_transform() {
                    Some(tail) => {
                        this.held = Some(trailers);
                        Frame::data(tail)
                    }
                    None => trailers,
                },
            };
            if let Some(data) = frame.data_ref() {
                let n = data.len();
                this.count(n);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && self.held.is_none()
            && self.transform.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.transform.is_some() {
            // The rewritten length is not known in advance.
            return SizeHint::new();
        }
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(head),
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + head);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + head);
                }
                hint
            }
        }
    }
}

// === impl CountedBody ===

impl CountedBody {
    /// Another empty body counted into the same metrics, for a request
    /// sent again.
    pub fn empty_like(&self) -> Self {
        Self::empty(self.metrics.clone())
    }
    /// Wraps a client's request body.
    pub fn new(inner: Incoming, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Some(inner),
            metrics,
            permit: None,
        }
    }

    /// Holds the request's place in the budget while the body is sent.
    pub fn hold(&mut self, permit: Option<Arc<crate::budget::SharedPermit>>) {
        self.permit = permit;
    }

    /// No body (a retried request that had none).
    pub fn empty(metrics: Arc<Metrics>) -> Self {
        Self {
            inner: None,
            metrics,
            permit: None,
        }
    }
}

/// An upload stopped because its answer was done first (the upstream
/// answered early and the client is gone, or never sent the rest).
#[derive(Debug)]
pub struct UploadCut;

impl std::fmt::Display for UploadCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upload was cut off: its answer was already done")
    }
}

impl std::error::Error for UploadCut {}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if this.permit.as_ref().is_some_and(|p| p.poll_cut(cx)) {
            // An error, not an end: the upstream must not take a cut
            // body for a whole one.
            this.permit = None;
            this.inner = None;
            return Poll::Ready(Some(Err(Box::new(UploadCut))));
        }
        let polled = Pin::new(inner).poll_frame(cx).map_err(|e| e.into());
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.metrics
                        .requests
                        .request_bytes
                        .inc_by(data.len() as u64);
                }
            }
            // Sent whole (or broken off): the place goes back now.
            Poll::Ready(None | Some(Err(_))) => this.permit = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // An empty body is never polled; it still counts as sent whole.
        let done = self.is_end_stream();
        self.end(done);
    }
}
