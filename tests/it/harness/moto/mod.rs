//! moto's server (a third-party emulator of the AWS APIs, `pip install "moto[server]"`)
//! standing in for Route 53: one per test, with one hosted zone, and a proxy in front (see
//! `proxy.rs`) that checks the signature: moto 5.2.5's own request authentication
//! (`INITIAL_NO_AUTH_ACTION_COUNT`) refuses even boto3's Route 53 requests in server mode.
//!
//! The venv is `$MTA_STSD_MOTO_VENV`, else `target/moto-venv`, made here when missing
//! (`scripts/test.sh` makes it first).

pub mod proxy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mta_stsd_providers::route53::sigv4;
use mta_stsd_providers::Secret;

use super::daemon::DEADLINE;
use super::process::free_port;

/// The moto release BUILDS-HERE checked.
pub const MOTO: &str = "moto[server]==5.2.5";
/// The access key the proxy accepts.
pub const ACCESS_KEY_ID: &str = "AKIDMOTOEXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "moto/K7MDENG+bPxRfiCYSECRETKEY";

/// The venv holding moto: `$MTA_STSD_MOTO_VENV`, else `target/moto-venv`.
pub fn venv() -> PathBuf {
    super::venv::venv("moto-venv", "MTA_STSD_MOTO_VENV", MOTO, "moto_server")
}

/// An HTTP answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

pub struct Moto {
    child: Child,
    pub port: u16,
    pub zone_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// moto on a free port with `zone` (absolute) and an IAM user allowed everything;
    /// authentication is switched on last.
    pub fn start(zone: &str) -> Moto {
        let venv = venv();
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).expect("moto's log");
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::from(out.try_clone().expect("log handle")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("starting moto_server");
        let mut moto = Moto {
            child,
            port,
            zone_id: String::new(),
            access_key_id: ACCESS_KEY_ID.to_owned(),
            secret_access_key: SECRET_ACCESS_KEY.to_owned(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + DEADLINE;
        while moto.raw("GET", "/moto-api/data.json", &[], "").is_none() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited ({status}):\n{}", moto.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer:\n{}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto.zone_id = moto.create_zone(zone);
        moto
    }

    /// Creates the hosted zone `name` (absolute); returns its id.
    pub fn create_zone(&self, name: &str) -> String {
        let created = self.unsigned(
            "route53",
            "POST",
            "/2013-04-01/hostedzone",
            &format!(
                r#"<CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>{name}</Name><CallerReference>{name}</CallerReference></CreateHostedZoneRequest>"#
            ),
        );
        assert_eq!(created.status, 201, "{}", created.body);
        between(&created.body, "<Id>/hostedzone/", "</Id>").to_owned()
    }

    /// Creates one TXT RRset of one value at each of `names`, in one change batch.
    pub fn create_txts(&self, names: &[String], value: &str) {
        let changes: String = names
            .iter()
            .map(|n| format!("<Change><Action>CREATE</Action><ResourceRecordSet><Name>{n}</Name><Type>TXT</Type><TTL>300</TTL><ResourceRecords><ResourceRecord><Value>{}</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change>", escape(value)))
            .collect();
        let body = format!(
            r#"<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"#
        );
        let path = format!("/2013-04-01/hostedzone/{}/rrset/", self.zone_id);
        let a = self.signed("POST", &path, &[], &body);
        assert_eq!(a.status, 200, "{}", a.body);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request signed with the IAM user's key, as any AWS client would send it.
    pub fn signed(&self, method: &str, path: &str, query: &[(&str, &str)], body: &str) -> Answer {
        let host = format!("127.0.0.1:{}", self.port);
        let credentials = sigv4::Credentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: Secret::new(self.secret_access_key.clone()),
            session_token: None,
        };
        let headers = sigv4::sign(
            &credentials,
            "us-east-1",
            "route53",
            &sigv4::amz_date(SystemTime::now()),
            &sigv4::Request {
                method,
                host: &host,
                path,
                query,
                headers: &[],
                payload: body.as_bytes(),
            },
        );
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", sigv4::encode(k), sigv4::encode(v)))
            .collect();
        let target = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let headers: Vec<(&str, String)> = headers.into_iter().collect();
        self.raw(method, &target, &headers, body)
            .expect("an answer from moto")
    }

    /// A request without a signature, routed by a credential scope naming `service`.
    fn unsigned(&self, service: &str, method: &str, path: &str, body: &str) -> Answer {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        self.raw(method, path, &[("authorization", auth)], body)
            .expect("an answer from moto")
    }

    /// One HTTP/1.1 exchange with moto (`Connection: close`); `None` when it cannot connect.
    fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> Option<Answer> {
        http(self.port, method, target, headers, body)
    }

    /// The values of the RRset of `rtype` at `name` (absolute), as listed.
    pub fn rrset(&self, name: &str, rtype: &str) -> Option<(u32, Vec<String>)> {
        let path = format!("/2013-04-01/hostedzone/{}/rrset", self.zone_id);
        let a = self.signed(
            "GET",
            &path,
            &[("name", name), ("type", rtype), ("maxitems", "1")],
            "",
        );
        assert_eq!(a.status, 200, "{}", a.body);
        let set = between(&a.body, "<ResourceRecordSet>", "</ResourceRecordSet>");
        let listed = between(set, "<Name>", "</Name>");
        if listed.trim_end_matches('.') != name.trim_end_matches('.')
            || between(set, "<Type>", "</Type>") != rtype
        {
            return None;
        }
        let ttl = between(set, "<TTL>", "</TTL>").parse().unwrap_or(0);
        Some((ttl, all_between(set, "<Value>", "</Value>")))
    }

    /// Replaces the RRset of `rtype` at `name` with `values` (none: deleted), behind the
    /// daemon's back.
    pub fn put(&self, name: &str, rtype: &str, ttl: u32, values: &[String]) {
        let change = |action: &str, ttl: u32, values: &[String]| {
            let rrs: String = values
                .iter()
                .map(|v| {
                    format!(
                        "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                        escape(v)
                    )
                })
                .collect();
            format!("<Change><Action>{action}</Action><ResourceRecordSet><Name>{name}</Name><Type>{rtype}</Type><TTL>{ttl}</TTL><ResourceRecords>{rrs}</ResourceRecords></ResourceRecordSet></Change>")
        };
        let mut changes = String::new();
        if let Some((old_ttl, old)) = self.rrset(name, rtype) {
            changes.push_str(&change("DELETE", old_ttl, &old));
        }
        if !values.is_empty() {
            changes.push_str(&change("CREATE", ttl, values));
        }
        let body = format!(
            r#"<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"#
        );
        let path = format!("/2013-04-01/hostedzone/{}/rrset/", self.zone_id);
        let a = self.signed("POST", &path, &[], &body);
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, read to the end.
pub fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Option<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    // The host signed for, when a proxy forwards it.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some(Answer { status, body })
}

/// The text between the first `start` and the next `end` (empty when absent).
pub fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    s.split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map_or("", |(v, _)| v)
}

/// Every text between `start` and `end`, XML-unescaped.
pub fn all_between(s: &str, start: &str, end: &str) -> Vec<String> {
    s.split(start)
        .skip(1)
        .filter_map(|p| p.split_once(end))
        .map(|(v, _)| unescape(v))
        .collect()
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A listed TXT value's text: its quoted strings joined (`\"` and `\\` unescaped).
pub fn txt_text(value: &str) -> String {
    let mut out = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in value.chars() {
        match c {
            _ if escaped => {
                out.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            _ if quoted => out.push(c),
            _ => {}
        }
    }
    out
}
