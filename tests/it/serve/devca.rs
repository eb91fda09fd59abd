//! `self_signed = true` with the development CA in `[state] dir`: its path is logged, a client
//! that trusts it reaches every name, and a restart keeps it (the same client still works).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::harness::daemon::Daemon;
use crate::harness::ConfigDir;

fn client_trusting(ca_pem: &[u8], addr: SocketAddr) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).expect("a PEM certificate"))
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .resolve("mta-sts.example.org", addr)
        .resolve("mta-sts.example.net", addr)
        .build()
        .unwrap()
}

async fn fetch(client: &reqwest::Client, domain: &str, port: u16) -> Result<String, String> {
    let r = client
        .get(format!(
            "https://mta-sts.{domain}:{port}/.well-known/mta-sts.txt"
        ))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    r.text().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn development_ca_is_logged_trusted_and_kept_across_restarts() {
    let dir = ConfigDir::with_config(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n\
         [state]\ndir = \"state\"\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n[domains.\"example.net\"]\n",
    );
    let d = Daemon::start(&dir.config_path());
    let line = d.wait_log("development CA: trust ");
    let path = dir.file("state/dev-ca/ca.pem");
    assert!(line.contains(&path.display().to_string()), "{line}");
    let ca = std::fs::read(&path).unwrap();
    let addr = d.https.unwrap();
    let client = client_trusting(&ca, addr);
    for domain in ["example.org", "example.net"] {
        let body = fetch(&client, domain, addr.port()).await.unwrap();
        assert!(body.starts_with("version: STSv1\r\n"), "{body}");
    }
    // Without the CA, the names are not trusted.
    let stranger = client_trusting(crate::harness::daemon::TestCa::new().pem.as_bytes(), addr);
    assert!(fetch(&stranger, "example.org", addr.port()).await.is_err());
    drop(d);

    let d = Daemon::start(&dir.config_path());
    d.wait_log("development CA: trust ");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        ca,
        "the same CA after a restart"
    );
    let addr = d.https.unwrap();
    let client = client_trusting(&ca, addr);
    let body = fetch(&client, "example.org", addr.port())
        .await
        .expect("the CA trusted before the restart still validates");
    assert!(body.starts_with("version: STSv1\r\n"), "{body}");
}
