//! Per-sender rate limits on HTTPS report POSTs: a token bucket per client address (IPv4 /32,
//! IPv6 /64), in a table of bounded size, so one address cannot fill the store or keep the
//! parser busy however fast it sends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most (about 64 bytes each, 1 MB in all). Past it, a bucket that has
/// refilled (as if never seen) is dropped first, else the one seen longest ago.
pub(crate) const MAX_ADDRESSES: usize = 16_384;

/// A limited address is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What to do with one POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// Over the limit: answer 429 with `Retry-After` (whole seconds, at least 1); `log` for the
    /// first refusal of this address in [`LOG_EVERY`].
    Limited {
        retry_after: u64,
        log: bool,
    },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date: also "last seen".
    at: Instant,
    logged: Option<Instant>,
}

impl Bucket {
    /// The tokens at `now`, at one per `refill`, at most `burst`.
    fn level(&self, now: Instant, burst: f64, refill: Duration) -> f64 {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / refill.as_secs_f64();
        (self.tokens + earned).min(burst)
    }
}

/// The buckets of the addresses seen lately; shared by every report connection.
#[derive(Debug)]
pub(crate) struct Limiter {
    capacity: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(MAX_ADDRESSES)
    }
}

impl Limiter {
    pub(crate) fn new(capacity: usize) -> Self {
        Limiter {
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `peer`'s bucket (`burst` deep, one more per `refill`), or says how
    /// long until one is there.
    pub(crate) fn check(
        &self,
        peer: IpAddr,
        burst: u32,
        refill: Duration,
        now: Instant,
    ) -> Verdict {
        let burst = f64::from(burst.max(1));
        let refill = refill.max(Duration::from_millis(1));
        let key = address_key(peer);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
            make_room(&mut buckets, now, burst, refill);
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            logged: None,
        });
        b.tokens = b.level(now, burst, refill);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Allowed;
        }
        let wait = (1.0 - b.tokens) * refill.as_secs_f64();
        let log = b
            .logged
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
        if log {
            b.logged = Some(now);
        }
        Verdict::Limited {
            retry_after: (wait.ceil() as u64).max(1),
            log,
        }
    }
}

/// Drops every bucket that has refilled (forgetting it changes nothing, unless its address was
/// logged within the minute); if none has, the one seen longest ago.
fn make_room(buckets: &mut HashMap<IpAddr, Bucket>, now: Instant, burst: f64, refill: Duration) {
    let before = buckets.len();
    buckets.retain(|_, b| {
        b.level(now, burst, refill) < burst
            || b.logged
                .is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY)
    });
    if buckets.len() < before {
        return;
    }
    if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k) {
        buckets.remove(&oldest);
    }
}

/// An IPv4 address (IPv4-mapped IPv6 included) or an IPv6 /64, the smallest prefix a site is
/// assigned (RFC 6177 §3): rotating interface identifiers gives a host no second bucket.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SEC: Duration = Duration::from_secs(1);

    impl Limiter {
        /// Addresses tracked now.
        fn len(&self) -> usize {
            self.buckets.lock().unwrap().len()
        }
    }

    #[test]
    fn burst_then_one_per_refill() {
        let l = Limiter::new(10);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.check(a, 3, 10 * SEC, t0), Verdict::Allowed);
        }
        assert_eq!(
            l.check(a, 3, 10 * SEC, t0),
            Verdict::Limited {
                retry_after: 10,
                log: true
            }
        );
        // Logged once a minute, however often refused.
        assert_eq!(
            l.check(a, 3, 10 * SEC, t0 + 4 * SEC),
            Verdict::Limited {
                retry_after: 6,
                log: false
            }
        );
        // Another address has its own bucket.
        assert_eq!(l.check(ip("192.0.2.2"), 3, 10 * SEC, t0), Verdict::Allowed);
        // One token back after 10 s, not two.
        assert_eq!(l.check(a, 3, 10 * SEC, t0 + 10 * SEC), Verdict::Allowed);
        assert!(matches!(
            l.check(a, 3, 10 * SEC, t0 + 10 * SEC),
            Verdict::Limited { .. }
        ));
        assert!(matches!(
            l.check(a, 3, 10 * SEC, t0 + 70 * SEC),
            Verdict::Allowed
        ));
    }

    #[test]
    fn an_ipv6_64_is_one_sender() {
        let l = Limiter::new(10);
        let t0 = Instant::now();
        assert_eq!(l.check(ip("2001:db8:1:2::1"), 1, SEC, t0), Verdict::Allowed);
        assert!(matches!(
            l.check(ip("2001:db8:1:2:ffff::9"), 1, SEC, t0),
            Verdict::Limited { .. }
        ));
        assert_eq!(l.check(ip("2001:db8:1:3::1"), 1, SEC, t0), Verdict::Allowed);
        // IPv4-mapped is the IPv4 address.
        assert_eq!(l.check(ip("192.0.2.7"), 1, SEC, t0), Verdict::Allowed);
        assert!(matches!(
            l.check(ip("::ffff:192.0.2.7"), 1, SEC, t0),
            Verdict::Limited { .. }
        ));
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn memory_is_bounded_and_a_64_cannot_evict_others() {
        let l = Limiter::new(100);
        let t0 = Instant::now();
        let victim = ip("192.0.2.1");
        for _ in 0..2 {
            assert_eq!(l.check(victim, 2, 3600 * SEC, t0), Verdict::Allowed);
        }
        // A million addresses of one /64: one bucket, the victim's stays.
        for i in 0..1_000_000u32 {
            let a = IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
                1,
            ));
            l.check(a, 2, 3600 * SEC, t0 + SEC);
        }
        assert_eq!(l.len(), 2);
        assert!(matches!(
            l.check(victim, 2, 3600 * SEC, t0 + 2 * SEC),
            Verdict::Limited { .. }
        ));
        // Many addresses: the table stays at its capacity.
        for i in 0..10_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.check(a, 2, 3600 * SEC, t0 + 3 * SEC);
        }
        assert_eq!(l.len(), 100);
        // Refilled buckets go first: an hour on, a new address makes room without evicting
        // anyone who still owes.
        let later = t0 + 7200 * SEC;
        let owing = ip("192.0.2.9");
        for _ in 0..3 {
            l.check(owing, 2, 3600 * SEC, later);
        }
        assert!(l.len() <= 100);
        assert!(matches!(
            l.check(owing, 2, 3600 * SEC, later),
            Verdict::Limited { .. }
        ));
    }
}
