//! RFC 2136 publishing against real BIND and Knot: the provider battery for both, and what is
//! particular to dynamic updates (TSIG errors, REFUSED, prerequisites, `serve`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use hickory_proto::rr::RecordType;
use mta_stsd_providers::{Changes, Provider, ProviderError, Record};

use crate::harness::daemon::{eventually, plain_client, Daemon};
use crate::harness::dns::{DnsServer, Kind, TsigKey};
use crate::harness::{ConfigDir, MAIN};
use crate::providers::battery::{self, Backend, ZONE};

struct Dns(DnsServer);

impl Dns {
    fn start(kind: Kind) -> Dns {
        let key = TsigKey::generate("mta-stsd", "hmac-sha256");
        Dns(DnsServer::start(kind, ZONE, &key, &[]))
    }
}

fn rtype(t: &str) -> RecordType {
    t.parse().expect("a record type")
}

/// The `[providers.p]` table for `server`, its key file written into `dir`.
fn provider_toml(server: &DnsServer, dir: &ConfigDir) -> String {
    let key = server.key_file(dir.path());
    format!(
        "[providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n",
        server.addr,
        key.display()
    )
}

impl Backend for Dns {
    fn provider_toml(&self, dir: &ConfigDir) -> String {
        provider_toml(&self.0, dir)
    }

    fn bad_auth_provider_toml(&self, dir: &ConfigDir) -> String {
        let wrong = TsigKey {
            secret_b64: TsigKey::generate("x", "hmac-sha256").secret_b64,
            ..self.0.key.clone()
        };
        let path = dir.write("wrong.key", wrong.bind_key_file());
        format!(
            "[providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n",
            self.0.addr,
            path.display()
        )
    }

    fn query(&self, name: &str, t: &str) -> Vec<String> {
        self.0.query(name, rtype(t))
    }

    fn add(&self, name: &str, t: &str, data: &str) {
        let data = if t == "TXT" {
            format!("\"{data}\"")
        } else {
            data.to_owned()
        };
        self.0
            .nsupdate(&format!("update add {name} 300 IN {t} {data}"));
    }

    fn kill(&mut self) {
        self.0.stop();
    }

    fn revive(&mut self) {
        self.0.restart();
    }
}

crate::battery!(bind, || Dns::start(Kind::Bind));
crate::battery!(knot, || Dns::start(Kind::Knot));

/// The server's answer is quoted: the rcode and the TSIG error.
fn wrong_key_is_named(kind: Kind) {
    let dns = Dns::start(kind);
    let dir = ConfigDir::new();
    battery::config(&dns, &dir, "", 86400, true);
    // Issue 23: `plan` reads unsigned, yet must not say "0 errors" for a key `apply` fails.
    for command in ["plan", "apply"] {
        let out = dir.run(&[command]);
        out.assert_status(1);
        assert!(
            out.stderr.contains("BADSIG") || out.stderr.contains("BADKEY"),
            "{}",
            out.dump()
        );
        assert!(out.stdout.contains(", 1 error"), "{}", out.dump());
        assert!(
            !out.stderr.contains(&dns.0.key.secret_b64),
            "the secret leaked"
        );
    }
    // An unknown key name: BADKEY.
    let other = TsigKey::generate("stranger", "hmac-sha256");
    dir.write("wrong.key", other.bind_key_file());
    for command in ["plan", "apply"] {
        let out = dir.run(&[command]);
        out.assert_status(1);
        assert!(
            out.stderr.contains("BADKEY") || out.stderr.contains("NOTAUTH"),
            "{}",
            out.dump()
        );
    }
}

#[test]
fn bind_wrong_key_is_named() {
    wrong_key_is_named(Kind::Bind);
}

#[test]
fn knot_wrong_key_is_named() {
    wrong_key_is_named(Kind::Knot);
}

