//! `serve`: the real daemon on loopback ports, talked to by real HTTPS clients that trust only
//! a test CA.

mod attacks;
pub(crate) mod busy;
mod conn_caps;
mod devca;
mod files;
mod http;
pub(crate) mod limits;
mod process;
mod proxy;
mod reload;
mod tls;

use crate::harness::daemon::TestCa;
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

pub(crate) fn policy_url(host: &str, addr: std::net::SocketAddr) -> String {
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
