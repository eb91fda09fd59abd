//! Behind a reverse proxy: a real nginx terminates TLS and forwards `Host` (or, from a trusted
//! proxy address only, `X-Forwarded-Host`) to mta-stsd's plain listener (`https = []`, no
//! certificate in mta-stsd); the policy arrives byte-exact.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use crate::harness::daemon::{eventually_blocking, Daemon, TestCa, DEADLINE};
use crate::harness::dns::free_port;
use crate::harness::ConfigDir;

/// nginx on loopback in its own prefix directory; killed on drop.
struct Nginx {
    child: Child,
    dir: ConfigDir,
}

impl Nginx {
    /// nginx forwarding to `upstream` with the proxy header lines `headers`.
    fn start(upstream: SocketAddr, cert: &(String, String), port: u16, headers: &str) -> Nginx {
        let dir = ConfigDir::new();
        dir.write("cert.pem", &cert.0);
        dir.write("key.pem", &cert.1);
        let p = dir.path().display();
        let conf = format!(
            "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name mta-sts.example.org;\n\
             ssl_certificate {p}/cert.pem;\n    ssl_certificate_key {p}/key.pem;\n\
             location / {{\n      proxy_pass http://{upstream};\n      {headers}\n    }}\n  }}\n}}\n"
        );
        // As root, workers run as this user (nobody cannot read a 0700 temp dir).
        let user = if is_root() { "user root;\n" } else { "" };
        dir.write("nginx.conf", format!("{user}{conf}"));
        let child = Command::new("nginx")
            .args(["-p", &p.to_string(), "-c"])
            .arg(dir.file("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting nginx (Debian package nginx)");
        let mut n = Nginx { child, dir };
        eventually_blocking(DEADLINE, "nginx to listen", || {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", n.log());
            }
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .map(drop)
                .map_err(|e| format!("{e}\n{}", n.log()))
        });
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.file("error.log")).unwrap_or_default()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_in_front_of_the_plain_listener_serves_the_policy_byte_exact() {
    let dir = ConfigDir::with_config(
        "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\", \"*.mx.example.net\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n[domains.\"example.net\"]\n",
    );
    dir.check().assert_clean();
    let policy = dir.run(&["policy", "example.org"]);
    policy.assert_status(0);
    let d = Daemon::start(&dir.config_path());
    let ca = TestCa::new();
    let port = free_port();
    let nginx = Nginx::start(
        d.http.expect("a plain listener"),
        &ca.leaf(&["mta-sts.example.org"]),
        port,
        "proxy_set_header Host $host;",
    );
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    let client = ca.client(&["mta-sts.example.org"], addr, true);
    let r = client
        .get(format!(
            "https://mta-sts.example.org:{port}/.well-known/mta-sts.txt"
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", nginx.log()));
    assert_eq!(r.status(), 200, "{}", nginx.log());
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/plain",
        "{:?}",
        r.headers()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), policy.stdout_bytes);
    // Other paths get mta-stsd's 404 through nginx too.
    let r = client
        .get(format!("https://mta-sts.example.org:{port}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A request for `host`'s policy sent from `from` to the plain listener `to`, with an
/// `X-Forwarded-Host` of `forwarded`; `h2c`: HTTP/2 with prior knowledge (hyper's path), else
/// HTTP/1.1 (the lean path). The URL's own authority, an address, names no domain.
async fn fetch_forwarded(
    from: Ipv4Addr,
    to: SocketAddr,
    forwarded: &str,
    h2c: bool,
) -> (u16, String) {
    // reqwest wants a process-wide provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(from))
        .no_proxy()
        .timeout(DEADLINE);
    if h2c {
        b = b.http2_prior_knowledge();
    }
    let r = b
        .build()
        .unwrap()
        .get(format!("http://{to}/.well-known/mta-sts.txt"))
        .header("x-forwarded-host", forwarded)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_host_is_read_from_trusted_proxies_only() {
    let dir = ConfigDir::with_config(
        "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"127.0.0.2\", \"10.0.0.0/8\"]\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n[domains.\"example.net\"]\nmode = \"testing\"\n",
    );
    dir.check().assert_valid();
    let org = dir.run(&["policy", "example.org"]);
    let net = dir.run(&["policy", "example.net"]);
    let d = Daemon::start(&dir.config_path());
    let http = d.http.expect("a plain listener");
    let proxy = Ipv4Addr::new(127, 0, 0, 2);
    for h2c in [false, true] {
        // From the trusted address the header names the domain, its last value counting.
        let r = fetch_forwarded(proxy, http, "mta-sts.example.net", h2c).await;
        assert_eq!(
            (r.0, r.1.as_bytes()),
            (200, &net.stdout_bytes[..]),
            "h2c {h2c}"
        );
        let r = fetch_forwarded(proxy, http, "mta-sts.example.net, mta-sts.example.org", h2c).await;
        assert_eq!(
            (r.0, r.1.as_bytes()),
            (200, &org.stdout_bytes[..]),
            "h2c {h2c}"
        );
        // From any other address it is ignored: the authority, an address, has no policy.
        let r = fetch_forwarded(Ipv4Addr::LOCALHOST, http, "mta-sts.example.org", h2c).await;
        assert_eq!(r.0, 404, "h2c {h2c}: {}", r.1);
    }

    // nginx on the trusted address sends its upstream's name as Host and the client's in
    // X-Forwarded-Host, as a proxy that cannot forward Host would.
    let ca = TestCa::new();
    let port = free_port();
    let nginx = Nginx::start(
        http,
        &ca.leaf(&["mta-sts.example.org"]),
        port,
        "proxy_set_header Host backend.internal;\n      proxy_set_header X-Forwarded-Host $host;\n      \
         proxy_bind 127.0.0.2;",
    );
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    let client = ca.client(&["mta-sts.example.org"], addr, true);
    let r = client
        .get(format!(
            "https://mta-sts.example.org:{port}/.well-known/mta-sts.txt"
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", nginx.log()));
    assert_eq!(r.status(), 200, "{}", nginx.log());
    assert_eq!(r.bytes().await.unwrap().as_ref(), org.stdout_bytes);
}

#[test]
fn a_bad_trusted_proxy_is_a_config_error() {
    let dir = ConfigDir::with_config(
        "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\ntrusted_proxies = [\"proxy.internal\"]\n\
         [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n",
    );
    let out = dir.check();
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("`proxy.internal` is not an IP address or network"),
        "{}",
        out.stderr
    );
}

/// A Google-shaped report about example.org under `id`, gzipped.
fn report(id: &str) -> Vec<u8> {
    let json = String::from_utf8(crate::tlsrpt::receiver::fixture("google.json"))
        .unwrap()
        .replace("2024-09-03T00:00:00Z_example.net", id)
        .replace("example.net", "example.org");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, json.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// One HTTP/1.1 request on `conn` and its answer's status and body (Content-Length framed).
fn exchange(conn: &mut TcpStream, head: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = text[9..12].parse().unwrap();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    while buf.len() < end + len {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "closed in the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf.len(), end + len, "bytes beyond the answer");
    (status, String::from_utf8_lossy(&buf[end..]).into_owned())
}

fn post(host: &str, extra: &str, body: &[u8]) -> String {
    format!(
        "POST /v1/tlsrpt HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: application/tlsrpt+gzip\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_reports_through_a_proxy_reach_the_receiver_on_the_plain_listener() {
    let dir = ConfigDir::with_config(
        "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"127.0.0.2\"]\n\
         [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n\
         [tlsrpt]\nhosts = [\"tlsrpt.example.org\"]\npath = \"/v1/tlsrpt\"\nretention = \"100000d\"\n\
         [state]\ndir = \"state\"\n",
    );
    dir.check().assert_valid();
    let policy = dir.run(&["policy", "example.org"]);
    let d = Daemon::start(&dir.config_path());
    d.wait_log("TLS-RPT store open");
    let http = d.http.expect("a plain listener");

    // One keep-alive connection: a policy (the lean path), then reports (handed to hyper,
    // which reads bodies), then the policy again on the same connection.
    let mut conn = TcpStream::connect(http).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let get = "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\n\r\n";
    let r = exchange(&mut conn, get, b"");
    assert_eq!((r.0, r.1.as_bytes()), (200, &policy.stdout_bytes[..]));
    let one = report("proxy-1");
    let r = exchange(&mut conn, &post("tlsrpt.example.org", "", &one), &one);
    assert_eq!(r.0, 201, "{}", r.1);
    let r = exchange(&mut conn, &post("tlsrpt.example.org:80", "", &one), &one);
    assert_eq!(r.0, 200, "a duplicate report-id: {}", r.1);
    let r = exchange(&mut conn, get, b"");
    assert_eq!((r.0, r.1.as_bytes()), (200, &policy.stdout_bytes[..]));
    // Only the report host's path takes reports; policy hosts never do.
    let r = exchange(&mut conn, &post("mta-sts.example.org", "", &one), &one);
    assert_eq!(r.0, 404, "{}", r.1);

    // X-Forwarded-Host names the report host only from the trusted proxy address.
    let two = report("proxy-2");
    let fwd = "X-Forwarded-Host: tlsrpt.example.org\r\n";
    let mut untrusted = TcpStream::connect(http).unwrap();
    untrusted.set_read_timeout(Some(DEADLINE)).unwrap();
    let r = exchange(&mut untrusted, &post("backend.internal", fwd, &two), &two);
    assert_eq!(r.0, 404, "untrusted X-Forwarded-Host: {}", r.1);
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind((Ipv4Addr::new(127, 0, 0, 2), 0).into()).unwrap();
    let mut trusted = sock.connect(http).await.unwrap().into_std().unwrap();
    trusted.set_nonblocking(false).unwrap();
    trusted.set_read_timeout(Some(DEADLINE)).unwrap();
    let r = exchange(&mut trusted, &post("backend.internal", fwd, &two), &two);
    assert_eq!(r.0, 201, "trusted X-Forwarded-Host: {}", r.1);

    // h2c with prior knowledge (hyper from the first byte).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("tlsrpt.example.org", http)
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let r = h2c
        .post(format!(
            "http://tlsrpt.example.org:{}/v1/tlsrpt",
            http.port()
        ))
        .header("content-type", "application/tlsrpt+gzip")
        .body(report("proxy-3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "h2c");

    // A real nginx ends TLS and forwards Host, the report's body with it.
    let ca = TestCa::new();
    let port = free_port();
    let nginx = Nginx::start(
        http,
        &ca.leaf(&["tlsrpt.example.org"]),
        port,
        "proxy_set_header Host $host;",
    );
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    let client = ca.client(&["tlsrpt.example.org"], addr, true);
    let r = client
        .post(format!("https://tlsrpt.example.org:{port}/v1/tlsrpt"))
        .header("content-type", "application/tlsrpt+gzip")
        .body(report("proxy-4"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", nginx.log()));
    assert_eq!(r.status(), 201, "{}", nginx.log());

    // Four stored, one duplicate: what the store holds, not only what was answered.
    let m = d.metrics().await;
    assert!(
        m.contains("mta_stsd_tlsrpt_reports_total{result=\"stored\"} 4\n")
            && m.contains("mta_stsd_tlsrpt_reports_total{result=\"duplicate\"} 1\n"),
        "{m}"
    );
    let out = dir.run(&[
        "reports",
        "example.org",
        "--since",
        "2024-09-01",
        "--format",
        "json",
    ]);
    out.assert_status(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let day = &v["domains"][0]["days"][0];
    assert_eq!(
        (day["successful"].as_i64(), day["failed"].as_i64()),
        (Some(4 * 41), Some(4 * 2)),
        "{v}"
    );
}

/// A plain connection to `http` from `local` (a loopback address).
async fn connect_from(local: Ipv4Addr, http: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind((local, 0).into()).unwrap();
    let conn = sock.connect(http).await.unwrap().into_std().unwrap();
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn
}

/// Issue 23 item 5 behind a proxy: the per-sender limit on report POSTs counts the trusted
/// proxy's last `X-Forwarded-For` address, so two senders through one proxy have a bucket
/// each; from any other peer the header is ignored, so a sender cannot step around its limit
/// by naming another address.
#[tokio::test(flavor = "multi_thread")]
async fn report_rate_limits_count_the_sender_behind_a_trusted_proxy() {
    let dir = ConfigDir::with_config(
        "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"127.0.0.2\"]\n\
         [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n\
         [tlsrpt]\nhosts = [\"tlsrpt.example.org\"]\nretention = \"100000d\"\n\
         rate_burst = 1\nrate_refill = \"1h\"\n\
         [state]\ndir = \"state\"\n",
    );
    dir.check().assert_valid();
    let d = Daemon::start(&dir.config_path());
    d.wait_log("TLS-RPT store open");
    let http = d.http.expect("a plain listener");
    let send = |conn: &mut TcpStream, id: &str, forwarded_for: &str| {
        let body = report(id);
        let extra = format!("X-Forwarded-For: 203.0.113.9, {forwarded_for}\r\n");
        exchange(conn, &post("tlsrpt.example.org", &extra, &body), &body)
    };

    // Through the trusted proxy: one bucket per forwarded sender.
    let mut proxy = connect_from(Ipv4Addr::new(127, 0, 0, 2), http).await;
    assert_eq!(send(&mut proxy, "xff-1", "192.0.2.1").0, 201);
    let mut proxy = connect_from(Ipv4Addr::new(127, 0, 0, 2), http).await;
    assert_eq!(send(&mut proxy, "xff-2", "192.0.2.1").0, 429);
    let mut proxy = connect_from(Ipv4Addr::new(127, 0, 0, 2), http).await;
    assert_eq!(send(&mut proxy, "xff-3", "192.0.2.2").0, 201);

    // Another peer's header counts for nothing: its own address is limited.
    let mut direct = connect_from(Ipv4Addr::new(127, 0, 0, 3), http).await;
    assert_eq!(send(&mut direct, "xff-4", "192.0.2.3").0, 201);
    let mut direct = connect_from(Ipv4Addr::new(127, 0, 0, 3), http).await;
    assert_eq!(send(&mut direct, "xff-5", "192.0.2.4").0, 429);

    let line = d.wait_log("over the rate limit");
    assert!(line.contains("192.0.2.1"), "{line}");
}