/// A zone the server does not serve: the update is refused and the rcode quoted.
fn refused_update_is_reported(kind: Kind) {
    let dns = Dns::start(kind);
    let dir = ConfigDir::new();
    battery::config(&dns, &dir, "", 86400, false);
    let text = std::fs::read_to_string(dir.config_path()).unwrap().replace(
        "[domains.\"b.example.org\"]\n",
        "[domains.\"b.example.org\"]\nzone = \"b.example.org\"\n",
    );
    dir.write(MAIN, text);
    // `plan` checks the key at the first zone, the one not served: that refusal is the
    // zone's, and the served zone is still planned.
    let out = dir.run(&["plan"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("zone b.example.org.")
            && !out.stderr.contains("zone example.org.")
            && out.stdout.contains("+ _mta-sts.a.example.org."),
        "{}",
        out.dump()
    );
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("zone b.example.org.")
            && (out.stderr.contains("NOTAUTH") || out.stderr.contains("REFUSED")),
        "{}",
        out.dump()
    );
    // The zone that is served was still published.
    assert_eq!(dns.query("_mta-sts.a.example.org.", "TXT").len(), 1);
}

#[test]
fn bind_refused_update_is_reported() {
    refused_update_is_reported(Kind::Bind);
}

#[test]
fn knot_refused_update_is_reported() {
    refused_update_is_reported(Kind::Knot);
}

/// Wraps the real provider and changes the zone between our read and our write, once.
struct Meddler {
    inner: Arc<dyn Provider>,
    server: Arc<DnsServer>,
    applies: AtomicUsize,
}

#[async_trait]
impl Provider for Meddler {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn consistency(&self) -> mta_stsd_providers::Consistency {
        self.inner.consistency()
    }

    async fn zones_of(&self, names: &[String]) -> Vec<Result<String, ProviderError>> {
        self.inner.zones_of(names).await
    }

    async fn records(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        self.inner.records(zone, names).await
    }

    async fn apply(&self, zone: &str, changes: &Changes) -> Result<(), ProviderError> {
        if self.applies.fetch_add(1, Ordering::SeqCst) == 0 {
            let server = self.server.clone();
            tokio::task::spawn_blocking(move || {
                server.nsupdate(
                    "update add _mta-sts.a.example.org. 300 IN TXT \"v=STSv1; id=sneaky;\"",
                )
            })
            .await
            .unwrap();
        }
        self.inner.apply(zone, changes).await
    }
}

async fn concurrent_change_is_caught_by_the_prerequisite(kind: Kind) {
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let server = Arc::new(DnsServer::start(kind, ZONE, &key, &[]));
    let dir = ConfigDir::new();
    battery::config_with(&provider_toml(&server, &dir), &dir, "", 86400);
    let config = mta_stsd::config::load(&dir.config_path())
        .expect("valid")
        .config;
    let inner = mta_stsd::dns::providers::build(&config.providers["p"]).unwrap();
    let meddler = Arc::new(Meddler {
        inner,
        server: server.clone(),
        applies: AtomicUsize::new(0),
    });
    let provider: Arc<dyn Provider> = meddler.clone();
    let providers = [("p".to_owned(), Ok(provider))].into_iter().collect();
    let (targets, unplaced) = mta_stsd::dns::sync::targets(&config.domains, &providers).await;
    assert!(unplaced.is_empty());
    assert_eq!(targets.len(), 1);
    mta_stsd::dns::sync::apply_zone(&targets[0])
        .await
        .expect("applied after a re-read");

    let id = config
        .domain("a.example.org")
        .unwrap()
        .policy
        .id()
        .to_string();
    let sts = server.query("_mta-sts.a.example.org.", RecordType::TXT);
    // The sneaked-in record was seen on the second read and replaced: exactly ours remains.
    assert_eq!(sts, vec![format!("v=STSv1; id={id};")]);
    let applies = meddler.applies.load(Ordering::SeqCst);
    assert_eq!(
        applies, 2,
        "the first update must have failed its prerequisite"
    );
}

#[tokio::test]
async fn bind_concurrent_change_is_caught_by_the_prerequisite() {
    concurrent_change_is_caught_by_the_prerequisite(Kind::Bind).await;
}

#[tokio::test]
async fn knot_concurrent_change_is_caught_by_the_prerequisite() {
    concurrent_change_is_caught_by_the_prerequisite(Kind::Knot).await;
}

