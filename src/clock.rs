//! Time: the clock the daemon reads, and how it shows instants to people and in `/status`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 for a clock set before it.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 in UTC, to the second (`2026-12-01T22:17:27Z`); empty for a time out of range.
pub fn rfc3339<T: TryInto<i64>>(secs: T) -> String {
    secs.try_into()
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Exponential backoff: `first` after the first failure, doubled per failure in a row up to
/// `cap`, plus up to 20 % jitter so that many names or domains do not retry in step.
pub(crate) fn backoff(first: Duration, cap: Duration, failures: u32) -> Duration {
    let base = first
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(cap);
    base + base.mul_f64(rand::random::<f64>() * 0.2)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let (first, cap) = (Duration::from_secs(2), Duration::from_secs(600));
        let within = |d: Duration, base: u64| {
            d >= Duration::from_secs(base) && d <= Duration::from_secs(base).mul_f64(1.2)
        };
        for _ in 0..100 {
            assert!(within(super::backoff(first, cap, 0), 2));
            assert!(within(super::backoff(first, cap, 1), 2));
            assert!(within(super::backoff(first, cap, 2), 4));
            assert!(within(super::backoff(first, cap, 9), 512));
            assert!(within(super::backoff(first, cap, 10), 600));
            assert!(within(super::backoff(first, cap, u32::MAX), 600));
        }
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(super::rfc3339(0u64), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400u64), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_083_199u64), "2026-11-30T23:59:59Z");
    }
}
