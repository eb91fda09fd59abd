//! The ACME world the ACME tests share: a real pebble validating over the daemon's own
//! listeners on fixed ports, a config for `a.example` and `b.example`, `/status` polled until
//! a condition holds, and clients that trust only pebble's root.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use super::daemon::{eventually_within, Daemon};
use super::db;
use super::dns::free_port;
use super::pebble::{Pebble, PebbleOptions};
use super::{state_dir_for, ConfigDir};

pub const PATH: &str = "/.well-known/mta-sts.txt";
pub const A: &str = "mta-sts.a.example";
pub const B: &str = "mta-sts.b.example";
/// Orders, validation and renewal take seconds against pebble; leave room on a slow machine.
pub const ACME_DEADLINE: Duration = Duration::from_secs(60);

/// The daemon's listeners on fixed ports (pebble must know them before it starts).
pub struct Ports {
    pub https: u16,
    pub http: u16,
    pub dead: u16,
}

impl Ports {
    pub fn new() -> Self {
        Ports {
            https: free_port(),
            http: free_port(),
            dead: free_port(),
        }
    }
}

/// A config for `a.example` and `b.example`; `tls` adds a `[tls]` section, `acme` is the body
/// of `[acme]`.
pub fn config(ports: &Ports, tls: &str, acme: &str) -> String {
    format!(
        r#"[server]
https = ["127.0.0.1:{https}"]
http = ["127.0.0.1:{http}"]
admin = "127.0.0.1:0"

{tls}

[policy]
mode = "enforce"
mx = ["mail.a.example"]
max_age = 86400

[domains."a.example"]

[domains."b.example"]

# The drift checks' DNS goes to a loopback port where nothing answers: no traffic leaves.
[drift]
resolver = "127.0.0.1:{dead}"

[acme]
{acme}
"#,
        https = ports.https,
        http = ports.http,
        dead = ports.dead,
    )
}

/// `[acme]` for `pebble` (an earlier version's state, imported if there, in `acme/` beside
/// the config).
pub fn acme_section(pebble: &Pebble, challenge: &str) -> String {
    format!(
        "directory = \"{}\"\ncontact = [\"mailto:hostmaster@a.example\"]\n\
         challenge = \"{challenge}\"\nca = \"{}\"\nstate = \"acme\"\n",
        pebble.directory,
        pebble.ca_file().display()
    )
}

/// The `acme` object of `domain` in /status.
pub async fn acme_status(d: &Daemon, domain: &str) -> Value {
    let s = d.status().await;
    s["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["domain"] == domain)
        .unwrap_or_else(|| panic!("{domain} not in /status: {s}"))["acme"]
        .clone()
}

/// Polls `acme_status` until `ok` holds; panics with the last status and `logs` (pebble's,
/// say) after `bound` (the daemon's log comes with the panic).
pub async fn wait_acme(
    d: &Daemon,
    domain: &str,
    bound: Duration,
    logs: impl Fn() -> String,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let what = format!("{domain}'s ACME state to meet the condition");
    eventually_within(bound, &what, || async {
        let s = acme_status(d, domain).await;
        if ok(&s) {
            Ok(s)
        } else {
            Err(format!("{s}\n{}", logs()))
        }
    })
    .await
}

/// Waits until each of `domains` has a valid certificate (pebble's log on failure).
pub async fn wait_valid(d: &Daemon, pebble: &Pebble, domains: &[&str]) {
    for domain in domains {
        wait_acme(
            d,
            domain,
            ACME_DEADLINE,
            || pebble.log(),
            |s| s["state"] == "valid",
        )
        .await;
    }
}

/// Pebble validating on `ports` (its HTTP-01 and TLS-ALPN-01 requests go to the daemon's).
pub async fn pebble_for(ports: &Ports) -> Pebble {
    Pebble::start(PebbleOptions::new(ports.http, ports.https)).await
}

fn roots(pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

pub fn client_config(root_pem: &str) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(root_pem))
        .with_no_client_auth()
}

/// An HTTPS client that trusts only `root_pem` and resolves both names to `addr`.
pub fn client_trusting(root_pem: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(root_pem))
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .resolve(A, addr)
        .resolve(B, addr)
        .build()
        .unwrap()
}

/// Fetches the policy of `host` and returns the leaf certificate it was served with.
pub async fn fetch_policy(client: &reqwest::Client, host: &str, port: u16) -> Vec<u8> {
    let r = client
        .get(format!("https://{host}:{port}{PATH}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("fetching the policy of {host}: {e:?}"));
    assert_eq!(r.status(), StatusCode::OK, "{host}");
    let leaf = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec();
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("version: STSv1\r\nmode: enforce\r\n"),
        "{body:?}"
    );
    leaf
}

/// The store of the daemon run with `dir`'s config (SQLite in its `[state] dir`).
pub fn store_of(dir: &ConfigDir) -> String {
    db::sqlite_url(&state_dir_for(&dir.config_path()))
}

/// The leaf stored for `name` in the store of `dir`'s daemon.
pub async fn stored_leaf(dir: &ConfigDir, name: &str) -> Vec<u8> {
    db::leaf(&store_of(dir), name).await
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
