//! What the fakes of the read-verify-write vendors share (`hetzner`, `desec`, …): an HTTP
//! server on `127.0.0.1:<free port>` in its own thread, one store of zones and records that the
//! vendor's routing reads and changes, the requests it saw, injectable rate limiting and
//! failures, and a foreign write that lands just before the client's next write (the race a
//! read-verify-write client must survive).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A record in a fake's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub id: u64,
    /// Absolute, lowercase, with the trailing dot.
    pub zone: String,
    /// Absolute, lowercase, with the trailing dot.
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    /// TXT: the text itself (chunks joined); CNAME: the target with its trailing dot.
    pub value: String,
}

/// One request as the routing sees it.
pub struct Req<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: HashMap<String, String>,
    /// The query as sent (what a signature covers).
    pub query_string: Option<String>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// One answer: status, extra headers, JSON body.
pub struct Resp {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(status: StatusCode, body: serde_json::Value) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Resp {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
pub struct Store {
    pub token: String,
    /// Absolute, lowercase.
    pub zones: Vec<String>,
    pub records: Vec<Rec>,
    pub next_id: u64,
    /// The next this-many requests are answered 429.
    pub throttle: usize,
    /// Every request answered 5xx while set.
    pub failing: bool,
    /// `METHOD /path?query -> status`, in order.
    pub requests: Vec<String>,
    /// Records added just before the next request that is not a GET, or with `race_after`
    /// just after the next GET whose path holds that text.
    pub race: Vec<(String, String, String)>,
    pub race_after: Option<String>,
    /// The next this-many writes are answered as the API would, but change nothing: a write
    /// the API lost.
    pub lose_writes: usize,
    /// What DNS serves, where that differs from what the API shows (OVH: the zone as last
    /// refreshed); `None` where the API's records are live at once.
    pub live: Option<Vec<Rec>>,
    /// What a vendor keeps besides (Hetzner's actions, say).
    pub extra: HashMap<String, serde_json::Value>,
}

impl Store {
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The zone holding `name` (absolute): its longest suffix among the zones.
    pub fn zone_of(&self, name: &str) -> Option<String> {
        self.zones
            .iter()
            .filter(|z| name == z.as_str() || name.ends_with(&format!(".{z}")))
            .max_by_key(|z| z.len())
            .cloned()
    }

    pub fn insert(&mut self, name: &str, rtype: &str, ttl: u32, value: &str) -> u64 {
        let name = absolute(name);
        let zone = self
            .zone_of(&name)
            .unwrap_or_else(|| panic!("{name} is in none of the fake's zones"));
        let id = self.new_id();
        self.records.push(Rec {
            id,
            zone,
            name,
            rtype: rtype.to_owned(),
            ttl,
            value: value.to_owned(),
        });
        id
    }

