//! The HTTPS report receiver (RFC 8460 §5.3) in the real daemon: real reports POSTed as
//! JSON and gzip, every refusal with its status, bounded memory, and what reached the store.

use std::io::Write;

use flate2::write::GzEncoder;
use mta_stsd::tlsrpt::store::{Backend, Store};
use mta_stsd_providers::Secret;
use reqwest::StatusCode;

use crate::harness::daemon::{eventually, Daemon, TestCa};
use crate::harness::postgres::Postgres;
use crate::harness::{ConfigDir, MAIN};

const HOST: &str = "tlsrpt.example.org";
const NAMES: &[&str] = &[HOST, "mta-sts.example.org", "mta-sts.example.com"];

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/tlsrpt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A config serving example.org/.net/.com with report host [`HOST`]; `store` is the rest of
/// `[tlsrpt]`.
pub fn setup(ca: &TestCa, store: &str) -> ConfigDir {
    let dir = ConfigDir::new();
    let (cert, key) = ca.leaf(&[
        HOST,
        "mta-sts.example.org",
        "mta-sts.example.net",
        "mta-sts.example.com",
    ]);
    dir.write("c.pem", cert);
    dir.write("c.key", key);
    dir.write(
        MAIN,
        format!(
            r#"[server]
https = ["127.0.0.1:0"]
admin = "127.0.0.1:0"

[tls]
certs = [{{ cert = "c.pem", key = "c.key" }}]

[policy]
mode = "testing"
mx = ["*.mail.example.org"]
max_age = 86400

[domains."example.org"]
[domains."example.net"]
mx = ["mail.example.net"]
[domains."example.com"]
mx = ["mail.example.com"]

[tlsrpt]
hosts = ["{HOST}"]
path = "/v1/tlsrpt"
retention = "100000d" # the RFC 8460 example is from 2016
{store}
"#
        ),
    );
    std::fs::create_dir(dir.path().join("state")).unwrap();
    dir
}

pub fn start(dir: &ConfigDir, env: &[(&str, &str)]) -> Daemon {
    let state = dir.path().join("state");
    let mut env = env.to_vec();
    env.push(("STATE_DIRECTORY", state.to_str().unwrap()));
    let d = Daemon::start_with(&dir.config_path(), &env);
    d.wait_log("TLS-RPT store open");
    d
}

pub struct Poster {
    pub client: reqwest::Client,
    pub url: String,
}

impl Poster {
    pub fn new(ca: &TestCa, d: &Daemon, http1: bool) -> Poster {
        Poster::from(ca, d, http1, None)
    }

    /// A poster whose connections come from `local` (a loopback address), else the default.
    pub fn from(ca: &TestCa, d: &Daemon, http1: bool, local: Option<std::net::IpAddr>) -> Poster {
        let addr = d.https.unwrap();
        let mut tls = ca.client_config();
        tls.alpn_protocols = if http1 {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        // Generous: a 10,000-policy insert on a debug build on a loaded CI machine.
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60));
        if http1 {
            b = b.http1_only();
        }
        if let Some(ip) = local {
            b = b.local_address(ip);
        }
        for n in NAMES {
            b = b.resolve(n, addr);
        }
        Poster {
            client: b.build().unwrap(),
            url: format!("https://{HOST}:{}/v1/tlsrpt", addr.port()),
        }
    }

    pub async fn post(&self, media: &str, body: Vec<u8>) -> (StatusCode, String) {
        let t = std::time::Instant::now();
        let len = body.len();
        let r = self
            .client
            .post(&self.url)
            .header("content-type", media)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST of {len} bytes after {:?}: {e}", t.elapsed()));
        (r.status(), r.text().await.unwrap())
    }
}

pub const JSON: &str = "application/tlsrpt+json";
const GZIP: &str = "application/tlsrpt+gzip";

