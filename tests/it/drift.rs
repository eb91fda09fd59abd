//! `drift` against a real world: zone `example.org.` on two independent BIND primaries
//! (`ns1` on 127.0.0.2, `ns2` on 127.0.0.3, one port), the daemon serving the policies over
//! HTTPS with a certificate from a test CA, and the real binary's `drift` command, in both
//! formats. Each finding is provoked on purpose and seen with its severity, check and exit code;
//! every JSON report is validated against the schema README "Drift checks" documents, and the
//! text output checked line by line against it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::RecordType;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::daemon::{eventually, Daemon, TestCa};
use crate::harness::dns::{free_port, DnsServer, Kind, TsigKey};
use crate::harness::postfix::{Listener, Postfix};
use crate::harness::{run_with_config, ConfigDir, Output, MAIN};

const ZONE: &str = "example.org";
const NS1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NS2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const TLSRPT: &str = "v=TLSRPTv1; rua=mailto:tlsrpt@example.org;";

/// `a.example.org` and friends.
fn fqdn(label: &str) -> String {
    format!("{label}.{ZONE}")
}

/// The policy ids of the config, by domain label.
type Ids = BTreeMap<String, String>;

/// The records a correct setup has for domain `label`, in zone-file syntax under
/// `$ORIGIN example.org.`.
fn records_for(label: &str, id: &str) -> Vec<String> {
    vec![
        format!("_mta-sts.{label} TXT \"v=STSv1; id={id};\""),
        format!("mta-sts.{label} CNAME mail.example.org."),
        format!("{label} MX 10 mx1.example.org."),
        format!("_smtp._tls.{label} TXT \"{TLSRPT}\""),
    ]
}

/// The whole correct zone: every domain's records, and the hosts they point at.
fn correct(ids: &Ids) -> Vec<String> {
    let mut r = vec!["mail A 127.0.0.1".to_owned(), "mx1 A 127.0.0.1".to_owned()];
    for (label, id) in ids {
        r.extend(records_for(label, id));
    }
    r
}

/// `records` without the lines starting with `prefix` (such as `"_mta-sts.a "`; there must be
/// one), plus `add`.
#[track_caller]
fn replace(records: Vec<String>, prefix: &str, add: &[String]) -> Vec<String> {
    let (removed, mut kept): (Vec<String>, Vec<String>) =
        records.into_iter().partition(|r| r.starts_with(prefix));
    assert!(!removed.is_empty(), "no record starts with {prefix:?}");
    kept.extend(add.iter().cloned());
    kept
}

