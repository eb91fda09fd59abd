//! What the drift tests with a world of their own share: `example.org` on a real BIND that is
//! its own nameserver (`ns1` at [`NS`]), and an `[alerts] command` that appends each event's
//! JSON to `events.jsonl` in the config dir.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::dns::{DnsServer, Kind, Options, TsigKey};
use super::ConfigDir;

/// The nameserver's address (given to `lo` by the harness when missing).
pub const NS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// `example.org` on BIND at [`NS`], `ns1` in its own zone, holding `records` (updatable with a
/// key named `key_name`); `querylog`: BIND logs every query it gets.
pub fn example_org(key_name: &str, records: &[&str], querylog: bool) -> DnsServer {
    let key = TsigKey::generate(key_name, "hmac-sha256");
    DnsServer::start_with(
        Kind::Bind,
        &Options {
            ip: NS,
            ns: vec![("ns1".into(), NS)],
            querylog,
            ..Options::default()
        },
        "example.org",
        &key,
        records,
    )
}

/// Writes `alert.sh` into `dir`: it appends the event on its stdin to `events.jsonl` there
/// (read back by [`events`]). The config names it as `[alerts] command = "alert.sh"`.
pub fn alert_script(dir: &ConfigDir) {
    let script = dir.write(
        "alert.sh",
        format!("#!/bin/sh\ncat >> {}\n", dir.file("events.jsonl").display()),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The events [`alert_script`] received so far, one JSON object a line.
pub fn events(dir: &ConfigDir) -> Vec<Value> {
    std::fs::read_to_string(dir.file("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
