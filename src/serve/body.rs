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
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::conns::Slot;

/// A request body as the daemon's services (the report receiver, admin) read it.
pub struct Body {
    inner: Incoming,
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
}

/// What became of a paced body, for the answer: read to its end, cut off, or neither.
pub const UNREAD: u8 = 0;
pub const READ: u8 = 1;
pub const TOO_SLOW: u8 = 2;

#[derive(Debug)]
pub enum BodyError {
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
    pub fn unpaced(inner: Incoming) -> Body {
        Body { inner, pace: None }
    }

    /// A body held to `min_rate` bytes a second after `grace`; `state` says whether it was
    /// read to its end ([`READ`]) or cut off ([`TOO_SLOW`], for the answer to be 408).
    /// Progress is told to `slot`.
    pub fn paced(
        inner: Incoming,
        min_rate: u64,
        grace: Duration,
        slot: Arc<Slot>,
        state: Arc<AtomicU8>,
    ) -> Body {
        let start = Instant::now();
        if inner.is_end_stream() {
            state.store(READ, Ordering::Relaxed);
        }
        Body {
            inner,
            pace: Some(Box::new(Pace {
                start,
                received: 0,
                min_rate,
                grace,
                timer: Box::pin(tokio::time::sleep_until(start + grace)),
                slot,
                state,
            })),
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
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
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
