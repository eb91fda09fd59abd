//! A fake of the OVHcloud API's DNS zones (eu.api.ovh.com/1.0, `/domain/zone`), as "First steps
//! with the OVHcloud APIs" and the `/domain` reference describe them:
//!
//! - every call but `GET /auth/time` is signed: `X-Ovh-Application`, `X-Ovh-Consumer`,
//!   `X-Ovh-Timestamp`, and `X-Ovh-Signature` = "`$1$` + SHA1_HEX(AS+"+"+CK+"+"+METHOD+"+"+
//!   QUERY+"+"+BODY+"+"+TSTAMP)" where QUERY is the full URL; the timestamp must be the
//!   server's ("use /auth/time to compute the delta"): the fake's clock runs [`SKEW`] seconds
//!   ahead of the machine's, so a client that signs with its own clock is refused;
//! - errors: `{"errorCode": "INVALID_SIGNATURE", "httpCode": "400 Bad Request", "message"}`,
//!   `INVALID_CREDENTIAL` (403), `QUERY_TIME_OUT`; otherwise `{"class": "Client::NotFound",
//!   "message"}`;
//! - `GET /domain/zone` (names), `GET /domain/zone/{z}/record?fieldType=&subDomain=` (ids),
//!   `GET|PUT|DELETE /domain/zone/{z}/record/{id}`, `POST /domain/zone/{z}/record`;
//! - `POST /domain/zone/{z}/refresh` "Apply zone modification on DNS servers": until then a
//!   change shows in the API but not in DNS (what [`FakeApi::values`] answers is the zone as
//!   last refreshed);
//! - rate limiting: 429 `Client::TooManyRequests`.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::fakeapi::{self, relative, unquote_txt, FakeApi, Rec, Req, Resp, Store};

pub const APPLICATION_KEY: &str = "ak-test";
pub const CONSUMER_KEY: &str = "ck-test";
/// How far the fake's clock is ahead of the machine's.
pub const SKEW: i64 = 1000;

/// `token` is the application secret.
pub fn start(token: &str, zones: &[&str]) -> FakeApi {
    let fake = FakeApi::start(token, zones, route);
    fake.store().live = Some(Vec::new());
    fake
}

pub fn base_url(fake: &FakeApi) -> String {
    format!("http://{}/1.0", fake.addr)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        + SKEW
}

fn class(status: StatusCode, class: &str, message: &str) -> Resp {
    Resp::json(status, json!({ "class": class, "message": message }))
}

fn code(status: StatusCode, code: &str, message: &str) -> Resp {
    let http_code = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    Resp::json(
        status,
        json!({ "errorCode": code, "httpCode": http_code, "message": message }),
    )
}

fn header<'a>(req: &'a Req<'_>, name: &str) -> &'a str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The signature check, as the server does it.
fn refused(s: &Store, req: &Req<'_>) -> Option<Resp> {
    if header(req, "x-ovh-application") != APPLICATION_KEY
        || header(req, "x-ovh-consumer") != CONSUMER_KEY
    {
        return Some(code(
            StatusCode::FORBIDDEN,
            "INVALID_CREDENTIAL",
            "This credential is not valid",
        ));
    }
    let ts = header(req, "x-ovh-timestamp");
    if ts.parse::<i64>().map_or(true, |t| (t - now()).abs() > 180) {
        return Some(code(
            StatusCode::BAD_REQUEST,
            "QUERY_TIME_OUT",
            "Query out of time",
        ));
    }
    let query = req
        .query_string
        .as_deref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("http://{}{}{query}", header(req, "host"), req.path);
    let body = String::from_utf8_lossy(req.body);
    let text = format!(
        "{}+{CONSUMER_KEY}+{}+{url}+{body}+{ts}",
        s.token, req.method
    );
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    (header(req, "x-ovh-signature") != format!("$1${hex}")).then(|| {
        code(
            StatusCode::BAD_REQUEST,
            "INVALID_SIGNATURE",
            "Invalid signature",
        )
    })
}

fn record_json(r: &Rec) -> Value {
    let sub = relative(&r.name, &r.zone);
    json!({
        "id": r.id, "zone": r.zone.trim_end_matches('.'),
        "subDomain": if sub == "@" { String::new() } else { sub },
        "fieldType": r.rtype,
        "target": if r.rtype == "TXT" { fakeapi::quote_txt(&r.value) } else { r.value.clone() },
        "ttl": r.ttl,
    })
}

