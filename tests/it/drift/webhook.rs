//! `[alerts] webhook_file`: each change POSTed by `serve` to an HTTPS webhook (a local receiver
//! with a test CA certificate) in the world of `alerts` (a real Postfix as the MX, the MX in a
//! real BIND); a webhook that is down is retried, and its URL (a secret) never printed.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use crate::harness::daemon::TestCa;
use crate::harness::dns::free_port;
use crate::harness::drift::example_org;
use crate::harness::{run_with_config, ConfigDir, MAIN};

use super::alerts::{config, mx, PLAIN, VALID};

#[test]
fn webhook_down_is_retried_and_its_url_never_printed() {
    let dir = ConfigDir::new();
    let ca = TestCa::new();
    dir.write("ca.pem", &ca.pem);
    // Nothing listens there; the path stands for a token.
    let hook = format!("https://127.0.0.1:{}/hooks/s3cr3t-token", free_port());
    dir.write("hook.url", &hook);
    // A resolver that answers nothing: every check could not check, so findings appear.
    let config = config(free_port(), free_port(), "enforce").replace(
        "[alerts]\ncommand = \"alert.sh\"\n",
        "[alerts]\nwebhook_file = \"hook.url\"\n",
    );
    dir.write(
        MAIN,
        config.replace("smtp_timeout = \"2s\"", "smtp = false"),
    );
    let out = run_with_config(&dir.config_path(), &["drift", "--format", "text"]);
    assert!(
        out.stderr.contains("alerts: webhook: ") && out.stderr.contains("(after 4 attempts)"),
        "{}",
        out.dump()
    );
    assert!(
        !out.stderr.contains("s3cr3t") && !out.stdout.contains("s3cr3t"),
        "{}",
        out.dump()
    );
}

/// One POST the [`Webhook`] received: when, its request line and its body.
type Post = (std::time::Instant, String, String);

