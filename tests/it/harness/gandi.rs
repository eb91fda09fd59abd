//! A fake of Gandi's LiveDNS API v5 (api.gandi.net/v5/livedns), as its reference documents it:
//!
//! - auth: "`Authorization: Bearer <personal access token>`" (the older `Apikey` scheme is
//!   deprecated); otherwise 401; every error is `{"code", "message", "object", "cause"}`, a
//!   refused body with `errors: [{"location", "name", "description"}]`;
//! - "Pagination": `page`, `per_page`, and the `Total-Count` header (the fake puts at most
//!   [`PER_PAGE`] in a page);
//! - `GET /domains`, `GET /domains/{fqdn}/records` (`rrset_name` relative, `@` the apex,
//!   `rrset_type`, `rrset_ttl`, `rrset_values`);
//! - `PUT /domains/{fqdn}/records/{name}/{type}` "Overwrites a single record" with
//!   `rrset_values` and `rrset_ttl` (300 at least): 201 `{"message": "DNS Record Created"}`;
//!   `DELETE` the same path: 204; TXT values quoted; a CNAME beside other records refused;
//! - rate limiting: past the limit, 429 (`HTTPTooManyRequests`).

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::fakeapi::{self, page, quote_txt, relative, unquote_txt, FakeApi, Req, Resp, Store};

/// The most items the fake puts in a page.
pub const PER_PAGE: usize = 2;

pub fn start(token: &str, zones: &[&str]) -> FakeApi {
    FakeApi::start(token, zones, route)
}

pub fn base_url(fake: &FakeApi) -> String {
    format!("http://{}/v5/livedns", fake.addr)
}

fn error(status: StatusCode, object: &str, cause: &str, message: &str) -> Resp {
    Resp::json(
        status,
        json!({ "code": status.as_u16(), "message": message, "object": object, "cause": cause }),
    )
}

fn paged(items: &[Value], req: &Req<'_>) -> Resp {
    let n = |k: &str, d: usize| {
        req.query
            .get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(d)
    };
    let (chunk, _) = page(items, n("page", 1), n("per_page", 100).clamp(1, PER_PAGE));
    Resp::json(StatusCode::OK, Value::Array(chunk)).header("Total-Count", items.len().to_string())
}

fn route(s: &mut Store, req: &Req<'_>) -> Resp {
    if s.failing {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "HTTPInternalServerError",
            "Internal Server Error",
            "injected failure",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "HTTPTooManyRequests",
            "Rate limit exceeded",
            "Too Many Requests",
        );
    }
    let auth = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", s.token)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "HTTPUnauthorized",
            "Unauthorized",
            "The server could not verify that you authorized to access the document you requested.",
        );
    }
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "HTTPNotFound",
            "Not Found",
            "The resource could not be found.",
        )
    };
    let Some(path) = req.path.strip_prefix("/v5/livedns/") else {
        return not_found();
    };
    let seg: Vec<&str> = path.split('/').collect();
    match (req.method, seg.as_slice()) {
        (&Method::GET, ["domains"]) => {
            let list: Vec<Value> = s.zones.iter().map(|z| json!({ "fqdn": z.trim_end_matches('.'), "domain_href": "", "domain_records_href": "" })).collect();
            paged(&list, req)
        }
        (_, ["domains", fqdn, "records", rest @ ..]) => {
            let zone = fakeapi::absolute(fqdn);
            if !s.zones.contains(&zone) {
                return not_found();
            }
            match (req.method, rest) {
                (&Method::GET, []) => paged(&rrsets(s, &zone), req),
                (&Method::PUT, [name, rtype]) | (&Method::DELETE, [name, rtype]) => {
                    let name = if *name == "@" {
                        zone.clone()
                    } else {
                        fakeapi::absolute(&format!("{name}.{zone}"))
                    };
                    if req.method == Method::DELETE {
                        if s.at(&name, rtype).next().is_none() {
                            return not_found();
                        }
                        s.records.retain(|r| !(r.name == name && r.rtype == *rtype));
                        return Resp::json(StatusCode::NO_CONTENT, Value::Null);
                    }
                    put(s, &name, rtype, req.body)
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
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
            json!({
                "rrset_name": relative(name, zone), "rrset_type": rtype, "rrset_ttl": recs[0].ttl,
                "rrset_values": recs.iter().map(|r| if r.rtype == "TXT" { quote_txt(&r.value) } else { r.value.clone() }).collect::<Vec<_>>(),
                "rrset_href": "",
            })
        })
        .collect()
}

fn bad_request(name: &str, description: &str) -> Resp {
    Resp::json(
        StatusCode::BAD_REQUEST,
        json!({ "code": 400, "message": "Bad Request", "object": "HTTPBadRequest", "cause": "Bad Request",
            "errors": [{ "location": "body", "name": name, "description": description }] }),
    )
}

fn put(s: &mut Store, name: &str, rtype: &str, body: &[u8]) -> Resp {
    let Ok(b) = serde_json::from_slice::<Value>(body) else {
        return bad_request("body", "invalid JSON");
    };
    let ttl = b["rrset_ttl"].as_u64().unwrap_or(10800);
    if ttl < 300 {
        return bad_request("rrset_ttl", "300 is the minimum value");
    }
    let mut values = Vec::new();
    for v in b["rrset_values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        match rtype {
            "TXT" => match unquote_txt(v) {
                Some(t) => values.push(t),
                None => return bad_request("rrset_values", &format!("invalid TXT value: {v}")),
            },
            "CNAME" if !v.ends_with('.') => {
                return bad_request("rrset_values", "a CNAME target must be fully qualified")
            }
            _ => values.push(v.to_owned()),
        }
    }
    if values.is_empty() {
        return bad_request("rrset_values", "at least one value is required");
    }
    let others = s
        .records
        .iter()
        .any(|r| r.name == name && r.rtype != rtype && (r.rtype == "CNAME" || rtype == "CNAME"));
    if others {
        return error(
            StatusCode::CONFLICT,
            "HTTPConflict",
            "Conflict",
            "A CNAME record cannot coexist with other records",
        );
    }
    s.records.retain(|r| !(r.name == name && r.rtype == rtype));
    for v in values {
        s.insert(name, rtype, ttl as u32, &v);
    }
    Resp::json(
        StatusCode::CREATED,
        json!({ "message": "DNS Record Created" }),
    )
}
