//! A real ACME server for tests: Let's Encrypt's `pebble` (Debian package `pebble`) on
//! loopback ports, its DNS pointed at `pebble-challtestsrv`, which answers every A query with
//! 127.0.0.1 (and AAAA with nothing), so that validation of any `mta-sts.<domain>` reaches the
//! daemon under test on the ports pebble is told. Both are killed on drop.
//!
//! Pebble serves its API with a certificate from a [`TestCa`]; [`Pebble::ca_file`] is what
//! `[acme] ca` points at. The CA that signs what pebble *issues* is made anew at every start
//! and fetched from its management interface ([`Pebble::issuing_root`]).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use super::daemon::TestCa;
use super::dns::exchange;
use super::process::{find_program, free_port};

/// How long pebble and its DNS may take to come up.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// What to tell pebble.
pub struct PebbleOptions {
    /// Where validation connects: the daemon's plain listener (HTTP-01) …
    pub http_port: u16,
    /// … and its HTTPS listener (TLS-ALPN-01).
    pub tls_port: u16,
    /// Lifetime of issued certificates in seconds (pebble's default is five years).
    pub validity: Option<u64>,
    /// The port of the ACME API; a free one when `None`.
    pub listen_port: Option<u16>,
    /// The CA for pebble's own HTTPS certificate, when the test wrote it out already; a new
    /// one when `None`.
    pub api_ca: Option<TestCa>,
}

impl PebbleOptions {
    /// Validation to the daemon's plain port `http_port` and HTTPS port `tls_port`.
    pub fn new(http_port: u16, tls_port: u16) -> Self {
        PebbleOptions {
            http_port,
            tls_port,
            validity: None,
            listen_port: None,
            api_ca: None,
        }
    }
}

pub struct Pebble {
    pebble: Child,
    dns: Child,
    dir: TempDir,
    ca: TestCa,
    /// The ACME directory URL.
    pub directory: String,
    pub management: SocketAddr,
}

impl Pebble {
    pub async fn start(opts: PebbleOptions) -> Pebble {
        let pebble_bin = find_program("pebble", "pebble");
        let dns_bin = find_program("pebble-challtestsrv", "pebble");
        let dir = tempfile::Builder::new()
            .prefix("mta-stsd-pebble-")
            .tempdir()
            .expect("creating a temporary directory");
        let ca = opts.api_ca.unwrap_or_default();
        let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"]);
        fs::write(dir.path().join("cert.pem"), cert).unwrap();
        fs::write(dir.path().join("key.pem"), key).unwrap();
        fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();

        let dns_port = free_port();
        let dns_mgmt = free_port();
        let dns = Command::new(&dns_bin)
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
            ])
            .stdin(Stdio::null())
            .stdout(log_file(dir.path(), "challtestsrv.log"))
            .stderr(log_file(dir.path(), "challtestsrv.log"))
            .spawn()
            .expect("starting pebble-challtestsrv");

        let listen_port = opts.listen_port.unwrap_or_else(free_port);
        let management = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen_port}"),
                "managementListenAddress": management.to_string(),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": opts.http_port,
                "tlsPort": opts.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(v) = opts.validity {
            config["pebble"]["certificateValidityPeriod"] = v.into();
        }
        let config_path = dir.path().join("pebble.json");
        fs::write(&config_path, config.to_string()).unwrap();
        let pebble = Command::new(&pebble_bin)
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            // No random sleeps before validation; no nonces rejected at random; a fresh
            // authorization (and so a real validation) for every order.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log_file(dir.path(), "pebble.log"))
            .stderr(log_file(dir.path(), "pebble.log"))
            .spawn()
            .expect("starting pebble");

        let mut p = Pebble {
            pebble,
            dns,
            dir,
            ca,
            directory: format!("https://127.0.0.1:{listen_port}/dir"),
            management,
        };
        p.wait_ready(SocketAddr::from((Ipv4Addr::LOCALHOST, dns_port)))
            .await;
        p
    }

    /// The CA that signed pebble's own HTTPS certificate (for a proxy in front of it).
    pub fn api_ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA file to put in `[acme] ca`: it signed pebble's own HTTPS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Both logs, for failure messages.
    pub fn log(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- pebble ---\n{}\n--- challtestsrv ---\n{}",
            read("pebble.log"),
            read("challtestsrv.log")
        )
    }

    /// Orders pebble has finalized so far (its log line per issued certificate).
    pub fn issued(&self) -> usize {
        fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Issued certificate serial"))
            .count()
    }

    /// The root that issued certificates chain to, from the management interface (PEM).
    pub async fn issuing_root(&self) -> String {
        self.management_get("/roots/0").await
    }

    pub async fn management_get(&self, path: &str) -> String {
        let r = self
            .client()
            .get(format!("https://{}{path}", self.management))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} from pebble's management: {e}"));
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.text().await.unwrap()
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.ca.client_config())
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Waits until the DNS answers and the directory is served; panics with the logs if either
    /// process exits or the deadline passes.
    async fn wait_ready(&mut self, dns: SocketAddr) {
        let deadline = Instant::now() + START_DEADLINE;
        let mut dns_ok = false;
        let client = self.client();
        loop {
            let exited = [
                ("pebble", &mut self.pebble),
                ("challtestsrv", &mut self.dns),
            ]
            .into_iter()
            .find_map(|(what, child)| Some((what, child.try_wait().ok()??)));
            if let Some((what, status)) = exited {
                panic!("{what} exited with {status}\n{}", self.log());
            }
            if !dns_ok {
                dns_ok = exchange(
                    dns,
                    "mta-sts.probe.example",
                    RecordType::A,
                    false,
                    Duration::from_millis(200),
                )
                .is_ok_and(|m| m.response_code == ResponseCode::NoError && !m.answers.is_empty());
            }
            if dns_ok {
                let up = client
                    .get(&self.directory)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if up {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "pebble not ready within {START_DEADLINE:?} (dns {dns_ok})\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log_file(dir: &Path, name: &str) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("opening a log file")
}