    pub fn at<'a>(&'a self, name: &'a str, rtype: &'a str) -> impl Iterator<Item = &'a Rec> + 'a {
        self.records
            .iter()
            .filter(move |r| r.name == name && r.rtype == rtype)
    }
}

pub type Route = fn(&mut Store, &Req<'_>) -> Resp;

/// A fake serving until dropped.
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<Store>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApi {
    pub fn start(token: &str, zones: &[&str], route: Route) -> FakeApi {
        let store = Store {
            token: token.to_owned(),
            zones: zones.iter().map(|z| absolute(z)).collect(),
            ..Store::default()
        };
        let state = Arc::new(Mutex::new(store));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the fake");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("the fake's address");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the fake's runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = shared.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |req| {
                                    let state = state.clone();
                                    async move {
                                        Ok::<_, std::convert::Infallible>(handle(&state, route, req).await)
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        FakeApi {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a record behind the client's back (live at once).
    pub fn add(&self, name: &str, rtype: &str, value: &str) {
        let mut s = self.store();
        let id = s.insert(name, rtype, 300, value);
        let rec = s.records.iter().find(|r| r.id == id).cloned();
        if let (Some(live), Some(rec)) = (s.live.as_mut(), rec) {
            live.push(rec);
        }
    }

    /// The values of `rtype` at `name`.
    pub fn values(&self, name: &str, rtype: &str) -> Vec<String> {
        let name = absolute(name);
        let s = self.store();
        let records = s.live.as_ref().unwrap_or(&s.records);
        records
            .iter()
            .filter(|r| r.name == name && r.rtype == rtype)
            .map(|r| r.value.clone())
            .collect()
    }

    /// Adds a record just before the next write request is handled, or with `after` just after
    /// the next GET whose path holds `after` is answered.
    pub fn race(&self, name: &str, rtype: &str, value: &str, after: Option<&str>) {
        let mut s = self.store();
        s.race
            .push((name.to_owned(), rtype.to_owned(), value.to_owned()));
        s.race_after = after.map(str::to_owned);
    }

    pub fn lose_writes(&self, n: usize) {
        self.store().lose_writes = n;
    }

    pub fn throttle(&self, n: usize) {
        self.store().throttle = n;
    }

    pub fn set_failing(&self, failing: bool) {
        self.store().failing = failing;
    }

    pub fn add_zone(&self, zone: &str) {
        self.store().zones.push(absolute(zone));
    }

    pub fn requests(&self) -> Vec<String> {
        self.store().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.store().requests.clear();
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    state: &Mutex<Store>,
    route: Route,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string());
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if parts.method != Method::GET && s.race_after.is_none() {
        land_race(&mut s);
    }
    let query = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let req = Req {
        method: &parts.method,
        path: parts.uri.path(),
        query,
        query_string: parts.uri.query().map(str::to_owned),
        headers: &parts.headers,
        body: &body,
    };
    let lost = parts.method != Method::GET && s.lose_writes > 0;
    let before = lost.then(|| (s.records.clone(), s.live.clone(), s.extra.clone()));
    let resp = route(&mut s, &req);
    if let Some((records, live, extra)) = before {
        s.lose_writes -= 1;
        s.records = records;
        s.live = live;
        s.extra = extra;
    }
    let after = s.race_after.as_deref();
    if parts.method == Method::GET && after.is_some_and(|a| parts.uri.path().contains(a)) {
        land_race(&mut s);
    }
    s.requests.push(format!(
        "{} {target} -> {}",
        parts.method,
        resp.status.as_u16()
    ));
    let mut builder = Response::builder()
        .status(resp.status)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in resp.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(resp.body)))
        .expect("a response")
}

fn land_race(s: &mut Store) {
    for (name, rtype, value) in std::mem::take(&mut s.race) {
        s.insert(&name, &rtype, 300, &value);
    }
}

pub fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// The name relative to `zone`, `@` for the apex.
pub fn relative(name: &str, zone: &str) -> String {
    if name == zone {
        return "@".into();
    }
    name.strip_suffix(&format!(".{zone}"))
        .unwrap_or(name)
        .to_owned()
}

/// TXT text as quoted character-strings of at most 255 octets (RFC 1035 §5.1).
pub fn quote_txt(text: &str) -> String {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return "\"\"".into();
    }
    bytes
        .chunks(255)
        .map(|c| {
            format!(
                "\"{}\"",
                String::from_utf8_lossy(c)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quoted character-strings joined; `None` when not quoted, or a string is over 255 octets.
pub fn unquote_txt(value: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = value.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => continue,
            '"' => {
                let mut chunk = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => chunk.push(chars.next()?),
                        c => chunk.push(c),
                    }
                }
                if chunk.len() > 255 {
                    return None;
                }
                out.push_str(&chunk);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// One page of `items` (`page` from 1, at most `per_page`) and the number of pages.
pub fn page<T: Clone>(items: &[T], page: usize, per_page: usize) -> (Vec<T>, usize) {
    let per_page = per_page.max(1);
    let pages = items.len().div_ceil(per_page).max(1);
    let chunk = items
        .iter()
        .skip((page.max(1) - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    (chunk, pages)
}
