//! The ACME server telling us to wait: `Retry-After` (RFC 9110 §10.2.3) on a `rateLimited`
//! problem (RFC 8555 §6.6), a 429 or a 503, read from the HTTP response before instant-acme
//! (which keeps only the problem document) turns it into an error.
//!
//! Each attempt runs in [`scope`]; our `HttpClient` notes the status and `Retry-After` of every
//! response in that attempt's slot ([`note`]), and the error mapping reads the last one
//! ([`last`]). A task-local slot, so that concurrent orders sharing the account's client never
//! see each other's answers.

use std::cell::Cell;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use httpdate::HttpDate;

/// The longest wait we take from a `Retry-After`: a CA asking for more is waited on this long,
/// then asked again.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// RFC 8555 §6.7.
pub(super) const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

/// The status and `Retry-After` (Unix seconds, rounded up) of the last response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
}

tokio::task_local! {
    static LAST: Cell<Option<Answer>>;
}

/// Runs one attempt with its own slot for [`note`].
pub(super) async fn scope<F: Future>(f: F) -> F::Output {
    LAST.scope(Cell::new(None), f).await
}

/// Notes a response of the ACME server (outside [`scope`], nothing is noted).
pub(super) fn note(parts: &http::response::Parts) {
    let retry_after = parts
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    let answer = Answer {
        status: parts.status.as_u16(),
        retry_after,
    };
    let _ = LAST.try_with(|slot| slot.set(Some(answer)));
}

/// The last response noted in this attempt.
pub(super) fn last() -> Option<Answer> {
    LAST.try_with(Cell::get).ok().flatten()
}

/// RFC 9110 §10.2.3: `Retry-After = HTTP-date / delay-seconds`, as Unix seconds (rounded up,
/// so that we never come back early), at most [`MAX_WAIT`] from `now`; `None` when garbled.
pub(super) fn retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    let at = match u64::from_str(value) {
        Ok(secs) => now + Duration::from_secs(secs).min(MAX_WAIT),
        Err(_) => SystemTime::from(HttpDate::from_str(value).ok()?),
    };
    let at = at.clamp(now, now + MAX_WAIT);
    let d = at.duration_since(UNIX_EPOCH).ok()?;
    Some(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Whether a rate-limit problem is about `name` (its text or a subproblem names it, or a
/// parent domain of it, as Let's Encrypt's per-domain limits do) rather than about the whole
/// account; a limit that names no identifier of ours is taken to hold for the whole account.
pub(super) fn names(texts: &[&str], name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    // `mta-sts.a.example`, `a.example`: never a bare TLD.
    let suffixes: Vec<String> = (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect();
    texts.iter().any(|text| {
        let text = text.to_ascii_lowercase();
        suffixes.iter().any(|s| contains_name(&text, s))
    })
}

/// `name` occurs in `text` as a whole name, not as part of a longer one.
fn contains_name(text: &str, name: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        // A sentence may end right after the name.
        let after_ok = match after {
            None => true,
            Some('.') => !text[i + name.len() + 1..].starts_with(|c: char| part(c) && c != '.'),
            Some(c) => !part(c),
        };
        before.is_none_or(|c| !part(c)) && after_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates_rounds_up_and_caps() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_500);
        assert_eq!(retry_after("3", now), Some(1004));
        assert_eq!(retry_after(" 0 ", now), Some(1001));
        // RFC 9110 §5.6.7 IMF-fixdate.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let then = SystemTime::from(HttpDate::from_str(date).unwrap());
        let secs = then.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            retry_after(date, then - Duration::from_secs(10)),
            Some(secs)
        );
        // In the past: now.
        assert_eq!(
            retry_after(date, then + Duration::from_secs(10)),
            Some(secs + 10)
        );
        assert_eq!(retry_after("999999999", now), Some(1001 + 24 * 3600));
        for garbled in ["", "soon", "-1", "3.5", "Sun, 06 Nov 1994"] {
            assert_eq!(retry_after(garbled, now), None, "{garbled:?}");
        }
    }

    #[test]
    fn a_limit_is_about_a_name_when_it_names_it_or_a_parent() {
        let name = "mta-sts.a.example";
        // Let's Encrypt's account-wide limit names no domain.
        let account = "too many new orders (300) from this account in the last 3h0m0s, \
                       retry after 2026-12-02 06:00:00 UTC: see \
                       https://letsencrypt.org/docs/rate-limits/#new-orders-per-account";
        assert!(!names(&[account], name));
        let domain = "too many certificates (50) already issued for \"a.example\" in the \
                      last 168h0m0s";
        assert!(names(&[domain], name));
        assert!(names(
            &["failed authorizations for mta-sts.a.example."],
            name
        ));
        assert!(names(&["", "MTA-STS.A.EXAMPLE"], name));
        // Part of another name, or the bare TLD: not ours.
        assert!(!names(&["issued for \"data.example\""], name));
        assert!(!names(&["issued for \"a.example.net\""], name));
        assert!(!names(&["every .example name"], name));
    }

    #[tokio::test]
    async fn answers_are_kept_per_attempt() {
        let parts = |status: u16, retry: &str| {
            let mut r = http::Response::builder().status(status);
            if !retry.is_empty() {
                r = r.header("retry-after", retry);
            }
            r.body(()).unwrap().into_parts().0
        };
        note(&parts(429, "3"));
        assert_eq!(last(), None, "outside a scope nothing is kept");
        let (a, b) = tokio::join!(
            scope(async {
                note(&parts(429, "3"));
                tokio::task::yield_now().await;
                last()
            }),
            scope(async {
                note(&parts(200, ""));
                tokio::task::yield_now().await;
                last()
            }),
        );
        assert_eq!(a.map(|a| a.status), Some(429));
        assert!(a.unwrap().retry_after.is_some());
        assert_eq!(
            b,
            Some(Answer {
                status: 200,
                retry_after: None
            })
        );
    }
}
