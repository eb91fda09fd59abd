//! The fake's API: routing, the envelope, paging, and the records' checks and forms.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{normalize, FakeRecord, State, MAX_PER_PAGE};

pub(super) async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (status, envelope, retry_after) = route(&mut s, &parts.method, &parts.uri, &auth, &body);
    s.requests
        .push(format!("{} {target} -> {}", parts.method, status.as_u16()));
    let mut response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if retry_after {
        response = response.header(http::header::RETRY_AFTER, "1");
    }
    response
        .body(Full::new(Bytes::from(envelope.to_string())))
        .expect("a response")
}

fn failure(status: StatusCode, code: u32, message: &str) -> (StatusCode, Value, bool) {
    (
        status,
        json!({
            "success": false,
            "errors": [{ "code": code, "message": message }],
            "messages": [],
            "result": null,
        }),
        false,
    )
}

fn success(result: Value, info: Option<Value>) -> (StatusCode, Value, bool) {
    let mut v = json!({ "success": true, "errors": [], "messages": [], "result": result });
    if let Some(info) = info {
        v["result_info"] = info;
    }
    (StatusCode::OK, v, false)
}

/// One page of `items` as `page`/`per_page` ask (`per_page` clamped to [`MAX_PER_PAGE`]).
fn paged(items: Vec<Value>, query: &HashMap<String, String>) -> (StatusCode, Value, bool) {
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, MAX_PER_PAGE);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let info = json!({
        "page": page,
        "per_page": per_page,
        "count": chunk.len(),
        "total_count": total,
        "total_pages": total.div_ceil(per_page).max(1),
    });
    success(Value::Array(chunk), Some(info))
}

fn query_map(uri: &http::Uri) -> HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// TXT content as the API shows it: the text, or its quoted character-strings.
fn shown_content(s: &State, r: &FakeRecord) -> String {
    if r.rtype != "TXT" || !s.quote_txt {
        return r.content.clone();
    }
    let bytes = r.content.as_bytes();
    let chunks: Vec<String> = if bytes.is_empty() {
        vec![String::new()]
    } else {
        bytes
            .chunks(255)
            .map(|c| {
                String::from_utf8_lossy(c)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
            })
            .collect()
    };
    chunks
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// TXT content as given: quoted strings are unquoted and joined, anything else is the text.
fn stored_content(rtype: &str, content: &str) -> String {
    if rtype != "TXT" || !content.starts_with('"') {
        return content.to_owned();
    }
    let mut out = String::new();
    let mut chars = content.chars();
    let mut inside = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => inside = !inside,
            '\\' if inside => out.extend(chars.next()),
            c if inside => out.push(c),
            _ => {}
        }
    }
    out
}

fn record_json(s: &State, r: &FakeRecord) -> Value {
    let zone_name = s
        .zones
        .iter()
        .find(|(id, _)| *id == r.zone_id)
        .map(|(_, n)| n.clone())
        .unwrap_or_default();
    json!({
        "id": r.id,
        "zone_id": r.zone_id,
        "zone_name": zone_name,
        "name": r.name,
        "type": r.rtype,
        "content": shown_content(s, r),
        "proxiable": r.rtype != "TXT",
        "proxied": r.proxied,
        "ttl": r.ttl,
        "locked": false,
        "meta": {},
        "comment": null,
        "tags": [],
        "created_on": "2024-01-01T00:00:00.000000Z",
        "modified_on": "2024-01-01T00:00:00.000000Z",
    })
}

fn route(
    s: &mut State,
    method: &Method,
    uri: &http::Uri,
    auth: &str,
    body: &[u8],
) -> (StatusCode, Value, bool) {
    if s.failing {
        return failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            10001,
            "Internal server error (injected)",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        let mut r = failure(
            StatusCode::TOO_MANY_REQUESTS,
            971,
            "Please wait and consider throttling your request speed",
        );
        r.2 = true;
        return r;
    }
    if auth != format!("Bearer {}", s.token) {
        return failure(StatusCode::FORBIDDEN, 9109, "Invalid access token");
    }
    let Some(path) = uri.path().strip_prefix("/client/v4/") else {
        return failure(StatusCode::NOT_FOUND, 7000, "No route for that URI");
    };
    let query = query_map(uri);
    let segments: Vec<&str> = path.split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["zones"]) => {
            let zones: Vec<Value> = s
                .zones
                .iter()
                .filter(|(_, n)| query.get("name").is_none_or(|q| normalize(q) == *n))
                .map(|(id, n)| json!({ "id": id, "name": n, "status": "active" }))
                .collect();
            paged(zones, &query)
        }
        (_, ["zones", zone_id, "dns_records", rest @ ..]) => {
            let zone_id = (*zone_id).to_owned();
            if !s.zones.iter().any(|(id, _)| *id == zone_id) {
                return failure(
                    StatusCode::NOT_FOUND,
                    7003,
                    &format!("Could not route to /zones/{zone_id}/dns_records, perhaps your object identifier is invalid?"),
                );
            }
            records(s, method, &zone_id, rest, &query, body)
        }
        _ => failure(StatusCode::NOT_FOUND, 7000, "No route for that URI"),
    }
}

