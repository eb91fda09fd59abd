//! The HTTPS report receiver (RFC 8460 §5.3) on the `[tlsrpt] hosts` names: `POST` at
//! `[tlsrpt] path`, the body bounded before and after decompression, stored once.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use tracing::{debug, info, warn};

use super::budget::PARSING;
use super::ratelimit::Verdict;
use super::report::Report;
use super::store::{Source, StoreError, Stored};
use super::{ReceiverContext, Untrusted};
use crate::clock::unix_now;

/// RFC 8460 §5.3 media types.
const JSON: &str = "application/tlsrpt+json";
const GZIP: &str = "application/tlsrpt+gzip";

/// What became of one POSTed report, with the status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Stored,
    Duplicate,
    Malformed,
    TooLarge,
    UnsupportedType,
    UnknownDomain,
    /// The store refuses it for good (a database error of a permanent class).
    Unstorable,
    /// The store is down, full, or too many bytes are being parsed now: try later.
    Unavailable,
    /// The client address sent more than `[tlsrpt] rate_burst` lately: try later.
    RateLimited,
}

impl Outcome {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            // RFC 8460 §5.3: "a 201 Created".
            Outcome::Stored => StatusCode::CREATED,
            Outcome::Duplicate => StatusCode::OK,
            Outcome::Malformed => StatusCode::BAD_REQUEST,
            Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Outcome::UnknownDomain | Outcome::Unstorable => StatusCode::UNPROCESSABLE_ENTITY,
            Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Outcome::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `result` label in `/metrics`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::UnsupportedType => "unsupported_type",
            Outcome::UnknownDomain => "unknown_domain",
            Outcome::Unstorable => "unstorable",
            Outcome::Unavailable => "unavailable",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// Answers one request on a `[tlsrpt] hosts` connection from client address `peer` (the
/// listener's; `None`: not limited).
pub(crate) async fn respond<B>(
    shared: Arc<ReceiverContext>,
    req: Request<B>,
    peer: Option<IpAddr>,
) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let live = shared.live.load_full();
    let Some(cfg) = live.config.tlsrpt.as_ref() else {
        return text(StatusCode::NOT_FOUND, "not found\n".into());
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()));
    // The connection's SNI was a report host; a request naming another host is misdirected.
    if host.and_then(|h| live.tlsrpt_host(h)).is_none() {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "not a report host\n".into(),
        );
    }
    if req.uri().path() != cfg.path {
        return text(StatusCode::NOT_FOUND, "not found\n".into());
    }
    if req.method() != http::Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "POST a report\n".into());
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    // Before the body is read: a sender over its limit costs no parsing and no storage.
    if let Some(peer) = peer {
        let verdict = shared.limiter.check(
            peer,
            cfg.rate_burst,
            cfg.rate_refill,
            std::time::Instant::now(),
        );
        if let Verdict::Limited { retry_after, log } = verdict {
            if log {
                warn!(
                    %peer,
                    burst = cfg.rate_burst,
                    refill = ?cfg.rate_refill,
                    "TLS report POSTs over the rate limit: answered 429 (logged once a minute per address)"
                );
            }
            shared.metrics.report(Outcome::RateLimited.label());
            let mut r = text(
                Outcome::RateLimited.status(),
                "too many reports from this address; try again later\n".into(),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after));
            return r;
        }
    }
    let (outcome, msg) = receive(&shared, &live, cfg, req).await;
    shared.metrics.report(outcome.label());
    let mut r = text(outcome.status(), msg);
    if outcome == Outcome::Unavailable {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("60"));
    }
    if outcome == Outcome::RateLimited {
        // Past the sender's daily limit: the next UTC day.
        let wait = 86_400 - unix_now() % 86_400;
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait));
    }
    r
}

