//! A request body that must keep pace: after a grace, at least `min_body_rate` bytes a second
//! on average, or it ends in [`BodyError::TooSlow`] (answered 408). Without it a body dripped a
//! byte at a time holds its connection and a report handler for as long as the sender likes.
//!
//! Bytes arriving at the minimum rate or faster are progress for the connection cap
//! ([`super::conns`]); a drip is not.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};
use tracing::debug;

use super::conns::Slot;
use super::linger::{LINGER_BYTES, LINGER_TIME};
use super::{handler, Respond};

/// A request body as the daemon's services (the report receiver, admin) read it.
pub(crate) struct Body {
    /// `None` only once dropped (its rest drained by a task of its own).
    inner: Option<Incoming>,
    pace: Option<Box<Pace>>,
}

/// The minimum rate a body is held to; boxed, so an unpaced body stays small.
struct Pace {
    start: Instant,
    received: u64,
    min_rate: u64,
    grace: Duration,
    /// Fires at the deadline as it was when armed; re-armed lazily (as `Idle`'s).
    timer: Pin<Box<Sleep>>,
    slot: Arc<Slot>,
    state: Arc<AtomicU8>,
    /// HTTP/2: an answer given before the body was read ends the stream with RST_STREAM
    /// NO_ERROR (RFC 9113 §8.1) once the body is dropped; h2 drops the answer's frames still
    /// queued when it resets, so the rest is drained a while first (see [`Drop`]).
    linger: bool,
}

/// What became of a paced body, for the answer: read to its end, cut off, or neither (the
/// answer came first, and on HTTP/1.1 the connection must close: the rest is still coming).
pub(crate) const UNREAD: u8 = 0;
pub(crate) const READ: u8 = 1;
pub(crate) const TOO_SLOW: u8 = 2;

#[derive(Debug)]
pub(crate) enum BodyError {
    Http(hyper::Error),
    TooSlow { min_rate: u64 },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Http(e) => e.fmt(f),
            BodyError::TooSlow { min_rate } => {
                write!(f, "the body arrived slower than {min_rate} bytes a second")
            }
        }
    }
}

impl std::error::Error for BodyError {}

impl Body {
    /// A body read as it comes (the admin listener's, which reads none).
    pub(crate) fn unpaced(inner: Incoming) -> Body {
        Body {
            inner: Some(inner),
            pace: None,
        }
    }

    /// A body held to `min_rate` bytes a second after `grace`; `state` says whether it was
    /// read to its end ([`READ`]) or cut off ([`TOO_SLOW`], for the answer to be 408).
    /// Progress is told to `slot`. `linger`: HTTP/2, whose unread rest is drained on drop.
    pub(crate) fn paced(
        inner: Incoming,
        min_rate: u64,
        grace: Duration,
        slot: Arc<Slot>,
        state: Arc<AtomicU8>,
        linger: bool,
    ) -> Body {
        let start = Instant::now();
        if inner.is_end_stream() {
            state.store(READ, Ordering::Relaxed);
        }
        Body {
            inner: Some(inner),
            pace: Some(Box::new(Pace {
                start,
                received: 0,
                min_rate,
                grace,
                timer: Box::pin(tokio::time::sleep_until(start + grace)),
                slot,
                state,
                linger,
            })),
        }
    }
}

/// How hyper's requests are held to `[server]`'s body rate and request count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pacing {
    pub(super) min_rate: u64,
    pub(super) grace: Duration,
    pub(super) max_requests: u64,
    pub(super) h2: bool,
}

impl Pacing {
    /// `respond`'s answer to `req`, whose body must keep pace (408 when it did not), and
    /// whether the body was left unread (in part).
    pub(super) async fn paced(
        self,
        respond: Respond,
        req: Request<hyper::body::Incoming>,
        slot: &Arc<Slot>,
    ) -> (Response<Full<Bytes>>, bool) {
        let state = Arc::new(AtomicU8::new(UNREAD));
        let req = req.map(|b| {
            Body::paced(
                b,
                self.min_rate,
                self.grace,
                slot.clone(),
                state.clone(),
                self.h2,
            )
        });
        let response = respond(req).await;
        match state.load(Ordering::Relaxed) {
            READ => (response, false),
            TOO_SLOW => {
                debug!(min_rate = self.min_rate, "request body too slow: 408");
                let r = handler::plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body arrived too slowly\n",
                );
                (r, true)
            }
            _ => (response, true),
        }
    }
}

impl Pace {
    /// When the bytes received so far stop being enough: the grace, plus the time the
    /// minimum rate takes for them.
    fn deadline(&self) -> Instant {
        let secs = self.received as f64 / self.min_rate.max(1) as f64;
        self.start + self.grace + Duration::from_secs_f64(secs.min(1e9))
    }

    fn cut(&self) -> BodyError {
        self.state.store(TOO_SLOW, Ordering::Relaxed);
        BodyError::TooSlow {
            min_rate: self.min_rate,
        }
    }

    /// Counts `n` bytes arrived: an error when they came too late, else progress if at pace.
    fn arrived(&mut self, n: usize) -> Result<(), BodyError> {
        self.received += n as u64;
        let now = Instant::now();
        if now > self.deadline() {
            return Err(self.cut());
        }
        // At the minimum rate from the start, grace aside: what a sender doing its job does.
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        if self.received as f64 >= self.min_rate as f64 * elapsed {
            self.slot.progress(now);
        }
        Ok(())
    }

    /// Called while the body is pending: an error once the deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<BodyError> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.deadline();
            if deadline <= Instant::now() {
                return Poll::Ready(self.cut());
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(pace), Some(data)) = (&mut this.pace, frame.data_ref()) {
                    if let Err(e) = pace.arrived(data.len()) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Http(e)))),
            Poll::Ready(None) => {
                if let Some(pace) = &this.pace {
                    pace.state.store(READ, Ordering::Relaxed);
                }
                Poll::Ready(None)
            }
            Poll::Pending => match &mut this.pace {
                Some(pace) => pace.poll_deadline(cx).map(|e| Some(Err(e))),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Body {
    /// An HTTP/2 body dropped unread (the answer came first): its rest is read and dropped
    /// for at most [`LINGER_TIME`] and [`LINGER_BYTES`] before h2 resets the stream, so that
    /// the answer's frames are written by then (a reset drops those still queued).
    fn drop(&mut self) {
        let Some(pace) = &self.pace else { return };
        if !pace.linger || pace.state.load(Ordering::Relaxed) == READ {
            return;
        }
        let (Some(mut inner), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        rt.spawn(async move {
            let drain = async {
                let mut total = 0;
                while total < LINGER_BYTES {
                    match http_body_util::BodyExt::frame(&mut inner).await {
                        Some(Ok(f)) => total += f.data_ref().map_or(0, |d| d.len()),
                        _ => break,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        });
    }
}
