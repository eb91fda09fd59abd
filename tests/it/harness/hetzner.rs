//! A fake of the Hetzner Cloud API's DNS part (api.hetzner.cloud/v1, "Zones", "Zone RRSets",
//! "Zone RRSet Actions"), as its reference documents it:
//!
//! - auth: "All requests to the Hetzner Cloud API must be authenticated via a API token …
//!   `Authorization: Bearer $API_TOKEN`"; otherwise 401 `unauthorized`;
//! - errors: "the response body contains an error object `{"error": {"code", "message",
//!   "details"}}`" (codes `not_found`, `invalid_input`, `rate_limit_exceeded`, `unavailable`);
//! - pagination: `page`/`per_page`, and `meta.pagination` with `next_page` (null on the last
//!   page); the fake puts at most [`PER_PAGE`] items in a page, whatever is asked;
//! - rate limiting: "the default limit is 3600 requests per hour … When the limit is reached,
//!   the API responds with 429 `rate_limit_exceeded`", with `RateLimit-Limit`,
//!   `RateLimit-Remaining`, `RateLimit-Reset` headers; "the number of remaining requests
//!   increases by 1 every second";
//! - `add_records`: "Adds resource records (RRs) to an RRSet in the Zone. For convenience, the
//!   RRSet will be automatically created if it doesn't exist"; `remove_records`: "Removes
//!   resource records … the RRSet will be automatically deleted if it doesn't contain any RRs
//!   afterwards"; `set_records`: "Overwrites the resource records (RRs) of an existing RRSet";
//!   each answers `{"action": {…, "status": "running"}}` and is carried out when done: here, at
//!   the first `GET /zones/actions/{id}` (so a client that does not poll sees nothing change);
//! - TXT: "The format of TXT records must consist of one or many quoted strings of 255
//!   characters"; values are refused (422 `invalid_input`) otherwise.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::fakeapi::{self, page, quote_txt, relative, unquote_txt, FakeApi, Req, Resp, Store};

/// The most items the fake puts in a page.
pub const PER_PAGE: usize = 2;

pub fn start(token: &str, zones: &[&str]) -> FakeApi {
    FakeApi::start(token, zones, route)
}

pub fn base_url(fake: &FakeApi) -> String {
    format!("http://{}/v1", fake.addr)
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        json!({ "error": { "code": code, "message": message, "details": {} } }),
    )
}

fn paged(key: &str, items: &[Value], req: &Req<'_>) -> Resp {
    let n = |k: &str, d: usize| {
        req.query
            .get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(d)
    };
    let (p, per_page) = (n("page", 1).max(1), n("per_page", 25).clamp(1, PER_PAGE));
    let (chunk, pages) = page(items, p, per_page);
    let next = if p < pages { json!(p + 1) } else { Value::Null };
    Resp::json(
        StatusCode::OK,
        json!({
            key: chunk,
            "meta": { "pagination": {
                "page": p, "per_page": per_page, "previous_page": if p > 1 { json!(p - 1) } else { Value::Null },
                "next_page": next, "last_page": pages, "total_entries": items.len(),
            }},
        }),
    )
}

fn route(s: &mut Store, req: &Req<'_>) -> Resp {
    if s.failing {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "service unavailable (injected)",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "limit of 3600 requests per hour reached",
        )
        .header("RateLimit-Limit", "3600")
        .header("RateLimit-Remaining", "0")
        .header("RateLimit-Reset", "1");
    }
    let auth = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", s.token)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        );
    }
    let Some(path) = req.path.strip_prefix("/v1/") else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such route");
    };
    let seg: Vec<&str> = path.split('/').collect();
    match (req.method, seg.as_slice()) {
        (&Method::GET, ["zones"]) => {
            let zones: Vec<Value> = s
                .zones
                .iter()
                .enumerate()
                .map(|(i, z)| json!({ "id": i + 1, "name": z.trim_end_matches('.'), "mode": "primary", "ttl": 3600 }))
                .collect();
            paged("zones", &zones, req)
        }
        (&Method::GET, ["zones", "actions", id]) => poll(s, id),
        (_, ["zones", zone, rest @ ..]) => {
            let zone = fakeapi::absolute(zone);
            if !s.zones.contains(&zone) {
                return error(StatusCode::NOT_FOUND, "not_found", "zone not found");
            }
            match (req.method, rest) {
                (&Method::GET, ["rrsets"]) => paged("rrsets", &rrsets(s, &zone), req),
                (&Method::POST, ["rrsets", name, rtype, "actions", action]) => {
                    let name = if *name == "@" {
                        zone.clone()
                    } else {
                        fakeapi::absolute(&format!("{name}.{zone}"))
                    };
                    start_action(s, &name, rtype, action, req.body)
                }
                _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

/// The zone's records grouped into RRsets, as the API shows them.
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
            let rel = relative(name, zone);
            json!({
                "id": format!("{rel}/{rtype}"), "name": rel, "type": rtype,
                "ttl": recs[0].ttl, "labels": {}, "protection": { "change": false },
                "records": recs.iter().map(|r| json!({ "value": shown(&r.rtype, &r.value), "comment": "" })).collect::<Vec<_>>(),
                "zone": 1,
            })
        })
        .collect()
}

