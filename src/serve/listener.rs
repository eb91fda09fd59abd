//! Accept loops: caps on open connections (global and per address, see [`super::conns`]), a
//! bounded TLS handshake, HTTP/1.1 and HTTP/2 with header limits, an idle timeout, and graceful shutdown. The public listeners' HTTP/1.1 is the
//! lean server of [`http1`]; their HTTP/2 (ALPN `h2`, h2c prior knowledge) and the admin
//! listener are hyper's.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, HOST};
use http::{Request, Uri};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use super::body::{Body, Pacing};
use super::conns::{AddressFull, Admission, Conns, Slot};
use super::cork::Cork;
use super::handler::Head;
use super::idle::Idle;
use super::linger::Linger;
use super::rewind::Rewind;
use super::{handler, http1, tls, Respond, Site};
use crate::config::Limits;

/// What a listener serves.
#[derive(Clone)]
pub(crate) enum Kind {
    Https(Arc<ServerConfig>),
    Http,
    /// The admin listener: every request goes to the daemon's admin service.
    Admin(Respond),
}

/// Everything an accept loop needs; cloned into each connection task.
#[derive(Clone)]
pub(crate) struct Listener {
    pub kind: Kind,
    pub site: Arc<Site>,
    /// Answers the `[tlsrpt] hosts` connections: the report receiver.
    pub reports: Respond,
    pub limits: Limits,
    /// Shared by the public listeners; the admin listener has its own, so a flood of public
    /// connections never locks the operator out.
    pub conns: Arc<Conns>,
    /// `[server] trusted_proxies`: peers whose `X-Forwarded-Host` is believed.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    pub shutdown: watch::Receiver<bool>,
    pub tracker: TaskTracker,
}

/// One connection's task: counted while open, closed when chosen to make room. `conn` makes
/// the connection's future in place (a future passed in would be held twice).
async fn task<F: Future<Output = ()>, C: FnOnce() -> F>(
    this: Arc<Listener>,
    admission: Admission,
    public: bool,
    conn: C,
) {
    if public {
        this.site.metrics.connections.inc();
    }
    tokio::select! {
        _ = conn() => {}
        _ = admission.slot.evicted() => {
            if public {
                this.site.metrics.connections_evicted.inc();
            }
            debug!("closed to make room for a new connection");
        }
    }
    if public {
        this.site.metrics.connections.dec();
    }
    drop(admission);
}