/// How a [`World`] is set up; [`world`] gives the defaults.
struct Build {
    /// Domain labels and the extra TOML lines under each one's table.
    domains: Vec<(&'static str, String)>,
    max_age: u32,
    /// Extra lines in `[drift]`.
    drift_extra: String,
    /// A real Postfix as `mx1` (127.0.0.1) with a certificate from the test CA; without one,
    /// `[drift] smtp = false` (the other checks are under test).
    mx_tls: bool,
    /// `[alerts] command`: a script appending each event to `events.jsonl` in the config dir.
    alert_command: bool,
}

/// Domains `a` and `b`, enforce with `mx1.example.org`, TLSRPT to `tlsrpt@example.org`.
fn world() -> Build {
    Build {
        domains: vec![("a", String::new()), ("b", String::new())],
        max_age: 86400,
        drift_extra: String::new(),
        mx_tls: false,
        alert_command: false,
    }
}

impl Build {
    fn domains(mut self, labels: &[&'static str]) -> Self {
        self.domains = labels.iter().map(|l| (*l, String::new())).collect();
        self
    }

    /// Extra TOML lines under the table of domain `label`.
    fn domain_toml(mut self, label: &str, toml: &str) -> Self {
        let d = self
            .domains
            .iter_mut()
            .find(|(l, _)| *l == label)
            .expect("a domain of the world");
        d.1 = toml.to_owned();
        self
    }

    fn max_age(mut self, max_age: u32) -> Self {
        self.max_age = max_age;
        self
    }

    fn mx_tls(mut self) -> Self {
        self.mx_tls = true;
        self
    }

    fn alert_command(mut self) -> Self {
        self.alert_command = true;
        self
    }

    fn drift_extra(mut self, toml: &str) -> Self {
        self.drift_extra = toml.to_owned();
        self
    }

    /// A correct world.
    fn start(self) -> World {
        self.records(correct)
    }

    /// The config first (its ids go into the records), then both nameservers with the zone
    /// holding `records(ids)`, then the config's `[drift]` section pointing at them. No daemon
    /// yet: [`World::serve`].
    fn records(self, records: impl FnOnce(&Ids) -> Vec<String>) -> World {
        let ca = TestCa::new();
        let dir = ConfigDir::new();
        dir.write("ca.pem", &ca.pem);
        let hosts: Vec<String> = self
            .domains
            .iter()
            .map(|(l, _)| format!("mta-sts.{}", fqdn(l)))
            .collect();
        let (cert, key) = ca.leaf(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
        dir.write("policy.pem", cert);
        dir.write("policy.key", key);
        let daemon_port = free_port();
        let policy = self.policy_toml(daemon_port);
        dir.write(MAIN, &policy);
        let ids: Ids = self
            .domains
            .iter()
            .map(|(l, _)| (l.to_string(), policy_id(&dir, &fqdn(l))))
            .collect();
        let key = TsigKey::generate("drift-test", "hmac-sha256");
        let zone = records(&ids);
        let ns = DnsServer::start_replicas(
            Kind::Bind,
            &[("ns1", NS1), ("ns2", NS2)],
            ZONE,
            &key,
            &zone.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let dns_port = ns[0].addr.port();
        let postfix = self.mx_tls.then(|| {
            Postfix::start(
                &[Listener {
                    ip: Ipv4Addr::LOCALHOST,
                    tls: Some(ca.leaf(&["mx1.example.org"])),
                }],
                free_port(),
            )
        });
        let smtp = match &postfix {
            Some(p) => format!("smtp_port = {}", p.port),
            None => "smtp = false".to_owned(),
        };
        let drift = format!(
            "\n[drift]\nresolver = \"{NS1}:{dns_port}\"\ndns_port = {dns_port}\n\
             https_port = {}\nca = \"ca.pem\"\n{smtp}\n{}\n",
            daemon_port, self.drift_extra
        );
        let mut config = policy + &drift;
        if self.alert_command {
            let script = dir.write(
                "alert.sh",
                format!("#!/bin/sh\ncat >> {}\n", dir.file("events.jsonl").display()),
            );
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            config += "\n[alerts]\ncommand = \"alert.sh\"\n";
        }
        dir.write(MAIN, &config);
        dir.check().assert_status(0);
        World {
            ca,
            dir,
            ns,
            _postfix: postfix,
            ids,
            config,
            daemon_port,
        }
    }

    /// Everything but `[drift]`: the daemon listens on `127.0.0.1:<https_port>`.
    fn policy_toml(&self, https_port: u16) -> String {
        let mut t = format!(
            "[server]\nhttps = [\"127.0.0.1:{https_port}\"]\nadmin = \"127.0.0.1:0\"\n\n\
             [tls]\ncerts = [{{ cert = \"policy.pem\", key = \"policy.key\" }}]\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mx1.example.org\"]\nmax_age = {}\n\n\
             [dns]\ntarget = \"mail.example.org.\"\ntlsrpt = [\"mailto:tlsrpt@example.org\"]\n",
            self.max_age
        );
        for (label, extra) in &self.domains {
            t.push_str(&format!("\n[domains.\"{}\"]\n{extra}\n", fqdn(label)));
        }
        t
    }
}

/// The id `mta-stsd policy DOMAIN` prints on stderr.
#[track_caller]
fn policy_id(dir: &ConfigDir, domain: &str) -> String {
    let out = dir.run(&["policy", domain]);
    out.assert_status(0);
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no `id:` line\n{}", out.dump()))
        .to_owned()
}

/// A config, its zone on two nameservers, and the CA its certificates come from.
struct World {
    ca: TestCa,
    dir: ConfigDir,
    /// `ns1` (127.0.0.2, also the resolver) and `ns2` (127.0.0.3).
    ns: Vec<DnsServer>,
    _postfix: Option<Postfix>,
    ids: Ids,
    /// The main config's text.
    config: String,
    /// Where the daemon serves HTTPS, and drift fetches from.
    daemon_port: u16,
}

impl World {
    /// The daemon on the main config: what drift fetches the policies from.
    fn serve(&self) -> Daemon {
        Daemon::start(&self.dir.config_path())
    }

    fn id(&self, label: &str) -> &str {
        &self.ids[label]
    }

    /// `drift` on the main config, in both formats.
    #[track_caller]
    fn drift(&self) -> Drift {
        drift(&self.dir.config_path())
    }

    /// `drift` on a copy of the main config that fetches the policies from `127.0.0.1:<port>`.
    #[track_caller]
    fn drift_via(&self, port: u16) -> Drift {
        let from = format!("https_port = {}\n", self.daemon_port);
        assert!(self.config.contains(&from));
        let config = self
            .config
            .replace(&from, &format!("https_port = {port}\n"));
        drift(&self.dir.write("via.toml", config))
    }

    /// Sends the same update to both nameservers.
    #[track_caller]
    fn nsupdate_all(&self, commands: &str) {
        for ns in &self.ns {
            ns.nsupdate(commands);
        }
    }
}

// --- the report ---------------------------------------------------------------------------

const SEVERITIES: [&str; 4] = ["ok", "warning", "unknown", "critical"];
const CHECKS: [&str; 9] = [
    "sts-txt",
    "ns-agreement",
    "policy-host",
    "tlsrpt",
    "policy-fetch",
    "certificate",
    "mx",
    "mx-tls",
    "dane",
];

/// How much attention a severity needs: unknown ("could not check") outranks warning.
fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or_else(|| panic!("{severity:?} is not a severity"))
}

/// The monitoring-plugin exit code of a status.
fn plugin_code(status: &str) -> u64 {
    match status {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        "unknown" => 3,
        other => panic!("{other:?} is not a status"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[track_caller]
fn keys(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[track_caller]
fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
fn uint(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a non-negative integer: {v}"))
}

#[track_caller]
fn string<'v>(v: &'v Value, what: &str) -> &'v str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// The report against README "Drift checks", schema 1: every field present (and no other) with
/// its type and allowed values, and the derived ones (status, exit code, counts, order)
/// consistent with the findings.
#[track_caller]
fn validate_schema(r: &Value) {
    assert_eq!(
        keys(r, "the report"),
        set(&[
            "schema",
            "checked_at",
            "status",
            "exit_code",
            "counts",
            "domains"
        ])
    );
    assert_eq!(uint(&r["schema"], "schema"), 1);
    let checked_at = uint(&r["checked_at"], "checked_at");
    let now = unix_now();
    assert!(
        checked_at + 600 >= now && checked_at <= now + 60,
        "checked_at {checked_at} is not about now ({now})"
    );
    let status = string(&r["status"], "status");
    assert!(SEVERITIES.contains(&status), "status {status:?}");
    assert_eq!(uint(&r["exit_code"], "exit_code"), plugin_code(status));
    let counts = &r["counts"];
    assert_eq!(
        keys(counts, "counts"),
        set(&["domains", "critical", "warning", "unknown"])
    );
    let domains = r["domains"]
        .as_array()
        .unwrap_or_else(|| panic!("domains is not an array"));
    assert_eq!(
        uint(&counts["domains"], "counts.domains"),
        domains.len() as u64
    );
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    let mut worst = "ok";
    let mut previous: Option<&str> = None;
    for d in domains {
        assert_eq!(keys(d, "a domain"), set(&["domain", "status", "findings"]));
        let name = string(&d["domain"], "domain");
        assert!(
            previous.is_none_or(|p| p < name),
            "domains not sorted by name: {previous:?} before {name:?}"
        );
        previous = Some(name);
        let dstatus = string(&d["status"], "domain status");
        assert!(SEVERITIES.contains(&dstatus), "{name}: status {dstatus:?}");
        let findings = d["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: findings is not an array"));
        let mut dworst = "ok";
        let mut last_rank = usize::MAX;
        for f in findings {
            let mut fields = keys(f, "a finding");
            // `subject` is optional: what the finding is about where a check finds several.
            if fields.remove("subject") {
                assert!(!string(&f["subject"], "subject").is_empty());
            }
            assert_eq!(
                fields,
                set(&["severity", "check", "message", "hint", "since"])
            );
            assert!(
                uint(&f["since"], "since") <= checked_at,
                "{name}: since after checked_at"
            );
            let severity = string(&f["severity"], "severity");
            assert!(
                SEVERITIES.contains(&severity),
                "{name}: severity {severity:?}"
            );
            let check = string(&f["check"], "check");
            assert!(CHECKS.contains(&check), "{name}: check {check:?}");
            for field in ["message", "hint"] {
                let text = string(&f[field], field);
                assert!(
                    !text.is_empty() && !text.contains('\n'),
                    "{name}: {field} must be one non-empty line: {text:?}"
                );
            }
            assert!(
                rank(severity) <= last_rank,
                "{name}: findings not worst first: {findings:?}"
            );
            last_rank = rank(severity);
            if rank(severity) > rank(dworst) {
                dworst = severity;
            }
            *tally.entry(severity).or_default() += 1;
        }
        assert_eq!(dstatus, dworst, "{name}: status is not its worst finding");
        if rank(dstatus) > rank(worst) {
            worst = dstatus;
        }
    }
    assert_eq!(status, worst, "the status is not the worst domain's");
    for s in ["critical", "warning", "unknown"] {
        assert_eq!(
            uint(&counts[s], s),
            tally.get(s).copied().unwrap_or(0),
            "counts.{s}"
        );
    }
}

/// The text output README documents, rendered from a JSON report: the plugin summary line,
/// then one line per finding, grouped by domain, worst first.
fn text_of(r: &Value) -> String {
    let label = |s: &str| s.to_ascii_uppercase();
    let c = &r["counts"];
    let mut out = format!(
        "MTA-STS {}: {} critical, {} warning, {} could not check, in {} domains\n",
        label(r["status"].as_str().unwrap()),
        c["critical"],
        c["warning"],
        c["unknown"],
        c["domains"]
    );
    for d in r["domains"].as_array().unwrap() {
        for f in d["findings"].as_array().unwrap() {
            out.push_str(&format!(
                "{} {} [{}] {} (fix: {})\n",
                label(f["severity"].as_str().unwrap()),
                d["domain"].as_str().unwrap(),
                f["check"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
                f["hint"].as_str().unwrap()
            ));
        }
    }
    out
}

/// `text` with every run of digits replaced by `#`.
fn digits_blurred(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (c.is_ascii_digit(), out.ends_with('#')) {
            (true, true) => {}
            (true, false) => out.push('#'),
            (false, _) => out.push(c),
        }
    }
    out
}

/// One `drift` run in each format.
struct Drift {
    text: Output,
    json: Output,
    report: Value,
}

/// Runs `drift --format text` and `--format json` on `config`; the JSON validated against the
/// schema, both exit codes equal to its `exit_code`, and the text exactly what README says
/// for it.
#[track_caller]
fn drift(config: &Path) -> Drift {
    let text = run_with_config(config, &["drift", "--format", "text"]);
    let json = run_with_config(config, &["drift", "--format", "json"]);
    let report: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("the JSON report does not parse: {e}\n{}", json.dump()));
    validate_schema(&report);
    let code = report["exit_code"].as_u64().unwrap() as i32;
    json.assert_status(code);
    text.assert_status(code);
    // Two runs: times in messages (a certificate's `time: UnixTime(…)`) may differ by a second.
    assert_eq!(
        digits_blurred(&text.stdout),
        digits_blurred(&text_of(&report)),
        "the text output does not match the JSON report\n{}\n{}",
        text.dump(),
        json.dump()
    );
    Drift { text, json, report }
}

impl Drift {
    /// Everything both runs printed, for failure messages.
    fn dump(&self) -> String {
        format!("{}\n{}", self.text.dump(), self.json.dump())
    }

    #[track_caller]
    fn assert_exit(&self, code: i32) -> &Self {
        self.text.assert_status(code);
        assert_eq!(
            self.report["status"],
            ["ok", "warning", "critical", "unknown"][code as usize]
        );
        self
    }

    /// The findings of `domain` (as in `a.example.org`): (severity, check, message).
    #[track_caller]
    fn findings(&self, domain: &str) -> Vec<(String, String, String)> {
        let d = self.report["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == domain)
            .unwrap_or_else(|| panic!("no domain {domain} in the report\n{}", self.dump()));
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_owned();
                (s("severity"), s("check"), s("message"))
            })
            .collect()
    }

    /// `domain` has exactly these findings, in this order: severity, check, and a part of the
    /// message.
    #[track_caller]
    fn assert_findings(&self, domain: &str, want: &[(&str, &str, &str)]) -> &Self {
        let got = self.findings(domain);
        let matches = got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|((s, c, m), (ws, wc, wm))| s == ws && c == wc && m.contains(wm));
        assert!(
            matches,
            "{domain}: wanted findings {want:#?}\ngot {got:#?}\n{}",
            self.dump()
        );
        self
    }

    #[track_caller]
    fn assert_clean(&self, domain: &str) -> &Self {
        self.assert_findings(domain, &[])
    }
}

// --- a canned HTTPS server ------------------------------------------------------------------

/// The SNI and the head of one request a [`CannedHttps`] received.
type Request = (Option<String>, String);

/// What the daemon never does, served over HTTPS: every request on `127.0.0.1:<port>` gets
/// one canned HTTP/1.1 response, with one certificate for every name.
struct CannedHttps {
    port: u16,
    /// SNI and request head of every request received.
    requests: Arc<Mutex<Vec<Request>>>,
    _runtime: tokio::runtime::Runtime,
}

impl CannedHttps {
    fn start((cert_pem, key_pem): (String, String), response: String) -> CannedHttps {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let response = Arc::new(response.into_bytes());
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, response, seen) = (acceptor.clone(), response.clone(), seen.clone());
                tokio::spawn(async move {
                    // A client refusing the certificate ends here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_owned);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push((sni, String::from_utf8_lossy(&head).into_owned()));
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        CannedHttps {
            port,
            requests,
            _runtime: runtime,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// A `200` with the given content type and body.
fn ok_response(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The policy body the config of the default [`world`] makes.
const BODY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmax_age: 86400\r\n";

const DAY: i64 = 86400;

/// Sets the validity of a leaf to `[now + from, now + to]`, in seconds.
fn validity(p: &mut rcgen::CertificateParams, from: i64, to: i64) {
    let now = unix_now() as i64;
    let at =
        |offset: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((now + offset) as u64);
    p.not_before = at(from);
    p.not_after = at(to);
}

// --- the tests ----------------------------------------------------------------------------

/// `_mta-sts.<label> TXT` with this text, as a zone-file line.
fn sts(label: &str, text: &str) -> String {
    format!("_mta-sts.{label} TXT \"{text}\"")
}

#[test]
fn clean_world_exits_0_without_findings() {
    // b's record split in two strings (concatenated, RFC 8461 §3.1), c's delegated by CNAME;
    // the MX a real Postfix with a valid certificate.
    let w = world().domains(&["a", "b", "c"]).mx_tls().records(|ids| {
        let r = replace(
            correct(ids),
            "_mta-sts.b ",
            &[format!("_mta-sts.b TXT \"v=STSv1; \" \"id={};\"", ids["b"])],
        );
        replace(
            r,
            "_mta-sts.c ",
            &[
                "_mta-sts.c CNAME sts-c.policies.example.org.".into(),
                format!("sts-c.policies TXT \"v=STSv1; id={};\"", ids["c"]),
            ],
        )
    });
    let _daemon = w.serve();
    let r = w.drift();
    r.assert_exit(0);
    for label in ["a", "b", "c"] {
        r.assert_clean(&fqdn(label));
    }
    assert_eq!(
        r.text.stdout,
        "MTA-STS OK: 0 critical, 0 warning, 0 could not check, in 3 domains\n"
    );
}

#[test]
fn stale_id_is_critical() {
    let w = world().records(|ids| {
        replace(
            correct(ids),
            "_mta-sts.a ",
            &[sts("a", "v=STSv1; id=20240101000000Z;")],
        )
    });
    let _daemon = w.serve();
    let r = w.drift();
    r.assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "sts-txt",
                &format!(
                    "stale id at _mta-sts.a.example.org.: 20240101000000Z, the served policy's is {}",
                    w.id("a")
                ),
            )],
        )
        .assert_clean("b.example.org");
    assert!(
        r.text.stdout.starts_with(
            "MTA-STS CRITICAL: 1 critical, 0 warning, 0 could not check, in 2 domains\n\
             CRITICAL a.example.org [sts-txt] stale id at _mta-sts.a.example.org.: "
        ),
        "{}",
        r.dump()
    );
}

#[test]
fn two_sts_records_are_critical() {
    let w = world().records(|ids| {
        let ours = sts("a", &format!("v=STSv1; id={};", ids["a"]));
        let other = sts("a", "v=STSv1; id=other1;");
        // Not an STS record: ignored.
        let foreign = sts("a", "site-verification=abc");
        replace(correct(ids), "_mta-sts.a ", &[ours, other, foreign])
    });
    let _daemon = w.serve();
    w.drift()
        .assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "sts-txt",
                "2 v=STSv1 TXT records at _mta-sts.a.example.org.: RFC 8461 §3.1 says senders then assume no policy",
            )],
        )
        .assert_clean("b.example.org");
}

#[test]
fn missing_sts_record_is_critical() {
    let w = world().records(|ids| replace(correct(ids), "_mta-sts.a ", &[]));
    let _daemon = w.serve();
    w.drift()
        .assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "sts-txt",
                "no v=STSv1 TXT record at _mta-sts.a.example.org.: senders do not know there is a policy",
            )],
        )
        .assert_clean("b.example.org");
}

