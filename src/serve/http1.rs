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

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::handler::{Answer, Head};

/// The most one read takes: a buffer on the stack of one poll, never in the connection's state.
const READ_CHUNK: usize = 4096;
/// As hyper: a request with more header fields gets 431.
const MAX_HEADERS: usize = 100;
/// RFC 9113 §3.4: the client connection preface of HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// After answering a request whose body (or head) was not read, the rest is read and dropped
/// for at most this long and this much before closing: closing a socket with unread bytes
/// sends a reset, which can destroy the answer before the client has read it.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Options {
    /// The most a request head may take (request line and header fields); beyond, 431.
    pub max_header_bytes: usize,
    /// From the first byte of a request to the end of its head; beyond, the connection closes.
    pub header_timeout: Duration,
    /// A plain listener: a connection that starts with the HTTP/2 preface is handed back.
    pub h2c: bool,
}

/// What the router makes of one request head.
#[derive(Debug)]
pub enum Route {
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
pub enum Served<IO> {
    Closed,
    /// It started with the HTTP/2 preface: the transport and the bytes already read from it.
    H2c(IO, Vec<u8>),
    /// The router handed a request to hyper: the transport and the bytes read from it, that
    /// request's head first (nothing of it was answered).
    Hyper(IO, Vec<u8>),
}

/// Serves HTTP/1.x on `io` until the client or `shutdown` closes it; `route` answers each
/// request.
pub async fn serve<IO, R>(
    mut io: IO,
    opts: &Options,
    mut shutdown: watch::Receiver<bool>,
    route: R,
) -> Served<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    R: Fn(&Head<'_>) -> Route,
{
    // Empty, with nothing allocated, whenever no request is being read.
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
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
            }
        }
        // A request has begun: its head must be complete within the header timeout.
        let deadline = Instant::now() + opts.header_timeout;
        let reply = loop {
            if first && opts.h2c {
                let n = buf.len().min(H2_PREFACE.len());
                if buf[..n] == H2_PREFACE[..n] {
                    if n == H2_PREFACE.len() {
                        return Served::H2c(io, buf);
                    }
                    if read_more(&mut io, &mut buf, deadline).await {
                        continue;
                    }
                    return Served::Closed;
                }
            }
            let stopping = *shutdown.borrow();
            match step(&buf, opts.max_header_bytes, &route, stopping) {
                Some(Step::Reply(reply)) => break reply,
                Some(Step::Hyper) => return Served::Hyper(io, buf),
                None if read_more(&mut io, &mut buf, deadline).await => {}
                None => return Served::Closed,
            }
        };
        first = false;
        // The bytes after this request's head are the next request's.
        let reuse = reply.consumed == buf.len();
        let mut out = if reuse {
            buf.clear();
            std::mem::take(&mut buf)
        } else {
            buf.drain(..reply.consumed);
            Vec::with_capacity(256)
        };
        reply.write_head(&mut out);
        let body: &[u8] = if reply.send_body { &reply.body } else { &[] };
        if write_all(&mut io, &out, body).await.is_err() {
            return Served::Closed;
        }
        drop(out);
        if !reply.keep_alive {
            if reply.linger {
                linger(&mut io).await;
            } else {
                let _ = io.shutdown().await;
            }
            return Served::Closed;
        }
    }
}

/// What to answer to one request, and what then.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Bytes,
    allow: Option<&'static str>,
    /// The answer's version: HTTP/1.0 to an HTTP/1.0 request, as hyper does.
    http10: bool,
    /// False for HEAD: the same headers, no body.
    send_body: bool,
    keep_alive: bool,
    /// Bytes of the request that were not read (a body, the rest of an oversize head).
    linger: bool,
    /// The length of the request head in the buffer.
    consumed: usize,
}

impl Reply {
    /// An answer of the connection itself (a head that cannot be parsed or is too large): no
    /// body, and the connection closes.
    fn error(status: StatusCode, consumed: usize) -> Reply {
        Reply {
            status,
            content_type: None,
            body: Bytes::new(),
            allow: None,
            http10: false,
            send_body: false,
            keep_alive: false,
            linger: true,
            consumed,
        }
    }

