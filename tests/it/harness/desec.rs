//! A fake of the deSEC API (desec.io/api/v1), as its documentation describes it:
//!
//! - auth: "`Authorization: Token <token>`"; otherwise 401 `{"detail": "Invalid token."}`;
//! - `GET /domains/`: the account's domains (`name`, `minimum_ttl`, …);
//! - `GET /domains/{name}/rrsets/`: "If the number of RRsets … exceeds the pagination limit
//!   (500), the API responds with 400 Bad Request … Pagination required … Please use the
//!   `first` page link (see Link header)"; with `cursor`, each page's `Link` header names the
//!   `next` one (the fake's limit is settable, to make a small zone page);
//! - bulk `PATCH /domains/{name}/rrsets/`: "Bulk requests are processed atomically, i.e. either
//!   all or none of the RRsets are modified"; `records: []` deletes an RRset; an RRset is
//!   replaced whole; errors come as a list with one object per RRset ("the error object for
//!   RRsets that were fine is empty"); TTLs below the domain's `minimum_ttl` (3600) and a
//!   CNAME beside other types are refused; TXT values must be quoted character-strings;
//! - rate limits: `dns_api_per_domain_expensive` "2/s, 15/min, 100/h, 300/d" RRset writes per
//!   domain; past one, 429 `{"detail": "Request was throttled. Expected available in 1
//!   second."}` with `Retry-After`.

use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::fakeapi::{self, page, quote_txt, unquote_txt, FakeApi, Req, Resp, Store};

const MINIMUM_TTL: u64 = 3600;

pub fn start(token: &str, zones: &[&str]) -> FakeApi {
    FakeApi::start(token, zones, route)
}

pub fn base_url(fake: &FakeApi) -> String {
    format!("http://{}/api/v1", fake.addr)
}

/// RRsets per page past which a listing needs `cursor` (500 at deSEC).
pub fn set_pagination_limit(fake: &FakeApi, limit: usize) {
    fake.store().extra.insert("limit".into(), json!(limit));
}

fn detail(status: StatusCode, text: &str) -> Resp {
    Resp::json(status, json!({ "detail": text }))
}

fn route(s: &mut Store, req: &Req<'_>) -> Resp {
    if s.failing {
        return detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error (injected).",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return throttled();
    }
    let auth = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Token {}", s.token)) {
        return detail(StatusCode::UNAUTHORIZED, "Invalid token.");
    }
    let Some(path) = req.path.strip_prefix("/api/v1/") else {
        return detail(StatusCode::NOT_FOUND, "Not found.");
    };
    let seg: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (req.method, seg.as_slice()) {
        (&Method::GET, ["domains"]) => {
            let list: Vec<Value> = s
                .zones
                .iter()
                .map(|z| json!({ "name": z.trim_end_matches('.'), "minimum_ttl": MINIMUM_TTL,
                    "created": "2026-01-01T00:00:00Z", "published": "2026-01-01T00:00:00Z", "touched": "2026-01-01T00:00:00Z" }))
                .collect();
            Resp::json(StatusCode::OK, Value::Array(list))
        }
        (_, ["domains", d, "rrsets"]) => {
            let zone = fakeapi::absolute(d);
            if !s.zones.contains(&zone) {
                return detail(StatusCode::NOT_FOUND, "Not found.");
            }
            match *req.method {
                Method::GET => list(s, &zone, req),
                Method::PATCH => patch(s, &zone, req.body),
                _ => detail(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
            }
        }
        _ => detail(StatusCode::NOT_FOUND, "Not found."),
    }
}

fn throttled() -> Resp {
    detail(
        StatusCode::TOO_MANY_REQUESTS,
        "Request was throttled. Expected available in 1 second.",
    )
    .header("Retry-After", "1")
}

