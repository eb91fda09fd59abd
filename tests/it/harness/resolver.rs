//! A real BIND as a validating recursive resolver on port 53 of a loopback address, for a
//! sender that uses the libc resolver (Postfix): one zone forwarded to a test's authoritative
//! server, with that zone's key as its trust anchor, so answers there come back with AD.
//! Caches at most a few seconds, so a test's TTLs hold. Stopped on drop.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tempfile::TempDir;

use super::process::{ensure_loopback, find_program};

const READY: Duration = Duration::from_secs(20);

pub struct Resolver {
    dir: TempDir,
    child: Child,
    pub ip: Ipv4Addr,
}

impl Resolver {
    /// Listens on `ip`:53; `zone` (absolute) is forwarded to `upstream` and validated from
    /// `dnskey`, its key-signing key in presentation form (`257 3 13 <base64>`).
    #[track_caller]
    pub fn start(ip: Ipv4Addr, zone: &str, upstream: SocketAddr, dnskey: &str) -> Resolver {
        ensure_loopback(ip);
        let named = find_program("named", "bind9");
        let dir = tempfile::Builder::new()
            .prefix("mta-stsd-resolver-")
            .tempdir()
            .expect("a temporary directory");
        let d = dir.path().display();
        let words: Vec<&str> = dnskey.split_whitespace().collect();
        assert!(words.len() > 3, "not a DNSKEY: {dnskey}");
        let conf = format!(
            "options {{\n\
             \tdirectory \"{d}\";\n\
             \tlisten-on port 53 {{ {ip}; }};\n\
             \tlisten-on-v6 {{ none; }};\n\
             \tpid-file \"{d}/named.pid\";\n\
             \tsession-keyfile \"{d}/session.key\";\n\
             \trecursion yes;\n\
             \tallow-query {{ 127.0.0.0/8; }};\n\
             \tallow-recursion {{ 127.0.0.0/8; }};\n\
             \tdnssec-validation yes;\n\
             \tmax-cache-ttl 3;\n\
             \tmax-ncache-ttl 1;\n\
             }};\n\
             controls {{ }};\n\
             trust-anchors {{ {zone} static-key {} \"{}\"; }};\n\
             zone \"{zone}\" {{ type forward; forward only; forwarders {{ {} port {}; }}; }};\n",
            words[..3].join(" "),
            words[3..].concat(),
            upstream.ip(),
            upstream.port()
        );
        let path = dir.path().join("named.conf");
        fs::write(&path, conf).expect("writing named.conf");
        let log = fs::File::create(dir.path().join("named.log")).expect("named.log");
        let child = Command::new(named)
            .args(["-g", "-4", "-n", "1", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting named");
        let mut r = Resolver { dir, child, ip };
        r.wait_validated(zone);
        r
    }

    /// Until an SOA question for `zone` is answered with AD (validated).
    fn wait_validated(&mut self, zone: &str) {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child.try_wait().expect("named's status") {
                panic!("the resolver exited ({status})\n{}", self.log());
            }
            if self.authenticated(zone, RecordType::SOA) == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the resolver does not validate {zone}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether an answer for `name`/`rtype` carried AD; `None` without an answer.
    pub fn authenticated(&self, name: &str, rtype: RecordType) -> Option<bool> {
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).ok()?, rtype));
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true);
        m.set_edns(edns);
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.send_to(&m.to_vec().ok()?, (self.ip, 53)).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).ok()?;
        let answer = Message::from_vec(&buf[..n]).ok()?;
        (!answer.answers.is_empty()).then(|| answer.authentic_data)
    }

    /// A resolv.conf naming this resolver, trusting its AD bit (glibc clears AD without
    /// `trust-ad`).
    pub fn resolv_conf(&self, dir: &Path) -> PathBuf {
        let p = dir.join("resolv.conf");
        fs::write(&p, format!("nameserver {}\noptions trust-ad\n", self.ip))
            .expect("writing resolv.conf");
        p
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