#[test]
fn nameservers_disagreeing_is_a_warning_beside_the_stale_view() {
    let w = world().start();
    let _daemon = w.serve();
    w.drift().assert_exit(0);
    // ns2 only: each BIND is a primary with its own copy of the zone.
    w.ns[1].nsupdate(
        "update delete _mta-sts.a.example.org. TXT\n\
         update add _mta-sts.a.example.org. 300 IN TXT \"v=STSv1; id=behind1;\"",
    );
    let ours = format!("v=STSv1; id={};", w.id("a"));
    assert_eq!(
        w.ns[0].query("_mta-sts.a.example.org", RecordType::TXT),
        std::slice::from_ref(&ours)
    );
    assert_eq!(
        w.ns[1].query("_mta-sts.a.example.org", RecordType::TXT),
        ["v=STSv1; id=behind1;"]
    );
    let r = w.drift();
    r.assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[
                (
                    "critical",
                    "sts-txt",
                    &format!(
                        "stale id at _mta-sts.a.example.org. (at ns2.example.org. (127.0.0.3)): behind1, the served policy's is {}",
                        w.id("a")
                    ),
                ),
                (
                    "warning",
                    "ns-agreement",
                    "nameservers disagree on _mta-sts.a.example.org.: ",
                ),
            ],
        )
        .assert_clean("b.example.org");
    // The disagreement names each side and what it says.
    let message = &r.findings("a.example.org")[1].2;
    for side in [
        format!("ns1.example.org. (127.0.0.2) say [{ours:?}]"),
        "ns2.example.org. (127.0.0.3) say [\"v=STSv1; id=behind1;\"]".to_owned(),
    ] {
        assert!(message.contains(&side), "{side} not in {message}");
    }
}

