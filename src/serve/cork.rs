//! A connection's last answer leaves with its close: the answer, TLS's `close_notify` and
//! TCP's FIN in one segment instead of three.
//!
//! Why: a `Connection: close` request over TLS is a full handshake's connection, and every
//! segment sent on it costs the server a pass through the kernel's TCP path (on loopback,
//! through the receiver's too). `TCP_CORK` holds the answer's writes until the shutdown, whose
//! FIN the kernel sets on the held segment and sends at once (Linux `tcp_send_fin`); the
//! cork never delays past that shutdown, which always follows.

use std::io;

use tokio::net::TcpStream;

/// A transport that can hold its last writes for its shutdown.
pub(crate) trait Cork {
    /// The writes from now on are the connection's last: hold them (best effort) until the
    /// shutdown, which must follow.
    fn cork(&mut self) {}
}

impl Cork for TcpStream {
    fn cork(&mut self) {
        if let Err(e) = set_cork(self) {
            tracing::debug!(error = %e, "TCP_CORK not set");
        }
    }
}

#[cfg(target_os = "linux")]
fn set_cork(tcp: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(tcp).set_tcp_cork(true)
}

#[cfg(not(target_os = "linux"))]
fn set_cork(_: &TcpStream) -> io::Result<()> {
    Ok(())
}

impl<T: Cork + ?Sized> Cork for Box<T> {
    fn cork(&mut self) {
        (**self).cork()
    }
}

impl<T: Cork + ?Sized> Cork for &mut T {
    fn cork(&mut self) {
        (**self).cork()
    }
}

impl<T: Cork> Cork for tokio_rustls::server::TlsStream<T> {
    fn cork(&mut self) {
        self.get_mut().0.cork()
    }
}

/// In memory (the tests): nothing to hold.
impl Cork for tokio::io::DuplexStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The segments the socket on local `port` has sent, by the kernel's count (`ss -i`:
    /// `segs_out`, from TCP_INFO).
    fn segments_sent(port: u16) -> u64 {
        let out = std::process::Command::new("ss")
            .args(["-tinH", "sport", "=", &format!(":{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let field = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("segs_out:"))
            .unwrap_or_else(|| panic!("no segs_out in {text:?}"));
        field.parse().unwrap()
    }

    /// Two writes and the shutdown of a corked socket: one segment, whole and in order.
    #[tokio::test]
    async fn corked_writes_leave_with_the_fin_in_one_segment() {
        async fn segments(cork: bool) -> u64 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            server.set_nodelay(true).unwrap();
            // The handshake's last ACK is counted before, not in, the measurement.
            server.write_all(b"-").await.unwrap();
            let mut first = [0u8; 1];
            client.read_exact(&mut first).await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let before = segments_sent(port);
            if cork {
                server.cork();
            }
            server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            server.write_all(b"\r\nbody").await.unwrap();
            server.shutdown().await.unwrap();
            let sent = segments_sent(port) - before;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nbody");
            sent
        }
        assert_eq!(segments(false).await, 3, "two writes and a FIN, uncorked");
        assert_eq!(
            segments(true).await,
            1,
            "corked: one segment, both writes and the FIN"
        );
    }
}