    fn write_head(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.http10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        let reason = self.status.canonical_reason().unwrap_or("");
        out.extend_from_slice(reason.as_bytes());
        if let Some(t) = self.content_type {
            out.extend_from_slice(b"\r\ncontent-type: ");
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(b"\r\ncontent-length: ");
        let _ = write!(out, "{}", self.body.len());
        if let Some(allow) = self.allow {
            out.extend_from_slice(b"\r\nallow: ");
            out.extend_from_slice(allow.as_bytes());
        }
        if !self.keep_alive {
            out.extend_from_slice(b"\r\nconnection: close");
        } else if self.http10 {
            out.extend_from_slice(b"\r\nconnection: keep-alive");
        }
        out.extend_from_slice(b"\r\ndate: ");
        out.extend_from_slice(&http_date());
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// Parses the request head at the start of `buf` and answers it; `None` while it is
/// incomplete. `stopping`: the daemon is shutting down, so this is the connection's last answer.
/// A parsed head's outcome.
enum Step {
    Reply(Reply),
    Hyper,
}

/// `None` while the head is incomplete.
fn step<R>(buf: &[u8], max_head: usize, route: &R, stopping: bool) -> Option<Step>
where
    R: Fn(&Head<'_>) -> Route,
{
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Some(Step::Reply(Reply::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                buf.len(),
            )))
        }
        Ok(httparse::Status::Partial) if buf.len() < max_head => return None,
        Ok(httparse::Status::Partial) => {
            return Some(Step::Reply(Reply::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                buf.len(),
            )))
        }
        // A bad token, header or version (HTTP/2.0 in a request line, say): 400 as hyper.
        Err(_) => {
            return Some(Step::Reply(Reply::error(
                StatusCode::BAD_REQUEST,
                buf.len(),
            )))
        }
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Some(Step::Reply(Reply::error(
            StatusCode::BAD_REQUEST,
            buf.len(),
        )));
    };
    let http10 = version == 0;

