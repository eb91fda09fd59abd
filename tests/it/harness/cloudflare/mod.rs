//! An in-process fake of the Cloudflare API v4, on `127.0.0.1:<free port>`, serving what
//! mta-stsd uses as Cloudflare documents it: the envelope (`success`, `errors[{code,message}]`,
//! `messages`, `result`, `result_info`), `GET /zones?name=`, DNS records listed with paging
//! (`page`, `per_page` — forced small, so a client must follow pages), created, updated
//! (`PUT`/`PATCH`) and deleted by id, bearer tokens (403, code 9109), rate limiting (429 with
//! `Retry-After`) and server failures (500), both injectable.
//!
//! It records the records after every change, so a test can assert what a resolver could have
//! seen at any moment between two API calls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use api::handle;

mod api;

/// The most records the fake puts in one page, whatever `per_page` asks.
pub const MAX_PER_PAGE: usize = 2;

/// A DNS record in the fake's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRecord {
    pub id: String,
    pub zone_id: String,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub rtype: String,
    /// TXT: the text itself, unquoted.
    pub content: String,
    pub ttl: u32,
    pub proxied: bool,
}

#[derive(Default)]
struct State {
    token: String,
    /// (id, name without the trailing dot).
    zones: Vec<(String, String)>,
    records: Vec<FakeRecord>,
    next_id: u64,
    /// TXT `content` answered quoted, as the API does lately, rather than raw.
    quote_txt: bool,
    /// The next this-many requests are answered 429.
    throttle: usize,
    /// Every request answered 500 while set.
    failing: bool,
    /// `METHOD /path?query -> status`, in order.
    requests: Vec<String>,
    /// The records after each change, the first entry being the state when the history began.
    history: Vec<Vec<FakeRecord>>,
}

impl State {
    fn snapshot(&mut self) {
        let now = self.records.clone();
        self.history.push(now);
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!(
            "{:032x}",
            0x9e37_79b9_7f4a_7c15u64.wrapping_mul(self.next_id)
        )
    }
}

/// The fake, serving until dropped.
pub struct FakeCloudflare {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCloudflare {
    /// A fake account holding `zones` (with or without trailing dots) that accepts `token`.
    pub fn start(token: &str, zones: &[&str]) -> FakeCloudflare {
        let mut state = State {
            token: token.to_owned(),
            ..State::default()
        };
        for z in zones {
            let id = state.new_id();
            state.zones.push((id, normalize(z)));
        }
        state.snapshot();
        let state = Arc::new(Mutex::new(state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the fake");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the fake's address");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the fake's runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = shared.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |req| {
                                    let state = state.clone();
                                    async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
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
        FakeCloudflare {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a record behind the client's back (recorded in the history like any change).
    /// TXT `content` is the text itself.
    pub fn add(&self, name: &str, rtype: &str, content: &str, ttl: u32) {
        let mut s = self.state();
        let name = normalize(name);
        let zone_id = s
            .zones
            .iter()
            .filter(|(_, z)| name == *z || name.ends_with(&format!(".{z}")))
            .max_by_key(|(_, z)| z.len())
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{name} is in none of the fake's zones"));
        let id = s.new_id();
        s.records.push(FakeRecord {
            id,
            zone_id,
            name,
            rtype: rtype.to_owned(),
            content: content.to_owned(),
            ttl,
            proxied: false,
        });
        s.snapshot();
    }

    /// The records of `rtype` at `name`.
    pub fn records(&self, name: &str, rtype: &str) -> Vec<FakeRecord> {
        let name = normalize(name);
        self.state()
            .records
            .iter()
            .filter(|r| r.name == name && r.rtype == rtype)
            .cloned()
            .collect()
    }

    pub fn set_quote_txt(&self, quote: bool) {
        self.state().quote_txt = quote;
    }

    /// Answers the next `n` requests with 429 and `Retry-After: 1`.
    pub fn throttle(&self, n: usize) {
        self.state().throttle = n;
    }

    /// Answers every request with 500 while `failing`.
    pub fn set_failing(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// Every request so far: `METHOD /path?query -> status`.
    /// A zone added to the account after start, as from the dashboard.
    pub fn add_zone(&self, name: &str) {
        let mut s = self.state();
        let id = s.new_id();
        s.zones.push((id, normalize(name)));
    }

    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// The states the records went through, oldest first: the state when the history began
    /// (at start or at [`FakeCloudflare::clear_history`]), then one after each change.
    pub fn history(&self) -> Vec<Vec<FakeRecord>> {
        self.state().history.clone()
    }

    pub fn clear_history(&self) {
        let mut s = self.state();
        s.history.clear();
        s.snapshot();
    }
}

impl Drop for FakeCloudflare {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
