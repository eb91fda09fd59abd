//! Lingering close, as nginx's `lingering_close`: after our last answer, close our side, then
//! read and drop what the client still sends, within bounds, before the socket is closed.
//!
//! Why: closing a socket with unread bytes in its receive buffer sends a reset (RFC 1122
//! §4.2.2.13), and a reset can destroy an answer the client has not read yet. An answer given
//! before the request body was read (413, 415, 408) is exactly that case: without lingering,
//! the sender of a refused report sees a reset instead of the status.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The most time and bytes a lingering close spends draining.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
pub(crate) const LINGER_BYTES: usize = 256 * 1024;

/// A transport whose `poll_shutdown` lingers: hyper's HTTP/1.1 shuts the transport down when
/// it closes a connection (after an answer with `connection: close`, say), so this is where
/// the draining happens for hyper's connections.
pub(crate) struct Linger<IO> {
    inner: IO,
    /// Set once our side is shut: draining until this fires, the bytes run out or the client
    /// closes.
    drain: Option<(Pin<Box<Sleep>>, usize)>,
}

impl<IO> Linger<IO> {
    pub(crate) fn new(inner: IO) -> Self {
        Linger { inner, drain: None }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Linger<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.drain.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.drain = Some((Box::pin(tokio::time::sleep(LINGER_TIME)), 0));
        }
        let Some((timer, total)) = &mut this.drain else {
            return Poll::Ready(Ok(()));
        };
        loop {
            if *total >= LINGER_BYTES || timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [const { MaybeUninit::<u8>::uninit() }; 4096];
            let mut rb = ReadBuf::uninit(&mut chunk);
            match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb)) {
                Ok(()) if !rb.filled().is_empty() => *total += rb.filled().len(),
                // The client closed (or reset): nothing left to lose.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shutdown_drains_what_the_client_still_sends_then_ends() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = Linger::new(server);
        server.write_all(b"HTTP/1.1 413 \r\n\r\n").await.unwrap();
        let writer = tokio::spawn(async move {
            // More than the pipe holds: the server must read it for this to finish.
            client.write_all(&[b'x'; 8192]).await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            answer
        });
        tokio::time::timeout(LINGER_TIME / 2, server.shutdown())
            .await
            .expect("the drain ends when the client closes")
            .unwrap();
        drop(server);
        assert_eq!(writer.await.unwrap(), b"HTTP/1.1 413 \r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_closes_is_drained_for_linger_time_at_most() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut server = Linger::new(server);
        let start = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert_eq!(start.elapsed(), LINGER_TIME);
    }
}