fn route(s: &mut Store, req: &Req<'_>) -> Resp {
    let not_found = || {
        class(
            StatusCode::NOT_FOUND,
            "Client::NotFound",
            "This service does not exist",
        )
    };
    if s.failing {
        return class(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server::InternalServerError",
            "Internal server error (injected)",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return class(
            StatusCode::TOO_MANY_REQUESTS,
            "Client::TooManyRequests",
            "Too many requests",
        );
    }
    let Some(path) = req.path.strip_prefix("/1.0/") else {
        return not_found();
    };
    if req.method == Method::GET && path == "auth/time" {
        return Resp::json(StatusCode::OK, json!(now()));
    }
    if let Some(r) = refused(s, req) {
        return r;
    }
    let seg: Vec<&str> = path.split('/').collect();
    match (req.method, seg.as_slice()) {
        (&Method::GET, ["domain", "zone"]) => Resp::json(
            StatusCode::OK,
            json!(s
                .zones
                .iter()
                .map(|z| z.trim_end_matches('.'))
                .collect::<Vec<_>>()),
        ),
        (_, ["domain", "zone", z, rest @ ..]) => {
            let zone = fakeapi::absolute(z);
            if !s.zones.contains(&zone) {
                return not_found();
            }
            zone_call(s, &zone, req, rest).unwrap_or_else(not_found)
        }
        _ => not_found(),
    }
}

fn zone_call(s: &mut Store, zone: &str, req: &Req<'_>, rest: &[&str]) -> Option<Resp> {
    let id = |t: &str| {
        t.parse::<u64>()
            .ok()
            .filter(|id| s.records.iter().any(|r| r.id == *id && r.zone == zone))
    };
    Some(match (req.method, rest) {
        (&Method::GET, ["record"]) => {
            let sub = req.query.get("subDomain");
            let ft = req.query.get("fieldType");
            let ids: Vec<u64> = s
                .records
                .iter()
                .filter(|r| r.zone == zone)
                .filter(|r| {
                    sub.is_none_or(|q| {
                        *q == relative(&r.name, zone) || (q.is_empty() && r.name == zone)
                    })
                })
                .filter(|r| ft.is_none_or(|t| *t == r.rtype))
                .map(|r| r.id)
                .collect();
            Resp::json(StatusCode::OK, json!(ids))
        }
        (&Method::GET, ["record", i]) => {
            let id = id(i)?;
            Resp::json(
                StatusCode::OK,
                record_json(s.records.iter().find(|r| r.id == id)?),
            )
        }
        (&Method::POST, ["record"]) => return Some(write(s, zone, None, req.body)),
        (&Method::PUT, ["record", i]) => {
            let id = id(i)?;
            write(s, zone, Some(id), req.body)
        }
        (&Method::DELETE, ["record", i]) => {
            let id = id(i)?;
            s.records.retain(|r| r.id != id);
            Resp::json(StatusCode::OK, Value::Null)
        }
        (&Method::POST, ["refresh"]) => {
            let mut live: Vec<Rec> = s.live.take().unwrap_or_default();
            live.retain(|r| r.zone != zone);
            live.extend(s.records.iter().filter(|r| r.zone == zone).cloned());
            s.live = Some(live);
            Resp::json(StatusCode::OK, Value::Null)
        }
        _ => return None,
    })
}

fn write(s: &mut Store, zone: &str, id: Option<u64>, body: &[u8]) -> Resp {
    let bad = |m: &str| class(StatusCode::BAD_REQUEST, "Client::BadRequest", m);
    let Ok(b) = serde_json::from_slice::<Value>(body) else {
        return bad("Invalid JSON");
    };
    let old = id.and_then(|id| s.records.iter().find(|r| r.id == id).cloned());
    let rtype = b["fieldType"]
        .as_str()
        .map(str::to_owned)
        .or(old.as_ref().map(|r| r.rtype.clone()))
        .unwrap_or_default();
    let name = match (b["subDomain"].as_str(), &old) {
        (Some(""), _) => zone.to_owned(),
        (Some(sub), _) => fakeapi::absolute(&format!("{sub}.{zone}")),
        (None, Some(o)) => o.name.clone(),
        (None, None) => zone.to_owned(),
    };
    let target = b["target"].as_str().unwrap_or_default();
    let value = match rtype.as_str() {
        "TXT" if target.starts_with('"') => match unquote_txt(target) {
            Some(t) => t,
            None => return bad(&format!("Invalid TXT target: {target}")),
        },
        "CNAME" if !target.ends_with('.') => {
            return bad("Invalid CNAME target: not fully qualified")
        }
        _ => target.to_owned(),
    };
    let ttl = b["ttl"]
        .as_u64()
        .map(|t| t as u32)
        .or(old.as_ref().map(|r| r.ttl))
        .unwrap_or(0);
    if s.records
        .iter()
        .any(|r| Some(r.id) != id && r.name == name && (r.rtype == "CNAME" || rtype == "CNAME"))
    {
        return bad(&format!(
            "Invalid subdomain {name}: a CNAME record cannot coexist with other records"
        ));
    }
    match id {
        Some(id) => {
            if let Some(r) = s.records.iter_mut().find(|r| r.id == id) {
                r.name = name;
                r.value = value;
                r.ttl = ttl;
            }
            Resp::json(StatusCode::OK, Value::Null)
        }
        None => {
            let id = s.insert(&name, &rtype, ttl, &value);
            let r = s.records.iter().find(|r| r.id == id).map(record_json);
            Resp::json(StatusCode::OK, r.unwrap_or(Value::Null))
        }
    }
}
