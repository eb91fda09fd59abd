//! A proxy between mta-stsd and moto that logs every request, can be "down" (connections
//! closed unanswered), can throttle, can run a foreign write just before a change batch, and
//! holds a change batch to what AWS documents and moto does not check.
//!
//! moto refuses a DELETE only when its values were never written, and lets a CREATE add a
//! second RRset of the same name and type. AWS: "DELETE: Deletes an existing resource record
//! set that has the specified values" and "CREATE: Creates a resource record set that has the
//! specified values" (Route 53 API Reference, Change), a batch failing whole with
//! InvalidChangeBatch ("Tried to delete resource record set [name='…', type='…'] but the values
//! provided do not match the current values" / "… but it already exists"). The proxy answers
//! those refusals itself, checking against moto's current records.
//!
//! It also checks each request's SigV4 signature against [`ACCESS_KEY_ID`] and
//! [`SECRET_ACCESS_KEY`], answering 403 `SignatureDoesNotMatch` (or `InvalidClientTokenId`)
//! as AWS does. The signer itself is held to AWS's published test vectors
//! (`providers/src/route53/sigv4.rs`); this check is what makes a wrong secret fail here.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use mta_stsd_providers::route53::sigv4;
use mta_stsd_providers::Secret;

use super::{all_between, between, http, Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    down: bool,
    /// Requests still to answer with a throttling error: (count, HTTP status).
    throttle: (u32, u16),
    before_change: Option<Hook>,
    log: Vec<String>,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    pub fn start(moto: Arc<Moto>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (moto, state) = (moto.clone(), shared.clone());
                std::thread::spawn(move || serve(conn, &moto, &state));
            }
        });
        Proxy { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The next `n` requests are answered `status` (400: Route 53's `Throttling`, "Rate
    /// exceeded"; 429 with `Retry-After: 1`).
    pub fn throttle(&self, n: u32, status: u16) {
        self.lock().throttle = (n, status);
    }

    /// `f` runs once, just before the next change batch reaches moto.
    pub fn before_change(&self, f: impl FnOnce() + Send + 'static) {
        self.lock().before_change = Some(Box::new(f));
    }

    /// `METHOD path?query -> status`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn serve(conn: TcpStream, moto: &Moto, state: &Mutex<State>) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    if lock().down {
        return; // closed unanswered
    }
    let mut reader = BufReader::new(conn.try_clone().expect("a second handle"));
    let mut head = String::new();
    let mut line = String::new();
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default().to_owned(),
        first.next().unwrap_or_default().to_owned(),
    );
    let headers: Vec<(&str, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| {
            !["host", "connection", "content-length"].contains(&k.to_ascii_lowercase().as_str())
        })
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect();
    let throttled = {
        let mut s = lock();
        let (n, status) = s.throttle;
        (n > 0).then(|| {
            s.throttle.0 -= 1;
            status
        })
    };
    let (status, extra, text) = if let Some((code, message)) =
        unauthorised(&method, &target, &head, &body)
    {
        let body = format!(
            r#"<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"#
        );
        (403, "", body)
    } else if let Some(status) = throttled {
        let body = r#"<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"#;
        (status, "retry-after: 1\r\n", body.to_owned())
    } else {
        let is_change = method == "POST" && target.ends_with("/rrset/");
        if is_change {
            let hook = lock().before_change.take();
            if let Some(f) = hook {
                f();
            }
        }
        match is_change.then(|| refusal(moto, &body)).flatten() {
            Some(message) => (
                400,
                "",
                format!(
                    r#"<InvalidChangeBatch xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Messages><Message>{message}</Message></Messages><RequestId>proxy</RequestId></InvalidChangeBatch>"#
                ),
            ),
            None => match http(moto.port, &method, &target, &headers, &body) {
                Some(a) => (a.status, "", a.body),
                None => return,
            },
        }
    };
    lock().log.push(format!("{method} {target} -> {status}"));
    let mut out = conn;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Why AWS would refuse this change batch, by moto's current records; `None` when it would not.
fn refusal(moto: &Moto, body: &str) -> Option<String> {
    let mut deleted: HashSet<(String, String)> = HashSet::new();
    for change in body.split("<Change>").skip(1) {
        let action = between(change, "<Action>", "</Action>");
        let name = between(change, "<Name>", "</Name>").to_owned();
        let rtype = between(change, "<Type>", "</Type>").to_owned();
        let current = moto.rrset(&name, &rtype);
        let key = (name.clone(), rtype.clone());
        match action {
            "DELETE" => {
                let ttl: u32 = between(change, "<TTL>", "</TTL>").parse().unwrap_or(0);
                let mut values = all_between(change, "<Value>", "</Value>");
                values.sort();
                let matches = current.is_some_and(|(t, mut v)| {
                    v.sort();
                    t == ttl && v == values
                });
                if !matches {
                    return Some(format!("Tried to delete resource record set [name='{name}', type='{rtype}'] but the values provided do not match the current values"));
                }
                deleted.insert(key);
            }
            "CREATE" if current.is_some() && !deleted.contains(&key) => {
                return Some(format!("Tried to create resource record set [name='{name}', type='{rtype}'] but it already exists"));
            }
            _ => {}
        }
    }
    None
}

/// Why AWS would not accept this request's signature; `None` when it would.
fn unauthorised(
    method: &str,
    target: &str,
    head: &str,
    body: &str,
) -> Option<(&'static str, &'static str)> {
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let missing = ("MissingAuthenticationToken", "Missing Authentication Token");
    let auth = header("authorization")?;
    let Some(id) = between(&auth, "Credential=", "/").get(..) else {
        return Some(missing);
    };
    if id != ACCESS_KEY_ID {
        return Some((
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    }
    let (Some(host), Some(date)) = (header("host"), header("x-amz-date")) else {
        return Some(missing);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let decode = |s: &str| percent(s);
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let credentials = sigv4::Credentials {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: Secret::new(SECRET_ACCESS_KEY.into()),
        session_token: header("x-amz-security-token").map(Secret::new),
    };
    let scope: Vec<&str> = between(&auth, "Credential=", ",").split('/').collect();
    let (region, service) = (scope.get(2)?, scope.get(3)?);
    let expected = sigv4::sign(
        &credentials,
        region,
        service,
        &date,
        &sigv4::Request {
            method,
            host: &host,
            path,
            query: &pairs,
            headers: &[],
            payload: body.as_bytes(),
        },
    );
    let ok = expected
        .iter()
        .any(|(k, v)| *k == "authorization" && *v == auth);
    (!ok).then_some((
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
    ))
}

/// `%XX` decoded.
fn percent(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            s.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
