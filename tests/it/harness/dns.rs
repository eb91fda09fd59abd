//! Real authoritative DNS servers for the integration tests: BIND 9 (`named`) or Knot DNS
//! (`knotd`) started on a free loopback port with one zone that accepts RFC 2136 updates signed
//! with a TSIG key, waited for by querying its SOA, killed on drop.
//!
//! The servers come from Debian's packages (`scripts/test.sh` installs them): `bind9`,
//! `bind9-utils` and `bind9-dnsutils` (for `nsupdate`), `knot`. A missing binary fails the test
//! with the package to install; nothing is ever skipped.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tempfile::TempDir;

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

/// Ports handed to servers of this test process, never handed out twice: the kernel may give
/// a port that a server has not bound yet to the next `bind(0)`.
static PORTS_TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

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

    /// The response to `name`/`rtype`, asked over TCP.
    pub fn query_message(&self, name: &str, rtype: RecordType) -> std::io::Result<Message> {
        exchange(self.addr, name, rtype, true, QUERY_TIMEOUT)
    }

    /// The data of the answer records owned by `name` (case and trailing dot ignored) of type
    /// `rtype`, as text: TXT strings concatenated without quotes, names absolute (`target.`),
    /// addresses as usual, anything else in zone-file syntax. Asked over TCP.
    #[track_caller]
    pub fn query(&self, name: &str, rtype: RecordType) -> Vec<String> {
        let msg = self
            .query_message(name, rtype)
            .unwrap_or_else(|e| panic!("querying {name} {rtype} at {}: {e}", self.addr));
        assert!(
            matches!(
                msg.response_code(),
                ResponseCode::NoError | ResponseCode::NXDomain
            ),
            "querying {name} {rtype} at {}: {}",
            self.addr,
            msg.response_code()
        );
        let want = normalize(name);
        msg.answers()
            .iter()
            .filter(|r| r.record_type() == rtype && normalize(&r.name().to_ascii()) == want)
            .map(|r| rdata_text(r.data()))
            .collect()
    }

    /// The zone's current SOA serial.
    #[track_caller]
    pub fn serial(&self) -> u32 {
        let msg = self
            .query_message(&self.zone, RecordType::SOA)
            .unwrap_or_else(|e| panic!("querying the SOA at {}: {e}", self.addr));
        msg.answers()
            .iter()
            .find_map(|r| match r.data() {
                RData::SOA(soa) => Some(soa.serial()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no SOA in {msg:?}"))
    }

    /// Runs `nsupdate` against the zone, signed with the server's key: `commands` are lines such
    /// as `update add x.example.org. 300 IN TXT "v"` (or `update delete …`, `prereq …`); the
    /// harness adds `server`, `zone` and `send`. Panics with nsupdate's output unless it
    /// succeeds. For changing the zone behind the daemon's back.
    #[track_caller]
    pub fn nsupdate(&self, commands: &str) {
        let out = self.nsupdate_with_key(&self.key, commands);
        assert!(
            out.status.success(),
            "nsupdate failed ({})\n--- commands ---\n{commands}\n--- stdout ---\n{}--- stderr ---\n{}--- server log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Like [`DnsServer::nsupdate`] with any key, returning what nsupdate did: for tests that
    /// expect a refusal.
    pub fn nsupdate_with_key(&self, key: &TsigKey, commands: &str) -> Output {
        self.nsupdate_zone(&self.zone, key, commands)
    }

    /// `dig AXFR` of `zone` signed with `key` (needs [`Options::transfers`]): the zone's
    /// records as text, one a line, in the server's order.
    #[track_caller]
    pub fn axfr(&self, zone: &str, key: &TsigKey) -> String {
        let out = Command::new(find_program("dig", "bind9-dnsutils"))
            .arg(format!("@{}", self.addr.ip()))
            .args([
                "-p",
                &self.addr.port().to_string(),
                "-y",
                &key.nsupdate_arg(),
            ])
            .args([zone, "AXFR", "+nocmd", "+nostats", "+nocomments", "+time=5"])
            .output()
            .expect("running dig");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.contains("SOA") && !text.contains("Transfer failed"),
            "AXFR of {zone} failed\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The transfer's own signature differs each time; the zone's records do not.
        text.lines()
            .filter(|l| !l.split_whitespace().any(|w| w == "TSIG"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// `nsupdate` of any zone on this server with any key, returning what nsupdate did.
    pub fn nsupdate_zone(&self, zone: &str, key: &TsigKey, commands: &str) -> Output {
        let program = find_program("nsupdate", "bind9-dnsutils");
        let script = format!(
            "server {} {}\nzone {}\n{}\nsend\n",
            self.addr.ip(),
            self.addr.port(),
            absolute(zone),
            commands.trim_end()
        );
        let mut child = Command::new(program)
            .arg("-y")
            .arg(key.nsupdate_arg())
            .args(["-t", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting nsupdate");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())
            .expect("writing to nsupdate");
        child.wait_with_output().expect("running nsupdate")
    }

    /// Writes the server's key as a BIND key file (what `tsig-keygen` writes) into `dir` and
    /// returns its path, for the daemon's config.
    pub fn key_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.key", self.key.name.trim_end_matches('.')));
        fs::write(&path, self.key.bind_key_file()).expect("writing the key file");
        // Private, as an operator keeps it (`check` warns about a world-readable secret).
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod 600 the key file");
        path
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One way of starting a server: program, arguments, directory, and where it must answer.
struct Launch {
    kind: Kind,
    /// The program started (a copy of `named` when AppArmor confines the installed one).
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    addr: SocketAddr,
    zone: String,
    queries_need_key: bool,
    more_zones: Vec<String>,
}

impl Launch {
    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log_file(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn dump(&self) -> String {
        let config = self.dir.join(match self.kind {
            Kind::Bind => "named.conf",
            Kind::Knot => "knot.conf",
        });
        format!(
            "$ {} {}\n--- config ---\n{}--- log ---\n{}-------------",
            self.program.display(),
            self.args.join(" "),
            fs::read_to_string(config).unwrap_or_default(),
            self.log()
        )
    }

    /// Starts the server and waits until it answers the zone's SOA over TCP and over UDP;
    /// on failure it is killed and waited for.
    fn run(&self) -> Result<Child, NotReady> {
        if self.kind == Kind::Knot {
            // Knot refuses to start over a PID file whose process looks alive (the PID may be
            // reused, or a zombie where nothing reaps orphans).
            let _ = fs::remove_file(self.dir.join("knot.pid"));
        }
        let log = self.log_file();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        let deadline = Instant::now() + READY_DEADLINE;
        let why = loop {
            if let Some(status) = child.try_wait().expect("polling the server") {
                break NotReady {
                    port_in_use: port_in_use(&self.log()),
                    text: format!("it exited early ({status})\n{}", self.dump()),
                };
            }
            if port_in_use(&self.log()) {
                break NotReady {
                    port_in_use: true,
                    text: format!("its port {} is taken\n{}", self.addr, self.dump()),
                };
            }
            if let Some(error) = zone_load_error(&self.log()) {
                break NotReady {
                    port_in_use: false,
                    text: format!("it did not load the zone: {error}\n{}", self.dump()),
                };
            }
            let last = match self.ready() {
                Ok(()) => return Ok(child),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                break NotReady {
                    port_in_use: false,
                    text: format!(
                        "no SOA answer within {READY_DEADLINE:?} (last: {last})\n{}",
                        self.dump()
                    ),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let _ = child.wait();
        Err(why)
    }

    fn ready(&self) -> Result<(), String> {
        let short = Duration::from_millis(500);
        for zone in &self.more_zones {
            let msg = exchange(self.addr, zone, RecordType::SOA, true, short)
                .map_err(|e| format!("SOA of {zone}: {e}"))?;
            if msg.response_code() != ResponseCode::NoError || msg.answers().is_empty() {
                return Err(format!("SOA of {zone}: {}", msg.response_code()));
            }
        }
        for tcp in [true, false] {
            let proto = if tcp { "TCP" } else { "UDP" };
            let msg = exchange(self.addr, &self.zone, RecordType::SOA, tcp, short)
                .map_err(|e| format!("SOA over {proto}: {e}"))?;
            let soa = msg
                .answers()
                .iter()
                .any(|r| r.record_type() == RecordType::SOA);
            // A server that answers only signed queries is up once it refuses ours.
            if self.queries_need_key && msg.response_code() == ResponseCode::Refused {
                continue;
            }
            if msg.response_code() != ResponseCode::NoError || !soa {
                return Err(format!(
                    "SOA over {proto}: {} with {} answers",
                    msg.response_code(),
                    msg.answers().len()
                ));
            }
        }
        Ok(())
    }
}

/// Why a start did not come up.
struct NotReady {
    /// The server could not bind its port: worth another one.
    port_in_use: bool,
    text: String,
}

fn port_in_use(log: &str) -> bool {
    // Knot: "cannot bind address 127.0.0.1@PORT UDP (address already in use)"; BIND says only
    // "creating IPv4 interface lo failed" and "unable to listen on any configured interfaces".
    let log = log.to_ascii_lowercase();
    log.contains("address already in use")
        || log.contains("address in use")
        || log.contains("unable to listen on any configured interfaces")
}

/// The log line saying the zone failed to load: both servers keep running without it, so
/// waiting for its SOA would only time out.
fn zone_load_error(log: &str) -> Option<&str> {
    const MARKS: &[&str] = &[
        "not loaded due to errors", // BIND
        "zone event 'load' failed", // Knot
    ];
    if !MARKS.iter().any(|m| log.contains(m)) {
        return None;
    }
    // The first error line says why; the mark itself follows it.
    log.lines().find(|l| {
        l.contains("error") || l.contains("failed") || MARKS.iter().any(|m| l.contains(m))
    })
}

/// `zone` with its trailing dot.
fn absolute(zone: &str) -> String {
    format!("{}.", zone.trim_end_matches('.'))
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn zone_file(zone: &str, ns: &[(String, Ipv4Addr)], records: &[&str]) -> String {
    let primary = &ns.first().expect("at least one nameserver").0;
    let mut text = format!(
        "$ORIGIN {zone}\n$TTL 300\n\
         @ IN SOA {primary}.{zone} hostmaster.{zone} 1 3600 600 86400 300\n"
    );
    for (label, _) in ns {
        text.push_str(&format!("@ IN NS {label}.{zone}\n"));
    }
    for (label, ip) in ns {
        text.push_str(&format!("{label} IN A {ip}\n"));
    }
    for r in records {
        text.push_str(r);
        text.push('\n');
    }
    text
}

/// Writes the config for `kind` into `dir` and returns the arguments to start it with.
fn write_config(
    kind: Kind,
    dir: &Path,
    addr: SocketAddr,
    zone: &str,
    key: &TsigKey,
    options: &Options,
) -> Vec<String> {
    let d = dir.display();
    let (ip, port) = (addr.ip(), addr.port());
    let queries_need_key = options.queries_need_key;
    match kind {
        Kind::Bind => {
            let transfer = |key: &TsigKey| {
                if options.transfers {
                    format!("\tallow-transfer {{ key \"{}\"; }};\n", key.name)
                } else {
                    String::new()
                }
            };
            let mut more = String::new();
            for (i, z) in options.more_zones.iter().enumerate() {
                if z.key.name != key.name {
                    more.push_str(&z.key.bind_key_file());
                }
                more.push_str(&format!(
                    "zone \"{zone}\" {{\n\ttype primary;\n\tfile \"{d}/zone{n}.db\";\n\tallow-update {{ key \"{name}\"; }};\n{transfer}}};\n",
                    zone = absolute(&z.name),
                    n = i + 1,
                    name = z.key.name,
                    transfer = transfer(&z.key),
                ));
            }
            let conf = format!(
                "options {{\n\
                 \tdirectory \"{d}\";\n\
                 \tlisten-on port {port} {{ {ip}; }};\n\
                 \tlisten-on-v6 {{ none; }};\n\
                 \tpid-file \"{d}/named.pid\";\n\
                 \tsession-keyfile \"{d}/session.key\";\n\
                 \trecursion no;\n\
                 \tdnssec-validation no;\n\
                 \tnotify no;\n\
                 \tallow-transfer {{ none; }};\n\
                 }};\n\
                 controls {{ }};\n\
                 {key_clause}\
                 zone \"{zone}\" {{\n\
                 \ttype primary;\n\
                 \tfile \"{d}/zone.db\";\n\
                 \tallow-update {{ key \"{name}\"; }};\n\
                 {allow_query}\
                 {transfer}\
                 }};\n\
                 {more}\
                 {querylog}",
                transfer = transfer(key),
                querylog = if options.querylog {
                    "logging { category queries { default_stderr; }; };\n"
                } else {
                    ""
                },
                key_clause = key.bind_key_file(),
                name = key.name,
                allow_query = if queries_need_key {
                    format!("\tallow-query {{ key \"{}\"; }};\n", key.name)
                } else {
                    String::new()
                },
            );
            let path = dir.join("named.conf");
            fs::write(&path, conf).expect("writing named.conf");
            // -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker thread.
            vec![
                "-g".into(),
                "-4".into(),
                "-n".into(),
                "1".into(),
                "-c".into(),
                path.display().to_string(),
            ]
        }
        Kind::Knot => {
            let db = dir.join("db");
            fs::create_dir_all(&db).expect("creating Knot's database directory");
            let conf = format!(
                "server:\n\
                 \x20 rundir: \"{d}\"\n\
                 \x20 listen: {ip}@{port}\n\
                 \x20 udp-workers: 1\n\
                 \x20 tcp-workers: 1\n\
                 \x20 background-workers: 1\n\
                 log:\n\
                 \x20 - target: stderr\n\
                 \x20   any: info\n\
                 database:\n\
                 \x20 storage: \"{db}\"\n\
                 key:\n\
                 \x20 - id: {name}\n\
                 \x20   algorithm: {alg}\n\
                 \x20   secret: {secret}\n\
                 acl:\n\
                 \x20 - id: update\n\
                 \x20   key: {name}\n\
                 \x20   action: update\n\
                 zone:\n\
                 \x20 - domain: {zone}\n\
                 \x20   storage: \"{d}\"\n\
                 \x20   file: zone.db\n\
                 \x20   acl: update\n",
                db = db.display(),
                name = key.name,
                alg = key.algorithm,
                secret = key.secret_b64,
            );
            let path = dir.join("knot.conf");
            fs::write(&path, conf).expect("writing knot.conf");
            // No -d: stays in the foreground.
            vec!["-c".into(), path.display().to_string()]
        }
    }
}

/// A port free on 127.0.0.1 for both TCP and UDP right now, never 53 and never one handed out
/// before by this process.
pub fn free_port() -> u16 {
    let mut taken = PORTS_TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a TCP port");
        let port = tcp.local_addr().expect("local address").port();
        if port == 53 || taken.contains(&port) {
            continue;
        }
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("found no port free for both TCP and UDP on 127.0.0.1");
}

/// A port free for both TCP and UDP on every one of `ips` right now, never 53 and never one
/// handed out before by this process.
pub fn free_port_on(ips: &[Ipv4Addr]) -> u16 {
    let first = *ips.first().expect("at least one address");
    let mut taken = PORTS_TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let tcp = TcpListener::bind((first, 0)).expect("binding a TCP port");
        let port = tcp.local_addr().expect("local address").port();
        if port == 53 || taken.contains(&port) {
            continue;
        }
        let free = ips.iter().all(|ip| {
            UdpSocket::bind((*ip, port)).is_ok()
                && (*ip == first || TcpListener::bind((*ip, port)).is_ok())
        });
        if free {
            taken.push(port);
            return port;
        }
    }
    panic!("found no port free for both TCP and UDP on all of {ips:?}");
}

/// Makes `ip` (a loopback address) an address of `lo`, where it is not already (127.0.0.1
/// always is). BIND listens only on the addresses of interfaces, not on the rest of 127/8 that
/// Linux routes to `lo` anyway; adding a /32 there changes no route. Needs CAP_NET_ADMIN
/// (root); without it, panics with the command to run once.
#[track_caller]
pub fn ensure_loopback(ip: Ipv4Addr) {
    assert!(ip.is_loopback(), "{ip} is not a loopback address");
    if ip == Ipv4Addr::LOCALHOST {
        return;
    }
    static LOCK: Mutex<()> = Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let program = find_program("ip", "iproute2");
    let shown = Command::new(&program)
        .args(["-4", "-o", "addr", "show", "dev", "lo"])
        .output()
        .expect("running `ip addr show`");
    if String::from_utf8_lossy(&shown.stdout).contains(&format!("inet {ip}/")) {
        return;
    }
    let out = Command::new(&program)
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .expect("running `ip addr add`");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Another test process may have added it meanwhile.
    assert!(
        out.status.success() || stderr.contains("File exists"),
        "cannot add {ip} to lo ({}): {stderr}BIND listens only on interface addresses; \
         run `ip addr add {ip}/32 dev lo` as root once",
        out.status
    );
}

/// `name` found in `PATH` or the sbin directories (not in a non-root `PATH` on Debian);
/// panics naming the Debian package to install.
#[track_caller]
pub fn find_program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` not found in PATH or /usr/sbin: install the Debian package `{package}` \
         (scripts/test.sh installs everything the tests need)"
    );
}

/// Debian ships an AppArmor profile for `/usr/sbin/named` that keeps it out of temporary
/// directories. Where that profile is enforced, run a copy of the binary from `dir` instead
/// (profiles attach by path); elsewhere the installed binary as it is.
pub fn unconfined_named(program: PathBuf, dir: &Path) -> PathBuf {
    let profiles = fs::read_to_string("/sys/kernel/security/apparmor/profiles").unwrap_or_default();
    let confined = profiles.lines().any(|l| {
        (l.starts_with("named ") || l.starts_with("/usr/sbin/named ")) && l.contains("(enforce)")
    });
    if !confined {
        return program;
    }
    let copy = dir.join("named");
    fs::copy(&program, &copy).expect("copying named out of AppArmor's reach");
    copy
}

static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// One query over TCP (length-prefixed) or UDP, with `timeout` on every socket operation.
pub fn exchange(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
    timeout: Duration,
) -> std::io::Result<Message> {
    let invalid = |e: hickory_proto::ProtoError| std::io::Error::other(e.to_string());
    let mut qname = Name::from_ascii(name).map_err(invalid)?;
    qname.set_fqdn(true);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false)
        .add_query(Query::query(qname, rtype));
    let wire = msg.to_vec().map_err(invalid)?;
    let answer = if tcp {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        s.write_all(&framed)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf)?;
        buf
    } else {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        s.set_read_timeout(Some(timeout))?;
        s.connect(addr)?;
        s.send(&wire)?;
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf)?;
        buf.truncate(n);
        buf
    };
    let reply = Message::from_vec(&answer).map_err(invalid)?;
    if reply.id() != id {
        return Err(std::io::Error::other(format!(
            "reply id {} for query id {id}",
            reply.id()
        )));
    }
    Ok(reply)
}

pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt.iter().map(|s| String::from_utf8_lossy(s)).collect(),
        RData::CNAME(c) => c.0.to_ascii(),
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        other => other.to_string(),
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
