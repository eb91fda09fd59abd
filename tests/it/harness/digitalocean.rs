//! A fake of the DigitalOcean API v2's domains (api.digitalocean.com/v2, "Domains", "Domain
//! Records"), as its reference documents it:
//!
//! - auth: "`Authorization: Bearer $TOKEN`"; otherwise 401 `{"id": "Unauthorized", "message":
//!   "Unable to authenticate you."}` (every error is `{"id", "message"}`);
//! - "Links & Pagination": `page`/`per_page` (at most 200; the fake puts at most [`PER_PAGE`]
//!   in a page), `links.pages.next` absent on the last page, `meta.total`;
//! - records: `GET /domains/{d}/records`, `POST` (201 `{"domain_record"}`), `PUT
//!   /domains/{d}/records/{id}` (the record keeps its id), `DELETE` (204); `name` relative
//!   (`@` for the apex), CNAME `data` "a fully qualified hostname (with trailing dot)";
//!   a CNAME beside other records is 422 `unprocessable_entity`;
//! - "Rate Limit": 5,000 requests an hour, 250 a minute; past it, 429 `{"id":
//!   "too_many_requests", "message": "API Rate limit exceeded."}` with `ratelimit-limit`,
//!   `ratelimit-remaining`, `ratelimit-reset`.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::fakeapi::{self, page, relative, FakeApi, Rec, Req, Resp, Store};

/// The most items the fake puts in a page.
pub const PER_PAGE: usize = 2;

pub fn start(token: &str, zones: &[&str]) -> FakeApi {
    FakeApi::start(token, zones, route)
}

pub fn base_url(fake: &FakeApi) -> String {
    format!("http://{}/v2", fake.addr)
}

fn error(status: StatusCode, id: &str, message: &str) -> Resp {
    Resp::json(status, json!({ "id": id, "message": message }))
}

fn paged(key: &str, items: &[Value], req: &Req<'_>) -> Resp {
    let n = |k: &str, d: usize| {
        req.query
            .get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(d)
    };
    let (p, per_page) = (n("page", 1).max(1), n("per_page", 20).clamp(1, PER_PAGE));
    let (chunk, pages) = page(items, p, per_page);
    let link = |p: usize| {
        format!(
            "https://api.digitalocean.com{}?page={p}&per_page={per_page}",
            req.path
        )
    };
    let mut pages_obj = serde_json::Map::new();
    if p < pages {
        pages_obj.insert("next".into(), json!(link(p + 1)));
        pages_obj.insert("last".into(), json!(link(pages)));
    }
    if p > 1 {
        pages_obj.insert("first".into(), json!(link(1)));
        pages_obj.insert("prev".into(), json!(link(p - 1)));
    }
    Resp::json(
        StatusCode::OK,
        json!({ key: chunk, "links": { "pages": pages_obj }, "meta": { "total": items.len() } }),
    )
}

fn record_json(r: &Rec) -> Value {
    json!({
        "id": r.id, "type": r.rtype, "name": relative(&r.name, &r.zone), "data": r.value,
        "priority": null, "port": null, "ttl": r.ttl, "weight": null, "flags": null, "tag": null,
    })
}

fn route(s: &mut Store, req: &Req<'_>) -> Resp {
    if s.failing {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Unexpected server-side error (injected)",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "API Rate limit exceeded.",
        )
        .header("ratelimit-limit", "5000")
        .header("ratelimit-remaining", "0")
        .header("ratelimit-reset", "1");
    }
    let auth = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", s.token)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unable to authenticate you.",
        );
    }
    let Some(path) = req.path.strip_prefix("/v2/") else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The resource you were accessing could not be found.",
        );
    };
    let seg: Vec<&str> = path.split('/').collect();
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The resource you were accessing could not be found.",
        )
    };
    match (req.method, seg.as_slice()) {
        (&Method::GET, ["domains"]) => {
            let list: Vec<Value> = s
                .zones
                .iter()
                .map(|z| json!({ "name": z.trim_end_matches('.'), "ttl": 1800, "zone_file": "" }))
                .collect();
            paged("domains", &list, req)
        }
        (_, ["domains", d, "records", rest @ ..]) => {
            let zone = fakeapi::absolute(d);
            if !s.zones.contains(&zone) {
                return not_found();
            }
            match (req.method, rest) {
                (&Method::GET, []) => {
                    let list: Vec<Value> = s
                        .records
                        .iter()
                        .filter(|r| r.zone == zone)
                        .map(record_json)
                        .collect();
                    paged("domain_records", &list, req)
                }
                (&Method::POST, []) => write(s, &zone, None, req.body),
                (&Method::PUT, [id]) | (&Method::DELETE, [id]) => {
                    let Some(id) = id
                        .parse::<u64>()
                        .ok()
                        .filter(|id| s.records.iter().any(|r| r.id == *id && r.zone == zone))
                    else {
                        return not_found();
                    };
                    if req.method == Method::DELETE {
                        s.records.retain(|r| r.id != id);
                        return Resp::json(StatusCode::NO_CONTENT, Value::Null);
                    }
                    write(s, &zone, Some(id), req.body)
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// A create (`id` none) or an update in place.
fn write(s: &mut Store, zone: &str, id: Option<u64>, body: &[u8]) -> Resp {
    let created = id.is_none();
    let Ok(b) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "invalid JSON");
    };
    let (rtype, sub, data) = (
        b["type"].as_str().unwrap_or_default(),
        b["name"].as_str().unwrap_or_default(),
        b["data"].as_str().unwrap_or_default(),
    );
    let ttl = b["ttl"].as_u64().unwrap_or(1800) as u32;
    let name = if sub == "@" {
        zone.to_owned()
    } else {
        fakeapi::absolute(&format!("{sub}.{zone}"))
    };
    if rtype == "CNAME" && !data.ends_with('.') {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            "Data needs to end with a dot (.)",
        );
    }
    let others = s
        .records
        .iter()
        .any(|r| Some(r.id) != id && r.name == name && (r.rtype == "CNAME" || rtype == "CNAME"));
    if others {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            "CNAME records cannot share a name with other records.",
        );
    }
    let id = match id {
        Some(id) => {
            if let Some(r) = s.records.iter_mut().find(|r| r.id == id) {
                r.name = name;
                r.rtype = rtype.to_owned();
                r.value = data.to_owned();
                r.ttl = ttl;
            }
            id
        }
        None => s.insert(&name, rtype, ttl, data),
    };
    let r = s.records.iter().find(|r| r.id == id).cloned();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Resp::json(
        status,
        json!({ "domain_record": r.as_ref().map(record_json) }),
    )
}