    let mut hosts = 0;
    let mut host = None;
    let mut forwarded = None;
    let mut content_length = None;
    let mut chunked_or_other_coding = false;
    let mut close = false;
    let mut keep_alive_asked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = visible_ascii(h.value);
        } else if h.name.eq_ignore_ascii_case("x-forwarded-host") {
            forwarded = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match (content_length_of(h.value), content_length) {
                (Some(n), None) => content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                // Invalid, or differing lengths: the message cannot be framed (RFC 9112 §6.3).
                _ => {
                    return Some(Step::Reply(Reply::error(
                        StatusCode::BAD_REQUEST,
                        buf.len(),
                    )))
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked_or_other_coding = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let has_body = chunked_or_other_coding || content_length.is_some_and(|n| n > 0);
    let (authority, path) = split_target(target);
    // RFC 9112 §3.2.2: an absolute-form target's authority is the host; §3.2: a repeated or
    // invalid Host is an error.
    let host = match (hosts, authority) {
        (2.., _) => None,
        (_, Some(authority)) => authority,
        _ => host,
    };
    let head = Head {
        method,
        path,
        host,
        has_body,
        sni: None,
        forwarded_host: super::handler::forwarded_host(forwarded.into_iter()),
    };
    let a = match route(&head) {
        Route::Answer(a) => a,
        Route::Hyper => return Some(Step::Hyper),
    };
    let keep_alive = !close && (!http10 || keep_alive_asked) && !has_body && !stopping;
    Some(Step::Reply(Reply {
        status: a.status,
        content_type: Some(a.content_type),
        body: a.body,
        allow: a.allow,
        http10,
        send_body: method != "HEAD",
        keep_alive,
        linger: has_body,
        consumed: len,
    }))
}

/// The authority (`Some(None)`: an empty one) and the path of a request target; query strings
/// are not part of routing. Targets in asterisk- or authority-form have no path we serve.
fn split_target(target: &str) -> (Option<Option<&str>>, &str) {
    let path_of = |s: &str| -> usize { s.find(['?', '#']).unwrap_or(s.len()) };
    if target.starts_with('/') {
        return (None, &target[..path_of(target)]);
    }
    if let Some((scheme, rest)) = target.split_once("://") {
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if scheme_ok {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = Some(&rest[..end]).filter(|a| !a.is_empty());
            let path = &rest[end..];
            let path = &path[..path_of(path)];
            return (Some(authority), if path.is_empty() { "/" } else { path });
        }
    }
    (None, "")
}

/// A header value as text when it is visible ASCII (as `http::HeaderValue::to_str`).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// `Content-Length`: digits, or a list of equal ones (RFC 9110 §8.6).
fn content_length_of(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
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

/// Closes our side, then reads and drops what the client still sends, within bounds.
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

/// RFC 9110 §6.6.1 `Date` in IMF-fixdate, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    thread_local! {
        static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let (at, date) = cache.get();
        if at == secs {
            return date;
        }
        let mut date = [0u8; 29];
        let _ = write!(&mut date[..], "{}", httpdate::HttpDate::from(now));
        cache.set((secs, date));
        date
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::live::Live;
    use crate::serve::handler::{route, POLICY_PATH};

    const BODY: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mail.a.example\r\nmax_age: 86400\r\n";

    fn live() -> Arc<Live> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mta-stsd.toml");
        std::fs::write(
            &path,
            "[server]\nhttps = [\"127.0.0.1:0\"]\n[tls]\nself_signed = true\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mail.a.example\"]\nmax_age = 86400\n\
             [domains.\"a.example\"]\n",
        )
        .unwrap();
        let loaded = crate::config::load(&path).expect("a valid config");
        Arc::new(Live::build(loaded.config, None).unwrap())
    }

    fn opts() -> Options {
        Options {
            max_header_bytes: 1024,
            header_timeout: Duration::from_secs(10),
            h2c: true,
        }
    }

    struct Server {
        client: DuplexStream,
        task: JoinHandle<Served<DuplexStream>>,
        stop: watch::Sender<bool>,
    }

    fn server(opts: Options) -> Server {
        let (client, io) = tokio::io::duplex(64 * 1024);
        let (stop, shutdown) = watch::channel(false);
        let live = live();
        let task = tokio::spawn(async move {
            serve(io, &opts, shutdown, |head| route(&live, head).into()).await
        });
        Server { client, task, stop }
    }

    /// Sends `input`, ends the request stream, and returns all the server answered.
    async fn exchange(input: &[u8]) -> String {
        let mut s = server(opts());
        s.client.write_all(input).await.unwrap();
        s.client.shutdown().await.unwrap();
        let mut out = String::new();
        s.client.read_to_string(&mut out).await.unwrap();
        assert!(matches!(s.task.await.unwrap(), Served::Closed));
        out
    }

    /// Status line, headers, body.
    type Response = (String, Vec<(String, String)>, String);

    /// One response: status line, headers (lowercase names; `date` checked and left out),
    /// body (none after a HEAD). Returns the rest.
    fn next(input: &str, head: bool) -> (Response, &str) {
        let (top, rest) = input.split_once("\r\n\r\n").expect("a complete head");
        let mut lines = top.split("\r\n");
        let status = lines.next().unwrap().to_owned();
        let mut headers = Vec::new();
        let mut len = 0;
        for l in lines {
            let (n, v) = l.split_once(": ").unwrap();
            assert_eq!(n, n.to_ascii_lowercase());
            if n == "date" {
                assert!(httpdate::parse_http_date(v).is_ok(), "{v}");
                continue;
            }
            if n == "content-length" {
                len = v.parse().unwrap();
            }
            headers.push((n.to_owned(), v.to_owned()));
        }
        let len = if head { 0 } else { len };
        let (body, rest) = rest.split_at(len);
        ((status, headers, body.to_owned()), rest)
    }

    fn get(path: &str, extra: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: mta-sts.a.example\r\n{extra}\r\n")
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order() {
        let input = format!(
            "{}HEAD {POLICY_PATH} HTTP/1.1\r\nHost: A.Example.:443\r\n\r\n{}{}",
            get(POLICY_PATH, ""),
            get("/nope", ""),
            get(&format!("{POLICY_PATH}?x=1"), ""),
        );
        let out = exchange(input.as_bytes()).await;
        let len = BODY.len().to_string();
        let ok = h(&[("content-type", "text/plain"), ("content-length", &len)]);
        let (r, rest) = next(&out, false);
        assert_eq!(r, ("HTTP/1.1 200 OK".into(), ok.clone(), BODY.into()));
        let (r, rest) = next(rest, true);
        assert_eq!(r, ("HTTP/1.1 200 OK".into(), ok.clone(), String::new()));
        let (r, rest) = next(rest, false);
        assert_eq!(r.0, "HTTP/1.1 404 Not Found");
        assert_eq!(r.2, "not found\n");
        let (r, rest) = next(rest, false);
        assert_eq!(r, ("HTTP/1.1 200 OK".into(), ok, BODY.into()));
        assert_eq!(rest, "");
    }

    #[tokio::test]
    async fn a_request_in_many_pieces_and_keep_alive_between_requests() {
        let mut s = server(opts());
        for _ in 0..2 {
            for b in get(POLICY_PATH, "").bytes() {
                s.client.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            let mut got = vec![0; 4096];
            let mut n = 0;
            while !String::from_utf8_lossy(&got[..n]).ends_with(BODY) {
                let m = s.client.read(&mut got[n..]).await.unwrap();
                assert!(m > 0, "closed early");
                n += m;
            }
            assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
        assert!(!s.task.is_finished());
        drop(s.client);
        assert!(matches!(s.task.await.unwrap(), Served::Closed));
    }

    #[tokio::test]
    async fn http10_closes_unless_keep_alive_is_asked() {
        let req = format!("GET {POLICY_PATH} HTTP/1.0\r\nHost: mta-sts.a.example\r\n\r\n");
        // The second request is never read: the server closes after the first.
        let out = exchange(format!("{req}{req}").as_bytes()).await;
        let (r, rest) = next(&out, false);
        assert_eq!(r.0, "HTTP/1.0 200 OK");
        assert!(r.1.contains(&("connection".into(), "close".into())));
        assert_eq!(rest, "");

        let req = format!(
            "GET {POLICY_PATH} HTTP/1.0\r\nHost: mta-sts.a.example\r\nConnection: Keep-Alive\r\n\r\n"
        );
        let out = exchange(format!("{req}{req}").as_bytes()).await;
        let (r, rest) = next(&out, false);
        assert_eq!(r.0, "HTTP/1.0 200 OK");
        assert!(r.1.contains(&("connection".into(), "keep-alive".into())));
        let (r, rest) = next(rest, false);
        assert_eq!(r.2, BODY);
        assert_eq!(rest, "");

        // HTTP/1.0 allows a request without Host; the policy needs one.
        let out = exchange(format!("GET {POLICY_PATH} HTTP/1.0\r\n\r\n").as_bytes()).await;
        assert!(out.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{out}");
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        let mut s = server(opts());
        let req = get(POLICY_PATH, "Connection: keep-alive, Close\r\n");
        s.client
            .write_all(format!("{req}{}", get(POLICY_PATH, "")).as_bytes())
            .await
            .unwrap();
        // No shutdown from the client: the server closes.
        let mut out = String::new();
        s.client.read_to_string(&mut out).await.unwrap();
        let (r, rest) = next(&out, false);
        assert_eq!(r.0, "HTTP/1.1 200 OK");
        assert!(r.1.contains(&("connection".into(), "close".into())));
        assert_eq!(r.2, BODY);
        assert_eq!(rest, "");
        assert!(matches!(s.task.await.unwrap(), Served::Closed));
    }

    #[tokio::test]
    async fn an_oversize_head_gets_431_and_close() {
        // Never complete: 431 once the limit is reached.
        let mut s = server(opts());
        let filler = format!("X-Filler: {}\r\n", "a".repeat(100));
        let req = format!(
            "GET {POLICY_PATH} HTTP/1.1\r\nHost: a.example\r\n{}",
            filler.repeat(20)
        );
        s.client.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.client.read_to_string(&mut out).await.unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nconnection: close\r\n"));
        // Complete, but too long.
        let req = get(POLICY_PATH, &filler.repeat(9));
        assert!(req.len() > 1024 && req.len() < 1024 + READ_CHUNK);
        let out = exchange(req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        // Too many fields.
        let out = exchange(get(POLICY_PATH, &"A: b\r\n".repeat(101)).as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }

    #[tokio::test]
    async fn a_body_is_never_read_400_and_close() {
        // The "body" holds what would be a request: it must not be answered.
        let hidden = get(POLICY_PATH, "");
        for framing in [
            "Transfer-Encoding: chunked\r\n".to_owned(),
            format!("Content-Length: {}\r\n", hidden.len()),
            format!(
                "Content-Length: {}\r\nExpect: 100-continue\r\n",
                hidden.len()
            ),
        ] {
            let out = exchange(format!("{}{hidden}", get(POLICY_PATH, &framing)).as_bytes()).await;
            let (r, rest) = next(&out, false);
            assert_eq!(r.0, "HTTP/1.1 400 Bad Request", "{framing}");
            assert!(r.1.contains(&("connection".into(), "close".into())));
            assert_eq!(rest, "", "{framing}");
        }
        // Other paths and methods keep their status; the connection still closes.
        let out = exchange(
            format!("POST {POLICY_PATH} HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\n\r\nx")
                .as_bytes(),
        )
        .await;
        let (r, rest) = next(&out, false);
        assert_eq!(r.0, "HTTP/1.1 405 Method Not Allowed");
        assert!(r.1.contains(&("allow".into(), "GET, HEAD".into())));
        assert_eq!(rest, "");
        // An empty body is no body.
        let req = get(POLICY_PATH, "Content-Length: 0\r\n");
        let out = exchange(format!("{req}{req}").as_bytes()).await;
        let (_, rest) = next(&out, false);
        let (r, _) = next(rest, false);
        assert_eq!(r.2, BODY);
        // A length that cannot be trusted: 400 before routing.
        for bad in [
            "Content-Length: x\r\n",
            "Content-Length: 1\r\nContent-Length: 2\r\n",
        ] {
            let out = exchange(format!("{}{hidden}", get("/nope", bad)).as_bytes()).await;
            assert!(
                out.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{bad}: {out}"
            );
            assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
        }
    }

    #[tokio::test]
    async fn host_from_absolute_form_and_host_errors() {
        let out = exchange(
            format!(
                "GET http://MTA-STS.a.example:80{POLICY_PATH}?q HTTP/1.1\r\nHost: other.example\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(next(&out, false).0 .2, BODY, "{out}");
        let out = exchange(
            format!("GET http://other.example{POLICY_PATH} HTTP/1.1\r\nHost: a.example\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
        for bad in [
            format!("GET {POLICY_PATH} HTTP/1.1\r\n\r\n"),
            format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n"),
            format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: a.exämple\r\n\r\n"),
            format!("GET http://{POLICY_PATH} HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        ] {
            let out = exchange(format!("{bad}{}", get(POLICY_PATH, "")).as_bytes()).await;
            let (r, rest) = next(&out, false);
            assert_eq!(r.0, "HTTP/1.1 400 Bad Request", "{bad:?}");
            assert_eq!(r.2, "missing or invalid Host\n");
            // Answered with keep-alive, as before: the next request is served.
            assert_eq!(next(rest, false).0 .2, BODY, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn unsupported_versions_and_garbage_get_400_and_close() {
        for bad in [
            format!("GET {POLICY_PATH} HTTP/2.0\r\nHost: a.example\r\n\r\n"),
            format!("GET {POLICY_PATH} HTTP/1.2\r\nHost: a.example\r\n\r\n"),
            String::from_utf8_lossy(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").into_owned(),
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
        ] {
            let out = exchange(format!("{bad}{}", get(POLICY_PATH, "")).as_bytes()).await;
            assert!(
                out.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{bad:?}: {out}"
            );
            assert!(out.contains("\r\nconnection: close\r\n"));
            assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
        }
    }

    #[tokio::test]
    async fn a_request_the_router_hands_to_hyper_comes_back_unread() {
        let (mut client, io) = tokio::io::duplex(64 * 1024);
        let (_stop, shutdown) = watch::channel(false);
        let live = live();
        let task = tokio::spawn(async move {
            serve(io, &opts(), shutdown, |head| match head.method {
                "POST" => Route::Hyper,
                _ => route(&live, head).into(),
            })
            .await
        });
        let get = b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.example\r\n\r\n";
        let post = b"POST /r HTTP/1.1\r\nHost: r.example.org\r\nContent-Length: 4\r\n\r\nbody";
        client.write_all(get).await.unwrap();
        let mut answer = vec![0; 4096];
        let n = client.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
        client.write_all(post).await.unwrap();
        match task.await.unwrap() {
            // The head and whatever of the body came with it, for hyper to read again.
            Served::Hyper(_, read) => {
                assert!(post.starts_with(&read) && read.len() > 40, "{read:?}")
            }
            _ => panic!("not handed over"),
        }
    }

    #[tokio::test]
    async fn the_http2_preface_is_handed_back_on_a_plain_listener() {
        let mut s = server(opts());
        // In pieces: "P" could still be POST.
        s.client.write_all(&H2_PREFACE[..1]).await.unwrap();
        tokio::task::yield_now().await;
        s.client.write_all(&H2_PREFACE[1..]).await.unwrap();
        s.client.write_all(b"\0\0\0\x04").await.unwrap();
        match s.task.await.unwrap() {
            Served::H2c(_, read) => assert!(read.starts_with(H2_PREFACE)),
            _ => panic!("not handed back"),
        }
        // Not on TLS (ALPN chose HTTP/1.1) nor after a first request.
        let mut s = server(Options {
            h2c: false,
            ..opts()
        });
        s.client.write_all(H2_PREFACE).await.unwrap();
        let mut out = String::new();
        s.client.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        let out = exchange(
            format!(
                "{}{}",
                get(POLICY_PATH, ""),
                std::str::from_utf8(H2_PREFACE).unwrap()
            )
            .as_bytes(),
        )
        .await;
        let (r, rest) = next(&out, false);
        assert_eq!(r.2, BODY);
        assert!(rest.starts_with("HTTP/1.1 400 "), "{rest}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_is_cut_at_the_header_timeout() {
        let mut s = server(opts());
        let start = Instant::now();
        s.client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let mut out = Vec::new();
        s.client.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty());
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert!(matches!(s.task.await.unwrap(), Served::Closed));
    }

    #[tokio::test]
    async fn shutdown_closes_idle_at_once_and_answers_the_request_in_flight() {
        let s = server(opts());
        tokio::task::yield_now().await;
        s.stop.send(true).unwrap();
        assert!(matches!(s.task.await.unwrap(), Served::Closed));

        let mut s = server(opts());
        let req = get(POLICY_PATH, "");
        let (first, rest) = req.split_at(10);
        s.client.write_all(first.as_bytes()).await.unwrap();
        tokio::task::yield_now().await;
        s.stop.send(true).unwrap();
        s.client.write_all(rest.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.client.read_to_string(&mut out).await.unwrap();
        let (r, rest) = next(&out, false);
        assert_eq!(r.2, BODY);
        assert!(r.1.contains(&("connection".into(), "close".into())));
        assert_eq!(rest, "");
    }

    #[test]
    fn targets() {
        let p = POLICY_PATH;
        assert_eq!(split_target(p), (None, p));
        assert_eq!(split_target("/a?b#c"), (None, "/a"));
        assert_eq!(
            split_target("HTTPS://h.example:443/a?b"),
            (Some(Some("h.example:443")), "/a")
        );
        assert_eq!(
            split_target("http://h.example"),
            (Some(Some("h.example")), "/")
        );
        assert_eq!(
            split_target("http://h.example?x"),
            (Some(Some("h.example")), "/")
        );
        assert_eq!(split_target("http:///a"), (Some(None), "/a"));
        assert_eq!(split_target("*"), (None, ""));
        assert_eq!(split_target("h.example:443"), (None, ""));
        assert_eq!(content_length_of(b"12"), Some(12));
        assert_eq!(content_length_of(b"3, 3"), Some(3));
        assert_eq!(content_length_of(b"3, 4"), None);
        assert_eq!(content_length_of(b"-1"), None);
        assert_eq!(content_length_of(b"99999999999999999999"), None);
    }
}
