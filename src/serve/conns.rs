//! Who holds the connections of a set of listeners (SPEC "Limits"): a global cap, a cap per
//! client address, and, at the global cap, the quietest connection closed to make room, so
//! that whatever one peer holds open a new sender is answered within the handshake timeout.
//!
//! A connection is quiet from the last byte it moved (see [`super::idle::Idle`]): idle
//! keep-alive, a handshake never begun, a stalled client. One that moved a byte within
//! [`MIN_QUIET`] is not closed: at a cap reached by real traffic, requests in flight finish.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A connection that moved a byte more recently than this is never evicted.
pub const MIN_QUIET: Duration = Duration::from_millis(250);
/// At the cap with no connection quiet enough, how often to look again.
const RETRY: Duration = Duration::from_millis(100);

/// The connections of one group of listeners (the public ones share one; admin has its own).
#[derive(Debug)]
pub struct Conns {
    permits: Arc<Semaphore>,
    per_ip: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, Arc<Slot>>,
    by_ip: HashMap<IpAddr, usize>,
}

/// One connection's shared record: when it last moved a byte, and whether to close.
#[derive(Debug)]
pub struct Slot {
    opened: Instant,
    /// Milliseconds from `opened` to the last byte moved.
    active_ms: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            opened: Instant::now(),
            active_ms: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    /// Records that a byte moved now; called by the transport on every completed read/write.
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.opened).as_millis() as u64;
        self.active_ms.store(ms, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.opened + Duration::from_millis(self.active_ms.load(Ordering::Relaxed))
    }

    /// Resolves once this connection was chosen to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

/// A refused connection: its address already holds `per_ip`.
#[derive(Debug, PartialEq, Eq)]
pub struct AddressFull;

/// An admitted connection's place in its address's count; the global permit comes after.
#[derive(Debug)]
pub struct Admission {
    conns: Arc<Conns>,
    key: IpAddr,
    id: Option<u64>,
    pub slot: Arc<Slot>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut inner = self.conns.lock();
        if let Some(id) = self.id {
            inner.open.remove(&id);
        }
        if let Some(n) = inner.by_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                inner.by_ip.remove(&self.key);
            }
        }
        drop(inner);
        // Released last: the listener waiting for it finds the books already updated.
        self.permit.take();
    }
}

impl Conns {
    pub fn new(max: usize, per_ip: usize) -> Arc<Conns> {
        Arc::new(Conns {
            permits: Arc::new(Semaphore::new(max)),
            per_ip,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `peer` against its address, or refuses it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admission, AddressFull> {
        let key = address_key(peer);
        let mut inner = self.lock();
        let n = inner.by_ip.entry(key).or_insert(0);
        if *n >= self.per_ip {
            return Err(AddressFull);
        }
        *n += 1;
        Ok(Admission {
            conns: self.clone(),
            key,
            id: None,
            slot: Arc::new(Slot::new()),
            permit: None,
        })
    }

    /// Waits for a global place for `a`, closing the quietest connection while at the cap.
    /// Returns how many were evicted for it.
    pub async fn place(self: &Arc<Self>, a: &mut Admission) -> usize {
        let mut evicted = 0;
        let permit = loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                break p;
            }
            if self.evict_quietest() {
                evicted += 1;
            }
            // The evicted connection gives its permit back as its task ends.
            if let Ok(Ok(p)) =
                tokio::time::timeout(RETRY, self.permits.clone().acquire_owned()).await
            {
                break p;
            }
        };
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.open.insert(id, a.slot.clone());
        drop(inner);
        a.id = Some(id);
        a.permit = Some(permit);
        evicted
    }

    /// Asks the connection quiet longest (and at least [`MIN_QUIET`]) to close; false if none.
    fn evict_quietest(&self) -> bool {
        let now = Instant::now();
        let inner = self.lock();
        let quietest = inner
            .open
            .values()
            .filter(|s| !s.evicted.load(Ordering::Relaxed))
            .map(|s| (s.last_active(), s))
            .filter(|(at, _)| now.saturating_duration_since(*at) >= MIN_QUIET)
            .min_by_key(|(at, _)| *at);
        match quietest {
            Some((_, slot)) => {
                slot.evicted.store(true, Ordering::Relaxed);
                // Stored if the connection is not waiting yet: it closes when it next looks.
                slot.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The unit one address cap counts: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6
/// /64, the smallest prefix a site is assigned (RFC 6177 §3), so one host cannot step around
/// the cap by rotating its interface identifier.
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

    #[test]
    fn addresses_are_counted_per_ipv4_and_ipv6_slash_64() {
        assert_eq!(address_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn per_address_cap_and_release() {
        let c = Conns::new(10, 2);
        let a1 = c.admit(ip("127.0.0.2")).unwrap();
        let _a2 = c.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(c.admit(ip("127.0.0.2")).unwrap_err(), AddressFull);
        // Another address is not affected.
        let _b = c.admit(ip("127.0.0.3")).unwrap();
        drop(a1);
        assert!(c.admit(ip("127.0.0.2")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_quietest_is_evicted_never_a_busy_one() {
        let c = Conns::new(2, 10);
        let mut old = c.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(c.place(&mut old).await, 0);
        tokio::time::advance(Duration::from_secs(5)).await;
        let mut newer = c.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(c.place(&mut newer).await, 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        // `old` has been quiet 6 s, `newer` 1 s: `old` goes.
        let old_slot = old.slot.clone();
        let newer_slot = newer.slot.clone();
        let closer = tokio::spawn(async move {
            old_slot.evicted().await;
            drop(old);
        });
        let mut third = c.admit(ip("127.0.0.3")).unwrap();
        assert_eq!(c.place(&mut third).await, 1);
        closer.await.unwrap();
        assert!(!newer_slot.evicted.load(Ordering::Relaxed));

        // Both places taken by connections that just moved a byte: the fourth waits.
        newer_slot.touch(Instant::now());
        tokio::time::advance(Duration::from_millis(10)).await;
        third.slot.touch(Instant::now());
        let c2 = c.clone();
        let fourth = tokio::spawn(async move {
            let mut a = c2.admit(ip("127.0.0.4")).unwrap();
            c2.place(&mut a).await;
            a
        });
        tokio::time::sleep(MIN_QUIET / 2).await;
        assert!(!fourth.is_finished());
        assert!(!newer_slot.evicted.load(Ordering::Relaxed));
        // Once quiet long enough, the one quiet longest (`newer`, touched first) goes.
        let closer = tokio::spawn(async move {
            newer_slot.evicted().await;
            drop(newer);
        });
        let a = fourth.await.unwrap();
        closer.await.unwrap();
        assert!(!third.slot.evicted.load(Ordering::Relaxed));
        drop((a, third));
    }
}