fn vm(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_stores_real_reports_and_refuses_the_rest() {
    let ca = TestCa::new();
    let dir = setup(&ca, "max_report_bytes = 4194304");
    let d = start(&dir, &[]);
    let p = Poster::new(&ca, &d, false);
    let p1 = Poster::new(&ca, &d, true);

    // Real reports, as JSON over HTTP/2 and gzipped over HTTP/1.1: 201, then 200 as duplicates.
    for f in [
        "rfc8460.json",
        "microsoft.json",
        "mailru.json",
        "zoneless.json",
    ] {
        assert_eq!(p.post(JSON, fixture(f)).await.0, StatusCode::CREATED, "{f}");
        assert_eq!(
            p1.post(JSON, fixture(f)).await.0,
            StatusCode::OK,
            "{f} again"
        );
    }
    assert_eq!(
        p1.post(GZIP, gz(&fixture("google.json"))).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        p.post(GZIP, gz(&fixture("google.json"))).await.0,
        StatusCode::OK
    );
    // Media type parameters are allowed, the type itself is not negotiable.
    let (s, _) = p.post("text/plain", fixture("rfc8460.json")).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Malformed: truncated, wrong types, not gzip, not UTF-8.
    let full = fixture("rfc8460.json");
    let truncated = full[..full.len() / 2].to_vec();
    let wrong = String::from_utf8(full.clone())
        .unwrap()
        .replace(
            "\"failed-session-count\": 100",
            "\"failed-session-count\": \"100\"",
        )
        .replace("5065427c", "wrongtype");
    for (media, body) in [
        (JSON, truncated.clone()),
        (GZIP, gz(&truncated)),
        (JSON, wrong.into_bytes()),
        (GZIP, b"plain text, not gzip".to_vec()),
        (JSON, vec![0xff, 0xfe, b'{', b'}']),
    ] {
        let (s, text) = p.post(media, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    }
    // About no domain we serve: 422.
    let stranger = String::from_utf8(fixture("mailru.json"))
        .unwrap()
        .replace("example.com", "not-ours.example")
        .replace("b28254de", "stranger");
    assert_eq!(
        p.post(JSON, stranger.into_bytes()).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // 100 policies in one report (the most taken): stored whole; 101 refused.
    let one = r#"{"policy":{"policy-type":"sts","policy-domain":"example.net"},"summary":{"total-successful-session-count":1,"total-failure-session-count":1},"failure-details":[{"result-type":"validation-failure","receiving-mx-hostname":"mail.example.net","failed-session-count":1}]}"#;
    let big = format!(
        r#"{{"report-id":"one-hundred","organization-name":"Big","date-range":{{"start-datetime":"2024-10-01T00:00:00Z","end-datetime":"2024-10-01T23:59:59Z"}},"policies":[{}]}}"#,
        vec![one; 100].join(",")
    );
    let too_many = big
        .replace("one-hundred", "too-many")
        .replace(r#""policies":["#, &format!(r#""policies":[{one},"#));
    let (s, text) = p.post(GZIP, gz(too_many.as_bytes())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("more than 100"), "{text}");
    assert!(big.len() < 4 << 20);
    assert_eq!(
        p.post(GZIP, gz(big.as_bytes())).await.0,
        StatusCode::CREATED
    );

    // Over the limit, plainly (Content-Length) and as a gzip bomb of 100 MB of zeros.
    let (s, _) = p.post(JSON, vec![b' '; (4 << 20) + 1]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let bomb = gz(&vec![0u8; 100 << 20]);
    assert!(bomb.len() < 200_000);
    // The peak from here on (Linux: 5 into clear_refs resets VmHWM to the current RSS), not
    // the one the big report above left (the daemon may since have given memory back).
    std::fs::write(format!("/proc/{}/clear_refs", d.pid()), "5").unwrap();
    let before = vm(d.pid(), "VmRSS:");
    for _ in 0..3 {
        assert_eq!(
            p.post(GZIP, bomb.clone()).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
    let peak = vm(d.pid(), "VmHWM:");
    // The limit is 4 MiB: inflating 100 MB would show as ~100 MB more.
    assert!(
        peak < before + (32 << 20),
        "peak RSS {peak} vs {before} before the bombs"
    );

    // Nothing else on the report host; the policy hosts unchanged on the same listener.
    let port = d.https.unwrap().port();
    let c = ca.client(NAMES, d.https.unwrap(), false);
    let r = c
        .get(format!("https://{HOST}:{port}/v1/tlsrpt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = c
        .get(format!("https://{HOST}:{port}/.well-known/mta-sts.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(format!(
            "https://mta-sts.example.org:{port}/.well-known/mta-sts.txt"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("version: STSv1\r\n"));

    // What reached the store: the five real reports and the big one, nothing partial.
    let store = Store::open(&Backend::Sqlite(dir.path().join("state")))
        .await
        .unwrap();
    let days = store.days(&[], "2000-01-01").await.unwrap();
    let orgs: std::collections::BTreeSet<_> =
        days.iter().map(|d| d.organization.as_str()).collect();
    assert_eq!(
        orgs.into_iter().collect::<Vec<_>>(),
        [
            "Big",
            "Company-X",
            "Google Inc.",
            "Mail.ru",
            "Microsoft Corporation",
            "Reporter Example"
        ]
    );
    let raw = store
        .json("5065427c-23d3-47ca-b6e0-946ea0e8c4be")
        .await
        .unwrap();
    assert_eq!(raw.unwrap().as_bytes(), full.as_slice(), "kept verbatim");
    assert_eq!(
        store
            .json("wrongtype-23d3-47ca-b6e0-946ea0e8c4be")
            .await
            .unwrap(),
        None
    );
    let big_day = store
        .days(&["example.net".into()], "2024-10-01")
        .await
        .unwrap();
    assert_eq!((big_day[0].successful, big_day[0].failed), (100, 100));

    // The RFC 8460 example quotes our example.org body: matched to the id we serve.
    let id = {
        let out = dir.run(&["policy", "example.org"]);
        out.stderr.trim().strip_prefix("id: ").unwrap().to_owned()
    };
    let org = store
        .days(&["example.org".into()], "2016-04-01")
        .await
        .unwrap();
    let rfc = org.iter().find(|d| d.organization == "Company-X").unwrap();
    assert_eq!(rfc.policy_id.as_deref(), Some(id.as_str()));

    let m = d.metrics().await;
    for (line, want) in [
        ("mta_stsd_tlsrpt_reports_total{result=\"stored\"}", 6),
        ("mta_stsd_tlsrpt_reports_total{result=\"duplicate\"}", 5),
        ("mta_stsd_tlsrpt_reports_total{result=\"malformed\"}", 6),
        ("mta_stsd_tlsrpt_reports_total{result=\"too_large\"}", 4),
        (
            "mta_stsd_tlsrpt_reports_total{result=\"unsupported_type\"}",
            1,
        ),
        (
            "mta_stsd_tlsrpt_reports_total{result=\"unknown_domain\"}",
            1,
        ),
        (
            "mta_stsd_tlsrpt_sessions_total{result=\"certificate-expired\"}",
            100,
        ),
        ("mta_stsd_tlsrpt_sessions_total{result=\"other\"}", 2),
    ] {
        let got = m
            .lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {line} in\n{m}"));
        assert_eq!(got.parse::<f64>().unwrap(), want as f64, "{line}");
    }
}

/// Replicas: two daemons writing to one PostgreSQL database, each seeing what the other stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_two_daemons_one_postgres() {
    let pg = Postgres::start();
    let ca = TestCa::new();
    let dir = setup(&ca, "store = \"postgres\"\nurl_env = \"TEST_REPORTS_URL\"");
    let env = [("TEST_REPORTS_URL", pg.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b) = (start(&dir, &env), start(&dir, &env));
    let (pa, pb) = (Poster::new(&ca, &a, false), Poster::new(&ca, &b, true));
    assert_eq!(
        pa.post(JSON, fixture("rfc8460.json")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        pb.post(JSON, fixture("microsoft.json")).await.0,
        StatusCode::CREATED
    );
    // The other replica knows both.
    let again = pb.post(JSON, fixture("rfc8460.json")).await;
    assert_eq!(
        again.0,
        StatusCode::OK,
        "{}\n{}",
        again.1,
        b.lines().join("\n")
    );
    assert_eq!(
        pa.post(GZIP, gz(&fixture("microsoft.json"))).await.0,
        StatusCode::OK
    );
    let store = Store::open(&Backend::Postgres(Secret::new(pg.url())))
        .await
        .unwrap();
    let days = eventually("both reports in the database", || async {
        let d = store
            .days(&["example.org".into()], "2000-01-01")
            .await
            .unwrap();
        (d.len() == 2).then_some(d)
    })
    .await;
    assert_eq!(days[0].organization, "Company-X");
    assert_eq!(days[1].organization, "Microsoft Corporation");
    // `reports` reads the shared database: both daemons' reports, each under the id served.
    let out = dir.run_env(
        &[
            "reports",
            "example.org",
            "--since",
            "2016-01-01",
            "--format",
            "json",
        ],
        &[("TEST_REPORTS_URL", Some(pg.url().as_str()))],
    );
    out.assert_status(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let orgs: Vec<&str> = v["domains"][0]["days"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["reporters"].as_array().unwrap())
        .map(|r| r["organization"].as_str().unwrap())
        .collect();
    assert_eq!(
        orgs,
        ["Company-X", "Microsoft Corporation"],
        "{}",
        out.stdout
    );
}

/// SPEC: "`[tlsrpt]` uses the same store unless it names its own". A daemon with `[state]
/// url_env` and a bare `[tlsrpt]` keeps a POSTed report in that PostgreSQL, through
/// `pgbouncer` in transaction mode as the state store is used, and makes no `tlsrpt.sqlite`;
/// `reports` from another process whose config has only the URL (no state of its own) shows
/// it. A `[tlsrpt]` that names `store = "sqlite"` keeps its own file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_tlsrpt_uses_the_state_postgresql() {
    let pg = Postgres::start();
    let bouncer = crate::harness::pgbouncer::PgBouncer::start(&pg);
    let url = bouncer.url();
    let ca = TestCa::new();
    let shared = "[state]\nurl_env = \"TEST_STATE_URL\"\n";
    let dir = setup(&ca, shared);
    let d = start(&dir, &[("TEST_STATE_URL", &url)]);
    let p = Poster::new(&ca, &d, false);
    assert_eq!(
        p.post(JSON, fixture("rfc8460.json")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        p.post(JSON, fixture("rfc8460.json")).await.0,
        StatusCode::OK,
        "a duplicate, read back from the same database"
    );
    let m = d.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("mta_stsd_tlsrpt_store_up") && l.contains("postgresql")),
        "{m}"
    );
    assert!(!dir.path().join("state").join("tlsrpt.sqlite").exists());

    let other = setup(&TestCa::new(), shared);
    let out = other.run_env(
        &[
            "reports",
            "example.org",
            "--since",
            "2016-01-01",
            "--format",
            "json",
        ],
        &[("TEST_STATE_URL", Some(url.as_str()))],
    );
    out.assert_status(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let orgs: Vec<&str> = v["domains"][0]["days"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["reporters"].as_array().unwrap())
        .map(|r| r["organization"].as_str().unwrap())
        .collect();
    assert_eq!(orgs, ["Company-X"], "{}", out.stdout);
    assert!(!other.path().join("state").join("tlsrpt.sqlite").exists());

    // Named: its own SQLite file, [state] on PostgreSQL or not.
    let own = setup(&TestCa::new(), &format!("store = \"sqlite\"\n{shared}"));
    let out = own.run_env(
        &["reports", "--since", "2016-01-01", "--format", "json"],
        &[("TEST_STATE_URL", Some(url.as_str()))],
    );
    out.assert_status(0);
    assert!(out.stdout.contains("\"domains\": []"), "{}", out.stdout);
    assert!(own.path().join("state").join("tlsrpt.sqlite").exists());
}
