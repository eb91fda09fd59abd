//! Who holds the connections of a set of listeners (SPEC "Limits"): a global cap, a cap per
//! client address, and, at the global cap, the connection that made no progress for longest
//! closed to make room, so that whatever one peer holds open a new sender is answered within
//! the handshake timeout.
//!
//! Progress is what a sender came for: a request answered, or request body bytes arriving at
//! least at `[server] min_body_rate`. Moving bytes is not progress: a body dripped a byte at a
//! time, HTTP/2 PINGs or SETTINGS, a handshake never finished. A connection's last progress is
//! its opening until it makes some, so among those that made none the oldest goes first; one
//! younger than [`MIN_AGE`] is never closed, so a flood of new connections cannot evict a sender
//! before its handshake is done.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A connection younger than this is never evicted.
pub(crate) const MIN_AGE: Duration = Duration::from_millis(500);
/// At the cap with no connection old enough, how often to look again.
const RETRY: Duration = Duration::from_millis(100);

/// The connections of one group of listeners (the public ones share one; admin has its own).
#[derive(Debug)]
pub(crate) struct Conns {
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

/// One connection's shared record: its last progress, its requests, and whether to close.
#[derive(Debug)]
pub(crate) struct Slot {
    pub opened: Instant,
    /// The client's address, as accepted.
    pub peer: IpAddr,
    /// Milliseconds from `opened` to the last progress (0: none yet).
    progress_ms: AtomicU64,
    /// Requests answered on hyper's paths (the lean HTTP/1.1 server counts its own).
    requests: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
    /// Told once the connection has served its `max_requests_per_connection`.
    retire: Notify,
}

impl Slot {
    fn new(peer: IpAddr) -> Slot {
        Slot {
            opened: Instant::now(),
            peer,
            progress_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            retire: Notify::new(),
        }
    }

    /// Records progress at `now`: a request answered, or body bytes at the minimum rate.
    pub(crate) fn progress(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.opened).as_millis() as u64;
        self.progress_ms.store(ms, Ordering::Relaxed);
    }

    fn last_progress(&self) -> Instant {
        self.opened + Duration::from_millis(self.progress_ms.load(Ordering::Relaxed))
    }

    /// Counts one request answered on hyper's paths; true when it is the `max`th, after which
    /// the connection is to close ([`Slot::retired`] resolves).
    pub(crate) fn request(&self, max: u64) -> bool {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n == max {
            // Stored if the connection is not waiting yet.
            self.retire.notify_one();
        }
        n >= max
    }

    /// Resolves once the connection served its most requests.
    pub(crate) async fn retired(&self) {
        self.retire.notified().await
    }

    /// Resolves once this connection was chosen to make room.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await
    }
}

/// A refused connection: its address already holds `per_ip`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AddressFull;

/// An admitted connection's place in its address's count; the global permit comes after.
#[derive(Debug)]
pub(crate) struct Admission {
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
    pub(crate) fn new(max: usize, per_ip: usize) -> Arc<Conns> {
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
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admission, AddressFull> {
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
            slot: Arc::new(Slot::new(peer)),
            permit: None,
        })
    }

    /// Waits for a global place for `a`, closing the one that made no progress for longest
    /// while at the cap.
    /// Returns how many were evicted for it.
    pub(crate) async fn place(self: &Arc<Self>, a: &mut Admission) -> usize {
        let mut evicted = 0;
        let permit = loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                break p;
            }
            if self.evict_stalest() {
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

    /// Asks the connection whose last progress is oldest (and at least [`MIN_AGE`] old) to
    /// close; false if none.
    fn evict_stalest(&self) -> bool {
        let now = Instant::now();
        let inner = self.lock();
        let stalest = inner
            .open
            .values()
            .filter(|s| !s.evicted.load(Ordering::Relaxed))
            .filter(|s| now.saturating_duration_since(s.opened) >= MIN_AGE)
            .map(|s| (s.last_progress(), s))
            .min_by_key(|(at, _)| *at);
        match stalest {
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

    /// A connection holding its place while another waits for one, closed when evicted.
    fn hold(c: &Arc<Conns>, src: &str) -> (Arc<Slot>, tokio::task::JoinHandle<Admission>) {
        let c = c.clone();
        let mut a = c.admit(ip(src)).unwrap();
        let slot = a.slot.clone();
        let task = tokio::spawn(async move {
            c.place(&mut a).await;
            a
        });
        (slot, task)
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_one_without_progress_longest_is_evicted() {
        let c = Conns::new(3, 10);
        let (old, old_task) = hold(&c, "127.0.0.2");
        let old = (old, old_task.await.unwrap());
        tokio::time::advance(Duration::from_secs(5)).await;
        let (busy, t) = hold(&c, "127.0.0.2");
        let busy = (busy, t.await.unwrap());
        let (mid, t) = hold(&c, "127.0.0.2");
        let mid = (mid, t.await.unwrap());
        tokio::time::advance(Duration::from_secs(1)).await;
        // `old` answered a request 4 s after opening (2 s ago), `busy` just now, `mid` none
        // (opened 1 s ago).
        old.0.progress(old.0.opened + Duration::from_secs(4));
        busy.0.progress(Instant::now());
        // Moving bytes is no progress: nothing here records it, whatever `mid` sends.
        let evicts = |(slot, a): (Arc<Slot>, Admission)| {
            tokio::spawn(async move {
                slot.evicted().await;
                drop(a);
            })
        };
        let mid_closed = evicts(mid);
        let old_closer = evicts(old);
        let (_, t) = hold(&c, "127.0.0.3");
        let fourth = t.await.unwrap();
        // `old` made progress 2 s ago; `mid` none since opening 1 s ago: `old` goes first.
        old_closer.await.unwrap();
        assert!(!mid_closed.is_finished());
        assert!(!busy.0.evicted.load(Ordering::Relaxed));

        // Next `mid` (no progress since it opened), not the newcomer (none either, younger),
        // nor `busy`.
        let fourth_slot = fourth.slot.clone();
        let (_, t) = hold(&c, "127.0.0.4");
        let fifth = t.await.unwrap();
        mid_closed.await.unwrap();
        assert!(!fourth_slot.evicted.load(Ordering::Relaxed));
        drop((busy, fourth, fifth));
    }

    #[tokio::test(start_paused = true)]
    async fn a_young_connection_is_not_evicted() {
        let c = Conns::new(1, 10);
        let (young, t) = hold(&c, "127.0.0.2");
        let a = t.await.unwrap();
        let closer = tokio::spawn(async move {
            a.slot.evicted().await;
            drop(a);
        });
        let (_, waiting) = hold(&c, "127.0.0.3");
        tokio::time::sleep(MIN_AGE / 2).await;
        assert!(!waiting.is_finished());
        assert!(!young.evicted.load(Ordering::Relaxed));
        // Old enough (and without progress): it makes room.
        let second = waiting.await.unwrap();
        closer.await.unwrap();
        drop(second);
    }

    #[test]
    fn the_maxth_request_retires_the_connection() {
        let s = Slot::new(ip("192.0.2.1"));
        assert!(!s.request(3));
        assert!(!s.request(3));
        assert!(s.request(3));
        assert!(s.request(3));
    }
}