#[test]
fn nameservers_disagreeing_on_text_alone_is_only_a_warning() {
    let w = world().start();
    let _daemon = w.serve();
    // The same id, written differently: both views are valid, they still differ.
    w.ns[1].nsupdate(&format!(
        "update delete _mta-sts.a.example.org. TXT\n\
         update add _mta-sts.a.example.org. 300 IN TXT \"v=STSv1;id={}\"",
        w.id("a")
    ));
    w.drift()
        .assert_exit(1)
        .assert_findings(
            "a.example.org",
            &[(
                "warning",
                "ns-agreement",
                "nameservers disagree on _mta-sts.a.example.org.: ",
            )],
        )
        .assert_clean("b.example.org");
}

#[test]
fn tlsrpt_mismatch_is_a_warning() {
    let w = world().records(|ids| {
        let r = replace(
            correct(ids),
            "_smtp._tls.a ",
            &["_smtp._tls.a TXT \"v=TLSRPTv1; rua=mailto:other@example.net;\"".into()],
        );
        replace(r, "_smtp._tls.b ", &[])
    });
    let _daemon = w.serve();
    w.drift()
        .assert_exit(1)
        .assert_findings(
            "a.example.org",
            &[(
                "warning",
                "tlsrpt",
                &format!(
                    "_smtp._tls.a.example.org. is \"v=TLSRPTv1; rua=mailto:other@example.net;\"; the config wants {TLSRPT:?}"
                ),
            )],
        )
        .assert_findings(
            "b.example.org",
            &[(
                "warning",
                "tlsrpt",
                &format!("no v=TLSRPTv1 record at _smtp._tls.b.example.org.; the config wants {TLSRPT:?}"),
            )],
        );
}

