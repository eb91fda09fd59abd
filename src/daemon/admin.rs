//! The admin listener's endpoints: the dashboard (`/`, `/domains/<domain>`), `/healthz`,
//! `/status` (JSON), `/metrics` (Prometheus). Served only on `[server] admin`, never on a
//! public listener; with `[server] admin_token_file`, only to a request that bears the token.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::config::{CertSource, Config, Domain};
use crate::daemon::context::Daemon;
use crate::daemon::drift_task::for_domain;
use crate::daemon::publication::Publication;
use crate::daemon::view::{certificate, lifecycle_status};
use crate::drift::report::Report;
use crate::serve::handler::plain;
use mta_stsd_providers::Secret;

/// Above this many domains `/status` lists none unless asked for one (`?domain=NAME`).
const STATUS_LIST_LIMIT: usize = 1000;

/// `token`: `[server] admin_token_file`'s token, as read at start (listeners and their
/// settings change at a restart).
#[allow(clippy::expect_used, reason = "JSON values serialize")]
pub(crate) async fn respond<B>(
    shared: &Daemon,
    token: Option<&Secret>,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    if let Some(token) = token {
        if !bears(req, token) {
            let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            // RFC 6750 §3: a request without (valid) credentials gets the challenge.
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mta-stsd admin\""),
            );
            return r;
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let path = req.uri().path();
    if path == "/" {
        let page = crate::daemon::pages::index(shared, req.uri().query()).await;
        return html(StatusCode::OK, crate::dashboard::render(&page));
    }
    if let Some(name) = path.strip_prefix("/domains/") {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        return match crate::daemon::pages::domain(shared, &name).await {
            Some(page) => html(StatusCode::OK, crate::dashboard::render(&page)),
            None => plain(StatusCode::NOT_FOUND, "no such domain is served\n"),
        };
    }
    match path {
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/metrics" => {
            crate::daemon::scrape::update(shared);
            let h = shared.writer.store().health();
            shared.metrics.store_up.set(i64::from(h.error.is_none()));
            shared.metrics.store_pending.set(h.pending as i64);
            shared
                .metrics
                .store_follows(shared.writer.store().follows());
            shared
                .metrics
                .leases_held(&shared.writer.store().held_here());
            with_type(
                shared.metrics.encode(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        "/status" => {
            let only = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("domain="))
                    .map(str::to_ascii_lowercase)
            });
            let reports = reports(shared, only.as_deref()).await;
            let mut status = status(shared, only.as_deref(), &reports);
            status["state"]["leases"] = leases(shared).await;
            with_type(
                serde_json::to_string_pretty(&status).expect("JSON values serialize") + "\n",
                "application/json",
            )
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

use crate::clock::rfc3339;

/// Whether `req` carries `Authorization: Bearer <token>`. Both sides are hashed first and
/// the digests compared in constant time: neither the token's bytes nor its length leak
/// through the time a refusal takes.
fn bears<B>(req: &Request<B>, token: &Secret) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let want = Sha256::digest(token.expose().trim().as_bytes());
    let got = Sha256::digest(given.trim().as_bytes());
    want.ct_eq(&got).into()
}

/// A dashboard page with its security headers; a template error is a 500 (and a bug).
fn html(status: StatusCode, page: Result<String, askama::Error>) -> Response<Full<Bytes>> {
    let body = match page {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "dashboard page failed to render");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "page failed to render\n");
        }
    };
    let mut r = with_type(body, "text/html; charset=utf-8");
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(crate::dashboard::content_security_policy()),
    );
    for (k, v) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    r
}

