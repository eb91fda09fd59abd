//! The policy endpoint: Host → domain, `GET`/`HEAD /.well-known/mta-sts.txt`, nothing else.
//!
//! The hot path is one hash lookup and a reference-counted clone of the pre-rendered body.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;

use crate::daemon::state::Live;

/// RFC 8461 §3.3: the policy is at this path on `mta-sts.<domain>`.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

pub fn respond<B: Body>(live: &Live, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() != POLICY_PATH {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    if !req.body().is_end_stream() {
        return plain(StatusCode::BAD_REQUEST, "a request body is not accepted\n");
    }
    // HTTP/2 carries :authority in the URI; HTTP/1.1 the Host header (RFC 9112 §3.2).
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(HOST).and_then(|h| h.to_str().ok()),
    };
    let Some(host) = host else {
        return plain(StatusCode::BAD_REQUEST, "missing or invalid Host\n");
    };
    let Some(domain) = live.domain_for_host(host) else {
        return plain(StatusCode::NOT_FOUND, "no MTA-STS policy for this host\n");
    };
    let body = domain.policy.body();
    // RFC 8461 §3.2: "media type text/plain"; §3.3: no redirects, ever.
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { body.clone() }));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

/// A short text answer for the error statuses.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}