#[test]
fn served_policy_differing_from_the_config_is_critical() {
    // drift checks the config with max_age 604800 (the TXT ids are its ids); the daemon still
    // serves the one with 86400: only the body differs.
    let w = world().max_age(604800).start();
    let served = w.dir.write(
        "served.toml",
        w.config.replace("max_age = 604800", "max_age = 86400"),
    );
    let _daemon = Daemon::start(&served);
    let r = w.drift();
    r.assert_exit(2);
    for domain in ["a.example.org", "b.example.org"] {
        r.assert_findings(
            domain,
            &[(
                "critical",
                "policy-fetch",
                &format!("the served policy differs from the config's (served {BODY:?})"),
            )],
        );
    }
}

/// Domain `a` alone, its policy fetched from a [`CannedHttps`] giving `response` with the
/// certificate `leaf` makes.
#[track_caller]
fn canned(
    w: &World,
    leaf: impl FnOnce(&TestCa) -> (String, String),
    response: String,
) -> (Drift, CannedHttps) {
    let server = CannedHttps::start(leaf(&w.ca), response);
    (w.drift_via(server.port), server)
}

fn leaf_a(ca: &TestCa) -> (String, String) {
    ca.leaf(&["mta-sts.a.example.org"])
}

#[test]
fn wrong_content_type_is_critical() {
    let w = world().domains(&["a"]).start();
    // The canned server itself is a correct policy host; media type parameters are fine.
    let (r, server) = canned(&w, leaf_a, ok_response("text/plain; charset=utf-8", BODY));
    r.assert_exit(0).assert_clean("a.example.org");
    // Fetched as a sender does: SNI, the well-known path, the Host header.
    let requests = server.requests();
    assert!(!requests.is_empty());
    for (sni, head) in &requests {
        assert_eq!(sni.as_deref(), Some("mta-sts.a.example.org"));
        assert!(
            head.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\nhost: mta-sts.a.example.org\r\n"),
            "{head}"
        );
    }
    let (r, _server) = canned(&w, leaf_a, ok_response("text/html", BODY));
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "policy-fetch",
            "the policy is served as Some(\"text/html\"); RFC 8461 §3.2 requires text/plain",
        )],
    );
}

#[test]
fn redirect_is_critical_and_not_followed() {
    let w = world().domains(&["a"]).start();
    let (r, server) = canned(
        &w,
        leaf_a,
        "HTTP/1.1 301 Moved Permanently\r\nLocation: /.well-known/elsewhere.txt\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned(),
    );
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "policy-fetch",
            "https://mta-sts.a.example.org/.well-known/mta-sts.txt redirects (301 Moved Permanently) \
             to /.well-known/elsewhere.txt; RFC 8461 §3.3: senders MUST NOT follow redirects",
        )],
    );
    let requests = server.requests();
    assert!(
        requests.iter().all(|(_, head)| !head.contains("elsewhere")),
        "the redirect was followed: {requests:?}"
    );
}

#[test]
fn expired_certificate_is_critical() {
    let w = world().domains(&["a"]).start();
    let (r, _server) = canned(
        &w,
        |ca| ca.leaf_with(&["mta-sts.a.example.org"], |p| validity(p, -30 * DAY, -DAY)),
        ok_response("text/plain", BODY),
    );
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "certificate",
            "the certificate of mta-sts.a.example.org is not valid: it expired on ",
        )],
    );
}

#[test]
fn certificate_expiring_within_14_days_is_a_warning() {
    let w = world().domains(&["a"]).start();
    let expiring = |days: i64| {
        move |ca: &TestCa| {
            ca.leaf_with(&["mta-sts.a.example.org"], |p| {
                validity(p, -DAY, days * DAY + DAY / 2)
            })
        }
    };
    let (r, _server) = canned(&w, expiring(14), ok_response("text/plain", BODY));
    r.assert_exit(0).assert_clean("a.example.org");
    let (r, _server) = canned(&w, expiring(13), ok_response("text/plain", BODY));
    r.assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "certificate",
            "the certificate of mta-sts.a.example.org expires in 13 days",
        )],
    );
}