/// A local HTTPS webhook receiver (certificate for `localhost` from the test CA): keeps every
/// POST; answers 503 to the first `failing` ones, then 204. Dropped: nothing listens.
struct Webhook {
    port: u16,
    posts: std::sync::Arc<std::sync::Mutex<Vec<Post>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Webhook {
    fn start(ca: &TestCa, failing: usize) -> Webhook {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (cert, key) = ca.leaf(&["localhost"]);
        let acceptor = super::canned::acceptor(&cert, &key);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Bound here, served from the runtime (the test's own runtime may not block on it).
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let failing = Arc::new(std::sync::atomic::AtomicUsize::new(failing));
        let (seen, fail) = (posts.clone(), failing);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen, fail) = (acceptor.clone(), seen.clone(), fail.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    let (head, body) = loop {
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).into_owned();
                            let len: usize = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse().ok())?
                                })
                                .unwrap_or(0);
                            if got.len() >= end + 4 + len {
                                let body = got[end + 4..end + 4 + len].to_vec();
                                break (head, String::from_utf8(body).unwrap());
                            }
                        }
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    };
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    seen.lock()
                        .unwrap()
                        .push((std::time::Instant::now(), line, body));
                    let failed = fail
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if failed {
                        "503 Service Unavailable"
                    } else {
                        "204 No Content"
                    };
                    let _ = tls
                        .write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .as_bytes(),
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Webhook {
            port,
            posts,
            runtime: Some(runtime),
        }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// The events received and answered with success, in order.
    fn delivered(&self) -> Vec<Value> {
        let posts = self.posts();
        let mut out: Vec<Value> = Vec::new();
        // A 503'd post is sent again: the same body twice in a row, kept once.
        for (_, _, body) in &posts {
            let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
            if out.last() != Some(&v) {
                out.push(v);
            }
        }
        out
    }

    /// Stops listening: every later POST fails to connect.
    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of one sample in the Prometheus text, if there.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn serve_posts_each_change_to_an_https_webhook_retries_counts_and_logs_once() {
    use crate::harness::daemon::{eventually, Daemon};
    let ca = TestCa::new();
    let (_postfix, smtp_port) = mx(&ca);
    let dns = example_org(
        "webhook-test",
        &["a MX 10 mx-a", &format!("mx-a A {PLAIN}")],
        false,
    );
    let dns_port = dns.addr.port();
    // The first POST answered 503: retried after the backoff, then delivered.
    let mut hook = Webhook::start(&ca, 1);
    let dir = ConfigDir::new();
    dir.write("ca.pem", &ca.pem);
    // The path stands for a token: a secret.
    dir.write(
        "hook.url",
        format!("https://localhost:{}/hooks/s3cr3t-token", hook.port),
    );
    let config = |mode: &str| {
        config(dns_port, smtp_port, mode).replace(
            "[alerts]\ncommand = \"alert.sh\"\n",
            "interval = \"1s\"\n\n[alerts]\nwebhook_file = \"hook.url\"\n",
        )
    };
    dir.write(MAIN, config("testing"));
    let d = Daemon::start(&dir.config_path());
    let mx_events = |all: &[Value]| -> Vec<Value> {
        all.iter()
            .filter(|e| e["check"] == "mx-tls")
            .cloned()
            .collect()
    };
    let last_run = || async {
        sample(
            &d.metrics().await,
            "mta_stsd_drift_last_run_timestamp_seconds",
        )
        .unwrap_or(0.0)
    };
    // Waits for two runs that start after now, so that what they find is in.
    let two_more_runs = || async {
        let from = last_run().await;
        eventually("two more drift runs", || async {
            (last_run().await >= from + 2.0).then_some(())
        })
        .await;
    };
    let m = |name: &str| format!("mta_stsd_alerts_total{{result=\"{name}\"}}");

    // 1. Appears: one mx-tls event (beside the other checks' first findings), its first POST
    //    refused with 503 and sent again after the backoff.
    let first = eventually("the first events", || async {
        let got = hook.delivered();
        (!mx_events(&got).is_empty()).then_some(got)
    })
    .await;
    two_more_runs().await;
    let posts = hook.posts();
    assert!(
        posts
            .iter()
            .all(|(_, line, _)| line == "POST /hooks/s3cr3t-token HTTP/1.1"),
        "{posts:?}"
    );
    let gap = posts[1].0 - posts[0].0;
    assert_eq!(posts[0].2, posts[1].2, "the refused event is sent again");
    assert!(gap >= Duration::from_millis(450), "retried after {gap:?}");
    let e = &mx_events(&first)[0];
    assert_eq!(
        (&e["event"], &e["severity"]),
        (&"appeared".into(), &"warning".into())
    );
    assert_eq!(e["domain"], "a.example.org");
    // 2. The same findings on the next runs: nothing more posted.
    assert_eq!(hook.delivered(), first, "events while nothing changed");
    let n = first.len() as f64;
    let metrics = d.metrics().await;
    assert_eq!(sample(&metrics, &m("delivered")), Some(n), "{metrics}");
    assert_eq!(sample(&metrics, &m("retried")), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, &m("failed")), Some(0.0), "{metrics}");

    // 3. enforce (reloaded on SIGHUP): the same finding, critical: one `changed` event.
    dir.write(MAIN, config("enforce"));
    d.signal("HUP");
    let third = eventually("the changed event", || async {
        let got = hook.delivered();
        (got.len() > first.len()).then_some(got)
    })
    .await;
    assert_eq!(third.len(), first.len() + 1, "{third:#?}");
    let e = third.last().unwrap();
    assert_eq!(
        (&e["event"], &e["check"], &e["severity"]),
        (&"changed".into(), &"mx-tls".into(), &"critical".into())
    );

    // 4. The MX moves to a listener with a valid certificate: one `cleared` event.
    dns.nsupdate(&format!(
        "update delete mx-a.example.org. A\nupdate add mx-a.example.org. 300 IN A {VALID}"
    ));
    let fourth = eventually("the cleared event", || async {
        let got = hook.delivered();
        (got.len() > third.len()).then_some(got)
    })
    .await;
    assert_eq!(fourth.len(), third.len() + 1, "{fourth:#?}");
    let e = fourth.last().unwrap();
    assert_eq!(
        (&e["event"], &e["check"], &e["severity"]),
        (&"cleared".into(), &"mx-tls".into(), &"ok".into())
    );
    // Exactly three for the MX through the whole sequence, and none later.
    two_more_runs().await;
    let all = hook.delivered();
    assert_eq!(all, fourth, "events while nothing changed");
    assert_eq!(mx_events(&all).len(), 3, "{all:#?}");

    // Each logged once, with domain and check.
    let lines = d.lines();
    let mx_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("finding ") && l.contains("mx-tls"))
        .collect();
    assert_eq!(mx_lines.len(), 3, "{mx_lines:#?}");
    for (line, what) in mx_lines.iter().zip(["appeared", "changed", "cleared"]) {
        assert!(
            line.contains(&format!("finding {what}: ")) && line.contains("domain=a.example.org"),
            "{line}"
        );
    }

    // 5. The webhook goes away, and the MX back to the plain listener: the new event fails
    //    four times, is counted, and /status says why without the URL.
    hook.stop();
    dns.nsupdate(&format!(
        "update delete mx-a.example.org. A\nupdate add mx-a.example.org. 300 IN A {PLAIN}"
    ));
    let status = eventually("the failed alert in /status", || async {
        let s = d.status().await;
        (s["alerts"]["failed"] == 1).then_some(s)
    })
    .await;
    let why = status["alerts"]["last_error"].as_str().unwrap();
    assert!(why.contains("(after 4 attempts)"), "{status:#}");
    let metrics = d.metrics().await;
    assert_eq!(sample(&metrics, &m("failed")), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, &m("retried")), Some(4.0), "{metrics}");
    let log = d.lines().join("\n");
    for text in [&log, &status.to_string(), &metrics] {
        assert!(!text.contains("s3cr3t"), "the secret is out:\n{text}");
    }
}
