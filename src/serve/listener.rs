//! Accept loops: a cap on open connections, a bounded TLS handshake, HTTP/1.1 and HTTP/2 with
//! header limits, an idle timeout, and graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use super::idle::Idle;
use super::{handler, tls};
use crate::admin;
use crate::config::Limits;
use crate::daemon::state::Shared;

/// What a listener serves.
#[derive(Clone)]
pub enum Kind {
    Https(Arc<ServerConfig>),
    Http,
    Admin,
}

/// Everything an accept loop needs; cloned into each connection task.
#[derive(Clone)]
pub struct Listener {
    pub kind: Kind,
    pub shared: Arc<Shared>,
    pub limits: Limits,
    /// Shared by the public listeners; the admin listener has its own, so a flood of public
    /// connections never locks the operator out.
    pub permits: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub tracker: TaskTracker,
}

impl Listener {
    /// Accepts until shutdown. Beyond the cap, new connections wait in the kernel's backlog.
    pub async fn run(mut self, socket: TcpListener) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = self.shutdown.changed() => return,
                r = socket.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off rather than spin (mini-redis does the same).
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            // At the cap, this connection waits for a free slot and the listener stops
            // accepting; the permit is taken after accept so that idle listeners hold none.
            let permit = tokio::select! {
                _ = self.shutdown.changed() => return,
                p = self.permits.clone().acquire_owned() => p.expect("never closed"),
            };
            backoff = Duration::from_millis(10);
            let this = self.clone();
            let span = tracing::debug_span!("conn", %peer);
            self.tracker.spawn(
                async move {
                    let public = !matches!(this.kind, Kind::Admin);
                    if public {
                        this.shared.metrics.connections.inc();
                    }
                    this.connection(tcp).await;
                    if public {
                        this.shared.metrics.connections.dec();
                    }
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }

    async fn connection(&self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let io = Idle::new(tcp, self.limits.idle_timeout);
        match &self.kind {
            Kind::Https(config) => {
                let handshake = tls::accept(io, &self.shared, config.clone());
                match tokio::time::timeout(self.limits.handshake_timeout, handshake).await {
                    Ok(Ok(mut stream)) if tls::is_acme_validation(&stream) => {
                        debug!("ACME TLS-ALPN-01 validation handshake done");
                        let _ = stream.shutdown().await;
                    }
                    Ok(Ok(stream)) => {
                        // ALPN settled the protocol: no preface sniffing, no second state.
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        self.http(stream, Some(h2)).await
                    }
                    Ok(Err(e)) => {
                        self.shared.metrics.tls_handshake_failures.inc();
                        debug!(error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        self.shared.metrics.tls_handshake_failures.inc();
                        debug!("TLS handshake timed out");
                    }
                }
            }
            // Plain HTTP: HTTP/1.1, or HTTP/2 with prior knowledge (h2c); admin: HTTP/1.1.
            Kind::Http => self.http(io, None).await,
            Kind::Admin => self.http(io, Some(false)).await,
        }
    }

    /// Serves HTTP on `io`: HTTP/2 when `h2` is `Some(true)`, HTTP/1.1 when `Some(false)`,
    /// either (by the client's preface) when `None`.
    async fn http<IO>(&self, io: IO, h2: Option<bool>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper refuses a read buffer under 8 KiB; headers beyond it get 431.
        let max_header = self.limits.max_header_bytes.max(8192);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(max_header);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(max_header as u32)
            .max_concurrent_streams(64);
        let builder = match h2 {
            Some(true) => builder.http2_only(),
            Some(false) => builder.http1_only(),
            None => builder,
        };
        let shared = self.shared.clone();
        let admin = matches!(self.kind, Kind::Admin);
        // RFC 8555 §8.3: HTTP-01 validation comes to port 80, the plain listeners.
        let http01 = matches!(self.kind, Kind::Http);
        let service = service_fn(move |req| {
            let response = if admin {
                admin::respond(&shared, &req)
            } else if let Some(r) = http01.then(|| shared.acme.http01_response(&req)).flatten() {
                shared.metrics.request(r.status().as_u16());
                r
            } else {
                let live = shared.live.load();
                let r = handler::respond(&live, &req);
                shared.metrics.request(r.status().as_u16());
                r
            };
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut shutdown = self.shutdown.clone();
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "connection ended with an error");
        }
    }
}