#[test]
fn certificate_expiring_within_3_days_is_critical() {
    let w = world().domains(&["a"]).start();
    let expiring = |days: i64| {
        move |ca: &TestCa| {
            ca.leaf_with(&["mta-sts.a.example.org"], |p| {
                validity(p, -DAY, days * DAY + DAY / 2)
            })
        }
    };
    let (r, _server) = canned(&w, expiring(3), ok_response("text/plain", BODY));
    r.assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "certificate",
            "the certificate of mta-sts.a.example.org expires in 3 days",
        )],
    );
    let (r, _server) = canned(&w, expiring(2), ok_response("text/plain", BODY));
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "certificate",
            "the certificate of mta-sts.a.example.org expires in 2 days",
        )],
    );
}

#[test]
fn certificate_for_another_name_is_critical() {
    let w = world().domains(&["a"]).start();
    let (r, _server) = canned(
        &w,
        |ca| ca.leaf(&["mta-sts.other.example.org", "a.example.org"]),
        ok_response("text/plain", BODY),
    );
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "certificate",
            "the certificate of mta-sts.a.example.org is not valid: it is issued for mta-sts.other.example.org, a.example.org, not this name",
        )],
    );
}

#[test]
fn mx_not_covered_in_enforce_is_critical() {
    // `*.` matches exactly one label (RFC 8461 §4.1): mx1 is covered, deep.mx2 is not.
    let w = world()
        .domains(&["a"])
        .domain_toml("a", "mx = [\"*.example.org\"]")
        .records(|ids| {
            replace(
                correct(ids),
                "a MX ",
                &[
                    "a MX 10 mx1.example.org.".into(),
                    "a MX 20 deep.mx2.example.org.".into(),
                ],
            )
        });
    let _daemon = w.serve();
    w.drift().assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "mx",
            "MX deep.mx2.example.org is not covered by the policy's mx patterns; in `enforce` mode senders refuse to deliver to it",
        )],
    );
}

#[test]
fn mx_not_covered_in_testing_is_a_warning() {
    let w = world()
        .domains(&["a"])
        .domain_toml("a", "mode = \"testing\"")
        .records(|ids| {
            replace(
                correct(ids),
                "a MX ",
                &[
                    "a MX 10 mx1.example.org.".into(),
                    "a MX 20 mx2.example.org.".into(),
                ],
            )
        });
    let _daemon = w.serve();
    w.drift().assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "mx",
            "MX mx2.example.org is not covered by the policy's mx patterns; in `testing` mode senders report failures for it",
        )],
    );
}

#[test]
fn mx_pattern_matching_no_mx_is_a_warning() {
    let w = world()
        .domains(&["a"])
        .domain_toml("a", "mx = [\"mx1.example.org\", \"mx-old.example.org\"]")
        .start();
    let _daemon = w.serve();
    w.drift().assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "mx",
            "mx pattern mx-old.example.org matches none of the domain's MX hosts",
        )],
    );
}

#[test]
fn dead_nameserver_is_could_not_check() {
    let mut w = world().start();
    let _daemon = w.serve();
    w.ns[1].stop();
    let r = w.drift();
    r.assert_exit(3);
    for label in ["a", "b"] {
        r.assert_findings(
            &fqdn(label),
            &[(
                "unknown",
                "sts-txt",
                &format!(
                    "could not ask nameserver ns2.example.org. (127.0.0.3) for _mta-sts.{label}.example.org.: "
                ),
            )],
        );
    }
    assert!(
        r.text.stdout.starts_with(
            "MTA-STS UNKNOWN: 0 critical, 0 warning, 2 could not check, in 2 domains\n"
        ),
        "{}",
        r.dump()
    );
    w.ns[1].restart();
    w.drift().assert_exit(0);
}

#[test]
fn policy_host_without_address_is_critical() {
    // No daemon: were the policy fetched anyway, a "could not connect" finding would show.
    let w = world().records(|ids| {
        let r = replace(correct(ids), "mta-sts.a ", &[]);
        replace(
            r,
            "mta-sts.b ",
            &["mta-sts.b CNAME gone.example.org.".into()],
        )
    });
    w.drift()
        .assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "policy-host",
                "mta-sts.a.example.org. has no address: senders cannot fetch the policy",
            )],
        )
        .assert_findings(
            "b.example.org",
            &[
                (
                    "critical",
                    "policy-host",
                    "mta-sts.b.example.org. has no address",
                ),
                (
                    "warning",
                    "policy-host",
                    "mta-sts.b.example.org. is a CNAME to gone.example.org., the config says mail.example.org.",
                ),
            ],
        );
}