impl Listener {
    /// Accepts until shutdown. A connection from an address at its cap is closed at once; at
    /// the global cap the one without progress for longest is closed to make room, or, while
    /// every one is too young to close, new connections wait in the kernel's backlog.
    pub(crate) async fn run(mut self, socket: TcpListener) {
        let public = !matches!(self.kind, Kind::Admin(_));
        // One copy shared by the connection tasks: a clone each (limits and all, ~240 bytes)
        // would sit in every idle connection's task.
        let shared = Arc::new(self.clone());
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
            backoff = Duration::from_millis(10);
            let mut admission = match self.conns.admit(peer.ip()) {
                Ok(a) => a,
                Err(AddressFull) => {
                    if public {
                        self.site.metrics.connections_refused.inc();
                    }
                    debug!(%peer, "closed: the address holds max_connections_per_ip already");
                    continue;
                }
            };
            // The place is taken after accept so that idle listeners hold none.
            tokio::select! {
                _ = self.shutdown.changed() => return,
                _ = self.conns.place(&mut admission) => {}
            };
            let slot = admission.slot.clone();
            // A peer on a dual-stack socket may appear as ::ffff:a.b.c.d.
            let ip = peer.ip().to_canonical();
            let trusted = shared.trusted_proxies.iter().any(|n| n.contains(&ip));
            let this = Arc::clone(&shared);
            let own = Arc::clone(&shared);
            let span = tracing::debug_span!("conn", %peer);
            // A task type per kind: each as big as its own kind's idle state needs.
            match &shared.kind {
                Kind::Https(config) => {
                    let config = config.clone();
                    let conn = move || own.https(tcp, config, slot, trusted);
                    self.tracker
                        .spawn(task(this, admission, public, conn).instrument(span))
                }
                Kind::Http => {
                    let conn = move || own.plain(tcp, slot, trusted);
                    self.tracker
                        .spawn(task(this, admission, public, conn).instrument(span))
                }
                Kind::Admin(_) => {
                    let conn = move || own.admin(tcp, slot);
                    self.tracker
                        .spawn(task(this, admission, public, conn).instrument(span))
                }
            };
        }
    }

    /// A connection on a TLS listener. `trusted`: the peer is one of `[server] trusted_proxies`.
    async fn https(
        self: Arc<Self>,
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        slot: Arc<Slot>,
        trusted: bool,
    ) {
        let _ = tcp.set_nodelay(true);
        let io = Idle::new(tcp, self.limits.idle_timeout);
        // Boxed, as is every state that is not the idle one, so that the task of an idle
        // connection is no bigger than that state needs.
        let handshake = Box::pin(tls::accept(io, &self.site, config));
        // Not in the match's head: the timer would stay in the task while serving.
        let done = tokio::time::timeout(self.limits.handshake_timeout, handshake).await;
        match done {
            Ok(Ok(mut stream)) if tls::is_acme_validation(&*stream) => {
                debug!("ACME TLS-ALPN-01 validation handshake done");
                let _ = stream.shutdown().await;
            }
            // [tlsrpt] hosts: hyper, which reads request bodies (the lean path does not).
            Ok(Ok(stream)) if self.is_report_host(&*stream) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                Box::pin(self.http_as(stream, h2, None, false, true, slot)).await
            }
            Ok(Ok(stream)) => {
                let sni: Option<Arc<str>> = stream.get_ref().1.server_name().map(Arc::from);
                // ALPN settled the protocol: no preface sniffing, no second state.
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    Box::pin(self.http(stream, true, sni, trusted, slot)).await
                } else {
                    self.http1(stream, false, sni.as_deref(), trusted, slot)
                        .await
                }
            }
            Ok(Err(e)) => {
                self.site.metrics.tls_handshake_failures.inc();
                debug!(error = %e, "TLS handshake failed");
            }
            Err(_) => {
                self.site.metrics.tls_handshake_failures.inc();
                debug!("TLS handshake timed out");
            }
        }
    }

    /// A connection on a plain listener: HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
    async fn plain(self: Arc<Self>, tcp: TcpStream, slot: Arc<Slot>, trusted: bool) {
        let _ = tcp.set_nodelay(true);
        let io = Idle::new(tcp, self.limits.idle_timeout);
        self.http1(io, true, None, trusted, slot).await
    }

    /// A connection on the admin listener.
    async fn admin(self: Arc<Self>, tcp: TcpStream, slot: Arc<Slot>) {
        let _ = tcp.set_nodelay(true);
        let io = Idle::new(tcp, self.limits.idle_timeout);
        Box::pin(self.http(io, false, None, false, slot)).await
    }

    /// Serves a public connection with the lean HTTP/1.1 server; on a `plain` listener, one
    /// that starts with the HTTP/2 preface goes on with hyper's HTTP/2, and HTTP-01 validation
    /// requests are answered (RFC 8555 §8.3: they come to port 80). `sni`: on TLS, the name
    /// every request must be for. `trusted`: a trusted proxy's connection.
    async fn http1<IO>(
        &self,
        io: IO,
        plain: bool,
        sni: Option<&str>,
        trusted: bool,
        slot: Arc<Slot>,
    ) where
        IO: AsyncRead + AsyncWrite + Cork + Unpin + Send + 'static,
    {
        let opts = http1::Options {
            // The same floor as hyper's (README: "minimum 8192").
            max_header_bytes: self.limits.max_header_bytes.max(8192),
            header_timeout: self.limits.header_timeout,
            h2c: plain,
            max_requests: self.limits.max_requests_per_connection,
            closes_at: slot.opened + self.limits.max_connection_lifetime,
            slot: Some(slot.clone()),
        };
        let site = &self.site;
        let served = http1::serve(io, &opts, self.shutdown.clone(), |head| {
            let head = Head { sni, ..*head }.via(trusted);
            // A report through a proxy (TLS ended there): hyper reads its body.
            if plain && is_report_host(site, head.host) {
                return http1::Route::Hyper;
            }
            // An HTTP-01 token of another replica's order, for a name we serve: looked up in
            // the store on hyper's path, which may wait.
            if plain
                && site.acme.http01_unknown(head.method, head.path).is_some()
                && head.host.is_some_and(|h| serves(site, h))
            {
                return http1::Route::Hyper;
            }
            handler::answer(site, plain, &head).into()
        })
        .await;
        match served {
            http1::Served::H2c(io, read) => {
                Box::pin(self.http(Rewind::new(io, read), true, None, trusted, slot)).await
            }
            http1::Served::Hyper(io, read) => {
                Box::pin(self.http(Rewind::new(io, read), false, None, trusted, slot)).await
            }
            http1::Served::Closed => {}
        }
    }

    fn is_report_host<IO>(&self, stream: &tokio_rustls::server::TlsStream<IO>) -> bool {
        is_report_host(&self.site, stream.get_ref().1.server_name())
    }

    /// Serves hyper's HTTP on `io`: HTTP/2 when `h2` (the public listeners), else HTTP/1.1
    /// (the admin listener). `sni`: on TLS, the name every request must be for.
    async fn http<IO>(
        &self,
        io: IO,
        h2: bool,
        sni: Option<Arc<str>>,
        trusted: bool,
        slot: Arc<Slot>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.http_as(io, h2, sni, trusted, false, slot).await
    }

    /// [`Listener::http`]; `reports`: a `[tlsrpt] hosts` connection, answered by the receiver.
    /// The connection closes gracefully (HTTP/2: GOAWAY) at the end of its lifetime or after
    /// its most requests.
    async fn http_as<IO>(
        &self,
        io: IO,
        h2: bool,
        sni: Option<Arc<str>>,
        trusted: bool,
        reports: bool,
        slot: Arc<Slot>,
    ) where
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
        let builder = if h2 {
            builder.http2_only()
        } else {
            builder.http1_only()
        };
        let site = self.site.clone();
        // Requests serve does not answer itself go to the daemon's service.
        let other = match &self.kind {
            _ if reports => Some(self.reports.clone()),
            Kind::Admin(respond) => Some(respond.clone()),
            _ => None,
        };
        let http01 = matches!(self.kind, Kind::Http);
        let receiver = self.reports.clone();
        let limits = Pacing {
            min_rate: self.limits.min_body_rate,
            grace: self.limits.body_grace,
            max_requests: self.limits.max_requests_per_connection,
            h2,
        };
        let conn_slot = slot.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let site = site.clone();
            let sni = sni.clone();
            let other = other.clone();
            let receiver = receiver.clone();
            let slot = conn_slot.clone();
            async move {
                // A plain listener: TLS ended at a proxy, so the host says what a request is
                // for, a report host's going to the receiver with that host as its Host.
                let report_host = http01
                    .then(|| handler::head_of(&req, None, trusted).host)
                    .flatten()
                    .filter(|h| is_report_host(&site, Some(h)))
                    .map(str::to_owned);
                let (mut response, unread) = match (other, report_host) {
                    (Some(respond), _) if reports => {
                        let req = with_peer(req, slot.peer, trusted);
                        limits.paced(respond, req, &slot).await
                    }
                    (Some(respond), _) => (respond(req.map(Body::unpaced)).await, false),
                    (None, Some(host)) => {
                        let req = with_peer(with_host(req, &host), slot.peer, trusted);
                        limits.paced(receiver, req, &slot).await
                    }
                    (None, None) => {
                        if http01 {
                            let head = handler::head_of(&req, None, trusted);
                            let token = site.acme.http01_unknown(head.method, head.path);
                            if let Some(t) =
                                token.filter(|_| head.host.is_some_and(|h| serves(&site, h)))
                            {
                                site.acme.fetch_http01(t).await;
                            }
                        }
                        (
                            handler::respond(&site, http01, sni.as_deref(), trusted, &req),
                            false,
                        )
                    }
                };
                slot.progress(Instant::now());
                // HTTP/2 closes by GOAWAY (`Slot::retired`), HTTP/1.1 after this answer; and
                // after one given before the body was read: the rest of it is still coming, and
                // a client told nothing would send its next request after it.
                let last = slot.request(limits.max_requests);
                if (last || unread) && !h2 {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        // Lingering: an answer given before the body was read (413, 415, 408) reaches the
        // client instead of a reset. (HTTP/2's stream: see `Body`'s drop.)
        let conn = builder.serve_connection(TokioIo::new(Linger::new(io)), service);
        tokio::pin!(conn);
        let mut shutdown = self.shutdown.clone();
        let lifetime = tokio::time::sleep_until(slot.opened + self.limits.max_connection_lifetime);
        tokio::pin!(lifetime);
        let retire = tokio::select! {
            r = conn.as_mut() => Err(r),
            _ = shutdown.changed() => Ok(None),
            _ = &mut lifetime => Ok(Some("its lifetime ended")),
            _ = slot.retired() => Ok(Some("it answered its most requests")),
        };
        let result = match retire {
            Err(r) => r,
            Ok(None) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            Ok(Some(why)) => {
                debug!("closing gracefully: {why}");
                conn.as_mut().graceful_shutdown();
                // A client that never lets go (HTTP/2 waits for its PING answer) is bounded.
                tokio::time::timeout(self.limits.shutdown_timeout, conn)
                    .await
                    .unwrap_or(Ok(()))
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "connection ended with an error");
        }
    }
}

