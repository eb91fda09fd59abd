//! Issue 23 item 10: a report refused before its body is read (415 by type, 413 by declared
//! length) reaches its sender as that status, not as a reset: HTTP/1.1 closes lingering,
//! HTTP/2 answers then ends the stream with RST_STREAM NO_ERROR (RFC 9113 §8.1). Two real
//! clients, whose timing differs: reqwest (hyper) and curl (nghttp2).

use std::process::Command;

use reqwest::StatusCode;

use crate::harness::daemon::{Daemon, TestCa};
use crate::harness::ConfigDir;
use crate::tlsrpt::receiver::{setup, start, JSON};

const HOST: &str = "tlsrpt.example.org";
/// Enough that a reset on a few percent of them shows (main lost 1 in 10 small ones).
const N: usize = 30;

/// `N` POSTs of `len` bytes as `media` with curl, a process each: every status, or curl's
/// error.
fn curl_n(
    dir: &ConfigDir,
    d: &Daemon,
    http1: bool,
    media: &str,
    len: usize,
) -> Vec<Result<StatusCode, String>> {
    let port = d.https.unwrap().port();
    let body = dir.path().join(format!("body-{len}"));
    std::fs::write(&body, vec![b'{'; len]).unwrap();
    let ca = dir.path().join("ca.pem");
    (0..N)
        .map(|_| {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "10",
                ])
                .arg(if http1 { "--http1.1" } else { "--http2" })
                .arg("--cacert")
                .arg(&ca)
                .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
                .args(["-H", &format!("content-type: {media}")])
                .arg("--data-binary")
                .arg(format!("@{}", body.display()))
                .arg(format!("https://{HOST}:{port}/v1/tlsrpt"))
                .output()
                .expect("curl (Debian package curl) runs");
            let code = String::from_utf8_lossy(&out.stdout);
            match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(s) if out.status.success() => Ok(s),
                _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            }
        })
        .collect()
}

/// `N` POSTs of `len` bytes as `media` from one client (HTTP/1.1: a connection each, as a
/// refusal closes it; HTTP/2: streams of one connection); every status seen, or the error.
async fn post_n(
    ca: &TestCa,
    d: &crate::harness::daemon::Daemon,
    http1: bool,
    media: &str,
    len: usize,
) -> Vec<Result<StatusCode, String>> {
    let addr = d.https.unwrap();
    let client = ca.client(&[HOST], addr, http1);
    let url = format!("https://{HOST}:{}/v1/tlsrpt", addr.port());
    let body = vec![b'{'; len];
    let mut seen = Vec::new();
    for _ in 0..N {
        let r = client
            .post(&url)
            .header("content-type", media)
            .body(body.clone())
            .send()
            .await;
        seen.push(match r {
            Ok(r) => Ok(r.status()),
            Err(e) => Err(format!("{e:?}")),
        });
    }
    seen
}

fn assert_all(seen: &[Result<StatusCode, String>], want: StatusCode, what: &str) {
    let wrong: Vec<_> = seen.iter().filter(|s| s.as_ref() != Ok(&want)).collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} of {N} did not see {want}: {:?}",
        wrong.len(),
        wrong.first()
    );
}

/// The sizes: a 654-byte report of the wrong type, a 190 KB one of the wrong type, and
/// a 190 KB one over the limit (refused by its Content-Length).
async fn refusals_are_seen(http1: bool) {
    let ca = TestCa::new();
    // Hundreds of POSTs from one address: past the default rate limit, which is not what
    // this test is about.
    let dir = setup(&ca, "max_report_bytes = 65536\nrate_burst = 100000");
    dir.write("ca.pem", &ca.pem);
    let d = start(&dir, &[]);
    let proto = if http1 { "HTTP/1.1" } else { "HTTP/2" };
    for (media, len, want) in [
        ("text/plain", 654, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("text/plain", 190_000, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (JSON, 190_000, StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let what = format!("{proto}, {len} bytes as {media}");
        let seen = post_n(&ca, &d, http1, media, len).await;
        assert_all(&seen, want, &format!("reqwest, {what}"));
        let seen = curl_n(&dir, &d, http1, media, len);
        assert_all(&seen, want, &format!("curl, {what}"));
    }
}

#[tokio::test]
async fn refused_reports_see_their_status_over_http1() {
    refusals_are_seen(true).await
}

#[tokio::test]
async fn refused_reports_see_their_status_over_http2() {
    refusals_are_seen(false).await
}
