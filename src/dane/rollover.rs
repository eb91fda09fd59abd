//! The rollover rules, pure: which TLSA values are wanted, which may go and when, and whether
//! the certificate switched to a key that was not announced.
//!
//! RFC 7671 §8.1: a new key's TLSA must be in DNS (and out of every cache's old answer, so
//! one TTL) before the server presents it, and the old key's record stays until the
//! server stopped presenting it plus one TTL; else DANE senders defer mail.

use mta_stsd_providers::{DomainChange, Expect, RData, Record, Tlsa};

use super::keys::Keys;
use super::memory::{Finding, Host, Value};

/// Times are whole seconds rounded down, so "a TTL has passed" is `t + ttl < now`.
/// Moves one host's memory to `now`: `keys` is what its files say (`None`: the entry was
/// removed, so every value goes one TTL from now). Returns a new finding, if the certificate
/// just switched to a key that was not published a TTL ahead.
pub(crate) fn advance(host: &str, mem: &mut Host, keys: Option<&Keys>, now: u64) -> Option<String> {
    let ttl = u64::from(mem.ttl);
    let wanted: Vec<String> = keys
        .map(|k| k.values().map(ToString::to_string).collect())
        .unwrap_or_default();
    let mut new_finding = None;
    if let Some(k) = keys {
        let leaf = k.leaf.to_string();
        let aged = |v: &str| {
            mem.values
                .get(v)
                .and_then(|v| v.published_at)
                .is_some_and(|t| t + ttl < now && mem.values[v].withdraw_at.is_none_or(|w| w > now))
        };
        let switched = mem.presented.as_ref().is_some_and(|p| *p != leaf);
        let covered = aged(&leaf) || k.issuer.as_ref().is_some_and(|i| aged(&i.to_string()));
        if switched && !covered {
            let message = format!(
                "{host}: the certificate switched to a key whose TLSA record was not published {ttl} s (one TTL) ahead: DANE senders holding the old records may defer mail for up to {ttl} s after it is published now; next time publish the next key first with `next_key`, or set `issuer = true` to keep a 2 1 1 record of the CA"
            );
            mem.finding = Some(Finding {
                at: now,
                message: message.clone(),
            });
            new_finding = Some(message);
        }
        mem.presented = Some(leaf);
    }
    for v in &wanted {
        mem.values.entry(v.clone()).or_default().withdraw_at = None;
    }
    for (v, state) in &mut mem.values {
        if !wanted.contains(v) && state.withdraw_at.is_none() {
            // The old key's record stays one TTL after the certificate stopped presenting it;
            // a second more, as `now` is rounded down.
            state.withdraw_at = Some(now + ttl + 1);
        }
    }
    // The finding lasts until the new key's record has been out for a TTL.
    if new_finding.is_none() {
        let settled = mem
            .presented
            .as_ref()
            .and_then(|p| mem.values.get(p))
            .and_then(|v| v.published_at)
            .is_some_and(|t| t + ttl < now);
        if settled {
            mem.finding = None;
        }
    }
    new_finding
}

/// The change that brings `_25._tcp.<host>.` to the memory's values: wanted ones added,
/// ours whose time came deleted, anything else (foreign) kept. `Err` is a conflict.
pub(crate) fn plan(
    name: &str,
    mem: &Host,
    now: u64,
    observed: &[Record],
) -> Result<DomainChange, String> {
    let at: Vec<&Record> = observed.iter().filter(|r| r.name == name).collect();
    if let Some(c) = at.iter().find(|r| matches!(r.data, RData::Cname(_))) {
        return Err(format!(
            "{name} is a CNAME ({}), so its TLSA records are not managed here",
            c.data_text()
        ));
    }
    let tlsa: Vec<&Record> = at
        .into_iter()
        .filter(|r| matches!(r.data, RData::Tlsa(_)))
        .collect();
    let present = |v: &str| tlsa.iter().any(|r| r.data_text() == v);
    let mut change = DomainChange {
        domain: name.trim_end_matches('.').to_owned(),
        ..DomainChange::default()
    };
    for (v, state) in &mem.values {
        let due = state.withdraw_at.is_some_and(|w| w <= now);
        if state.withdraw_at.is_none() && !present(v) {
            if let Some(t) = Tlsa::parse(v) {
                change.add.push(Record::tlsa(name, mem.ttl, t));
            }
        } else if due && !state.found {
            change.delete.extend(
                tlsa.iter()
                    .filter(|r| r.data_text() == *v)
                    .map(|r| (*r).clone()),
            );
        }
    }
    if !change.is_empty() {
        change.expect.push(if tlsa.is_empty() {
            Expect::NoRRset {
                name: name.to_owned(),
                rtype: "TLSA",
            }
        } else {
            Expect::RRset {
                name: name.to_owned(),
                rtype: "TLSA",
                records: tlsa.into_iter().cloned().collect(),
            }
        });
    }
    Ok(change)
}

