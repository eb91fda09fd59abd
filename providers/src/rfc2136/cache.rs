//! What an RFC 2136 provider remembers between reads: per zone, the records at the names it
//! read as of the zone's SOA serial, and which zone holds each name. A zone whose serial has
//! not moved since holds nothing new (RFC 1982 serials change with every update), so a
//! reconcile of an unchanged zone costs one SOA query. A view is read afresh after
//! [`VIEW_MAX_AGE`] anyway, for edits that bypass the serial (a zone file reloaded unchanged in
//! serial, a second primary).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::Changes;

/// How long a zone found for a name is believed: zones are created rarely, and a wrong one
/// only makes an update fail (NOTZONE), after which it is asked again.
pub const ZONE_OF_FOR: Duration = Duration::from_secs(24 * 3600);
/// How long a view is trusted on its serial alone.
pub const VIEW_MAX_AGE: Duration = Duration::from_secs(6 * 3600);
/// How long a serial asked ahead of a zone's read (all zones' serials in one exchange) stands
/// for that read. Asked before the read, it is as safe as one asked right before it: a change
/// after it moves the serial past it, and the next reconcile reads the zone. Older, the zone
/// asks again; a reconcile of unchanged zones goes through a million in less.
pub const SERIAL_FRESH: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Cache {
    views: Mutex<HashMap<String, View>>,
    zone_of: Mutex<HashMap<String, (String, Instant)>>,
    /// What the last zone transfer of each zone showed.
    transfers: Mutex<HashMap<String, TransferSize>>,
    /// Serials asked ahead of the zones' reads, each for one read.
    asked: Mutex<HashMap<String, (u32, Instant)>>,
}

/// What is known of a zone's size by transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferSize {
    Unknown,
    /// The server will not give it to us: queries from then on.
    Declined,
    /// Stopped after this many records.
    LargerThan(usize),
    /// Transferred whole: this many records.
    Known(usize),
}

/// The records at some names of one zone, as of `serial`.
struct View {
    serial: u32,
    read_at: Instant,
    /// Every name read, with what is there (empty: nothing).
    at: HashMap<String, Vec<Record>>,
}

/// What the cache knows for one read.
pub enum Cached {
    /// Everything asked, current at this serial.
    All(Vec<Record>),
    /// Current at this serial except these names, never read.
    Missing(Vec<String>),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// What is known of `names` (lowercase) in `zone` at `serial`; a moved serial forgets all.
    pub fn lookup(&self, zone: &str, serial: u32, names: &[String]) -> Cached {
        let mut views = lock(&self.views);
        let current = |v: &&View| v.serial == serial && v.read_at.elapsed() < VIEW_MAX_AGE;
        let Some(view) = views.get(zone).filter(current) else {
            views.remove(zone);
            return Cached::Missing(names.to_vec());
        };
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !view.at.contains_key(*n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Cached::Missing(missing);
        }
        Cached::All(
            names
                .iter()
                .flat_map(|n| view.at[n].iter().cloned())
                .collect(),
        )
    }

    /// Keeps what a read of `names` found in `zone`, read at `serial` (asked before the read:
    /// a change during it moves the serial past the one kept, so it is read again next time).
    pub fn store(&self, zone: &str, serial: u32, names: &[String], found: &[Record]) {
        let mut views = lock(&self.views);
        let view = views.entry(zone.to_owned()).or_insert_with(|| View {
            serial,
            read_at: Instant::now(),
            at: HashMap::new(),
        });
        if view.serial != serial {
            view.serial = serial;
            view.read_at = Instant::now();
            view.at.clear();
        }
        for n in names {
            view.at.insert(n.clone(), Vec::new());
        }
        for r in found {
            if let Some(v) = view.at.get_mut(&r.name) {
                v.push(r.clone());
            }
        }
    }

    pub fn serial(&self, zone: &str) -> Option<u32> {
        lock(&self.views).get(zone).map(|v| v.serial)
    }

    /// A serial asked just now, ahead of the zone's read.
    pub fn asked_serial(&self, zone: &str, serial: u32) {
        lock(&self.asked).insert(zone.to_owned(), (serial, Instant::now()));
    }

    /// The serial asked ahead for this read of `zone`, if fresh; once: a second read (after
    /// our own write, a conflict) asks again.
    pub fn take_serial(&self, zone: &str) -> Option<u32> {
        let mut asked = lock(&self.asked);
        let (serial, at) = asked.remove(zone)?;
        if asked.is_empty() {
            // Gives back the table a million zones filled.
            asked.shrink_to_fit();
        }
        (at.elapsed() < SERIAL_FRESH).then_some(serial)
    }

