//! A lean HTTP/1.1 server for the public listeners, which holds no buffer while a connection
//! is idle.
//!
//! Why it exists: memory per idle keep-alive connection. hyper's HTTP/1 keeps an 8 KiB read
//! buffer and an 8 KiB header write buffer for a connection's whole life and cannot release
//! them; most of a policy server's connections are idle senders, and a policy server needs only
//! `GET`/`HEAD` of one path. Here a request head is read into a buffer that grows on demand up
//! to `max_header_bytes` and is freed once the request is answered (unless pipelined bytes
//! follow), and an answer is one vectored write of a small head and the shared body.
//!
//! What it does: keep-alive (HTTP/1.1 by default, HTTP/1.0 on `Connection: keep-alive`),
//! pipelining (answers in order), `Connection: close`, the header read timeout, 431 for an
//! oversize head, no request body ever read (a request with one is answered, then the
//! connection closed), graceful shutdown (the request in flight is answered, an idle connection
//! closed at once). Routing is [`super::handler`]'s, shared with hyper's HTTP/2. The idle
//! timeout is the transport's ([`super::idle::Idle`]). HTTP/2 (ALPN `h2`, or h2c prior
//! knowledge on a plain listener, handed back as [`Served::H2c`]), requests whose body must
//! be read (TLS reports behind a proxy, handed back as [`Served::Hyper`]) and the admin
//! listener stay with hyper.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

mod parse;
mod response;

use parse::{step, Step};

use super::conns::Slot;
use super::cork::Cork;
use super::handler::{Answer, Head};
use super::linger::{LINGER_BYTES, LINGER_TIME};

/// The most one read takes: a buffer on the stack of one poll, never in the connection's state.
const READ_CHUNK: usize = 4096;
/// RFC 9113 §3.4: the client connection preface of HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The most a request head may take (request line and header fields); beyond, 431.
    pub max_header_bytes: usize,
    /// From the first byte of a request to the end of its head; beyond, the connection closes.
    pub header_timeout: Duration,
    /// A plain listener: a connection that starts with the HTTP/2 preface is handed back.
    pub h2c: bool,
    /// The answer to this many requests is the connection's last (`connection: close`).
    pub max_requests: u64,
    /// The end of the connection's lifetime: idle then, it is closed; the answer to a request
    /// begun later is its last.
    pub closes_at: Instant,
    /// Told of each request answered: progress, for the connection cap.
    pub slot: Option<Arc<Slot>>,
}

/// What the router makes of one request head.
#[derive(Debug)]
pub(crate) enum Route {
    Answer(Answer),
    /// This request, and the connection from it on, are hyper's: it reads request bodies.
    Hyper,
}

impl From<Answer> for Route {
    fn from(a: Answer) -> Route {
        Route::Answer(a)
    }
}

/// How a connection ended.
pub(crate) enum Served<IO> {
    Closed,
    /// It started with the HTTP/2 preface: the transport and the bytes already read from it.
    H2c(IO, Vec<u8>),
    /// The router handed a request to hyper: the transport and the bytes read from it, that
    /// request's head first (nothing of it was answered).
    Hyper(IO, Vec<u8>),
}

