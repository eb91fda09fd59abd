//! Real authoritative DNS servers for the integration tests: BIND 9 (`named`) or Knot DNS
//! (`knotd`) started on a free loopback port with one zone that accepts RFC 2136 updates signed
//! with a TSIG key, waited for by querying its SOA, killed on drop.
//!
//! The servers come from Debian's packages (`scripts/test.sh` installs them): `bind9`,
//! `bind9-utils` and `bind9-dnsutils` (for `nsupdate`), `knot`. A missing binary fails the test
//! with the package to install; nothing is ever skipped.

mod client;
mod launch;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use tempfile::TempDir;

/// The process and port helpers, still found beside the servers by the tests that start them.
pub use super::process::{
    ensure_loopback, find_program, free_port, free_port_on, unconfined_named,
};
pub use client::{exchange, rdata_text};
use launch::{absolute, normalize, write_config, zone_file, Launch, NotReady};

/// How long a server may take to answer its first SOA query.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Socket timeout of every query the harness sends.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many ports [`DnsServer::start`] tries when a server cannot bind the one it was given.
const PORT_ATTEMPTS: usize = 5;

/// The TSIG algorithms the harness can generate keys for, with their key sizes in bytes (the
/// size `tsig-keygen` uses: the hash's output length).
const ALGORITHMS: &[(&str, usize)] = &[
    ("hmac-sha256", 32),
    ("hmac-sha384", 48),
    ("hmac-sha512", 64),
];

/// A TSIG key shared by a test server, the daemon under test and [`DnsServer::nsupdate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: &'static str,
    pub secret_b64: String,
}

impl TsigKey {
    /// A key with a random secret, as `tsig-keygen -a <algorithm> <name>` makes one.
    #[track_caller]
    pub fn generate(name: &str, algorithm: &'static str) -> TsigKey {
        let len = ALGORITHMS
            .iter()
            .find(|(a, _)| *a == algorithm)
            .unwrap_or_else(|| panic!("unsupported TSIG algorithm `{algorithm}`"))
            .1;
        let mut secret = vec![0u8; len];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .expect("reading /dev/urandom");
        TsigKey {
            name: name.to_string(),
            algorithm,
            secret_b64: base64(&secret),
        }
    }

    /// The key in BIND's syntax, byte for byte what `tsig-keygen` prints.
    pub fn bind_key_file(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            self.name, self.algorithm, self.secret_b64
        )
    }

    /// The `-y` argument of `nsupdate`/`dig`: `algorithm:name:secret`.
    pub fn nsupdate_arg(&self) -> String {
        format!("{}:{}:{}", self.algorithm, self.name, self.secret_b64)
    }
}

/// Which server software a [`DnsServer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Knot,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Bind, Kind::Knot];

    fn program(self) -> &'static str {
        match self {
            Kind::Bind => "named",
            Kind::Knot => "knotd",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Kind::Bind => "bind9",
            Kind::Knot => "knot",
        }
    }
}

/// Where [`DnsServer::start_with`] listens, and the nameservers its zone names.
#[derive(Debug, Clone)]
pub struct Options {
    /// The loopback address it listens on. BIND listens only on the addresses of interfaces:
    /// for it, an address other than 127.0.0.1 is first added to `lo` (see [`ensure_loopback`]).
    pub ip: Ipv4Addr,
    /// The port; `None`: a free one, and another if the server cannot bind it.
    pub port: Option<u16>,
    /// The zone's nameservers: a label in the zone (`ns1`) and its glue address; the first is
    /// the SOA's primary. Empty: `ns1` at 127.0.0.1, as [`DnsServer::start`] has it.
    pub ns: Vec<(String, Ipv4Addr)>,
    /// BIND only: answer queries signed with the zone's key only (`allow-query { key …; }`).
    pub queries_need_key: bool,
    /// BIND only: further zones on the same server, each updatable only with its own key.
    pub more_zones: Vec<Zone>,
    /// BIND only: zone transfers (AXFR/IXFR) allowed to each zone's key.
    pub transfers: bool,
    /// BIND only: log every query received (`querying` in [`DnsServer::log`]).
    pub querylog: bool,
    /// BIND only: the zone is DNSSEC-signed (`dnssec-policy default`), updates included.
    pub dnssec: bool,
}