#[test]
fn verbose_lists_the_passed_checks_and_names_select_a_subset() {
    // a correct, with the MX a real Postfix; b with a stale id.
    let w = world().mx_tls().records(|ids| {
        replace(
            correct(ids),
            "_mta-sts.b ",
            &[sts("b", "v=STSv1; id=20240101000000Z;")],
        )
    });
    let _daemon = w.serve();
    let run = |args: &[&str]| run_with_config(&w.dir.config_path(), args);

    // Without --verbose only findings; b's stale id makes it critical.
    let all = run(&["drift", "--format", "text"]);
    all.assert_status(2);
    assert!(!all.stdout.contains("\nOK "), "{}", all.dump());

    // a alone: b's finding is neither printed nor counted, and every check a passed is listed
    // with what it looked at, in check order.
    let a = run(&["drift", "--verbose", "--format", "text", "a.example.org"]);
    a.assert_status(0);
    let lines: Vec<&str> = a.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "MTA-STS OK: 0 critical, 0 warning, 0 could not check, in 1 domains",
        "{}",
        a.dump()
    );
    assert!(!a.stdout.contains("b.example.org"), "{}", a.dump());
    let checks: Vec<&str> = lines[1..]
        .iter()
        .map(|l| {
            l.strip_prefix("OK a.example.org [")
                .and_then(|l| l.split_once("] "))
                .unwrap_or_else(|| panic!("not a passed check: {l:?}\n{}", a.dump()))
                .0
        })
        .collect();
    assert_eq!(
        checks,
        [
            "sts-txt",
            "ns-agreement",
            "policy-host",
            "tlsrpt",
            "policy-fetch",
            "certificate",
            "mx",
            "mx-tls",
            "dane"
        ],
        "{}",
        a.dump()
    );
    for want in [
        &format!(
            "[sts-txt] _mta-sts.a.example.org. TXT at ns1.example.org. (127.0.0.2), ns2.example.org. (127.0.0.3): id {}, the served policy's",
            w.id("a")
        ),
        "[ns-agreement] 2 nameserver(s) of example.org. agree on _mta-sts.a.example.org.",
        "[policy-host] mta-sts.a.example.org. (CNAME to mail.example.org.) resolves to 127.0.0.1",
        "[policy-fetch] GET https://mta-sts.a.example.org/.well-known/mta-sts.txt: 200 text/plain",
        "[mx] MX mx1.example.org covered by the policy's mx patterns (mx1.example.org)",
        "[mx-tls] MX mx1.example.org (127.0.0.1:",
        "[dane] no TLSA at _25._tcp.mx1.example.org: DANE not in use for MX mx1.example.org",
        "[tlsrpt] _smtp._tls.a.example.org. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.org;\", as configured",
        "[certificate] the certificate of mta-sts.a.example.org is valid for it (TLSv1_3), ",
    ] {
        assert!(a.stdout.contains(want), "no {want:?}\n{}", a.dump());
    }

    // The same in JSON: `passed` beside the (empty) findings.
    let json = run(&["drift", "--verbose", "--format", "json", "a.example.org"]);
    json.assert_status(0);
    let r: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(r["counts"]["domains"], 1);
    let d = &r["domains"][0];
    assert_eq!(
        (&d["domain"], &d["findings"]),
        (&"a.example.org".into(), &serde_json::json!([]))
    );
    let passed = d["passed"].as_array().unwrap();
    assert_eq!(passed.len(), checks.len(), "{r:#}");
    assert_eq!(
        keys(&passed[0], "a passed check"),
        set(&["check", "looked_at"])
    );

    // b alone: its finding, and a's (kept from the run before) not in the output.
    let b = run(&["drift", "--format", "json", "b.example.org"]);
    b.assert_status(2);
    let r: Value = serde_json::from_str(&b.stdout).unwrap();
    validate_schema(&r);
    assert_eq!(r["counts"]["domains"], 1, "{r:#}");
    assert_eq!(r["domains"][0]["domain"], "b.example.org");
    assert_eq!(r["domains"][0]["findings"][0]["check"], "sts-txt");

    // A name that is not a domain of the config: could not check, nothing printed.
    let unknown = run(&["drift", "a.example.org", "nope.example.org"]);
    unknown.assert_status(3);
    assert_eq!(unknown.stdout, "");
    assert!(
        unknown
            .stderr
            .contains("nope.example.org is not a domain of the config"),
        "{}",
        unknown.dump()
    );
}

/// A change to a report that makes it break the schema.
type Mutation = fn(&mut Value);

#[test]
fn json_report_follows_the_documented_schema() {
    // Every severity at once: a stale id (critical), no TLSRPT record (warning), and ns2 down
    // (could not check) — critical outranks could-not-check.
    let mut w = world().records(|ids| {
        let r = replace(
            correct(ids),
            "_mta-sts.a ",
            &[sts("a", "v=STSv1; id=old1;")],
        );
        replace(r, "_smtp._tls.b ", &[])
    });
    let _daemon = w.serve();
    w.ns[1].stop();
    let r = w.drift();
    r.assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[
                (
                    "critical",
                    "sts-txt",
                    "stale id at _mta-sts.a.example.org.: old1",
                ),
                (
                    "unknown",
                    "sts-txt",
                    "could not ask nameserver ns2.example.org.",
                ),
            ],
        )
        .assert_findings(
            "b.example.org",
            &[
                (
                    "unknown",
                    "sts-txt",
                    "could not ask nameserver ns2.example.org.",
                ),
                (
                    "warning",
                    "tlsrpt",
                    "no v=TLSRPTv1 record at _smtp._tls.b.example.org.",
                ),
            ],
        );
    let report = &r.report;
    assert_eq!(
        report["counts"],
        serde_json::json!({ "domains": 2, "critical": 1, "warning": 1, "unknown": 2 })
    );
    assert_eq!(report["domains"][0]["status"], "critical");
    assert_eq!(report["domains"][1]["status"], "unknown");
    // The validator itself rejects what the schema does not allow.
    let broken: [(&str, Mutation); 7] = [
        ("a missing hint", |r| {
            r["domains"][0]["findings"][0]
                .as_object_mut()
                .unwrap()
                .remove("hint");
        }),
        ("an unknown severity", |r| {
            r["domains"][0]["findings"][0]["severity"] = "fatal".into()
        }),
        ("an unknown check", |r| {
            r["domains"][0]["findings"][0]["check"] = "smtp-banner".into()
        }),
        ("a wrong exit code", |r| r["exit_code"] = 0.into()),
        ("a string count", |r| r["counts"]["critical"] = "1".into()),
        ("domains out of order", |r| {
            r["domains"].as_array_mut().unwrap().reverse()
        }),
        ("an extra field", |r| r["extra"] = true.into()),
    ];
    for (what, mutate) in broken {
        let mut bad = report.clone();
        mutate(&mut bad);
        let rejected = std::panic::catch_unwind(|| validate_schema(&bad)).is_err();
        assert!(rejected, "the validator accepted {what}");
    }
}

