//! The id history: every policy each domain has served (id, body, first and last served), and
//! where removed domains are in their retirement (RFC 8461 §8.3). Built by replaying the
//! events of the store (`store`); the same event twice (two replicas) changes nothing.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::hash_table::{self, HashTable};
use serde::{Deserialize, Serialize};

/// One event of the history (a row of the store, a line of the old journal). Names and ids
/// are shared with the config they came from: a
/// start records a million of them at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    /// A policy body, written once per id.
    Policy { id: Arc<str>, body: String },
    /// `domain` is served `id` from `at` on (the policy before it, until `at`).
    Served {
        domain: Arc<str>,
        id: Arc<str>,
        at: u64,
    },
    /// `domain` is no longer in the config since `at`; `dns` is how it was published.
    Missing {
        domain: Arc<str>,
        at: u64,
        dns: Box<SavedDns>,
    },
    /// `domain` is in the config again: any retirement is cancelled.
    Present { domain: Arc<str>, at: u64 },
    /// `domain` is served `mode: none` since `at`; its records go at `withdraw_at`.
    Retired {
        domain: Arc<str>,
        at: u64,
        withdraw_at: u64,
    },
    /// `domain`'s retirement counts from `at` instead: it was recorded at a time still ahead
    /// of the clock (a clock that ran ahead and was corrected), which would hold it that
    /// much longer.
    Rescheduled {
        domain: Arc<str>,
        at: u64,
        withdraw_at: u64,
    },
    /// `domain`'s records were withdrawn; it is no longer served.
    Withdrawn { domain: Arc<str>, at: u64 },
    /// One served policy as a whole, as the old journal's compaction wrote it. Boxed: rare,
    /// and the largest, it would make every event (a million at a start) a third larger.
    Entry(Box<Compacted>),
}

/// An [`Event::Entry`]; its JSON is that of a struct variant with these fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Compacted {
    pub domain: Arc<str>,
    pub id: Arc<str>,
    pub first: u64,
    pub last: Option<u64>,
}

/// How far behind the history's latest time a retirement may be dated and still be
/// trusted: replicas' clocks differ by seconds, and events of one evaluation are written in
/// any order.
const SLACK: u64 = 3600;

impl Event {
    /// When it happened by the clock of whoever recorded it (0: no time).
    fn time(&self) -> u64 {
        match self {
            Event::Policy { .. } => 0,
            Event::Served { at, .. }
            | Event::Missing { at, .. }
            | Event::Present { at, .. }
            | Event::Retired { at, .. }
            | Event::Rescheduled { at, .. }
            | Event::Withdrawn { at, .. } => *at,
            Event::Entry(e) => e.last.unwrap_or(e.first).max(e.first),
        }
    }
}

impl Event {
    /// Whom it is about, as the store indexes it: the domain, or `policy:<id>` for a body
    /// (a domain name never holds a colon).
    pub(crate) fn subject(&self) -> String {
        match self {
            Event::Policy { id, .. } => format!("policy:{id}"),
            Event::Served { domain, .. }
            | Event::Missing { domain, .. }
            | Event::Present { domain, .. }
            | Event::Retired { domain, .. }
            | Event::Rescheduled { domain, .. }
            | Event::Withdrawn { domain, .. } => domain.to_string(),
            Event::Entry(e) => e.domain.to_string(),
        }
    }
}

/// A removed domain's `[dns]` settings, kept so that it can still be published and withdrawn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedDns {
    pub provider: Option<String>,
    pub zone: Option<String>,
    pub target: Option<String>,
    pub ttl: u32,
    pub tlsrpt: Vec<String>,
    /// The `[delegation] zone` it was published in, when delegated (RFC 8461 §8.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated: Option<String>,
}

/// One policy a domain served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: Arc<str>,
    pub first: u64,
    /// `None` while it is still served.
    pub last: Option<u64>,
}

/// Kept per domain for every domain ever served, so small: its one policy in place (the
/// common case), more in a slice of their exact length, the rare retirement behind a box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DomainHistory {
    served: Policies,
    gone: Option<Box<Gone>>,
}

