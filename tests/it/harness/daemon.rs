//! The real daemon under test: `mta-stsd serve` started on port 0, its ports learned from its
//! `listening on` log lines, killed on drop; plus a test CA and clients that trust only it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::BIN;

/// How long a daemon may take to start, a reload to show, a condition to hold.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    exited: bool,
}

pub struct Daemon {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

impl Daemon {
    /// Starts `serve` on `config` and waits for its `ready` line.
    pub fn start(config: &Path) -> Daemon {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_in(None, config, env)
    }

    /// Like [`Daemon::start_with`], run from `cwd` (so that `config` may be relative).
    pub fn start_in(cwd: Option<&Path>, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let config_at = match cwd {
            Some(dir) => dir.join(config),
            None => config.to_owned(),
        };
        cmd.env("STATE_DIRECTORY", super::state_dir_for(&config_at));
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .env_remove("MTA_STSD_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting mta-stsd serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (m, cv) = &*sink;
                m.lock().unwrap().lines.push(line);
                cv.notify_all();
            }
            let (m, cv) = &*sink;
            m.lock().unwrap().exited = true;
            cv.notify_all();
        });
        let mut d = Daemon {
            child,
            log,
            https: None,
            http: None,
            admin: None,
        };
        d.wait_log("ready");
        for line in d.lines() {
            for (proto, slot) in [
                ("https", &mut d.https),
                ("http", &mut d.http),
                ("admin", &mut d.admin),
            ] {
                if let Some(rest) = line.split(&format!("listening on {proto} ")).nth(1) {
                    *slot = Some(
                        rest.trim()
                            .parse()
                            .expect("an address after `listening on`"),
                    );
                }
            }
        }
        d
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.0.lock().unwrap().lines.clone()
    }

    /// Waits until a log line contains `needle`; panics with the log if the daemon exits or
    /// the deadline passes.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_after(0, needle)
    }

    /// Like [`Self::wait_log`], for lines after the first `skip`.
    pub fn wait_log_after(&self, skip: usize, needle: &str) -> String {
        let (m, cv) = &*self.log;
        let deadline = Instant::now() + DEADLINE;
        let mut log = m.lock().unwrap();
        loop {
            if let Some(l) = log.lines.iter().skip(skip).find(|l| l.contains(needle)) {
                return l.clone();
            }
            let now = Instant::now();
            if log.exited || now >= deadline {
                panic!(
                    "no log line containing {needle:?} ({}); log:\n{}",
                    if log.exited {
                        "daemon exited"
                    } else {
                        "deadline passed"
                    },
                    log.lines.join("\n")
                );
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit within `bound`; its exit status.
    pub fn wait_exit(&mut self, bound: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("an admin listener"))
    }

    /// `/status` from the admin listener, parsed.
    pub async fn status(&self) -> serde_json::Value {
        let r = plain_client()
            .get(self.admin_url("/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    /// `/metrics` from the admin listener.
    pub async fn metrics(&self) -> String {
        let r = plain_client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        r.text().await.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the daemon said (the last lines; the test's own output
        // is captured by the test runner, so this costs nothing when tests pass).
        if std::thread::panicking() {
            if let Ok(log) = self.log.0.lock() {
                let from = log.lines.len().saturating_sub(200);
                eprintln!(
                    "--- daemon log (last {} lines) ---\n{}\n--- end of daemon log ---",
                    log.lines.len() - from,
                    log.lines[from..].join("\n")
                );
            }
        }
    }
}

/// How often the `eventually` helpers poll.
const POLL: Duration = Duration::from_millis(25);

/// Polls `f` until it returns `Some`, or panics after [`DEADLINE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`eventually`], within `bound`; `f` says what it saw when not yet done (`Err`), and
/// the last of that is in the failure message.
pub async fn eventually_within<T, F, Fut>(bound: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + bound;
    loop {
        let seen = match f().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}; last seen: {seen}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually_within`] for a test without a runtime: polls `f` until `Ok`, or panics after
/// `bound` with `what` and the last `Err`.
#[track_caller]
pub fn eventually_blocking<T>(
    bound: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + bound;
    loop {
        let seen = match f() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}; last seen: {seen}"
        );
        std::thread::sleep(POLL);
    }
}

/// Sends `gets` (each a URL and the `Host` to send, if not the URL's) back to back, every
/// 20 ms, until `stop` is set: a sender that must be answered throughout. Returns the rounds
/// made and every answer that was not a 200 (2 s each at most).
pub fn hammer(
    gets: Vec<(String, Option<String>)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let client = plain_client();
        let (mut n, mut failed) = (0, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (url, host) in &gets {
                let mut get = client.get(url).timeout(Duration::from_secs(2));
                if let Some(host) = host {
                    get = get.header("host", host);
                }
                match get.send().await {
                    Ok(r) if r.status() == 200 => {}
                    other => failed.push(format!("{other:?}")),
                }
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (n, failed)
    })
}

/// A CA for tests, and leaf certificates it signs.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mta-stsd test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            params,
            key,
        }
    }

    /// A leaf for `names`: (certificate PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        self.leaf_with(names, |_| {})
    }

    /// Like [`TestCa::leaf`], with `edit` applied to the leaf's parameters first (validity
    /// dates, say): (certificate PEM, key PEM).
    pub fn leaf_with(
        &self,
        names: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        edit(&mut params);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// An HTTPS client trusting only this CA, resolving each name to `addr`.
    pub fn client(&self, names: &[&str], addr: SocketAddr, http1_only: bool) -> reqwest::Client {
        let mut tls = self.client_config();
        tls.alpn_protocols = if http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .tls_info(true)
            .no_proxy()
            .timeout(Duration::from_secs(10));
        if http1_only {
            b = b.http1_only();
        }
        for n in names {
            b = b.resolve(n, addr);
        }
        b.build().unwrap()
    }
}

/// A plain-HTTP client without redirects or proxies.
pub fn plain_client() -> reqwest::Client {
    // reqwest wants a process-wide provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