fn rrsets(s: &Store, zone: &str) -> Vec<Value> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in s.records.iter().filter(|r| r.zone == zone) {
        let k = (r.name.clone(), r.rtype.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.sort();
    keys.iter()
        .map(|(name, rtype)| {
            let recs: Vec<_> = s.at(name, rtype).collect();
            let sub = fakeapi::relative(name, zone);
            json!({
                "domain": zone.trim_end_matches('.'), "subname": if sub == "@" { String::new() } else { sub },
                "name": name, "type": rtype, "ttl": recs[0].ttl,
                "records": recs.iter().map(|r| if r.rtype == "TXT" { quote_txt(&r.value) } else { r.value.clone() }).collect::<Vec<_>>(),
                "created": "2026-01-01T00:00:00Z", "touched": "2026-01-01T00:00:00Z",
            })
        })
        .collect()
}

fn list(s: &Store, zone: &str, req: &Req<'_>) -> Resp {
    let all = rrsets(s, zone);
    let limit = s.extra.get("limit").and_then(Value::as_u64).unwrap_or(500) as usize;
    let url = |cursor: usize| {
        format!(
            "<http://{}{}?cursor={cursor}>",
            req.headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost"),
            req.path
        )
    };
    let Some(cursor) = req.query.get("cursor") else {
        if all.len() > limit {
            return detail(StatusCode::BAD_REQUEST, &format!("Pagination required. You can query up to {limit} items at a time (\"pagination_limit\"). Please use the `first` page link (see Link header)."))
                .header("Link", format!("{}; rel=\"first\"", url(0)));
        }
        return Resp::json(StatusCode::OK, Value::Array(all));
    };
    // The cursor here is the page's offset; deSEC's is opaque.
    let from = cursor.parse::<usize>().unwrap_or(0);
    let (chunk, _) = page(&all[from.min(all.len())..], 1, limit);
    let mut links = vec![format!("{}; rel=\"first\"", url(0))];
    if from + limit < all.len() {
        links.push(format!("{}; rel=\"next\"", url(from + limit)));
    }
    Resp::json(StatusCode::OK, Value::Array(chunk)).header("Link", links.join(", "))
}

/// The bulk `PATCH`: every RRset checked first, then all applied (or none).
fn patch(s: &mut Store, zone: &str, body: &[u8]) -> Resp {
    let writes = s
        .extra
        .entry(format!("writes:{zone}"))
        .or_insert_with(|| json!([]));
    let started = *START;
    let now = started.elapsed().as_secs_f64();
    let recent: Vec<f64> = writes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .filter(|t| now - t < 60.0)
        .collect();
    if recent.iter().filter(|t| now - **t < 1.0).count() >= 2 || recent.len() >= 15 {
        return throttled();
    }
    let mut kept = recent;
    kept.push(now);
    *writes = json!(kept);
    let Ok(Value::Array(sets)) = serde_json::from_slice::<Value>(body) else {
        return Resp::json(
            StatusCode::BAD_REQUEST,
            json!({ "non_field_errors": ["Expected a list of items."] }),
        );
    };
    let mut errors = Vec::new();
    let mut plan = Vec::new();
    for set in &sets {
        let (sub, rtype) = (
            set["subname"].as_str().unwrap_or_default(),
            set["type"].as_str().unwrap_or_default(),
        );
        let name = if sub.is_empty() {
            zone.to_owned()
        } else {
            fakeapi::absolute(&format!("{sub}.{zone}"))
        };
        let ttl = set["ttl"].as_u64().unwrap_or(0);
        let mut e = serde_json::Map::new();
        if ttl < MINIMUM_TTL {
            e.insert(
                "ttl".into(),
                json!([format!(
                    "Ensure this value is greater than or equal to {MINIMUM_TTL}."
                )]),
            );
        }
        let mut values = Vec::new();
        for v in set["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            match rtype {
                "TXT" => match unquote_txt(v) {
                    Some(t) => values.push(t),
                    None => {
                        e.insert(
                            "records".into(),
                            json!([format!("Invalid TXT record content: {v}")]),
                        );
                    }
                },
                "CNAME" if !v.ends_with('.') => {
                    e.insert(
                        "records".into(),
                        json!(["Hostname must be fully qualified."]),
                    );
                }
                _ => values.push(v.to_owned()),
            }
        }
        let others = s
            .records
            .iter()
            .any(|r| r.name == name && (r.rtype == "CNAME") != (rtype == "CNAME"));
        if !values.is_empty() && others {
            e.insert(
                "non_field_errors".into(),
                json!([format!("RRset with conflicting type present: {name}")]),
            );
        }
        errors.push(Value::Object(e));
        plan.push((name, rtype.to_owned(), ttl as u32, values));
    }
    if errors
        .iter()
        .any(|e| e.as_object().is_some_and(|m| !m.is_empty()))
    {
        return Resp::json(StatusCode::BAD_REQUEST, Value::Array(errors));
    }
    for (name, rtype, ttl, values) in plan {
        s.records.retain(|r| !(r.name == name && r.rtype == rtype));
        for v in values {
            s.insert(&name, &rtype, ttl, &v);
        }
    }
    Resp::json(StatusCode::OK, Value::Array(rrsets(s, zone)))
}

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
