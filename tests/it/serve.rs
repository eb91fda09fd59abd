//! `serve`: the real daemon on loopback ports, talked to by real HTTPS clients that trust only
//! a test CA.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::daemon::{eventually, plain_client, Daemon, TestCa};
use crate::harness::{ConfigDir, MAIN};

pub(crate) const PATH: &str = "/.well-known/mta-sts.txt";

pub(crate) const BODY_A: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mail.a.example\r\nmax_age: 86400\r\n";
pub(crate) const BODY_B: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mx.b.example\r\nmx: *.mx.b.example\r\nmax_age: 86400\r\n";

/// A config dir with two domains, each with its own certificate from `ca`: `a.example` an
/// exact name, `b.example` a wildcard.
pub(crate) fn two_domains(ca: &TestCa, server_extra: &str) -> ConfigDir {
    let dir = ConfigDir::new();
    let (a_cert, a_key) = ca.leaf(&["mta-sts.a.example"]);
    let (b_cert, b_key) = ca.leaf(&["*.b.example"]);
    dir.write("a.pem", a_cert);
    dir.write("a.key", a_key);
    dir.write("b.pem", b_cert);
    dir.write("b.key", b_key);
    dir.write(MAIN, config_text(server_extra, "86400"));
    dir
}

pub(crate) fn config_text(server_extra: &str, max_age: &str) -> String {
    format!(
        r#"[server]
https = ["127.0.0.1:0"]
http = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
{server_extra}

[tls]
certs = [{{ cert = "a.pem", key = "a.key" }}, {{ cert = "b.pem", key = "b.key" }}]

[policy]
mode = "enforce"
mx = ["mail.a.example"]
max_age = {max_age}

[domains."a.example"]

[domains."b.example"]
mx = ["mx.b.example", "*.mx.b.example"]
"#
    )
}

fn policy_url(host: &str, addr: std::net::SocketAddr) -> String {
    format!("https://{host}:{}{PATH}", addr.port())
}

/// Writes the main config by rename, as editors and config management do.
pub(crate) fn replace_config(dir: &ConfigDir, text: &str) {
    let tmp = dir.write(".mta-stsd.toml.tmp", text);
    std::fs::rename(tmp, dir.config_path()).unwrap();
}

/// The value of one sample line in the Prometheus text.
pub(crate) fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn sni_chooses_each_domains_certificate() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example", "mta-sts.b.example"], https, false);
    for (host, cert_file) in [
        ("mta-sts.a.example", "a.pem"),
        ("mta-sts.b.example", "b.pem"),
    ] {
        let r = client.get(policy_url(host, https)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
        let served = r
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .expect("TLS info")
            .to_vec();
        let pem = std::fs::read(dir.file(cert_file)).unwrap();
        let want = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(served, want.as_ref(), "{host} got another certificate");
    }
}

/// A raw rustls handshake; the error it ends with.
async fn handshake_error(
    addr: std::net::SocketAddr,
    ca: &TestCa,
    name: ServerName<'static>,
) -> rustls::Error {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = connector
        .connect(name, tcp)
        .await
        .expect_err("handshake must fail");
    *err.into_inner()
        .expect("a TLS error")
        .downcast::<rustls::Error>()
        .expect("a rustls error")
}

#[tokio::test]
async fn unknown_or_missing_sni_fails_with_unrecognized_name() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let unrecognized = rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName);
    for name in ["mta-sts.unknown.example", "a.example", "www.b.example"] {
        let err = handshake_error(https, &ca, ServerName::try_from(name.to_owned()).unwrap()).await;
        assert_eq!(err, unrecognized, "SNI {name}");
    }
    // rustls sends no SNI for an IP address.
    let err = handshake_error(https, &ca, ServerName::IpAddress(https.ip().into())).await;
    assert_eq!(err, unrecognized, "no SNI");
    let m = d.metrics().await;
    assert!(
        sample(&m, "mta_stsd_tls_handshake_failures_total") >= 4.0,
        "{m}"
    );
}

#[tokio::test]
async fn get_is_byte_exact_and_head_has_the_same_headers_without_body() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example", "mta-sts.b.example"], https, true);
    for (host, body) in [("mta-sts.a.example", BODY_A), ("mta-sts.b.example", BODY_B)] {
        let r = client.get(policy_url(host, https)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.version(), Version::HTTP_11);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), body.as_bytes(), "{host}");

        let r = client.head(policy_url(host, https)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert!(r.bytes().await.unwrap().is_empty());
    }
    // The same bytes as `mta-stsd policy` prints.
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "--config",
            dir.config_path().to_str().unwrap(),
            "policy",
            "a.example",
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, BODY_A.as_bytes());
}

