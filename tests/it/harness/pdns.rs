//! A real PowerDNS Authoritative server for the integration tests: `pdns_server` in the
//! foreground on free loopback ports (DNS and the HTTP API), its zones in a fresh SQLite
//! database, waited for by polling the API, killed on drop.
//!
//! It comes from Debian's packages (`scripts/test.sh` installs them): `pdns-server`,
//! `pdns-backend-sqlite3`, and `sqlite3` to create the database from the backend's schema. A
//! missing one fails the test with the package to install; nothing is ever skipped.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::dns::{exchange, rdata_text, QUERY_TIMEOUT, READY_DEADLINE};
use super::process::{find_program, free_port};

/// Where Debian's `pdns-backend-sqlite3` puts the schema (the second is the package's doc copy).
const SCHEMAS: &[&str] = &[
    "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
    "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
];

/// How many port pairs [`PdnsServer::start`] tries when the server cannot bind one.
const PORT_ATTEMPTS: usize = 5;

/// A running `pdns_server` serving `zone` over DNS at [`PdnsServer::dns`] and its API at
/// [`PdnsServer::url`]; killed on drop, its files removed with it.
pub struct PdnsServer {
    /// DNS, UDP and TCP.
    pub dns: SocketAddr,
    /// The API's web server.
    pub api: SocketAddr,
    pub api_key: String,
    /// Absolute (`example.org.`).
    pub zone: String,
    program: PathBuf,
    dir: TempDir,
    child: Option<Child>,
}