/// Serves HTTP/1.x on `io` until the client or `shutdown` closes it; `route` answers each
/// request.
pub(crate) async fn serve<IO, R>(
    mut io: IO,
    opts: &Options,
    mut shutdown: watch::Receiver<bool>,
    route: R,
) -> Served<IO>
where
    IO: AsyncRead + AsyncWrite + Cork + Unpin,
    R: Fn(&Head<'_>) -> Route,
{
    // Empty, with nothing allocated, whenever no request is being read.
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    let mut answered: u64 = 0;
    // One timer for the connection's life, not one per request.
    let lifetime = tokio::time::sleep_until(opts.closes_at);
    tokio::pin!(lifetime);
    loop {
        if buf.is_empty() {
            buf = Vec::new();
            let stopping = *shutdown.borrow();
            if stopping {
                let _ = io.shutdown().await;
                return Served::Closed;
            }
            tokio::select! {
                r = read(&mut io, Some(&mut buf)) => match r {
                    Ok(n) if n > 0 => {}
                    _ => return Served::Closed,
                },
                // Idle at shutdown: close at once (the sender gone counts as shutdown).
                _ = shutdown.changed() => {
                    let _ = io.shutdown().await;
                    return Served::Closed;
                }
                // Idle at the end of its lifetime: the same.
                _ = &mut lifetime => {
                    let _ = io.shutdown().await;
                    return Served::Closed;
                }
            }
        }
        // The request, to its answer: boxed, so that the task of an idle connection holds only
        // what waiting for the next request takes.
        let next = Box::pin(request(
            &mut io, &mut buf, opts, &shutdown, &route, first, answered,
        ))
        .await;
        first = false;
        match next {
            Next::KeepAlive => answered += 1,
            Next::Closed => return Served::Closed,
            Next::H2c => return Served::H2c(io, buf),
            Next::Hyper => return Served::Hyper(io, buf),
        }
    }
}

/// How a connection goes on after a request.
enum Next {
    KeepAlive,
    Closed,
    /// `buf` holds the start of the HTTP/2 preface.
    H2c,
    /// `buf` holds the request, for hyper.
    Hyper,
}

/// Reads the rest of the request begun in `buf` and answers it. `first`: the connection's
/// first request; `answered`: the requests answered before it.
async fn request<IO, R>(
    io: &mut IO,
    buf: &mut Vec<u8>,
    opts: &Options,
    shutdown: &watch::Receiver<bool>,
    route: &R,
    first: bool,
    answered: u64,
) -> Next
where
    IO: AsyncRead + AsyncWrite + Cork + Unpin,
    R: Fn(&Head<'_>) -> Route,
{
    // A request has begun: its head must be complete within the header timeout.
    let begun = Instant::now();
    let deadline = begun + opts.header_timeout;
    let last = begun >= opts.closes_at || answered + 1 >= opts.max_requests;
    let reply = loop {
        if first && opts.h2c {
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] == H2_PREFACE[..n] {
                if n == H2_PREFACE.len() {
                    return Next::H2c;
                }
                if read_more(io, buf, deadline).await {
                    continue;
                }
                return Next::Closed;
            }
        }
        let stopping = last || *shutdown.borrow();
        match step(buf, opts.max_header_bytes, route, stopping) {
            Some(Step::Reply(reply)) => break reply,
            Some(Step::Hyper) => return Next::Hyper,
            None if read_more(io, buf, deadline).await => {}
            None => return Next::Closed,
        }
    };
    // The bytes after this request's head are the next request's.
    let reuse = reply.consumed == buf.len();
    let mut out = if reuse {
        buf.clear();
        std::mem::take(buf)
    } else {
        buf.drain(..reply.consumed);
        Vec::with_capacity(256)
    };
    reply.write_head(&mut out);
    let body: &[u8] = if reply.send_body { &reply.body } else { &[] };
    if !reply.keep_alive {
        // The answer, TLS's close_notify and the FIN: one segment.
        io.cork();
    }
    if write_all(io, &out, body).await.is_err() {
        return Next::Closed;
    }
    drop(out);
    if let Some(slot) = &opts.slot {
        slot.progress(begun);
    }
    if !reply.keep_alive {
        if reply.linger {
            linger(io).await;
        } else {
            let _ = io.shutdown().await;
        }
        return Next::Closed;
    }
    Next::KeepAlive
}

/// Reads once more into `buf` before `deadline`; false when the connection is done for
/// (end, error, or the header timeout).
async fn read_more<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, read(io, Some(buf))).await,
        Ok(Ok(n)) if n > 0
    )
}

/// One read of up to [`READ_CHUNK`] bytes, appended to `buf` (dropped when `None`). The bytes
/// land in a buffer on the poll's stack first, so an idle connection waiting here holds none.
fn read<'a, IO: AsyncRead + Unpin>(
    io: &'a mut IO,
    mut buf: Option<&'a mut Vec<u8>>,
) -> impl Future<Output = io::Result<usize>> + 'a {
    poll_fn(move |cx| {
        let mut chunk = [const { MaybeUninit::<u8>::uninit() }; READ_CHUNK];
        let mut rb = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
        if let Some(buf) = buf.as_deref_mut() {
            buf.extend_from_slice(rb.filled());
        }
        Poll::Ready(Ok(rb.filled().len()))
    })
}

/// Writes `head` and `body`, vectored (one TLS record, one `writev`, when they fit), and
/// flushes.
async fn write_all<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    head: &[u8],
    body: &[u8],
) -> io::Result<()> {
    let mut slices = [IoSlice::new(head), IoSlice::new(body)];
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    io.flush().await
}

/// Closes our side, then reads and drops what the client still sends, within bounds (see
/// [`super::linger`]).
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO) {
    let _ = io.shutdown().await;
    let drain = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            match read(io, None).await {
                Ok(n) if n > 0 => total += n,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

#[cfg(test)]
mod tests;
