//! Time: the clock the daemon reads, and how it shows instants to people and in `/status`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 for a clock set before it.
pub fn unix_now() -> u64 {
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

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(super::rfc3339(0u64), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400u64), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_083_199u64), "2026-11-30T23:59:59Z");
    }
}