    /// After our `messages` updates moved the serial from `before` to `after`: if by exactly
    /// that many (no one else wrote in between; BIND and Knot count one per UPDATE, RFC 1982
    /// arithmetic), the view follows our changes at the names it holds; otherwise it is
    /// forgotten and the next read asks again.
    pub fn wrote(&self, zone: &str, before: u32, after: u32, messages: usize, changes: &Changes) {
        let mut views = lock(&self.views);
        let ours = after == before.wrapping_add(messages as u32);
        let Some(view) = views.get_mut(zone).filter(|v| ours && v.serial == before) else {
            views.remove(zone);
            return;
        };
        for d in &changes.domains {
            for r in &d.delete {
                if let Some(v) = view.at.get_mut(&r.name) {
                    v.retain(|o| !o.same_data(r));
                }
            }
            for r in &d.add {
                // A name never read may hold records we do not know: it stays unknown.
                if let Some(v) = view.at.get_mut(&r.name) {
                    v.push(r.clone());
                }
            }
        }
        view.serial = after;
    }

    pub fn forget(&self, zone: &str) {
        lock(&self.views).remove(zone);
    }

    pub fn zone_of(&self, name: &str) -> Option<String> {
        let found = lock(&self.zone_of);
        found
            .get(name)
            .filter(|(_, at)| at.elapsed() < ZONE_OF_FOR)
            .map(|(z, _)| z.clone())
    }

    pub fn found_zone(&self, name: &str, zone: &str) {
        lock(&self.zone_of).insert(name.to_owned(), (zone.to_owned(), Instant::now()));
    }

    /// Forgets which zone holds the names of `zone`, when the server says it is not theirs.
    pub fn forget_zones(&self, zone: &str) {
        lock(&self.zone_of).retain(|_, (z, _)| z != zone);
    }

    pub fn transfer_size(&self, zone: &str) -> TransferSize {
        lock(&self.transfers)
            .get(zone)
            .copied()
            .unwrap_or(TransferSize::Unknown)
    }

    pub fn transferred(&self, zone: &str, size: TransferSize) {
        lock(&self.transfers).insert(zone.to_owned(), size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainChange;

    #[test]
    fn a_serial_asked_ahead_serves_one_read() {
        let c = Cache::default();
        c.asked_serial("a.example.", 7);
        assert_eq!(c.take_serial("a.example."), Some(7));
        assert_eq!(c.take_serial("a.example."), None);
        assert_eq!(c.take_serial("b.example."), None);
    }

    #[test]
    fn a_moved_serial_forgets_and_only_our_own_writes_are_followed() {
        let c = Cache::default();
        let names = vec!["_mta-sts.a.example.".to_owned()];
        let old = Record::txt(&names[0], 300, "v=STSv1; id=1;");
        c.store("example.", 7, &names, std::slice::from_ref(&old));
        assert!(
            matches!(c.lookup("example.", 7, &names), Cached::All(r) if r == vec![old.clone()])
        );
        let new = Record::txt(&names[0], 300, "v=STSv1; id=2;");
        let changes = Changes {
            domains: vec![DomainChange {
                domain: "a.example".into(),
                expect: vec![],
                delete: vec![old.clone()],
                add: vec![new.clone()],
            }],
        };
        // One message moved the serial by one: ours alone.
        let mut with_unread = changes.clone();
        let unread = "_smtp._tls.a.example.".to_owned();
        with_unread.domains[0].add.push(Record::txt(
            &unread,
            300,
            "v=TLSRPTv1; rua=mailto:t@a.example;",
        ));
        c.wrote("example.", 7, 8, 1, &with_unread);
        assert!(
            matches!(c.lookup("example.", 8, &names), Cached::All(r) if r == vec![new.clone()])
        );
        // A name never read may hold records of others: still unknown after our write there.
        assert!(matches!(
            c.lookup("example.", 8, std::slice::from_ref(&unread)),
            Cached::Missing(m) if m == vec![unread.clone()]
        ));
        // Someone else wrote too: forgotten.
        c.wrote("example.", 8, 10, 1, &changes);
        assert!(matches!(c.lookup("example.", 10, &names), Cached::Missing(m) if m == names));
        c.store("example.", 10, &names, &[]);
        assert!(matches!(
            c.lookup("example.", 11, &names),
            Cached::Missing(_)
        ));
    }
}
