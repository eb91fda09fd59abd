//! The policy endpoint: Host → domain, `GET`/`HEAD /.well-known/mta-sts.txt`, nothing else.
//!
//! One routing function, [`route`], for every protocol: hyper's HTTP/2 through [`respond`],
//! the lean HTTP/1.1 path ([`super::http1`]) through [`answer`]. The hot path is one hash
//! lookup and a reference-counted clone of the pre-rendered body.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;

use super::Site;
use crate::live::Live;
use crate::policy::POLICY_PATH;

/// A request as the router sees it, whichever protocol carried it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    pub method: &'a str,
    /// The path of the request target, without query.
    pub path: &'a str,
    /// The target's authority, else the one `Host` header; `None` when missing, repeated or
    /// not visible ASCII (RFC 9112 §3.2: 400).
    pub host: Option<&'a str>,
    /// Whether the request has a body (which is never read).
    pub has_body: bool,
    /// The TLS connection's SNI; `None` on plain HTTP.
    pub sni: Option<&'a str>,
    /// The last value of `X-Forwarded-Host`, read by the listener only from a trusted proxy.
    pub forwarded_host: Option<&'a str>,
}

impl<'a> Head<'a> {
    /// This request as the router sees it when it came from a `trusted` proxy: the host the
    /// proxy forwarded, else its `Host`.
    pub(crate) fn via(self, trusted: bool) -> Head<'a> {
        match self.forwarded_host {
            Some(host) if trusted => Head {
                host: Some(host),
                ..self
            },
            _ => self,
        }
    }
}

/// The host a proxy forwarded: the last element of the last `X-Forwarded-Host` field, the
/// one the nearest proxy (the trusted peer) appended; `None` when empty or not visible ASCII.
pub(crate) fn forwarded_host<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Option<&'a str> {
    let last = fields.last()?;
    let value = last.rsplit(|&b| b == b',').next()?.trim_ascii();
    let text = std::str::from_utf8(value).ok()?;
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())).then_some(text)
}

/// An answer, whichever protocol carries it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    /// The whole body: a HEAD request gets its length as `Content-Length` and none of it.
    pub body: Bytes,
    /// The `Allow` header (405 only).
    pub allow: Option<&'static str>,
}

impl Answer {
    /// A short text answer for the error statuses.
    fn text(status: StatusCode, text: &'static str) -> Answer {
        Answer {
            status,
            content_type: "text/plain",
            body: Bytes::from_static(text.as_bytes()),
            allow: None,
        }
    }
}

/// The public listeners' answer to `req`, counted in the metrics. `http01`: a plain listener,
/// where ACME HTTP-01 validation requests come (RFC 8555 §8.3).
pub(crate) fn answer(site: &Site, http01: bool, req: &Head<'_>) -> Answer {
    let a = match http01
        .then(|| site.acme.http01_body(req.method, req.path))
        .flatten()
    {
        // RFC 8555 §8.3: the body is the key authorization; any media type is accepted,
        // and RFC 8555 §8.3's example answers application/octet-stream.
        Some(body) => Answer {
            status: StatusCode::OK,
            content_type: "application/octet-stream",
            body,
            allow: None,
        },
        None => route(&site.live.load(), req),
    };
    site.metrics.request(a.status.as_u16());
    a
}

/// The routing proper: misdirection, then path, then method, then body, then host.
pub(crate) fn route(live: &Live, req: &Head<'_>) -> Answer {
    // RFC 9110 §15.5.20: 421 "the server is not able or willing to produce an authoritative
    // response for the target URI", here one for another domain than the certificate's
    // (a client reusing a connection, or one sent elsewhere on purpose).
    if let (Some(sni), Some(host)) = (req.sni, req.host) {
        if !same_site(sni, host) {
            return Answer::text(
                StatusCode::MISDIRECTED_REQUEST,
                "this connection is for another host\n",
            );
        }
    }
    if req.path != POLICY_PATH {
        return Answer::text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Answer {
            allow: Some("GET, HEAD"),
            ..Answer::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        };
    }
    if req.has_body {
        return Answer::text(StatusCode::BAD_REQUEST, "a request body is not accepted\n");
    }
    let Some(host) = req.host else {
        return Answer::text(StatusCode::BAD_REQUEST, "missing or invalid Host\n");
    };
    let Some(domain) = live.domain_for_host(host) else {
        return Answer::text(StatusCode::NOT_FOUND, "no MTA-STS policy for this host\n");
    };
    // RFC 8461 §3.2: "media type text/plain"; §3.3: no redirects, ever.
    Answer {
        status: StatusCode::OK,
        content_type: "text/plain",
        body: domain.policy.body().clone(),
        allow: None,
    }
}