#[tokio::test]
async fn http2_by_alpn() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.b.example"], https, false);
    let r = client
        .get(policy_url("mta-sts.b.example", https))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), BODY_B.as_bytes());
}

#[tokio::test]
async fn routing_404_405_400_and_never_a_redirect() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let c = plain_client();
    let url = |path: &str| format!("http://{http}{path}");
    let cases: Vec<(reqwest::RequestBuilder, StatusCode)> = vec![
        (
            c.get(url(PATH)).header("host", "mta-sts.a.example"),
            StatusCode::OK,
        ),
        (
            c.get(url(PATH)).header("host", "MTA-STS.A.Example.:8080"),
            StatusCode::OK,
        ),
        (c.get(url(PATH)).header("host", "a.example"), StatusCode::OK),
        (
            c.get(url(&format!("{PATH}?x=1")))
                .header("host", "mta-sts.a.example"),
            StatusCode::OK,
        ),
        (
            c.get(url(PATH)).header("host", "mta-sts.unknown.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/")).header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/.well-known/mta-sts.txt/"))
                .header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/metrics")).header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/status")).header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.post(url(PATH)).header("host", "mta-sts.a.example"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            c.delete(url(PATH)).header("host", "mta-sts.a.example"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            c.get(url(PATH))
                .header("host", "mta-sts.a.example")
                .body("x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            c.get(url(PATH)).header("host", "[::1]:80"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (req, want) in cases {
        let req = req.build().unwrap();
        let what = format!(
            "{} {} host={:?}",
            req.method(),
            req.url(),
            req.headers().get("host")
        );
        let r = c.execute(req).await.unwrap();
        assert_eq!(r.status(), want, "{what}");
        assert!(!r.status().is_redirection(), "{what}");
        if want == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(r.headers()["allow"], "GET, HEAD");
        }
    }
    // The admin endpoints are not on the public HTTPS listener either.
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example"], https, false);
    for path in ["/metrics", "/status", "/healthz"] {
        let r = client
            .get(format!("https://mta-sts.a.example:{}{path}", https.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn oversize_headers_and_missing_host_get_4xx() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "max_header_bytes = 8192");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let r = plain_client()
        .get(format!("http://{http}{PATH}"))
        .header("host", "mta-sts.a.example")
        .header("x-filler", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // HTTP/1.0 allows a request without Host.
    let mut tcp = TcpStream::connect(http).await.unwrap();
    tcp.write_all(format!("GET {PATH} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    // The daemon is still there.
    let r = plain_client()
        .get(d.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_endpoints() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let c = plain_client();
    let r = c.get(d.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let http = d.http.unwrap();
    for _ in 0..3 {
        c.get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.a.example")
            .send()
            .await
            .unwrap();
    }
    c.get(format!("http://{http}/nope"))
        .header("host", "mta-sts.a.example")
        .send()
        .await
        .unwrap();

    let s = d.status().await;
    assert_eq!(s["domains_total"], 2);
    assert_eq!(s["config"]["last_reload"]["ok"], true);
    let a = &s["domains"][0];
    assert_eq!(a["domain"], "a.example");
    let id = String::from_utf8(
        std::process::Command::new(crate::harness::BIN)
            .args([
                "--config",
                dir.config_path().to_str().unwrap(),
                "policy",
                "a.example",
            ])
            .output()
            .unwrap()
            .stderr,
    )
    .unwrap();
    assert_eq!(format!("id: {}\n", a["policy_id"].as_str().unwrap()), id);
    assert_eq!(a["mode"], "enforce");
    assert_eq!(a["certificate"], "configured");
    assert!(crate::harness::epoch(&a["served_since"]).unwrap() > 1_700_000_000);
    assert_eq!(a["dns"]["state"], "manual");

    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "mta_stsd_http_requests_total{status=\"200\"}"),
        3.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "mta_stsd_http_requests_total{status=\"404\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "mta_stsd_domains"), 2.0);
    assert_eq!(sample(&m, "mta_stsd_config_last_reload_success"), 1.0);
    assert!(m.contains("mta_stsd_certificate_expiry_timestamp_seconds{name=\"mta-sts.a.example\",source=\"configured\"}"), "{m}");
    assert!(m.contains("mta_stsd_certificate_expiry_timestamp_seconds{name=\"*.b.example\",source=\"configured\"}"), "{m}");
}

/// A client polls without pause while the config is rewritten 20 times, in place and by
/// rename: no request fails, and each new body is served after its change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example"], https, false);
    let url = policy_url("mta-sts.a.example", https);

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (client, url, stop, served) =
            (client.clone(), url.clone(), stop.clone(), served.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let body = r.text().await.unwrap_or_default();
                        if !body.starts_with(
                            "version: STSv1\r\nmode: enforce\r\nmx: mail.a.example\r\nmax_age: ",
                        ) {
                            failures.push(format!("odd body {body:?}"));
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            failures
        })
    };

    for i in 0..20u32 {
        let max_age = (100_000 + i).to_string();
        let text = config_text("", &max_age);
        if i % 2 == 0 {
            std::fs::write(dir.config_path(), &text).unwrap();
        } else {
            replace_config(&dir, &text);
        }
        let want = format!("max_age: {max_age}\r\n");
        eventually(&format!("change {i} to be served"), || {
            let (client, url, want) = (client.clone(), url.clone(), want.clone());
            async move {
                let body = client.get(&url).send().await.ok()?.text().await.ok()?;
                body.ends_with(&want).then_some(())
            }
        })
        .await;
        // The id follows the body.
        let s = d.status().await;
        let expected = std::process::Command::new(crate::harness::BIN)
            .args([
                "--config",
                dir.config_path().to_str().unwrap(),
                "policy",
                "a.example",
            ])
            .output()
            .unwrap();
        let id = String::from_utf8(expected.stderr).unwrap();
        assert_eq!(
            format!("id: {}\n", s["domains"][0]["policy_id"].as_str().unwrap()),
            id
        );
    }
    stop.store(true, Ordering::Relaxed);
    let failures = poller.await.unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:?}"
    );
    assert!(
        served.load(Ordering::Relaxed) >= 20,
        "the poller hardly ran"
    );
}

#[tokio::test]
async fn broken_config_keeps_the_last_good_one_serving() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let get_a = || async {
        plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.a.example")
            .send()
            .await
            .unwrap()
    };
    let broken = config_text("", "86400").replace("mode = \"enforce\"", "mode = \"enforcing\"");
    replace_config(&dir, &broken);
    let s = eventually("the failed reload in /status", || async {
        let s = d.status().await;
        (s["config"]["last_reload"]["ok"] == false).then_some(s)
    })
    .await;
    let problems = s["config"]["last_reload"]["problems"].as_array().unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("enforcing"))
        .unwrap()
        + 1;
    let want = format!(
        "{}:{line}:8: error: mode `enforcing`",
        dir.config_path().display()
    );
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&want)),
        "{want} not in {problems:?}"
    );
    let r = get_a().await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), BODY_A);
    let m = d.metrics().await;
    assert_eq!(sample(&m, "mta_stsd_config_last_reload_success"), 0.0);
    assert!(sample(&m, "mta_stsd_config_reloads_total{result=\"error\"}") >= 1.0);
    d.wait_log(&want);

    // Fixed again: served and reported as such.
    replace_config(&dir, &config_text("", "90000"));
    eventually("the fixed config", || async {
        let body = get_a().await.text().await.unwrap();
        body.ends_with("max_age: 90000\r\n").then_some(())
    })
    .await;
    assert_eq!(d.status().await["config"]["last_reload"]["ok"], true);
}

