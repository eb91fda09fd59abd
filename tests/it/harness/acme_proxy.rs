//! A fault-injecting HTTPS proxy in front of a real [`Pebble`], on loopback: it forwards every
//! request (the `Host` header kept, so that pebble writes the proxy's address into every URL it
//! returns and the client never leaves the proxy), except that it answers the first N
//! `newOrder` requests itself with a `rateLimited` problem (RFC 8555 §6.6) and `Retry-After`,
//! as Let's Encrypt documents its limits. Pebble cannot send that problem itself.
//!
//! Or it stalls the first N `newOrder` requests: never answered, as an ACME server that hangs
//! (a client killed meanwhile is the case it is for).
//!
//! Each `newOrder` is recorded with its time, the name it asks for, and whether it was
//! refused or stalled. Its certificate is signed by pebble's API CA, so `[acme] ca` trusts both.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

use super::pebble::Pebble;

/// One `newOrder` request that reached the proxy.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub at: Instant,
    /// The DNS identifiers it asks for.
    pub names: Vec<String>,
    /// Answered 429 by the proxy rather than forwarded.
    pub refused: bool,
    /// Never answered, nor forwarded.
    pub stalled: bool,
}

struct State {
    refuse: usize,
    stall: usize,
    retry_after: String,
    new_orders: Vec<NewOrder>,
    /// RFC 9773 renewal information added to pebble's directory: each certificate's window
    /// opens this many seconds after its first request, for a second.
    ari_after: Option<u64>,
    /// Per certificate id: its window (Unix seconds).
    windows: std::collections::HashMap<String, (u64, u64)>,
}