fn records(
    s: &mut State,
    method: &Method,
    zone_id: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
    body: &[u8],
) -> (StatusCode, Value, bool) {
    match (method, rest) {
        (&Method::GET, []) => {
            let items: Vec<Value> = s
                .records
                .iter()
                .filter(|r| r.zone_id == zone_id)
                .filter(|r| query.get("name").is_none_or(|n| normalize(n) == r.name))
                .filter(|r| query.get("type").is_none_or(|t| *t == r.rtype))
                .map(|r| record_json(s, r))
                .collect();
            paged(items, query)
        }
        (&Method::POST, []) => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return failure(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
            };
            let r = match parse_record(&v, None) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let id = s.new_id();
            let record = FakeRecord {
                id,
                zone_id: zone_id.to_owned(),
                ..r
            };
            if let Err(e) = check(s, &record) {
                return e;
            }
            s.records.push(record.clone());
            s.snapshot();
            success(record_json(s, &record), None)
        }
        (m, [record_id]) if m == Method::PUT || m == Method::PATCH || m == Method::DELETE => {
            let Some(i) = s
                .records
                .iter()
                .position(|r| r.id == *record_id && r.zone_id == zone_id)
            else {
                return failure(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
            };
            if m == Method::DELETE {
                let gone = s.records.remove(i);
                s.snapshot();
                return success(json!({ "id": gone.id }), None);
            }
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return failure(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
            };
            // PUT overwrites the record, so every field is required; PATCH merges.
            let base = (m == Method::PATCH).then(|| s.records[i].clone());
            let updated = match parse_record(&v, base) {
                Ok(r) => FakeRecord {
                    id: s.records[i].id.clone(),
                    zone_id: zone_id.to_owned(),
                    ..r
                },
                Err(e) => return e,
            };
            if let Err(e) = check(s, &updated) {
                return e;
            }
            s.records[i] = updated.clone();
            s.snapshot();
            success(record_json(s, &updated), None)
        }
        _ => failure(StatusCode::NOT_FOUND, 7000, "No route for that URI"),
    }
}

/// A record from a request body; `base` supplies what a PATCH leaves out.
fn parse_record(
    v: &Value,
    base: Option<FakeRecord>,
) -> Result<FakeRecord, (StatusCode, Value, bool)> {
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let missing = |k: &str| {
        failure(
            StatusCode::BAD_REQUEST,
            9000,
            &format!("DNS record {k} is required"),
        )
    };
    let rtype = field("type")
        .or_else(|| base.as_ref().map(|b| b.rtype.clone()))
        .ok_or_else(|| missing("type"))?;
    let name = field("name")
        .or_else(|| base.as_ref().map(|b| b.name.clone()))
        .ok_or_else(|| missing("name"))?;
    let content = field("content")
        .or_else(|| base.as_ref().map(|b| b.content.clone()))
        .ok_or_else(|| missing("content"))?;
    let ttl = v
        .get("ttl")
        .and_then(Value::as_u64)
        .map(|t| t as u32)
        .or_else(|| base.as_ref().map(|b| b.ttl))
        .unwrap_or(1);
    if ttl != 1 && !(60..=86400).contains(&ttl) {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            9021,
            "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
        ));
    }
    if name.ends_with('.') || name.contains(' ') {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            9005,
            "Content for name is invalid.",
        ));
    }
    if rtype == "CNAME" && (content.contains(' ') || content.is_empty()) {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            9007,
            "Content for CNAME record is invalid.",
        ));
    }
    let proxied = v
        .get("proxied")
        .and_then(Value::as_bool)
        .or_else(|| base.as_ref().map(|b| b.proxied))
        .unwrap_or(false);
    Ok(FakeRecord {
        id: String::new(),
        zone_id: String::new(),
        content: stored_content(&rtype, &content),
        name: normalize(&name),
        rtype,
        ttl,
        proxied,
    })
}

/// Cloudflare's own rules for a new or changed record: a CNAME stands alone at its name, and
/// no two records are identical.
fn check(s: &State, r: &FakeRecord) -> Result<(), (StatusCode, Value, bool)> {
    let others = s
        .records
        .iter()
        .filter(|o| o.name == r.name && o.id != r.id);
    for o in others {
        if o.rtype == "CNAME" || r.rtype == "CNAME" {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                81053,
                "An A, AAAA, or CNAME record with that host already exists.",
            ));
        }
        if o.rtype == r.rtype && o.content == r.content {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                81058,
                "An identical record already exists.",
            ));
        }
    }
    Ok(())
}