#[tokio::test]
async fn sighup_reloads_and_included_files_are_watched() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let text = format!(
        "include = [\"domains.d/*.toml\"]\n{}",
        config_text("", "86400")
    );
    std::fs::create_dir(dir.file("domains.d")).unwrap();
    dir.write(MAIN, &text);
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let get = |host: &'static str| async move {
        plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", host)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        get("mta-sts.c.example").await.status(),
        StatusCode::NOT_FOUND
    );

    // A new file in the include directory: its domain is served (self-signed, as no
    // configured certificate covers it).
    dir.write(MAIN, text.replace("[tls]\n", "[tls]\nself_signed = true\n"));
    dir.write(
        "domains.d/c.toml",
        "[domains.\"c.example\"]\nmode = \"testing\"\n",
    );
    eventually("c.example from the included file", || async {
        (get("mta-sts.c.example").await.status() == StatusCode::OK).then_some(())
    })
    .await;
    // Edited in place.
    dir.write(
        "domains.d/c.toml",
        "[domains.\"c.example\"]\nmode = \"none\"\n",
    );
    eventually("the edited included file", || async {
        get("mta-sts.c.example")
            .await
            .text()
            .await
            .unwrap()
            .contains("mode: none")
            .then_some(())
    })
    .await;

    // SIGHUP reloads even without a change.
    let ok_before = sample(
        &d.metrics().await,
        "mta_stsd_config_reloads_total{result=\"ok\"}",
    );
    let seen = d.lines().len();
    d.signal("HUP");
    d.wait_log_after(seen, "SIGHUP: reloading");
    eventually("the SIGHUP reload to count", || async {
        let now = sample(
            &d.metrics().await,
            "mta_stsd_config_reloads_total{result=\"ok\"}",
        );
        (now > ok_before).then_some(())
    })
    .await;
}