/// After the change is in DNS (or nothing needed changing): wanted values are published as
/// of now, withdrawn ones forgotten. `observed` is what was read before `change`.
pub(crate) fn settle(mem: &mut Host, now: u64, observed: &[Record], change: &DomainChange) {
    let was_there = |v: &str| observed.iter().any(|r| r.data_text() == v);
    mem.values.retain(|v, state: &mut Value| {
        if state.withdraw_at.is_some_and(|w| w <= now) {
            // Deleted, or (found) never ours to delete: forgotten either way.
            return false;
        }
        if state.withdraw_at.is_none() && state.published_at.is_none() {
            state.published_at = Some(now);
            state.found = was_there(v) && !change.add.iter().any(|r| r.data_text() == *v);
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dane::keys::tlsa;

    const NAME: &str = "_25._tcp.mail.example.org.";

    fn keys(leaf: &[u8], next: Option<&[u8]>) -> Keys {
        Keys {
            leaf: tlsa(3, leaf),
            next: next.map(|n| tlsa(3, n)),
            issuer: None,
        }
    }

    /// One round as the daemon does it: advance, plan against `dns`, apply to `dns`, settle.
    fn round(mem: &mut Host, k: Option<&Keys>, now: u64, dns: &mut Vec<Record>) -> Option<String> {
        let finding = advance("mail.example.org", mem, k, now);
        let change = plan(NAME, mem, now, dns).expect("no conflict");
        let before = dns.clone();
        dns.retain(|r| !change.delete.contains(r));
        dns.extend(change.add.iter().cloned());
        settle(mem, now, &before, &change);
        finding
    }

    fn values(dns: &[Record]) -> Vec<String> {
        let mut v: Vec<String> = dns.iter().map(|r| r.data_text()).collect();
        v.sort();
        v
    }

    #[test]
    fn announced_rollover_keeps_old_until_a_ttl_after_the_switch() {
        let mut mem = Host {
            ttl: 60,
            ..Host::default()
        };
        let foreign = Record::tlsa(NAME, 60, tlsa(3, b"someone else's"));
        let mut dns = vec![foreign.clone()];
        let (a, b) = (tlsa(3, b"A").to_string(), tlsa(3, b"B").to_string());
        assert_eq!(
            round(&mut mem, Some(&keys(b"A", Some(b"B"))), 0, &mut dns),
            None
        );
        assert!(values(&dns).contains(&a) && values(&dns).contains(&b));
        // The cert switches to B after B was out for a TTL: no finding; A stays a TTL.
        let now_b = keys(b"B", None);
        assert_eq!(round(&mut mem, Some(&now_b), 100, &mut dns), None);
        assert!(values(&dns).contains(&a));
        assert_eq!(round(&mut mem, Some(&now_b), 160, &mut dns), None);
        assert!(values(&dns).contains(&a), "withdrawn before a TTL passed");
        round(&mut mem, Some(&now_b), 161, &mut dns);
        assert!(!values(&dns).contains(&a), "{dns:?}");
        assert!(dns.contains(&foreign) && values(&dns).contains(&b));
        assert!(mem.finding.is_none());
    }

    #[test]
    fn unannounced_switch_is_published_at_once_and_reported() {
        let mut mem = Host {
            ttl: 60,
            ..Host::default()
        };
        let mut dns = Vec::new();
        assert_eq!(round(&mut mem, Some(&keys(b"A", None)), 0, &mut dns), None);
        // B published only 30 s ahead: too late.
        round(&mut mem, Some(&keys(b"A", Some(b"B"))), 100, &mut dns);
        let f = round(&mut mem, Some(&keys(b"B", None)), 130, &mut dns).expect("finding");
        assert!(f.contains("next_key") && f.contains("issuer = true"), "{f}");
        assert!(mem.finding.is_some());
        let c = round(&mut mem, Some(&keys(b"C", None)), 200, &mut dns).expect("finding");
        assert!(values(&dns).contains(&tlsa(3, b"C").to_string()), "{c}");
        // Cleared once C has been out a TTL.
        round(&mut mem, Some(&keys(b"C", None)), 261, &mut dns);
        assert!(mem.finding.is_none());
        // With the issuer's 2 1 1 out for a TTL, a new leaf key is covered.
        let with_ca = |leaf: &[u8]| Keys {
            issuer: Some(tlsa(2, b"CA")),
            ..keys(leaf, None)
        };
        round(&mut mem, Some(&with_ca(b"C")), 300, &mut dns);
        assert_eq!(round(&mut mem, Some(&with_ca(b"D")), 400, &mut dns), None);
    }

    #[test]
    fn removed_entry_withdraws_ours_a_ttl_later_and_never_found_ones() {
        let mut mem = Host {
            ttl: 60,
            ..Host::default()
        };
        let there = Record::tlsa(NAME, 60, tlsa(3, b"A"));
        let mut dns = vec![there.clone()];
        round(&mut mem, Some(&keys(b"A", Some(b"B"))), 0, &mut dns);
        round(&mut mem, None, 10, &mut dns);
        assert_eq!(dns.len(), 2);
        round(&mut mem, None, 71, &mut dns);
        // B was ours and went; A was there before us and stays.
        assert_eq!(dns, vec![there]);
        assert!(mem.values.is_empty());
    }
}