async fn receive<B>(
    shared: &ReceiverContext,
    live: &crate::live::Live,
    cfg: &crate::config::Tlsrpt,
    req: Request<B>,
) -> (Outcome, String)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let limit = cfg.max_report_bytes;
    let media = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let gzip = match media.as_deref() {
        Some(JSON) => false,
        Some(GZIP) => true,
        _ => {
            return (
                Outcome::UnsupportedType,
                format!("Content-Type must be {JSON} or {GZIP} (RFC 8460 §5.3)\n"),
            )
        }
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let json = match read_body(req.into_body(), gzip, limit).await {
        Ok(j) => j,
        Err(BodyError::TooLarge) => return too_large(limit),
        Err(BodyError::Bad(e)) => return (Outcome::Malformed, format!("{e}\n")),
    };
    // Held until the report is stored: its JSON and parsed form live until then.
    let budget = cfg.parse_budget_bytes;
    let Some(held) = PARSING.take(json.len(), budget) else {
        debug!(
            bytes = json.len(),
            budget, "report refused for now: parse budget in use"
        );
        return (
            Outcome::Unavailable,
            "too many reports being processed; try again later\n".into(),
        );
    };
    // Off the runtime's workers: a large report's parse must not stall policy fetches.
    let parsed = tokio::task::spawn_blocking(move || parse(json)).await;
    let (report, json) = match parsed {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            debug!(error = %Untrusted(&e), "malformed report");
            return (Outcome::Malformed, format!("malformed report: {e}\n"));
        }
        Err(e) => {
            warn!(error = %e, "TLS report parse task failed");
            return (Outcome::Unavailable, "try again later\n".into());
        }
    };
    if let Err(e) = report.check_dates(unix_now() as i64) {
        return (Outcome::Malformed, format!("malformed report: {e}\n"));
    }
    // RFC 8460 §4.4 "policy-domain": a report about none of our domains is not ours to keep.
    let ours = report.policies.iter().any(|p| {
        p.domain
            .as_deref()
            .is_some_and(|d| live.domain(d).is_some())
    });
    if !ours {
        return (
            Outcome::UnknownDomain,
            "no policy-domain in this report is served here\n".into(),
        );
    }
    let Some(store) = shared.reports.get() else {
        return (
            Outcome::Unavailable,
            "the report store is not open\n".into(),
        );
    };
    store.set_quotas(cfg);
    let ids = {
        let history = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        super::matching::match_ids(&*history, &report)
    };
    let report = Arc::new(report);
    let outcome = store
        .insert(report.clone(), json, &Source::Https, unix_now() as i64, ids)
        .await;
    drop(held);
    let (id, org) = (
        Untrusted(&report.report_id),
        Untrusted(&report.organization),
    );
    match outcome {
        Ok(Stored::New) => {
            shared.metrics.sessions(&report);
            info!(report_id = %id, org = %org, "TLS report stored");
            (Outcome::Stored, "stored\n".into())
        }
        Ok(Stored::Duplicate) => (Outcome::Duplicate, "already stored\n".into()),
        Err(e @ StoreError::SenderLimit(_)) => {
            warn!(report_id = %id, org = %org, error = %e, "TLS report refused: sender over its daily limit");
            (
                Outcome::RateLimited,
                "this sender has sent its reports for this domain today; try again tomorrow (UTC)\n"
                    .into(),
            )
        }
        Err(e @ StoreError::Refused(_)) => {
            // RFC 8460 §5.3: a 4xx is final; the same report would fail every time.
            warn!(report_id = %id, org = %org, error = %e, "TLS report refused by the store");
            (
                Outcome::Unstorable,
                "the report store cannot hold this report\n".into(),
            )
        }
        Err(e) => {
            warn!(report_id = %id, org = %org, error = %e, "TLS report not stored");
            (
                Outcome::Unavailable,
                "the report store is unavailable\n".into(),
            )
        }
    }
}

/// UTF-8, then the report; the JSON is given back to be stored as received.
fn parse(json: Vec<u8>) -> Result<(Report, String), String> {
    let json = String::from_utf8(json).map_err(|e| format!("not UTF-8: {}", e.utf8_error()))?;
    let report = Report::parse(json.as_bytes()).map_err(|e| e.0)?;
    Ok((report, json))
}

fn too_large(limit: usize) -> (Outcome, String) {
    (
        Outcome::TooLarge,
        format!("a report is at most {limit} bytes, compressed or not\n"),
    )
}

#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    Bad(String),
}

/// Reads the body, inflating as it arrives when `gzip`; neither the compressed nor the
/// inflated bytes may exceed `limit`, and inflating stops there (a gzip bomb costs `limit`).
pub(crate) async fn read_body<B>(
    mut body: B,
    gzip: bool,
    limit: usize,
) -> Result<Vec<u8>, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut inflate = gzip.then(|| flate2::write::MultiGzDecoder::new(Bounded::new(limit)));
    let mut plain = Bounded::new(limit);
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Bad(format!("reading the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len();
        if received > limit {
            return Err(BodyError::TooLarge);
        }
        match &mut inflate {
            Some(d) => d
                .write_all(&data)
                .map_err(|e| inflate_error(d.get_ref(), e))?,
            None => plain.write_all(&data).map_err(|_| BodyError::TooLarge)?,
        }
    }
    match inflate {
        Some(mut d) => {
            d.try_finish().map_err(|e| inflate_error(d.get_ref(), e))?;
            let out = d
                .finish()
                .map_err(|e| BodyError::Bad(format!("gzip: {e}")))?
                .buf;
            if out.is_empty() {
                return Err(BodyError::Bad("gzip: no data".into()));
            }
            Ok(out)
        }
        None => Ok(plain.buf),
    }
}

fn inflate_error(sink: &Bounded, e: std::io::Error) -> BodyError {
    if sink.over {
        BodyError::TooLarge
    } else {
        BodyError::Bad(format!("gzip: {e}"))
    }
}

/// A buffer that refuses to grow past its limit.
pub(crate) struct Bounded {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Bounded {
    pub(crate) fn new(limit: usize) -> Self {
        Bounded {
            buf: Vec::new(),
            limit,
            over: false,
        }
    }
}

impl Write for Bounded {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("over the limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    async fn read(body: Vec<u8>, gzip: bool, limit: usize) -> Result<Vec<u8>, BodyError> {
        read_body(Full::new(Bytes::from(body)), gzip, limit).await
    }

    #[tokio::test]
    async fn limits_before_and_after_inflating() {
        let json = br#"{"report-id":"x"}"#.to_vec();
        assert_eq!(read(json.clone(), false, 100).await.unwrap(), json);
        assert_eq!(read(gz(&json), true, 100).await.unwrap(), json);
        assert!(matches!(
            read(json.clone(), false, 10).await,
            Err(BodyError::TooLarge)
        ));
        // Small compressed, large inflated: refused once the inflated size passes the limit.
        let zeros = gz(&vec![0u8; 1 << 20]);
        assert!(zeros.len() < 10_000);
        assert!(matches!(
            read(zeros, true, 64 * 1024).await,
            Err(BodyError::TooLarge)
        ));
        assert!(matches!(
            read(b"not gzip".to_vec(), true, 100).await,
            Err(BodyError::Bad(_))
        ));
        let mut cut = gz(&json);
        cut.truncate(cut.len() - 4);
        assert!(matches!(read(cut, true, 100).await, Err(BodyError::Bad(_))));
    }
}