/// `serve`: the new id reaches DNS only once the new policy is served; a dead server is
/// retried (visible in /status) and the zone converges when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_after_serving_and_retries_until_the_server_is_back() {
    let mut dns = Dns::start(Kind::Bind);
    let dir = ConfigDir::new();
    battery::config(&dns, &dir, "", 86400, false);
    let text = std::fs::read_to_string(dir.config_path()).unwrap().replace(
        "https = [\"127.0.0.1:0\"]",
        "https = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]",
    );
    dir.write(MAIN, &text);
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let body = || async move {
        plain_client()
            .get(format!("http://{http}/.well-known/mta-sts.txt"))
            .header("host", "mta-sts.a.example.org")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let txt = |dns: &Dns| dns.query("_mta-sts.a.example.org.", "TXT");
    let first = battery::policy_id(&dir, "a.example.org");
    eventually("the first publication", || async {
        (txt(&dns) == vec![format!("v=STSv1; id={first};")]).then_some(())
    })
    .await;

    // Edit: whenever DNS shows the new id, the new body is already served.
    dir.write(MAIN, text.replace("max_age = 86400", "max_age = 90000"));
    let second = battery::policy_id(&dir, "a.example.org");
    eventually("the new id in DNS", || async {
        let seen = txt(&dns);
        if seen == vec![format!("v=STSv1; id={second};")] {
            let served = body().await;
            assert!(
                served.ends_with("max_age: 90000\r\n"),
                "new id published before the new policy was served: {served:?}"
            );
            return Some(());
        }
        None
    })
    .await;

    // The server dies; an edit is retried and shown as failing.
    dns.kill();
    dir.write(MAIN, text.replace("max_age = 86400", "max_age = 95000"));
    let third = battery::policy_id(&dir, "a.example.org");
    let admin = d.admin_url("/status?domain=a.example.org");
    let status = || {
        let admin = admin.clone();
        async move {
            let r = plain_client()
                .get(admin)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&r).unwrap()
        }
    };
    let failing = eventually("the failure in /status", || async {
        let s = status().await;
        let dns = &s["domains"][0]["dns"];
        (dns["state"] == "failed").then(|| dns.clone())
    })
    .await;
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{failing}"
    );
    assert!(
        crate::harness::epoch(&failing["next_retry"]).is_some(),
        "{failing}"
    );
    assert_eq!(failing["published_id"], second.as_str());
    // Meanwhile the new policy is served already.
    assert!(body().await.ends_with("max_age: 95000\r\n"));

    dns.revive();
    let done = eventually("convergence after the server is back", || async {
        let s = status().await;
        let dns = &s["domains"][0]["dns"];
        (dns["state"] == "published" && dns["published_id"] == third.as_str()).then(|| dns.clone())
    })
    .await;
    assert_eq!(done["last_error"], serde_json::Value::Null);
    // The TSIG secret is never logged nor shown.
    let secret = &dns.0.key.secret_b64;
    assert!(
        !d.lines().iter().any(|l| l.contains(secret.as_str())),
        "the TSIG secret was logged"
    );
    let full = plain_client()
        .get(d.admin_url("/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !full.contains(secret.as_str()),
        "the TSIG secret is in /status"
    );
    assert_eq!(txt(&dns), vec![format!("v=STSv1; id={third};")]);
    let metrics = plain_client()
        .get(d.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mta_stsd_dns_updates_total{provider=\"p\",result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mta_stsd_dns_updates_total{provider=\"p\",result=\"connect\"}"),
        "{metrics}"
    );
}

/// Reads go unsigned first; a server that answers only signed queries gets them signed.
#[test]
fn reads_fall_back_to_signed_queries() {
    use crate::harness::dns::Options;
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let options = Options {
        queries_need_key: true,
        ..Options::default()
    };
    let server = DnsServer::start_with(Kind::Bind, &options, ZONE, &key, &[]);
    assert!(
        server
            .query_message("example.org.", RecordType::SOA)
            .is_ok_and(|m| m.response_code == hickory_proto::op::ResponseCode::Refused),
        "the server must refuse unsigned queries for this test to mean anything"
    );
    let dir = ConfigDir::new();
    battery::config_with(&provider_toml(&server, &dir), &dir, "", 86400);
    let out = dir.run(&["plan"]);
    out.assert_status(2);
    assert!(
        out.stdout.contains("+ _mta-sts.a.example.org."),
        "{}",
        out.dump()
    );
    dir.run(&["apply"]).assert_status(0);
    let out = dir.run(&["plan"]);
    out.assert_status(0);
    assert!(
        out.stdout.contains("; 0 records to change"),
        "{}",
        out.dump()
    );
}