/// The path the proxy serves renewal information under.
const ARI_PATH: &str = "/renewal-info/";

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `pebble` that refuses the first `refuse` newOrder requests with
    /// `Retry-After: <retry_after>`.
    pub async fn start(pebble: &Pebble, refuse: usize, retry_after: &str) -> FaultProxy {
        Self::launch(pebble, refuse, retry_after, None, 0).await
    }

    /// A proxy to `pebble` that never answers the first `stall` newOrder requests.
    pub async fn stalling(pebble: &Pebble, stall: usize) -> FaultProxy {
        Self::launch(pebble, 0, "0", None, stall).await
    }

    /// A proxy that adds renewal information (RFC 9773) to pebble, which has none: each
    /// certificate's suggested window opens `after` seconds after it is first asked about.
    pub async fn with_ari(pebble: &Pebble, after: u64) -> FaultProxy {
        Self::launch(pebble, 0, "0", Some(after), 0).await
    }

    async fn launch(
        pebble: &Pebble,
        refuse: usize,
        retry_after: &str,
        ari_after: Option<u64>,
        stall: usize,
    ) -> FaultProxy {
        let upstream = pebble
            .directory
            .strip_suffix("/dir")
            .expect("pebble's directory ends in /dir")
            .to_owned();
        let mut tls = pebble.api_ca().client_config();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let directory: Value = client
            .get(&pebble.directory)
            .send()
            .await
            .expect("pebble's directory")
            .json()
            .await
            .unwrap();
        let new_order = directory["newOrder"].as_str().expect("newOrder").to_owned();
        let new_order_path = new_order
            .strip_prefix(&upstream)
            .expect("newOrder on pebble's address")
            .to_owned();

        let (cert, key) = pebble.api_ca().leaf(&["127.0.0.1", "localhost"]);
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

        let state = Arc::new(Mutex::new(State {
            refuse,
            stall,
            retry_after: retry_after.to_owned(),
            new_orders: Vec::new(),
            ari_after,
            windows: Default::default(),
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let route = Arc::new((client, upstream, new_order_path));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the proxy's runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            let (acceptor, state, route) =
                                (acceptor.clone(), shared.clone(), route.clone());
                            tokio::spawn(async move {
                                let Ok(tls) = acceptor.accept(tcp).await else { return };
                                let service = service_fn(move |req| {
                                    let (state, route) = (state.clone(), route.clone());
                                    async move {
                                        Ok::<_, std::convert::Infallible>(
                                            handle(&state, &route, req).await,
                                        )
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        FaultProxy {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The directory URL to put in `[acme] directory`.
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.addr)
    }

    /// The certificates asked about (renewal information) so far.
    pub fn ari_asked(&self) -> usize {
        self.state.lock().unwrap().windows.len()
    }

    /// The newOrder requests so far, in order of arrival.
    pub fn new_orders(&self) -> Vec<NewOrder> {
        self.state.lock().unwrap().new_orders.clone()
    }
}

impl Drop for FaultProxy {
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
    state: &Mutex<State>,
    (client, upstream, new_order_path): &(reqwest::Client, String, String),
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if let Some(id) = parts.uri.path().strip_prefix(ARI_PATH) {
        let mut st = state.lock().unwrap();
        let Some(after) = st.ari_after else {
            return status(StatusCode::NOT_FOUND);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (start, end) = *st
            .windows
            .entry(id.to_owned())
            .or_insert((now + after, now + after + 1));
        let rfc3339 = |t: u64| {
            time::OffsetDateTime::from_unix_timestamp(t as i64)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let info = json!({ "suggestedWindow": { "start": rfc3339(start), "end": rfc3339(end) } });
        return Response::builder()
            .header("content-type", "application/json")
            // RFC 9773 §4.3.2: when to ask again.
            .header("retry-after", "21600")
            .body(Full::new(Bytes::from(info.to_string())))
            .unwrap();
    }
    if parts.method == Method::POST && parts.uri.path() == new_order_path {
        let at = Instant::now();
        let (stalled, refused) = {
            let mut st = state.lock().unwrap();
            let stalled = st.stall > 0;
            if stalled {
                st.stall -= 1;
            }
            let refused = !stalled && st.refuse > 0;
            if refused {
                st.refuse -= 1;
            }
            st.new_orders.push(NewOrder {
                at,
                names: jws_identifiers(&body),
                refused,
                stalled,
            });
            (stalled, refused)
        };
        if stalled {
            // Until the client gives up or is gone (the connection's end drops this).
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
        if refused {
            let retry_after = state.lock().unwrap().retry_after.clone();
            let problem = json!({
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "too many new orders (2) from this account in the last 3h0m0s, \
                           retry after a few seconds: see \
                           https://letsencrypt.org/docs/rate-limits/#new-orders-per-account",
                "status": 429,
            });
            return Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("content-type", "application/problem+json")
                .header("retry-after", retry_after.as_str())
                .body(Full::new(Bytes::from(problem.to_string())))
                .unwrap();
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        // `Host` stays: pebble builds every URL it returns from it.
        if !hop_by_hop(name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    let Ok(answer) = forward.body(body).send().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name.as_str()) {
            response = response.header(name, value);
        }
    }
    let mut body = answer.bytes().await.unwrap_or_default();
    let ari = state.lock().unwrap().ari_after.is_some();
    if ari && path == "/dir" {
        // Pebble's directory, with renewal information at the proxy's address.
        let mut dir: Value = serde_json::from_slice(&body).unwrap();
        let host = parts.headers["host"].to_str().unwrap();
        dir["renewalInfo"] = format!("https://{host}{}", ARI_PATH.trim_end_matches('/')).into();
        body = Bytes::from(dir.to_string());
    }
    response.body(Full::new(body)).unwrap()
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The DNS identifiers in a newOrder JWS (RFC 8555 §7.4), whose payload is base64url JSON.
fn jws_identifiers(body: &[u8]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|jws| b64.decode(jws["payload"].as_str()?).ok())
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok());
    payload
        .iter()
        .flat_map(|p| p["identifiers"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["value"].as_str().map(str::to_owned))
        .collect()
}