/// A domain's policies, oldest first: one in place, else a slice of their exact length (never
/// one, so that equal histories compare equal).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Policies {
    One(Entry),
    Many(Box<[Entry]>),
}

impl Default for Policies {
    fn default() -> Self {
        Policies::Many(Box::default())
    }
}

impl Policies {
    fn as_slice(&self) -> &[Entry] {
        match self {
            Policies::One(e) => std::slice::from_ref(e),
            Policies::Many(all) => all,
        }
    }

    fn last_mut(&mut self) -> Option<&mut Entry> {
        match self {
            Policies::One(e) => Some(e),
            Policies::Many(all) => all.last_mut(),
        }
    }

    fn push(&mut self, e: Entry) {
        *self = match std::mem::take(self) {
            Policies::Many(all) if all.is_empty() => Policies::One(e),
            Policies::One(first) => Policies::Many(Box::new([first, e])),
            Policies::Many(all) => {
                // Allocated at its exact length: a Vec's push would take room for four and
                // the shrink to a box leave the rest as a hole no later allocation fits.
                let mut more = Vec::with_capacity(all.len() + 1);
                more.extend(all.into_vec());
                more.push(e);
                Policies::Many(more.into_boxed_slice())
            }
        };
    }
}

/// Where a removed domain is in its retirement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Gone {
    missing: Option<(u64, SavedDns)>,
    /// Since, withdraw at.
    retired: Option<(u64, u64)>,
    /// The latest time the history held when `retired` was recorded, if over [`SLACK`] later
    /// than its since: it was dated by a clock running behind (S5 of the hardening issue).
    behind: Option<u64>,
    withdrawn: Option<u64>,
}

impl DomainHistory {
    /// Every policy it served, oldest first.
    pub(crate) fn served(&self) -> &[Entry] {
        self.served.as_slice()
    }

    pub(crate) fn current(&self) -> Option<&Entry> {
        self.served().last().filter(|e| e.last.is_none())
    }

    /// Since when it is missing from the config, and how it was published.
    pub(crate) fn missing(&self) -> Option<&(u64, SavedDns)> {
        self.gone.as_ref()?.missing.as_ref()
    }

    /// Since when it is retiring, and when its records are withdrawn.
    pub(crate) fn retired(&self) -> Option<(u64, u64)> {
        self.gone.as_ref()?.retired
    }

    pub(crate) fn withdrawn(&self) -> Option<u64> {
        self.gone.as_ref()?.withdrawn
    }

    /// When the retirement was dated behind the history (its clock ran behind), the latest
    /// time the history held then: before it, the retirement's times cannot be trusted.
    pub(crate) fn retired_behind(&self) -> Option<u64> {
        self.gone.as_ref()?.behind
    }

    fn push(&mut self, e: Entry) {
        self.served.push(e);
    }

    fn gone(&mut self) -> &mut Gone {
        self.gone.get_or_insert_default()
    }

    /// Back in the config: no retirement left.
    fn present(&mut self) {
        self.gone = None;
    }
}

/// The history in memory: a million domains' take about 75 bytes each (a map keyed by name
/// took 86 for its table alone at that size, half of it empty).
#[derive(Debug, Default)]
pub(crate) struct History {
    bodies: HashMap<Arc<str>, Arc<str>>,
    /// Every domain known, in the order first recorded (never removed).
    domains: Vec<(Arc<str>, DomainHistory)>,
    /// Positions in `domains`, hashed by name.
    index: HashTable<u32>,
    hasher: RandomState,
    /// The latest time of any event applied: a clock that reads earlier ran behind.
    latest: u64,
}

impl History {
    /// An empty history, filled by [`Self::apply`].
    pub(crate) fn in_memory() -> History {
        History::default()
    }

    /// Applies events in order; applying one again changes nothing.
    pub(crate) fn record(&mut self, events: &[Event]) {
        for e in events {
            self.apply(e);
        }
    }

