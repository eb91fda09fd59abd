//! Asking a test server: queries (one message over TCP or UDP), `nsupdate`, AXFR, and the
//! record data as text.

use std::fs::{self};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;

impl DnsServer {
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
                msg.response_code,
                ResponseCode::NoError | ResponseCode::NXDomain
            ),
            "querying {name} {rtype} at {}: {}",
            self.addr,
            msg.response_code
        );
        let want = normalize(name);
        msg.answers
            .iter()
            .filter(|r| r.record_type() == rtype && normalize(&r.name.to_ascii()) == want)
            .map(|r| rdata_text(&r.data))
            .collect()
    }

    /// The zone's current SOA serial.
    #[track_caller]
    pub fn serial(&self) -> u32 {
        let msg = self
            .query_message(&self.zone, RecordType::SOA)
            .unwrap_or_else(|e| panic!("querying the SOA at {}: {e}", self.addr));
        msg.answers
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.serial),
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
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(qname, rtype));
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
    let reply = Message::from_vec(&answer).map_err(|e| std::io::Error::other(e.to_string()))?;
    if reply.id != id {
        return Err(std::io::Error::other(format!(
            "reply id {} for query id {id}",
            reply.id
        )));
    }
    Ok(reply)
}

pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect(),
        RData::CNAME(c) => c.0.to_ascii(),
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        other => other.to_string(),
    }
}
