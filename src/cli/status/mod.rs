//! `status`: asks the running daemon's admin listener for `/status` and prints a short summary
//! (or the JSON as it came), with an exit code for scripts: 0 fine, 1 warnings, 2 errors,
//! 3 daemon not reachable.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use mta_stsd_providers::Secret;
use serde_json::Value;

use super::Format;

mod summary;

use summary::Summary;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `/status` lists at most 1,000 domains; this bounds a misbehaving listener.
const MAX_RESPONSE: u64 = 64 << 20;

pub(super) const UNREACHABLE: u8 = 3;

pub(super) fn run(
    path: &Path,
    admin: Option<SocketAddr>,
    domain: Option<&str>,
    format: Format,
) -> u8 {
    // The config also gives `admin_token_file`'s token, sent when set.
    let loaded = crate::config::load(path);
    let token = loaded
        .as_ref()
        .ok()
        .and_then(|l| l.config.server.admin_token.clone());
    let (addr, broken) = match admin {
        Some(a) => (a, false),
        None => match loaded {
            Ok(l) => match l.config.server.admin {
                Some(a) => (a, false),
                None => {
                    eprintln!(
                        "mta-stsd: {} has no [server] admin listener to ask",
                        path.display()
                    );
                    return UNREACHABLE;
                }
            },
            // The daemon keeps serving its last good config: still ask it, at the address
            // the file names if that much can be read.
            Err(failed) => {
                let first = failed
                    .errors()
                    .next()
                    .map_or_else(|| "no details".to_owned(), |d| d.to_string());
                let (addr, source) = admin_of_broken(path);
                eprintln!(
                    "mta-stsd: warning: {} is invalid ({first}; `mta-stsd check` lists all); asking the daemon at {addr} ({source})",
                    path.display()
                );
                (addr, true)
            }
        },
    };
    let addr = reachable(addr);
    let query = domain.map_or(String::new(), |d| format!("?domain={d}"));
    let body = match fetch(addr, &format!("/status{query}"), token.as_ref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mta-stsd: no daemon answering at {addr}: {e}");
            if broken {
                eprintln!("mta-stsd: give the daemon's admin address with --admin");
            }
            return UNREACHABLE;
        }
    };
    let status: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mta-stsd: {addr}/status is not JSON: {e}");
            return UNREACHABLE;
        }
    };
    let now = unix_now();
    let summary = Summary::of(&status, now);
    let mut out = std::io::stdout().lock();
    let written = match format {
        Format::Json => out.write_all(&body),
        Format::Text => out.write_all(summary.text.as_bytes()),
    };
    if written.and_then(|()| out.flush()).is_err() {
        return UNREACHABLE;
    }
    summary.exit_code()
}

/// The admin address of a config that does not load: `[server] admin` when the file is TOML
/// and names a valid address, else the default (SPEC: 127.0.0.1:9464); and where it came from.
fn admin_of_broken(path: &Path) -> (SocketAddr, &'static str) {
    let default = crate::config::Server::default()
        .admin
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464)));
    let Ok(text) = std::fs::read_to_string(path) else {
        return (
            default,
            "the default admin address; the file cannot be read",
        );
    };
    // Recovered from any syntax error elsewhere in the file.
    let (root, _) = toml::de::DeTable::parse_recoverable(&text);
    let admin = root
        .get_ref()
        .get("server")
        .and_then(|s| match s.get_ref() {
            toml::de::DeValue::Table(t) => match t.get("admin")?.get_ref() {
                toml::de::DeValue::String(a) => Some(a.to_string()),
                _ => None,
            },
            _ => None,
        });
    match admin.map(|a| a.parse::<SocketAddr>()) {
        Some(Ok(a)) => (a, "its [server] admin"),
        Some(Err(_)) => (
            default,
            "the default admin address; its [server] admin is not one",
        ),
        None => (default, "the default admin address"),
    }
}

/// A listener on every address is asked on loopback.
fn reachable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        _ => a,
    }
}

/// One HTTP/1.1 GET with `Connection: close`; the body of a 200.
fn fetch(addr: SocketAddr, target: &str, token: Option<&Secret>) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(READ_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let auth = token.map_or(String::new(), |t| {
        format!("Authorization: Bearer {}\r\n", t.expose().trim())
    });
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.starts_with("http/1.1 200") {
        return Err(format!("answered `{status_line}`"));
    }
    if head.contains("transfer-encoding: chunked") {
        return Err("chunked response: not the admin listener".into());
    }
    Ok(response[split + 4..].to_vec())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