fn shown(rtype: &str, value: &str) -> String {
    if rtype == "TXT" {
        quote_txt(value)
    } else {
        value.to_owned()
    }
}

fn start_action(s: &mut Store, name: &str, rtype: &str, action: &str, body: &[u8]) -> Resp {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "json_error", "invalid JSON");
    };
    let mut values = Vec::new();
    for v in body["records"].as_array().into_iter().flatten() {
        let Some(text) = v["value"].as_str() else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "invalid input in field 'records'",
            );
        };
        let stored = match rtype {
            "TXT" => match unquote_txt(text) {
                Some(t) => t,
                None => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "invalid TXT record value: must be one or many quoted strings of 255 characters"),
            },
            "CNAME" if !text.ends_with('.') => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "CNAME value must be a fully qualified domain name"),
            _ => text.to_owned(),
        };
        values.push(stored);
    }
    let exists = s.at(name, rtype).next().is_some();
    match action {
        "add_records" => {
            let others = s
                .records
                .iter()
                .any(|r| r.name == name && (r.rtype == "CNAME") != (rtype == "CNAME"));
            if others || (rtype == "CNAME" && (exists || values.len() > 1)) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_input",
                    "a CNAME cannot coexist with other records at the same name",
                );
            }
        }
        "remove_records" | "set_records" if !exists => {
            return error(StatusCode::NOT_FOUND, "not_found", "rrset not found")
        }
        "remove_records" => {
            if let Some(v) = values
                .iter()
                .find(|v| !s.at(name, rtype).any(|r| r.value == **v))
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_input",
                    &format!("record {v:?} not found in RRSet"),
                );
            }
        }
        "set_records" => {}
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such action"),
    }
    let id = s.new_id();
    let op = json!({ "action": action, "name": name, "type": rtype, "ttl": body["ttl"], "values": values });
    s.extra.insert(format!("action:{id}"), op);
    Resp::json(StatusCode::CREATED, action_json(id, action, "running"))
}

fn action_json(id: u64, action: &str, status: &str) -> Value {
    let command = action.replace("_records", "_rrset_records");
    json!({ "action": {
        "id": id, "command": command, "status": status,
        "progress": if status == "running" { 0 } else { 100 },
        "started": "2026-01-01T00:00:00+00:00",
        "finished": if status == "running" { Value::Null } else { json!("2026-01-01T00:00:01+00:00") },
        "resources": [{ "id": 1, "type": "zone" }], "error": null,
    }})
}

/// `GET /zones/actions/{id}`: a running action is done now, its change made.
fn poll(s: &mut Store, id: &str) -> Resp {
    let Some(op) = s.extra.remove(&format!("action:{id}")) else {
        return match id.parse::<u64>() {
            Ok(n) if n <= s.next_id => {
                Resp::json(StatusCode::OK, action_json(n, "add_records", "success"))
            }
            _ => error(StatusCode::NOT_FOUND, "not_found", "action not found"),
        };
    };
    let (name, rtype) = (
        op["name"].as_str().unwrap_or_default(),
        op["type"].as_str().unwrap_or_default(),
    );
    let values: Vec<String> = op["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let action = op["action"].as_str().unwrap_or_default();
    let ttl = op["ttl"].as_u64().map(|t| t as u32);
    let existing_ttl = s.at(name, rtype).next().map(|r| r.ttl);
    match action {
        "add_records" => {
            for v in &values {
                if !s.at(name, rtype).any(|r| r.value == *v) {
                    s.insert(name, rtype, ttl.or(existing_ttl).unwrap_or(3600), v);
                }
            }
            // The TTL is the RRset's: a `ttl` given applies to every record of it.
            if let Some(ttl) = ttl {
                for r in s
                    .records
                    .iter_mut()
                    .filter(|r| r.name == name && r.rtype == rtype)
                {
                    r.ttl = ttl;
                }
            }
        }
        "remove_records" => s
            .records
            .retain(|r| !(r.name == name && r.rtype == rtype && values.contains(&r.value))),
        _ => {
            s.records.retain(|r| !(r.name == name && r.rtype == rtype));
            for v in &values {
                s.insert(name, rtype, ttl.or(existing_ttl).unwrap_or(3600), v);
            }
        }
    }
    let n = id.parse::<u64>().unwrap_or_default();
    Resp::json(StatusCode::OK, action_json(n, action, "success"))
}