/// One more zone on a BIND server: its name, its update key and zone-file lines (as
/// [`DnsServer::start`] takes them, under the zone's own `$ORIGIN`).
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub key: TsigKey,
    pub records: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ip: Ipv4Addr::LOCALHOST,
            port: None,
            ns: Vec::new(),
            queries_need_key: false,
            more_zones: Vec::new(),
            transfers: false,
            querylog: false,
            dnssec: false,
        }
    }
}

/// A running authoritative server for one zone on `127.0.0.1:<port>`; killed on drop, its
/// files (config, zone, journal, log) removed with it.
pub struct DnsServer {
    pub kind: Kind,
    /// Where it answers, over both UDP and TCP.
    pub addr: SocketAddr,
    /// The zone, absolute (`example.org.`).
    pub zone: String,
    /// The key the zone accepts updates signed with.
    pub key: TsigKey,
    dir: TempDir,
    child: Child,
    /// How to start it again.
    launch: Launch,
    running: bool,
}

impl DnsServer {
    /// Starts a `kind` server for `zone` (with or without its trailing dot) that accepts
    /// updates signed with `key`, and waits until it answers the zone's SOA over TCP and UDP.
    ///
    /// The zone holds its SOA (serial 1), `NS ns1.<zone>`, the glue `ns1.<zone> A 127.0.0.1`
    /// and `records`: zone-file lines under `$ORIGIN <zone>` and `$TTL 300`, such as
    /// `_mta-sts 300 IN TXT "foreign"`.
    #[track_caller]
    pub fn start(kind: Kind, zone: &str, key: &TsigKey, records: &[&str]) -> DnsServer {
        Self::start_with(kind, &Options::default(), zone, key, records)
    }