    /// Events that rebuild exactly this history.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .bodies
            .iter()
            .map(|(id, body)| Event::Policy {
                id: id.clone(),
                body: body.to_string(),
            })
            .collect();
        let mut domains: Vec<&(Arc<str>, DomainHistory)> = self.domains.iter().collect();
        domains.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, d) in domains {
            for e in d.served() {
                out.push(Event::Entry(Box::new(Compacted {
                    domain: name.clone(),
                    id: e.id.clone(),
                    first: e.first,
                    last: e.last,
                })));
            }
            if let Some((at, dns)) = d.missing() {
                out.push(Event::Missing {
                    domain: name.clone(),
                    at: *at,
                    dns: Box::new(dns.clone()),
                });
            }
            if let Some((at, withdraw_at)) = d.retired() {
                out.push(Event::Retired {
                    domain: name.clone(),
                    at,
                    withdraw_at,
                });
            }
            if let Some(at) = d.withdrawn() {
                out.push(Event::Withdrawn {
                    domain: name.clone(),
                    at,
                });
            }
        }
        out
    }

    pub(crate) fn apply(&mut self, e: &Event) {
        let latest = self.latest;
        self.latest = latest.max(e.time());
        match e {
            Event::Policy { id, body } => {
                if !self.bodies.contains_key(&**id) {
                    self.bodies.insert(id.clone(), body.as_str().into());
                }
            }
            Event::Served { domain, id, at } => {
                let id = self.intern(id);
                let d = self.slot(domain);
                if d.current().is_some_and(|c| c.id == id) {
                    return;
                }
                if let Some(c) = d.served.last_mut() {
                    c.last.get_or_insert(*at);
                }
                d.push(Entry {
                    id,
                    first: *at,
                    last: None,
                });
            }
            Event::Entry(e) => {
                let id = self.intern(&e.id);
                self.slot(&e.domain).push(Entry {
                    id,
                    first: e.first,
                    last: e.last,
                });
            }
            Event::Missing { domain, at, dns } => {
                let d = self.slot(domain);
                if d.missing().is_none() && d.withdrawn().is_none() {
                    d.gone().missing = Some((*at, (**dns).clone()));
                }
            }
            Event::Present { domain, .. } => {
                if let Some(d) = self.domain_mut(domain) {
                    d.present();
                }
            }
            Event::Retired {
                domain,
                at,
                withdraw_at,
            } => {
                if let Some(d) = self.domain_mut(domain) {
                    if d.retired().is_none() && d.missing().is_some() {
                        d.gone().retired = Some((*at, *withdraw_at));
                        d.gone().behind = (latest > at.saturating_add(SLACK)).then_some(latest);
                    }
                }
            }
            Event::Rescheduled {
                domain,
                at,
                withdraw_at,
            } => {
                if let Some(d) = self.domain_mut(domain) {
                    if d.retired().is_some() && d.withdrawn().is_none() {
                        d.gone().retired = Some((*at, *withdraw_at));
                        d.gone().behind = (latest > at.saturating_add(SLACK)).then_some(latest);
                    }
                }
            }
            Event::Withdrawn { domain, at } => {
                if let Some(d) = self.domain_mut(domain) {
                    if d.withdrawn().is_none() && d.missing().is_some() {
                        d.gone().withdrawn = Some(*at);
                        if let Some(c) = d.served.last_mut() {
                            c.last.get_or_insert(*at);
                        }
                    }
                }
            }
        }
    }

    /// One allocation per distinct id, however many domains serve it.
    fn intern(&mut self, id: &Arc<str>) -> Arc<str> {
        match self.bodies.get_key_value(&**id) {
            Some((k, _)) => k.clone(),
            None => id.clone(),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        let h = self.hasher.hash_one(name);
        self.index
            .find(h, |&i| &*self.domains[i as usize].0 == name)
            .map(|&i| i as usize)
    }

    pub(crate) fn domain(&self, name: &str) -> Option<&DomainHistory> {
        self.position(name).map(|i| &self.domains[i].1)
    }

    fn domain_mut(&mut self, name: &str) -> Option<&mut DomainHistory> {
        self.position(name).map(|i| &mut self.domains[i].1)
    }

    /// The domain's history, added empty if it has none yet.
    fn slot(&mut self, name: &Arc<str>) -> &mut DomainHistory {
        let History {
            domains,
            index,
            hasher,
            ..
        } = self;
        let h = hasher.hash_one(&**name);
        let at = match index.entry(
            h,
            |&i| domains[i as usize].0 == *name,
            |&i| hasher.hash_one(&*domains[i as usize].0),
        ) {
            hash_table::Entry::Occupied(o) => *o.get() as usize,
            hash_table::Entry::Vacant(v) => {
                v.insert(domains.len() as u32);
                domains.push((name.clone(), DomainHistory::default()));
                domains.len() - 1
            }
        };
        &mut domains[at].1
    }

    /// How many domains the history knows (served, retiring or withdrawn).
    pub(crate) fn len(&self) -> usize {
        self.domains.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Every domain, in the order first recorded.
    pub(crate) fn domains(&self) -> impl Iterator<Item = (&str, &DomainHistory)> {
        self.domains.iter().map(|(k, v)| (&**k, v))
    }

    pub(crate) fn body(&self, id: &str) -> Option<&str> {
        self.bodies.get(id).map(|b| &**b)
    }

    pub(crate) fn has_body(&self, id: &str) -> bool {
        self.bodies.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(d: &str, id: &str, at: u64) -> Event {
        Event::Served {
            domain: d.into(),
            id: id.into(),
            at,
        }
    }

    #[test]
    fn replay_is_idempotent_and_closes_the_previous_entry() {
        let mut h = History::in_memory();
        // Two replicas record the same changes, each a little after the other.
        for e in [
            served("a.example", "x", 100),
            served("a.example", "x", 101),
            served("a.example", "y", 200),
            served("a.example", "y", 201),
        ] {
            h.record(&[e]);
        }
        let d = h.domain("a.example").unwrap();
        let got: Vec<_> = d
            .served()
            .iter()
            .map(|e| (&*e.id, e.first, e.last))
            .collect();
        assert_eq!(got, vec![("x", 100, Some(200)), ("y", 200, None)]);
    }

    #[test]
    fn snapshot_rebuilds_the_same_history() {
        let mut h = History::in_memory();
        h.record(&[
            Event::Policy {
                id: "x".into(),
                body: "b".into(),
            },
            served("a.example", "x", 100),
            served("a.example", "y", 150),
            Event::Missing {
                domain: "a.example".into(),
                at: 200,
                dns: Box::default(),
            },
            Event::Retired {
                domain: "a.example".into(),
                at: 260,
                withdraw_at: 900,
            },
            served("a.example", "z", 260),
            Event::Withdrawn {
                domain: "a.example".into(),
                at: 900,
            },
        ]);
        let mut again = History::in_memory();
        again.record(&h.snapshot());
        assert_eq!(again.domain("a.example"), h.domain("a.example"));
        assert_eq!(again.body("x"), Some("b"));
    }

    fn entries(h: &History, name: &str) -> Vec<(String, u64, Option<u64>)> {
        h.domain(name)
            .map(|d| {
                d.served()
                    .iter()
                    .map(|e| (e.id.to_string(), e.first, e.last))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_domain_keeps_one_policy_in_place_and_more_at_their_exact_length() {
        // Kept for every domain ever served: a million of them.
        assert!(std::mem::size_of::<DomainHistory>() <= 48);
        let mut h = History::in_memory();
        h.record(&[Event::Missing {
            domain: "a.example".into(),
            at: 50,
            dns: Box::default(),
        }]);
        assert_eq!(entries(&h, "a.example"), []);
        assert!(h.domain("a.example").unwrap().current().is_none());
        h.record(&[served("a.example", "x", 100)]);
        assert_eq!(entries(&h, "a.example"), [("x".into(), 100, None)]);
        h.record(&[served("a.example", "y", 200), served("a.example", "x", 300)]);
        assert_eq!(
            entries(&h, "a.example"),
            [
                ("x".into(), 100, Some(200)),
                ("y".into(), 200, Some(300)),
                ("x".into(), 300, None)
            ]
        );
        assert_eq!(&*h.domain("a.example").unwrap().current().unwrap().id, "x");
        // Equal histories compare equal however they were grown.
        let mut again = History::in_memory();
        again.record(&h.snapshot());
        assert_eq!(again.domain("a.example"), h.domain("a.example"));
    }

    #[test]
    fn a_domain_removed_and_added_again_keeps_its_policies() {
        let mut h = History::in_memory();
        h.record(&[
            served("a.example", "x", 100),
            served("b.example", "x", 100),
            Event::Missing {
                domain: "a.example".into(),
                at: 200,
                dns: Box::default(),
            },
            Event::Present {
                domain: "a.example".into(),
                at: 300,
            },
            // The same id again, as the config serves it again: nothing new.
            served("a.example", "x", 300),
        ]);
        let a = h.domain("a.example").unwrap();
        assert!(a.missing().is_none());
        assert_eq!(entries(&h, "a.example"), [("x".into(), 100, None)]);
        assert_eq!(h.len(), 2);
        assert!(h.domain("c.example").is_none());
    }

    /// Many domains' events interleaved answer for each domain as its events alone do: the
    /// shared table finds each domain's own history, whatever the order they came in.
    #[test]
    fn many_domains_interleaved_answer_as_each_alone() {
        let names: Vec<String> = (0..3000).map(|i| format!("d{i}.example")).collect();
        let mut all = Vec::new();
        let mut by_name: HashMap<String, Vec<Event>> = HashMap::new();
        // A fixed pseudo-random walk: ids repeated, domains removed, retired, withdrawn and
        // added again; times only grow, so no retirement is dated behind.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for at in 1..40_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = &names[(x % names.len() as u64) as usize];
            let domain: Arc<str> = name.as_str().into();
            let e = match (x >> 20) % 10 {
                0..=4 => Event::Served {
                    domain,
                    id: format!("id{}", (x >> 32) % 3).into(),
                    at,
                },
                5 => Event::Missing {
                    domain,
                    at,
                    dns: Box::default(),
                },
                6 => Event::Present { domain, at },
                7 => Event::Retired {
                    domain,
                    at,
                    withdraw_at: at + 10,
                },
                8 => Event::Withdrawn { domain, at },
                _ => Event::Entry(Box::new(Compacted {
                    domain,
                    id: "old".into(),
                    first: at,
                    last: Some(at),
                })),
            };
            by_name.entry(name.clone()).or_default().push(e.clone());
            all.push(e);
        }
        let mut h = History::in_memory();
        h.record(&all);
        assert_eq!(h.len(), by_name.len());
        assert_eq!(h.domains().count(), by_name.len());
        for (name, events) in &by_name {
            let mut alone = History::in_memory();
            alone.record(events);
            assert_eq!(h.domain(name), alone.domain(name), "{name}");
            assert!(h.domain(name).is_some());
        }
        for (name, d) in h.domains() {
            assert_eq!(h.domain(name), Some(d));
        }
        assert!(h.domain("d3000.example").is_none());
    }

    #[test]
    fn an_entry_reads_and_writes_as_the_struct_variant_it_was() {
        // Events a million domains' start records at once: kept small.
        assert!(std::mem::size_of::<Event>() <= 48);
        let json = r#"{"entry":{"domain":"a.example","id":"x","first":100,"last":null}}"#;
        let e: Event = serde_json::from_str(json).unwrap();
        assert_eq!(
            e,
            Event::Entry(Box::new(Compacted {
                domain: "a.example".into(),
                id: "x".into(),
                first: 100,
                last: None,
            }))
        );
        assert_eq!(serde_json::to_string(&e).unwrap(), json);
        let e: Event = serde_json::from_str(
            r#"{"entry":{"domain":"a.example","id":"x","first":100,"last":200}}"#,
        )
        .unwrap();
        assert_eq!(e.subject(), "a.example");
        assert_eq!(e.time(), 200);
    }
}