fn with_type(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The TLS-RPT sums of the domains `/status` is about to list (SPEC "/status sums them per
/// domain"), read before the state locks are taken.
async fn reports(shared: &Daemon, only: Option<&str>) -> crate::tlsrpt::status::Reports {
    use crate::tlsrpt::status::{fetch, Reports};
    let names: Vec<String> = {
        let live = shared.live.load();
        if live.config.tlsrpt.is_none() {
            return Reports::Off;
        }
        match only {
            Some(name) => vec![name.to_owned()],
            None if live.config.domains.len() <= STATUS_LIST_LIMIT => live
                .config
                .domains
                .iter()
                .map(|d| d.name.as_str().to_owned())
                .collect(),
            None => Vec::new(),
        }
    };
    let now = crate::clock::unix_now() as i64;
    fetch(shared.reports.get(), &names, now).await
}

/// SPEC "/status": every domain's id, served since, DNS publication state, last error; the
/// last reload and its problems; TLS-RPT sums.
pub(crate) fn status(
    shared: &Daemon,
    only: Option<&str>,
    reports: &crate::tlsrpt::status::Reports,
) -> Value {
    let live = shared.live.load();
    let reload = shared.last_reload();
    let total = live.config.domains.len();
    let publication = shared.publication();
    let drift = shared.drift_report();
    let show = |(d, since): (&Domain, u64)| {
        domain_status(
            d,
            since,
            &live.config,
            &publication,
            drift.as_deref(),
            &shared.acme,
            reports,
        )
    };
    let domains: Vec<Value> = match only {
        Some(name) => live.served(name).map(show).into_iter().collect(),
        None if total <= STATUS_LIST_LIMIT => live
            .config
            .domains
            .iter()
            .filter_map(|d| live.served(d.name.as_str()))
            .map(show)
            .collect(),
        None => Vec::new(),
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": rfc3339(shared.started_at()),
        "config": {
            "path": shared.config_path.display().to_string(),
            "files": live.config.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "loaded_at": rfc3339(live.loaded_at),
            "last_reload": {
                "at": rfc3339(reload.at),
                "ok": reload.ok,
                "problems": reload.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            },
        },
        "drift": drift.as_ref().map(|r| json!({
            "checked_at": rfc3339(r.checked_at),
            "status": r.status,
            "counts": r.counts,
        })),
        "alerts": live.config.alerts.as_ref().map(|_| shared.alerts.json()),
        "dane": shared.with_dane_round(|r| r.map(super::dane_task::status)),
        "acme": live.config.acme.as_ref().map(|_| shared.acme.summary_json()),
        "tlsrpt": reports.summary(),
        "state": store_status(shared, &live.config.state),
        "withdrawing": live.withdraw.iter().map(|d| json!({
            "domain": d.name.as_str(),
            "lifecycle": lifecycle_status(d),
            "dns": dns_status(d, &publication),
        })).collect::<Vec<_>>(),
        "domains_total": total,
        "domains_listed": only.is_some() || total <= STATUS_LIST_LIMIT,
        "domains": domains,
    })
}

/// `/status` asks the store this long for the leases, then says it could not.
const LEASES_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Every job's lease in the store: who holds it (`<replica>/<pid>`) and until when, by the
/// store's clock; `null` when the store does not answer.
async fn leases(shared: &Daemon) -> Value {
    let store = shared.writer.store();
    let ours = store.holder();
    let asked = async {
        let rows = store.leases().await?;
        let now = store.now().await?;
        Ok::<_, crate::state::store::StoreError>((rows, now))
    };
    match tokio::time::timeout(LEASES_WITHIN, asked).await {
        Ok(Ok((rows, now))) => rows
            .into_iter()
            .map(|(job, holder, token, expires_at)| {
                let held = u64::try_from(expires_at).is_ok_and(|t| t > now);
                json!({
                    "job": job,
                    "holder": held.then_some(&holder),
                    "last_holder": holder,
                    "this_process": held && holder == ours,
                    "token": token,
                    "expires_at": rfc3339(u64::try_from(expires_at).unwrap_or(0)),
                })
            })
            .collect(),
        _ => Value::Null,
    }
}

/// The store: which, whether it takes writes, what waits for it.
fn store_status(shared: &Daemon, state: &crate::config::State) -> Value {
    let store = shared.writer.store();
    let h = store.health();
    json!({
        "dir": state.dir.display().to_string(),
        "engine": store.engine(),
        "replica": store.replica(),
        "up": h.error.is_none(),
        "error": h.error,
        "pending_events": h.pending,
        "listen": store.listen_state().unwrap_or("off"),
        "damaged_rows": h.damaged,
        "seq": h.seq,
        "last_ok": h.last_ok.map(rfc3339),
    })
}

fn dns_status(d: &Domain, publication: &Publication) -> Value {
    let Some(p) = publication.domains.get(d.name.as_str()) else {
        return json!({ "provider": Value::Null, "state": "manual" });
    };
    json!({
        "provider": p.provider,
        "zone": p.zone,
        "state": p.state.as_str(),
        "published_id": p.published_id,
        "last_published": p.last_published.map(rfc3339),
        "last_error": p.last_error,
        "conflicts": p.conflicts,
        "attempts": p.attempts,
        "next_retry": p.next_retry.map(rfc3339),
        // The last time the records were read back and agreed (or were made to agree).
        "last_read": p.last_read.map(rfc3339),
    })
}

/// RFC 8461 §8.2: our TXT's zone, the customer's records and whether the last drift run saw
/// them in place (`not checked` without one).
fn delegation_status(d: &Domain, zone: &crate::name::DomainName, drift: Option<&Report>) -> Value {
    let customer: Vec<String> = crate::desired::customer_records(d)
        .iter()
        .map(|r| r.to_string())
        .collect();
    let (state, missing) = match drift.and_then(|r| for_domain(r, d.name.as_str())) {
        None => ("not checked", Vec::new()),
        Some(dr) => {
            let missing: Vec<&str> = dr
                .findings
                .iter()
                .filter(|f| f.check == crate::drift::report::Check::Delegation)
                .map(|f| f.message.as_str())
                .collect();
            (
                if missing.is_empty() {
                    "in place"
                } else {
                    "missing"
                },
                missing,
            )
        }
    };
    json!({
        "zone": zone.fqdn(),
        "customer_records": customer,
        "customer_side": state,
        "problems": missing,
    })
}

fn domain_status(
    d: &Domain,
    since: u64,
    config: &Config,
    publication: &Publication,
    drift: Option<&Report>,
    acme: &crate::acme::AcmeState,
    reports: &crate::tlsrpt::status::Reports,
) -> Value {
    let report = drift;
    let drift = drift.map(|r| match for_domain(r, d.name.as_str()) {
        Some(dr) => json!({ "status": dr.status, "findings": dr.findings }),
        None => json!({ "status": "not checked" }),
    });
    json!({
        "domain": d.name.as_str(),
        "policy_id": d.policy.id().as_str(),
        "mode": d.policy.mode.as_str(),
        "served_since": rfc3339(since),
        "certificate": match d.cert {
            CertSource::Configured(_) => "configured",
            CertSource::Acme => "acme",
            CertSource::SelfSigned => "self-signed",
            CertSource::NotNeeded => "none",
        },
        "certificate_expires": certificate(d, config, acme),
        "dns": dns_status(d, publication),
        "delegation": d.dns.delegated.as_ref().map(|zone| delegation_status(d, zone, report)),
        "drift": drift,
        "acme": (d.cert == CertSource::Acme).then(|| acme.status_json(&d.name.policy_host())),
        "lifecycle": lifecycle_status(d),
        "tlsrpt": reports.domain(d.name.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0u64), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_464_302i64), "2026-11-23T20:05:02Z");
    }
}