/// Kubernetes ConfigMap volumes: the config is a symlink through `..data`, which is swapped.
#[tokio::test]
async fn configmap_symlink_swap_is_seen() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let text = std::fs::read_to_string(dir.config_path()).unwrap();
    std::fs::remove_file(dir.config_path()).unwrap();
    let version = |n: &str, body: &str| {
        let v = dir.file(n);
        std::fs::create_dir(&v).unwrap();
        // Certificate paths are relative to the config file's directory (the volume).
        std::fs::write(v.join(MAIN), body).unwrap();
    };
    version("..2026_01", &text);
    std::os::unix::fs::symlink("..2026_01", dir.file("..data")).unwrap();
    std::os::unix::fs::symlink("..data/mta-stsd.toml", dir.config_path()).unwrap();
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();

    version(
        "..2026_02",
        &text.replace("max_age = 86400", "max_age = 7200"),
    );
    std::os::unix::fs::symlink("..2026_02", dir.file("..data_tmp")).unwrap();
    std::fs::rename(dir.file("..data_tmp"), dir.file("..data")).unwrap();
    eventually("the swapped ConfigMap", || async {
        let body = plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.b.example")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.ends_with("max_age: 7200\r\n").then_some(())
    })
    .await;
}

#[tokio::test]
async fn idle_and_slow_clients_are_cut_off() {
    let ca = TestCa::new();
    let dir = two_domains(
        &ca,
        "idle_timeout = \"1s\"\nheader_timeout = \"1s\"\nhandshake_timeout = \"1s\"",
    );
    let d = Daemon::start(&dir.config_path());
    let started = std::time::Instant::now();
    // Silent connections on each listener: closed by the server, not by us.
    for addr in [d.http.unwrap(), d.https.unwrap()] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf))
            .await
            .expect("the server must close an idle connection")
            .unwrap_or(0);
        assert!(n == 0 || addr == d.http.unwrap(), "unexpected data");
    }
    // A slowloris: half a request line, then nothing.
    let mut tcp = TcpStream::connect(d.http.unwrap()).await.unwrap();
    tcp.write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-s")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest))
        .await
        .expect("the server must cut a slow header")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(30));
    // Others are still served meanwhile.
    let r = plain_client()
        .get(format!("http://{}{PATH}", d.http.unwrap()))
        .header("host", "mta-sts.a.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn sigterm_exits_zero_within_the_bound() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "shutdown_timeout = \"2s\"");
    let mut d = Daemon::start(&dir.config_path());
    // An idle keep-alive connection must not hold the shutdown up.
    let _idle = std::net::TcpStream::connect(d.http.unwrap()).unwrap();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", d.lines().join("\n"));
    assert!(d
        .lines()
        .iter()
        .any(|l| l.contains("SIGTERM: shutting down")));
}

