//! Starting a test server: its config (`named.conf` or `knot.conf`), zone files and key, the
//! process, and waiting for its SOA.

use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;

/// One way of starting a server: program, arguments, directory, and where it must answer.
pub(super) struct Launch {
    pub(super) kind: Kind,
    /// The program started (a copy of `named` when AppArmor confines the installed one).
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) dir: PathBuf,
    pub(super) addr: SocketAddr,
    pub(super) zone: String,
    pub(super) queries_need_key: bool,
    pub(super) more_zones: Vec<String>,
}

impl Launch {
    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub(super) fn log_file(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log")
    }

    pub(super) fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub(super) fn dump(&self) -> String {
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
    pub(super) fn run(&self) -> Result<Child, NotReady> {
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

    pub(super) fn ready(&self) -> Result<(), String> {
        let short = Duration::from_millis(500);
        for zone in &self.more_zones {
            let msg = exchange(self.addr, zone, RecordType::SOA, true, short)
                .map_err(|e| format!("SOA of {zone}: {e}"))?;
            if msg.response_code != ResponseCode::NoError || msg.answers.is_empty() {
                return Err(format!("SOA of {zone}: {}", msg.response_code));
            }
        }
        for tcp in [true, false] {
            let proto = if tcp { "TCP" } else { "UDP" };
            let msg = exchange(self.addr, &self.zone, RecordType::SOA, tcp, short)
                .map_err(|e| format!("SOA over {proto}: {e}"))?;
            let soa = msg
                .answers
                .iter()
                .any(|r| r.record_type() == RecordType::SOA);
            // A server that answers only signed queries is up once it refuses ours.
            if self.queries_need_key && msg.response_code == ResponseCode::Refused {
                continue;
            }
            if msg.response_code != ResponseCode::NoError || !soa {
                return Err(format!(
                    "SOA over {proto}: {} with {} answers",
                    msg.response_code,
                    msg.answers.len()
                ));
            }
        }
        Ok(())
    }
}

/// Why a start did not come up.
pub(super) struct NotReady {
    /// The server could not bind its port: worth another one.
    pub(super) port_in_use: bool,
    pub(super) text: String,
}

pub(super) fn port_in_use(log: &str) -> bool {
    // Knot: "cannot bind address 127.0.0.1@PORT UDP (address already in use)"; BIND says only
    // "creating IPv4 interface lo failed" and "unable to listen on any configured interfaces".
    let log = log.to_ascii_lowercase();
    log.contains("address already in use")
        || log.contains("address in use")
        || log.contains("unable to listen on any configured interfaces")
}

/// The log line saying the zone failed to load: both servers keep running without it, so
/// waiting for its SOA would only time out.
pub(super) fn zone_load_error(log: &str) -> Option<&str> {
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
pub(super) fn absolute(zone: &str) -> String {
    format!("{}.", zone.trim_end_matches('.'))
}

pub(super) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

pub(super) fn zone_file(zone: &str, ns: &[(String, Ipv4Addr)], records: &[&str]) -> String {
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
pub(super) fn write_config(
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
                 {dnssec}\
                 }};\n\
                 {more}\
                 {querylog}",
                transfer = transfer(key),
                // BIND 9.18 signs a dynamic zone with a policy only with inline signing.
                dnssec = if options.dnssec {
                    format!("\tdnssec-policy default;\n\tinline-signing yes;\n\tkey-directory \"{d}\";\n")
                } else {
                    String::new()
                },
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