/// Whether `host` is one of `[tlsrpt] hosts`.
/// Whether `host` is one of our ACME names: only for those is a challenge answer looked up
/// in the store.
fn serves(site: &Site, host: &str) -> bool {
    crate::acme::is_acme_name(&site.live.load(), host)
}

fn is_report_host(site: &Site, host: Option<&str>) -> bool {
    host.is_some_and(|h| site.live.load().tlsrpt_host(h).is_some())
}

/// The client address of a report request, a request extension for the receiver's per-sender
/// limits: the peer's, or a trusted proxy's last `X-Forwarded-For` entry (the one it added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub IpAddr);

fn with_peer<B>(mut req: Request<B>, peer: IpAddr, trusted: bool) -> Request<B> {
    let forwarded = trusted
        .then(|| req.headers().get_all("x-forwarded-for").iter().next_back())
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .and_then(|v| {
            v.parse::<IpAddr>()
                .ok()
                .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
        });
    let ip = forwarded.unwrap_or(peer).to_canonical();
    req.extensions_mut().insert(Peer(ip));
    req
}

/// `req` naming `host` alone (its `Host`, no authority in the target): the host the listener
/// resolved (a trusted proxy's `X-Forwarded-Host`, else the request's own), for a service that
/// reads the host from the request.
fn with_host<B>(mut req: Request<B>, host: &str) -> Request<B> {
    if let Ok(v) = HeaderValue::from_str(host) {
        req.headers_mut().insert(HOST, v);
    }
    if req.uri().authority().is_some() {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = None;
        parts.authority = None;
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}