#[test]
fn systemd_notify_ready_reloading_stopping() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let sock_path = dir.file("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut d = Daemon::start_with(
        &dir.config_path(),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    assert!(recv().contains("READY=1"));
    d.signal("HUP");
    let reloading = recv();
    assert!(reloading.contains("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(recv().contains("READY=1"));
    d.signal("TERM");
    assert!(recv().contains("STOPPING=1"));
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn a_config_that_cannot_load_fails_the_start() {
    let dir = ConfigDir::with_config("[server]\nhttps = [\"127.0.0.1:0\"]\nbogus = 1\n");
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--config", dir.config_path().to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":3:1: error: unknown key `bogus`"),
        "{stderr}"
    );
}

/// Pipelined requests, HTTP/1.0 and keep-alive over real sockets: the plain listener, and TLS
/// with HTTP/1.1 by ALPN and with no ALPN at all.
#[tokio::test]
async fn http1_pipelining_and_http10_over_tcp_and_tls() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    // The last request is HTTP/1.0 without keep-alive: the server closes after it. `second`
    // is the host of all but the first request: over TLS, the SNI's (else 421).
    let pipelined = |second: &str| {
        format!(
            "GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\n\r\n\
             HEAD {PATH} HTTP/1.1\r\nHost: {second}\r\n\r\n\
             GET /nope?x HTTP/1.1\r\nHost: {second}\r\n\r\n\
             GET {PATH} HTTP/1.0\r\nHost: {second}\r\n\r\n"
        )
    };
    let check = |out: &str, second_body: &str| {
        let heads: Vec<&str> = out.lines().filter(|l| l.starts_with("HTTP/1.")).collect();
        assert_eq!(
            heads,
            [
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 404 Not Found",
                "HTTP/1.0 200 OK"
            ],
            "{out}"
        );
        let a = out.find(BODY_A).expect("the first body");
        let len = format!("content-length: {}\r\n", second_body.len());
        assert!(out[a + BODY_A.len()..].contains(&len), "{out}");
        assert!(out.ends_with(second_body), "{out}");
        assert_eq!(out.matches("version: STSv1").count(), 2, "{out}");
    };

    let mut tcp = TcpStream::connect(d.http.unwrap()).await.unwrap();
    tcp.write_all(pipelined("mta-sts.b.example").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    check(&out, BODY_B);

    let https = d.https.unwrap();
    for alpn in [vec![b"http/1.1".to_vec()], vec![]] {
        let mut config = ca.client_config();
        config.alpn_protocols = alpn;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(https).await.unwrap();
        let name = ServerName::try_from("mta-sts.a.example").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        // One request, its answer, then the rest pipelined: the connection was kept alive.
        let first = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\n\r\n");
        tls.write_all(first.as_bytes()).await.unwrap();
        let mut buf = vec![0; 4096];
        let mut n = 0;
        while !String::from_utf8_lossy(&buf[..n]).ends_with(BODY_A) {
            let m = tls.read(&mut buf[n..]).await.unwrap();
            assert!(m > 0, "closed after one request");
            n += m;
        }
        tls.write_all(pipelined("mta-sts.a.example").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        check(&out, BODY_A);
    }
}

/// The plain listener still speaks HTTP/2 with prior knowledge (h2c), beside HTTP/1.1.
#[tokio::test]
async fn h2c_prior_knowledge_on_the_plain_listener() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let _ = plain_client();
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("mta-sts.b.example", http)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://mta-sts.b.example:{}{PATH}", http.port());
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.version(), Version::HTTP_2);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.bytes().await.unwrap(), BODY_B.as_bytes());
    }
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        BODY_B.len().to_string().as_str()
    );
    let r = c.post(&url).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    // And HTTP/1.1 on the same listener, with the Date header RFC 9110 §6.6.1 asks for.
    let r = plain_client()
        .get(format!("http://{http}{PATH}"))
        .header("host", "mta-sts.b.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_11);
    assert!(r.headers().contains_key("date"));
    assert_eq!(r.bytes().await.unwrap(), BODY_B.as_bytes());
}

/// `--config` relative to the working directory (as in README's first command): changes are
/// still seen, though the watcher reports absolute paths.
#[tokio::test]
async fn relative_config_path_is_watched_too() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start_in(Some(dir.path()), std::path::Path::new(MAIN), &[]);
    let http = d.http.unwrap();
    replace_config(&dir, &config_text("", "77777"));
    eventually("the edit to be served", || async {
        let body = plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.a.example")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.ends_with("max_age: 77777\r\n").then_some(())
    })
    .await;
}

/// Regression (lifecycle issue): any file event used to start a reload, and every reload's own
/// reads were reported again, so one `cat` made the daemon reload ~15 times a second forever.
#[tokio::test]
async fn reads_cause_no_reload_and_one_edit_causes_one() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let reloads = || async {
        sample(
            &d.metrics().await,
            "mta_stsd_config_reloads_total{result=\"ok\"}",
        )
    };
    // Absence can only be observed over a window: 10 debounce periods.
    let idle = Duration::from_secs(2);
    let before = reloads().await;

    // Others read the files: cat, and `check` (which opens every file, certificates too).
    for name in [MAIN, "a.pem", "a.key", "b.pem"] {
        std::fs::read(dir.file(name)).unwrap();
    }
    dir.check().assert_clean();
    tokio::time::sleep(idle).await;
    assert_eq!(reloads().await, before, "reads made the daemon reload");

    // One edit in place: exactly one reload, and then the daemon is idle again (its own
    // reload reads the files).
    dir.write(MAIN, config_text("", "90000"));
    eventually("the edit's reload", || async {
        (reloads().await > before).then_some(())
    })
    .await;
    tokio::time::sleep(idle).await;
    assert_eq!(reloads().await, before + 1.0, "one edit, one reload");
}
