//! The lean server end to end, over an in-memory duplex: what a client sees.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::live::Live;
use crate::policy::POLICY_PATH;
use crate::serve::handler::route;

const BODY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.a.example\r\nmax_age: 86400\r\n";

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
        max_requests: 1000,
        closes_at: Instant::now() + Duration::from_secs(3600),
        slot: None,
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
    let task =
        tokio::spawn(
            async move { serve(io, &opts, shutdown, |head| route(&live, head).into()).await },
        );
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