    /// Like [`DnsServer::start`], on the address, port and with the nameservers of `options`.
    #[track_caller]
    pub fn start_with(
        kind: Kind,
        options: &Options,
        zone: &str,
        key: &TsigKey,
        records: &[&str],
    ) -> DnsServer {
        if kind == Kind::Bind {
            ensure_loopback(options.ip);
        }
        let attempts = if options.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        let mut failures = String::new();
        for attempt in 1..=attempts {
            let port = options.port.unwrap_or_else(|| free_port_on(&[options.ip]));
            match Self::try_start(kind, options, port, zone, key, records) {
                Ok(server) => return server,
                Err(why) if why.port_in_use && attempt < attempts => {
                    failures.push_str(&format!("attempt {attempt}, port {port}:\n{}\n", why.text));
                }
                Err(why) => panic!(
                    "{kind:?} server for {} did not start\n{}{failures}",
                    absolute(zone),
                    why.text
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One zone served by independent primaries, one per `(label, address)` of `servers`
    /// (`("ns1", 127.0.0.2)`), all on one port — drift asks every nameserver on the same port.
    /// The zone names each as an NS with its glue, in this order. Each server keeps its own
    /// copy: an update sent to one changes that one only, so they can be made to disagree.
    #[track_caller]
    pub fn start_replicas(
        kind: Kind,
        servers: &[(&str, Ipv4Addr)],
        zone: &str,
        key: &TsigKey,
        records: &[&str],
    ) -> Vec<DnsServer> {
        assert!(!servers.is_empty(), "no servers to start");
        let ns: Vec<(String, Ipv4Addr)> = servers
            .iter()
            .map(|(label, ip)| (label.to_string(), *ip))
            .collect();
        let ips: Vec<Ipv4Addr> = servers.iter().map(|(_, ip)| *ip).collect();
        if kind == Kind::Bind {
            ips.iter().for_each(|ip| ensure_loopback(*ip));
        }
        let mut failures = String::new();
        'attempt: for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port_on(&ips);
            let mut started = Vec::with_capacity(ips.len());
            for ip in &ips {
                let options = Options {
                    ip: *ip,
                    port: Some(port),
                    ns: ns.clone(),
                    ..Options::default()
                };
                match Self::try_start(kind, &options, port, zone, key, records) {
                    Ok(server) => started.push(server),
                    Err(why) if why.port_in_use && attempt < PORT_ATTEMPTS => {
                        failures.push_str(&format!(
                            "attempt {attempt}, {ip} port {port}:\n{}\n",
                            why.text
                        ));
                        // The ones started are stopped on drop; all start over on another port.
                        continue 'attempt;
                    }
                    Err(why) => panic!(
                        "{kind:?} server for {} on {ip} did not start\n{}{failures}",
                        absolute(zone),
                        why.text
                    ),
                }
            }
            return started;
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One attempt on `port`, in a fresh directory.
    fn try_start(
        kind: Kind,
        options: &Options,
        port: u16,
        zone: &str,
        key: &TsigKey,
        records: &[&str],
    ) -> Result<DnsServer, NotReady> {
        let program = find_program(kind.program(), kind.package());
        let zone = absolute(zone);
        let dir = tempfile::Builder::new()
            .prefix("mta-stsd-dns-")
            .tempdir()
            .expect("creating a temporary directory");
        let ns = if options.ns.is_empty() {
            vec![("ns1".to_owned(), Ipv4Addr::LOCALHOST)]
        } else {
            options.ns.clone()
        };
        fs::write(dir.path().join("zone.db"), zone_file(&zone, &ns, records))
            .expect("writing zone");
        for (i, z) in options.more_zones.iter().enumerate() {
            let records: Vec<&str> = z.records.iter().map(String::as_str).collect();
            fs::write(
                dir.path().join(format!("zone{}.db", i + 1)),
                zone_file(&absolute(&z.name), &ns, &records),
            )
            .expect("writing zone");
        }
        let program = match kind {
            Kind::Bind => unconfined_named(program, dir.path()),
            Kind::Knot => program,
        };
        let addr = SocketAddr::from((options.ip, port));
        let launch = Launch {
            kind,
            program,
            args: write_config(kind, dir.path(), addr, &zone, key, options),
            dir: dir.path().to_path_buf(),
            addr,
            zone: zone.clone(),
            queries_need_key: options.queries_need_key,
            more_zones: options
                .more_zones
                .iter()
                .map(|z| absolute(&z.name))
                .collect(),
        };
        let child = launch.run()?;
        Ok(DnsServer {
            kind,
            addr,
            zone,
            key: key.clone(),
            dir,
            child,
            launch,
            running: true,
        })
    }

    /// The directory holding the server's config, zone file, journal and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The zone file (BIND keeps its journal beside it as `zone.db.jnl`).
    pub fn zone_file(&self) -> PathBuf {
        self.dir.path().join("zone.db")
    }

    /// Everything the server has logged so far (all its runs), for failure messages.
    pub fn log(&self) -> String {
        self.launch.log()
    }

    /// The command line, config and log, for failure messages.
    pub fn dump(&self) -> String {
        self.launch.dump()
    }

    /// Kills the server and waits for it to exit; its files stay for [`DnsServer::restart`].
    /// Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if self.running {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.running = false;
        }
    }

    /// Stops the server if it runs, then starts it again with the same config and port on the
    /// zone as it now is on disk (zone file plus journal: updates made so far survive), and
    /// waits until it answers.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let _ = writeln!(self.launch.log_file(), "==== harness: restarting ====");
        match self.launch.run() {
            Ok(child) => {
                self.child = child;
                self.running = true;
            }
            Err(why) => panic!(
                "{:?} server for {} did not restart on {}\n{}",
                self.kind, self.zone, self.addr, why.text
            ),
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
