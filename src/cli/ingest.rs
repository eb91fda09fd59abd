//! `tlsrpt ingest`: one report mail on stdin, as an MTA pipe transport delivers it. Exit 0
//! when stored, a duplicate or deliberately dropped (logged); 75 (EX_TEMPFAIL) whenever
//! trying again later could store it, so the MTA keeps the message.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::state::history::History;
use crate::tlsrpt::mail::{self, Dkim};
use crate::tlsrpt::store::{Source, Store, StoreError, Stored};
use crate::tlsrpt::Untrusted;

/// sysexits.h: the MTA defers the message and retries it.
pub(super) const EX_TEMPFAIL: u8 = 75;

/// The whole run, DKIM lookups and the store included: an MTA pipe must not hang.
const DEADLINE: Duration = Duration::from_secs(120);

pub(super) fn run(config_path: &Path) -> u8 {
    // Only what ingest uses: [state], [tlsrpt] and the domains. The TSIG key, API tokens and
    // TLS keys are not read, so the pipe's user need not be able to read them.
    let config = match crate::config::load_without_secrets(config_path) {
        Ok(l) => l.config,
        Err(failed) => {
            // A broken or unreadable config is the admin's to fix; the mail waits in the
            // queue meanwhile. Each problem names its file (an unreadable one included).
            for d in failed.errors() {
                log(&d.to_string());
            }
            log(&format!(
                "{}: cannot load the config as uid {}; the report is kept in the queue",
                config_path.display(),
                // SAFETY: getuid cannot fail.
                unsafe { libc::getuid() }
            ));
            return EX_TEMPFAIL;
        }
    };
    let Some(tlsrpt) = config.tlsrpt.clone() else {
        log(&format!(
            "{}: no [tlsrpt] section; the report is kept in the queue",
            config_path.display()
        ));
        return EX_TEMPFAIL;
    };
    // The parse budget across ingest processes (Postfix runs one per mail): a slot per
    // max_report_bytes of parse_budget_bytes, taken before the message is read; none free,
    // the MTA retries later.
    let slots = tlsrpt.parse_budget_bytes / tlsrpt.max_report_bytes.max(1);
    let _slot = match crate::tlsrpt::budget::ingest_slot(&config.state.dir, slots) {
        Ok(Some(slot)) => Some(slot),
        Ok(None) => {
            log(&format!(
                "{slots} reports are being ingested already ([tlsrpt] parse_budget_bytes); the MTA will retry"
            ));
            return EX_TEMPFAIL;
        }
        // A state dir this user cannot write (a PostgreSQL store): no budget, as before.
        Err(e) => {
            log(&format!(
                "no ingest slot, going on without the parse budget: {e}"
            ));
            None
        }
    };
    // Base64 adds a third to a +json part; headers and a text part a little more.
    let max_message = tlsrpt.max_report_bytes.saturating_mul(3) / 2 + (1 << 20);
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(max_message as u64 + 1)
        .read_to_end(&mut raw)
    {
        log(&format!("reading the message: {e}"));
        return EX_TEMPFAIL;
    }
    if raw.len() > max_message {
        return dropped(&format!(
            "message over {max_message} bytes ([tlsrpt] max_report_bytes)"
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log(&format!("starting the async runtime: {e}"));
            return EX_TEMPFAIL;
        }
    };
    let work = ingest(&config, &tlsrpt, &raw);
    match runtime.block_on(async { tokio::time::timeout(DEADLINE, work).await }) {
        Ok(code) => code,
        Err(_) => {
            log(&format!("gave up after {DEADLINE:?}; the MTA will retry"));
            EX_TEMPFAIL
        }
    }
}

async fn ingest(config: &crate::config::Config, t: &crate::config::Tlsrpt, raw: &[u8]) -> u8 {
    let auth = match mail::authenticator(t.resolver) {
        Ok(a) => a,
        Err(e) => {
            log(&format!("DKIM: {e}"));
            return EX_TEMPFAIL;
        }
    };
    let signer = match mail::verify(&auth, raw).await {
        Dkim::Pass(d) => d,
        Dkim::Drop(why) => return dropped(&format!("DKIM: {why}")),
        Dkim::TempFail(why) => {
            log(&format!(
                "DKIM key lookup failed, the MTA will retry: {why}"
            ));
            return EX_TEMPFAIL;
        }
    };
    let parts = mail::reports(raw, t.max_report_bytes);
    if parts.is_empty() {
        return dropped(&format!(
            "message signed by {signer} has no application/tlsrpt+gzip or +json part"
        ));
    }
    let target = crate::lifecycle::store_target(&config.state);
    let history = crate::state::store::read_history(&target)
        .await
        .unwrap_or_else(|e| {
            log(&format!(
                "reading the id history in {}: {e}; reports are stored without policy ids",
                config.state.dir.display()
            ));
            History::in_memory()
        });
    let backend = match crate::tlsrpt::backend(t, &config.state) {
        Ok(b) => b,
        Err(e) => {
            log(&format!("report store: {e}"));
            return EX_TEMPFAIL;
        }
    };
    let mut store = None;
    for part in parts {
        let (report, json) = match part {
            Ok(p) => p,
            Err(why) => {
                dropped(&format!("a report part signed by {signer}: {why}"));
                continue;
            }
        };
        let id = Untrusted(&report.report_id);
        if let Err(e) = report.check_dates(crate::clock::unix_now() as i64) {
            dropped(&format!("report {id} from {signer}: {e}"));
            continue;
        }
        // RFC 8460 §4.4 "policy-domain": as over HTTPS, a report about none of our domains
        // is not ours to keep.
        let ours = report.policies.iter().any(|p| {
            p.domain
                .as_deref()
                .is_some_and(|d| config.domain(d).is_some() || history.domain(d).is_some())
        });
        if !ours {
            dropped(&format!(
                "report {id} from {signer}: no policy-domain in it is served here"
            ));
            continue;
        }
        if store.is_none() {
            match Store::open(&backend).await {
                Ok(s) => store = Some(s),
                Err(e) => {
                    log(&format!("{e}; the MTA will retry"));
                    return EX_TEMPFAIL;
                }
            }
        }
        let Some(store) = store.as_ref() else {
            return EX_TEMPFAIL;
        };
        store.set_quotas(t);
        let ids = crate::tlsrpt::matching::match_ids(&history, &report);
        let now = crate::clock::unix_now() as i64;
        let source = Source::Mail {
            signer: signer.clone(),
        };
        let org = Untrusted(&report.organization).to_string();
        let id = id.to_string();
        match store
            .insert(Arc::new(report), json, &source, now, ids)
            .await
        {
            Ok(Stored::New) => log(&format!(
                "TLS report {id} from {org} (signed by {signer}) stored"
            )),
            Ok(Stored::Duplicate) => {
                log(&format!("TLS report {id} from {signer} is stored already"))
            }
            Err(e @ (StoreError::Refused(_) | StoreError::SenderLimit(_))) => {
                // It fails again at every retry (for good, or until tomorrow for the
                // sender's daily limit): dropped and logged, not deferred for days.
                dropped(&format!("report {id} from {signer}: {e}"));
            }
            Err(e) => {
                // Reports stored before this one are duplicates on the retry: nothing twice.
                log(&format!("{e}; the MTA will retry"));
                return EX_TEMPFAIL;
            }
        }
    }
    0
}

/// A report we keep no copy of, on purpose: logged, and the MTA is told it was delivered.
fn dropped(why: &str) -> u8 {
    log(&format!("report dropped: {why}"));
    0
}

/// Stderr (the MTA shows it on failure) and syslog's mail facility (beside the MTA's log).
/// The line quotes what the message carried (ids, names, parse errors): escaped and cut, so
/// no sender forges a log line or writes a megabyte one.
fn log(line: &str) {
    let line = crate::tlsrpt::untrusted::line(line);
    eprintln!("mta-stsd tlsrpt ingest: {line}");
    syslog(&line);
}

fn syslog(line: &str) {
    let Ok(msg) = std::ffi::CString::new(line.replace('\0', " ")) else {
        return;
    };
    // SAFETY: both strings are NUL-terminated and outlive the calls; "%s" takes one argument.
    unsafe {
        libc::openlog(c"mta-stsd".as_ptr(), libc::LOG_PID, libc::LOG_MAIL);
        libc::syslog(libc::LOG_INFO, c"%s".as_ptr(), msg.as_ptr());
    }
}