impl PdnsServer {
    /// Starts a server and creates `zone` (Native, `NS ns1.<zone>`) through its API; returns
    /// once the zone's SOA is answered over DNS.
    #[track_caller]
    pub fn start(zone: &str) -> PdnsServer {
        let program = find_program("pdns_server", "pdns-server");
        let dir = tempfile::Builder::new()
            .prefix("mta-stsd-pdns-")
            .tempdir()
            .expect("creating a temporary directory");
        create_database(&dir.path().join("pdns.sqlite3"));
        let zone = format!("{}.", zone.trim_end_matches('.'));
        let mut server = PdnsServer {
            dns: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: random_key(),
            zone: zone.clone(),
            program,
            dir,
            child: None,
        };
        let mut failures = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            server.dns.set_port(free_port());
            server.api.set_port(free_port());
            server.write_config();
            match server.launch() {
                Ok(()) => {
                    server.create_zone(&zone);
                    return server;
                }
                // Another port pair, the same directory (its log keeps the failure).
                Err(why) if why.contains("in use") && attempt < PORT_ATTEMPTS => {
                    failures.push_str(&format!("attempt {attempt}:\n{why}\n"));
                }
                Err(why) => panic!("pdns_server did not start\n{failures}{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `http://127.0.0.1:<port>`: the provider's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Kills the server and waits for it; its database stays for [`PdnsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same ports and database.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let _ = writeln!(self.log_file(), "==== harness: restarting ====");
        if let Err(why) = self.launch() {
            panic!("pdns_server did not restart\n{why}");
        }
        self.wait_soa(&self.zone.clone());
    }

    /// Everything the server logged (all its runs).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// One API call, blocking: `path` below `/api/v1/servers/localhost`. Returns the status
    /// and the body.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, String)> {
        self.api_with_key(&self.api_key, method, path, body)
    }

    pub fn api_with_key(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, String)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut s = TcpStream::connect_timeout(&self.api, QUERY_TIMEOUT)?;
        s.set_read_timeout(Some(QUERY_TIMEOUT))?;
        s.set_write_timeout(Some(QUERY_TIMEOUT))?;
        write!(
            s,
            "{method} /api/v1/servers/localhost{path} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.api,
            body.len()
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
        Ok((status, body.to_owned()))
    }

    /// Like [`PdnsServer::api`], panicking unless the status is 2xx; the body as JSON (`null`
    /// when empty).
    #[track_caller]
    pub fn api_ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = self
            .api(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} at {}: {e}\n{}", self.api, self.log()));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {text}\n--- server log ---\n{}",
            self.log()
        );
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
        }
    }

    /// Creates a Native zone with `NS ns1.<zone>` and waits until DNS answers its SOA.
    #[track_caller]
    pub fn create_zone(&self, zone: &str) {
        let zone = format!("{}.", zone.trim_end_matches('.'));
        self.api_ok(
            "POST",
            "/zones",
            Some(&json!({
                "name": zone,
                "kind": "Native",
                "nameservers": [format!("ns1.{zone}")],
            })),
        );
        self.wait_soa(&zone);
    }

    /// Adds a record (data in presentation form: TXT quoted) to its RRset at `name`, keeping
    /// the RRset's other records: for changing the zone behind the daemon's back.
    #[track_caller]
    pub fn add(&self, name: &str, rtype: &str, content: &str) {
        let zone = self.zone_of(name);
        let current = self.api_ok(
            "GET",
            &format!("/zones/{zone}?rrset_name={name}&rrset_type={rtype}"),
            None,
        );
        let mut records: Vec<Value> = current["rrsets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == name && s["type"] == rtype)
            .flat_map(|s| s["records"].as_array().cloned().unwrap_or_default())
            .collect();
        records.push(json!({ "content": content, "disabled": false }));
        self.api_ok(
            "PATCH",
            &format!("/zones/{zone}"),
            Some(&json!({ "rrsets": [{
                "name": name, "type": rtype, "ttl": 300, "changetype": "REPLACE", "records": records,
            }]})),
        );
    }

    /// The data of the records of `rtype` at `name` as DNS answers them (over TCP): TXT strings
    /// concatenated without quotes, names absolute.
    #[track_caller]
    pub fn query(&self, name: &str, rtype: RecordType) -> Vec<String> {
        let msg = exchange(self.dns, name, rtype, true, QUERY_TIMEOUT)
            .unwrap_or_else(|e| panic!("querying {name} {rtype} at {}: {e}", self.dns));
        assert!(
            matches!(
                msg.response_code,
                ResponseCode::NoError | ResponseCode::NXDomain
            ),
            "querying {name} {rtype} at {}: {}",
            self.dns,
            msg.response_code
        );
        let want = name.trim_end_matches('.').to_ascii_lowercase();
        msg.answers
            .iter()
            .filter(|r| {
                r.record_type() == rtype
                    && r.name.to_ascii().trim_end_matches('.').to_ascii_lowercase() == want
            })
            .map(|r| rdata_text(&r.data))
            .collect()
    }

    /// How many API requests the server has logged whose line contains `needle`, once every
    /// request answered so far is in the log: PowerDNS logs a request after answering it, so
    /// this sends one more (`GET …/config`) and waits for its line first.
    #[track_caller]
    pub fn logged_requests(&self, needle: &str) -> usize {
        let count = |needle: &str| {
            self.log()
                .lines()
                .filter(|l| l.contains("HTTP/1.1\"") && l.contains(needle))
                .count()
        };
        let sentinel = "\"GET /api/v1/servers/localhost/config HTTP/1.1\"";
        let before = count(sentinel);
        self.api_ok("GET", "/config", None);
        let deadline = Instant::now() + READY_DEADLINE;
        while count(sentinel) == before {
            assert!(
                Instant::now() < deadline,
                "GET /config was not logged within {READY_DEADLINE:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        count(needle)
    }

    /// The zone of the harness's that holds `name`: the main one.
    fn zone_of(&self, name: &str) -> String {
        assert!(
            name.ends_with(&self.zone),
            "{name} is not in the harness's zone {}",
            self.zone
        );
        self.zone.clone()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log_file(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log")
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let conf = format!(
            "api=yes\n\
             api-key={key}\n\
             webserver=yes\n\
             webserver-address=127.0.0.1\n\
             webserver-port={api_port}\n\
             webserver-allow-from=127.0.0.1\n\
             webserver-loglevel=normal\n\
             loglevel=6\n\
             local-address=127.0.0.1\n\
             local-port={dns_port}\n\
             launch=gsqlite3\n\
             gsqlite3-database={d}/pdns.sqlite3\n\
             socket-dir={d}\n\
             guardian=no\n\
             daemon=no\n\
             disable-syslog=yes\n\
             write-pid=no\n\
             security-poll-suffix=\n\
             cache-ttl=0\n\
             negquery-cache-ttl=0\n\
             query-cache-ttl=0\n\
             distributor-threads=1\n\
             receiver-threads=1\n",
            key = self.api_key,
            api_port = self.api.port(),
            dns_port = self.dns.port(),
        );
        fs::write(self.dir.path().join("pdns.conf"), conf).expect("writing pdns.conf");
    }

    /// Starts `pdns_server --config-dir=<dir>` and waits until its API answers.
    fn launch(&mut self) -> Result<(), String> {
        let log = self.log_file();
        let mut child = Command::new(&self.program)
            .arg(format!("--config-dir={}", self.dir.path().display()))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        let deadline = Instant::now() + READY_DEADLINE;
        let why = loop {
            if let Some(status) = child.try_wait().expect("polling pdns_server") {
                break format!("it exited early ({status})\n{}", self.dump());
            }
            let last = match self.api("GET", "", None) {
                Ok((200, _)) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Ok((status, body)) => format!("HTTP {status}: {body}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                break format!(
                    "its API did not answer within {READY_DEADLINE:?} (last: {last})\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let _ = child.wait();
        Err(why)
    }

    #[track_caller]
    fn wait_soa(&self, zone: &str) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let answer = exchange(
                self.dns,
                zone,
                RecordType::SOA,
                true,
                Duration::from_millis(500),
            );
            let last = match answer {
                Ok(m) if m.answers.iter().any(|r| r.record_type() == RecordType::SOA) => return,
                Ok(m) => format!("{} with {} answers", m.response_code, m.answers.len()),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "no SOA for {zone} over DNS within {READY_DEADLINE:?} (last: {last})\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn dump(&self) -> String {
        format!(
            "$ {} --config-dir={}\n--- pdns.conf ---\n{}--- log ---\n{}-------------",
            self.program.display(),
            self.dir.path().display(),
            fs::read_to_string(self.dir.path().join("pdns.conf")).unwrap_or_default(),
            self.log()
        )
    }
}

impl Drop for PdnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The gsqlite3 backend's tables, created with the `sqlite3` shell from the packaged schema.
#[track_caller]
fn create_database(path: &Path) {
    let schema = SCHEMAS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no gsqlite3 schema at {SCHEMAS:?}: install the Debian package \
                 `pdns-backend-sqlite3` (scripts/test.sh installs everything the tests need)"
            )
        });
    let sqlite3 = find_program("sqlite3", "sqlite3");
    let out = Command::new(sqlite3)
        .arg(path)
        .stdin(File::open(schema).expect("opening the schema"))
        .output()
        .expect("running sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 {} < {}: {}\n{}",
        path.display(),
        schema.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 32 hex characters from /dev/urandom.
fn random_key() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