// --- serve ----------------------------------------------------------------------------------

/// The value of one sample in the Prometheus text, if there.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// The `/status` entry of one domain.
fn domain_status<'s>(status: &'s Value, domain: &str) -> &'s Value {
    status["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == domain)
        .unwrap_or_else(|| panic!("no {domain} in {status}"))
}

const CRITICAL: &str = "mta_stsd_drift_findings{severity=\"critical\"}";

#[tokio::test]
async fn serve_runs_drift_periodically_into_the_report_status_and_metrics() {
    let w = world()
        .drift_extra("report = \"state/drift.json\"\ninterval = \"1s\"")
        .alert_command()
        .records(|ids| {
            replace(
                correct(ids),
                "_mta-sts.a ",
                &[sts("a", "v=STSv1; id=old1;")],
            )
        });
    let path = w.dir.file("state/drift.json");
    let events = || {
        std::fs::read_to_string(w.dir.file("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let d = w.serve();
    let read_report = || {
        let text = std::fs::read_to_string(&path).ok()?;
        let report: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("a half-written report? {e}\n{text}"));
        validate_schema(&report);
        Some(report)
    };
    let report = eventually("the drift report file", || async { read_report() }).await;
    assert_eq!(report["status"], "critical", "{report:#}");
    assert_eq!(report["exit_code"], 2);
    assert_eq!(report["domains"][0]["domain"], "a.example.org");
    assert_eq!(report["domains"][0]["findings"][0]["check"], "sts-txt");
    assert_eq!(report["domains"][1]["findings"], serde_json::json!([]));

    let s = eventually("the drift summary in /status", || async {
        let s = d.status().await;
        (s["drift"]["status"] == "critical").then_some(s)
    })
    .await;
    assert_eq!(s["drift"]["counts"]["critical"], 1, "{s:#}");
    let a = &domain_status(&s, "a.example.org")["drift"];
    assert_eq!(a["status"], "critical", "{s:#}");
    assert_eq!(a["findings"][0]["severity"], "critical");
    assert_eq!(a["findings"][0]["check"], "sts-txt");
    assert!(
        a["findings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("stale id at _mta-sts.a.example.org.: old1"),
        "{a:#}"
    );
    let b = &domain_status(&s, "b.example.org")["drift"];
    assert_eq!(b["status"], "ok", "{s:#}");
    assert_eq!(b["findings"], serde_json::json!([]));
    let m = d.metrics().await;
    assert_eq!(sample(&m, CRITICAL), Some(1.0), "{m}");
    // a's DNS is critical (the stale id), b's fine; no label names a domain.
    for (state, n) in [
        ("ok", 1.0),
        ("warning", 0.0),
        ("unknown", 0.0),
        ("critical", 1.0),
    ] {
        let name = format!("mta_stsd_domains_by_dns_state{{state=\"{state}\"}}");
        assert_eq!(sample(&m, &name), Some(n), "{name}\n{m}");
    }
    let series = m
        .lines()
        .filter(|l| l.starts_with("mta_stsd_domains_by_dns_state{"))
        .count();
    assert_eq!(series, 4, "{m}");
    // One event so far (a's finding appeared), delivered to the command and counted.
    let delivered = "mta_stsd_alerts_total{result=\"delivered\"}";
    let m = eventually("the delivered alert in /metrics", || async {
        let m = d.metrics().await;
        (sample(&m, delivered) == Some(1.0)).then_some(m)
    })
    .await;
    assert_eq!(events(), 1, "{m}");
    assert_eq!(
        sample(&m, "mta_stsd_alerts_total{result=\"failed\"}"),
        Some(0.0),
        "{m}"
    );
    let s = d.status().await;
    assert_eq!(
        (&s["alerts"]["delivered"], &s["alerts"]["failed"]),
        (&1.into(), &0.into()),
        "{s:#}"
    );
    assert!(
        sample(&m, "mta_stsd_drift_last_run_timestamp_seconds").unwrap() > 0.0,
        "{m}"
    );

    // Fixed on both nameservers: the next run sees it, everywhere.
    w.nsupdate_all(&format!(
        "update delete _mta-sts.a.example.org. TXT\n\
         update add _mta-sts.a.example.org. 300 IN TXT \"v=STSv1; id={};\"",
        w.id("a")
    ));
    let report = eventually("a clean drift report", || async {
        read_report().filter(|r| r["status"] == "ok")
    })
    .await;
    assert_eq!(report["counts"]["critical"], 0);
    let s = eventually("drift ok in /status", || async {
        let s = d.status().await;
        (s["drift"]["status"] == "ok").then_some(s)
    })
    .await;
    assert_eq!(
        domain_status(&s, "a.example.org")["drift"]["findings"],
        serde_json::json!([])
    );
    let m = eventually("no critical drift finding in /metrics", || async {
        let m = d.metrics().await;
        (sample(&m, CRITICAL) == Some(0.0)).then_some(m)
    })
    .await;
    assert_eq!(
        sample(&m, "mta_stsd_drift_findings{severity=\"warning\"}"),
        Some(0.0),
        "{m}"
    );
    let ok = "mta_stsd_domains_by_dns_state{state=\"ok\"}";
    assert_eq!(sample(&m, ok), Some(2.0), "{m}");
    // The finding cleared: a second event, and nothing more while nothing changes.
    eventually("the cleared alert counted", || async {
        let s = d.status().await;
        (s["alerts"]["delivered"] == 2).then_some(())
    })
    .await;
    assert_eq!(events(), 2);
    let runs = sample(
        &d.metrics().await,
        "mta_stsd_drift_last_run_timestamp_seconds",
    )
    .unwrap();
    eventually("two more drift runs", || async {
        let m = d.metrics().await;
        (sample(&m, "mta_stsd_drift_last_run_timestamp_seconds").unwrap() >= runs + 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(events(), 2);
    assert_eq!(sample(&d.metrics().await, delivered), Some(2.0));
}