/// Whether an SNI and a Host name the same domain: case, port, one trailing dot and the
/// `mta-sts.` label aside (SPEC "Host → domain").
fn same_site(sni: &str, host: &str) -> bool {
    fn site(h: &str) -> Option<&str> {
        let h = crate::name::bare_host(h)?;
        match h.get(..8) {
            Some(p) if p.eq_ignore_ascii_case("mta-sts.") => Some(&h[8..]),
            _ => Some(h),
        }
    }
    match (site(sni), site(host)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// A hyper request as the router sees it (from a `trusted` proxy: the host it forwarded).
pub(crate) fn head_of<'a, B: Body>(
    req: &'a Request<B>,
    sni: Option<&'a str>,
    trusted: bool,
) -> Head<'a> {
    // HTTP/2 carries :authority in the URI; HTTP/1.1 the Host header (RFC 9112 §3.2).
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => {
            let mut hosts = req.headers().get_all(HOST).iter();
            match (hosts.next(), hosts.next()) {
                (Some(h), None) => h.to_str().ok(),
                _ => None,
            }
        }
    };
    Head {
        method: req.method().as_str(),
        path: req.uri().path(),
        host,
        has_body: !req.body().is_end_stream(),
        sni,
        forwarded_host: forwarded_host(
            req.headers()
                .get_all("x-forwarded-host")
                .iter()
                .map(|v| v.as_bytes()),
        ),
    }
    .via(trusted)
}

/// [`answer`] for hyper (HTTP/2, and h2c on the plain listeners); `sni` on TLS.
pub(crate) fn respond<B: Body>(
    site: &Site,
    http01: bool,
    sni: Option<&str>,
    trusted: bool,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let head = head_of(req, sni, trusted);
    let a = answer(site, http01, &head);
    let len = a.body.len();
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        a.body
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = a.status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(allow) = a.allow {
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    r
}

/// A short text answer for the error statuses (the admin listener's too).
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

#[cfg(test)]
mod tests {
    use super::{forwarded_host, same_site};

    #[test]
    fn the_forwarded_host_is_the_last_value_of_the_last_field() {
        fn f<'a>(fields: &[&'a str]) -> Option<&'a str> {
            forwarded_host(fields.iter().map(|f| f.as_bytes()))
        }
        assert_eq!(f(&[]), None);
        assert_eq!(f(&["mta-sts.a.example"]), Some("mta-sts.a.example"));
        assert_eq!(
            f(&["evil.example, mta-sts.a.example"]),
            Some("mta-sts.a.example")
        );
        assert_eq!(
            f(&["evil.example", " mta-sts.a.example "]),
            Some("mta-sts.a.example")
        );
        for bad in ["", "a.example, ", "a b", "mta-sts.\u{e9}.example"] {
            assert_eq!(f(&[bad]), None, "{bad:?}");
        }
    }

    #[test]
    fn sni_and_host_compare_as_domains() {
        for (sni, host) in [
            ("mta-sts.a.example", "mta-sts.a.example"),
            ("mta-sts.a.example", "MTA-STS.A.Example.:443"),
            ("mta-sts.a.example", "a.example"),
            ("MTA-STS.a.example.", "mta-sts.a.example:8443"),
        ] {
            assert!(same_site(sni, host), "{sni} {host}");
        }
        for (sni, host) in [
            ("mta-sts.a.example", "mta-sts.c.example"),
            ("mta-sts.a.example", "mta-sts.a.example.evil"),
            ("mta-sts.a.example", "[::1]:443"),
            ("mta-sts.a.example", "127.0.0.1"),
            ("mta-sts.a.example", "mta-sts.ä.example"),
        ] {
            assert!(!same_site(sni, host), "{sni} {host}");
        }
    }
}
