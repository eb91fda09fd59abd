//! `status`: asks the running daemon's admin listener for `/status` and prints a short summary
//! (or the JSON as it came), with an exit code for scripts: 0 fine, 1 warnings, 2 errors,
//! 3 daemon not reachable.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use super::Format;

mod summary;

use summary::Summary;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `/status` lists at most 1,000 domains; this bounds a misbehaving listener.
const MAX_RESPONSE: u64 = 64 << 20;

pub const UNREACHABLE: u8 = 3;

pub fn run(path: &Path, admin: Option<SocketAddr>, domain: Option<&str>, format: Format) -> u8 {
    let addr = match admin {
        Some(a) => a,
        None => match crate::config::load(path) {
            Ok(l) => match l.config.server.admin {
                Some(a) => a,
                None => {
                    eprintln!(
                        "mta-stsd: {} has no [server] admin listener to ask",
                        path.display()
                    );
                    return UNREACHABLE;
                }
            },
            Err(_) => {
                eprintln!(
                    "mta-stsd: {} is invalid (`mta-stsd check` says why); give the daemon's admin address with --admin",
                    path.display()
                );
                return UNREACHABLE;
            }
        },
    };
    let addr = reachable(addr);
    let query = domain.map_or(String::new(), |d| format!("?domain={d}"));
    let body = match fetch(addr, &format!("/status{query}")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mta-stsd: no daemon answering at {addr}: {e}");
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

/// A listener on every address is asked on loopback.
fn reachable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        _ => a,
    }
}

/// One HTTP/1.1 GET with `Connection: close`; the body of a 200.
fn fetch(addr: SocketAddr, target: &str) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(READ_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
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
