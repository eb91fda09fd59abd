//! What the CA's limits left us, kept across restarts: the orders started in the last hour
//! (`[acme] orders_per_hour`), the server's account-wide pause, each name's wait (its
//! `Retry-After`, or our backoff and the failures behind it), and the names asked for on
//! demand. A daemon restarted, or crash-looping under systemd, would otherwise forget them
//! and order again at once, which is what CAs' rate limits punish.
//!
//! One small JSON document per ACME directory URL in the store (`store_acme_limits`), never
//! read past [`MAX_BYTES`]; an earlier version kept it as `limits-<hash>.json` in the ACME
//! state directory, which is imported once ([`read`]).
//!
//! Replicas share the account, and the CA counts their orders together. So a write is a
//! merge, in one transaction with the row locked: read the document, keep what other writers
//! put there while it still matters (an order in the last hour, a wait not yet over), replace
//! our own part, write. Each entry names the `owner`
//! that wrote it (random per process), so an entry we dropped (an attempt that placed no
//! order after all, a wait that ended) is never brought back from the file. The other
//! writers' orders count in our hour too, and of two account-wide pauses the later wins.
//! A restarted daemon is a new owner: its predecessor's entries stay until they age out.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The window `[acme] orders_per_hour` counts in.
pub(super) const HOUR: u64 = 3600;
/// The file is never read past this: a bigger one is damaged.
pub(super) const MAX_BYTES: u64 = 4 << 20;
/// Kept at most, the newest: more orders than this in an hour only happen without a limit.
const MAX_ORDERS: usize = 10_000;
/// Names kept at most, those waiting longest first; beyond, a name forgets its backoff (the
/// account's own backoff still bounds what a dead server costs).
pub(super) const MAX_NAMES: usize = 2_048;
/// Texts (errors, why a name waits) are cut to this many characters.
const MAX_TEXT: usize = 500;
const VERSION: u32 = 1;

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Limits {
    pub version: u32,
    pub orders: Vec<Order>,
    pub pause: Option<Pause>,
    pub names: Vec<NameWait>,
    pub demands: Vec<Demand>,
}

/// An attempt that could place an order, when it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Order {
    pub at: u64,
    pub name: String,
    pub owner: u64,
}

/// The server's account-wide wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Pause {
    pub until: u64,
    pub why: String,
}

/// A name in backoff or waiting out the server's `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NameWait {
    pub name: String,
    pub owner: u64,
    /// No order before this (Unix seconds).
    pub until: u64,
    /// Failures in a row (escalate the backoff), throttles in a row.
    pub attempts: u32,
    pub throttled: u32,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// `[acme] on_demand`: a name a handshake asked for, not ordered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Demand {
    pub name: String,
    pub owner: u64,
}

/// What reading the file found.
#[derive(Debug)]
pub(super) enum Stored {
    /// No file: a fresh start.
    Missing,
    Found(Limits),
    /// Unreadable or damaged, and why; `written` is when it was last written (Unix seconds,
    /// never later than `now`), the latest moment anything in it can be from.
    Damaged {
        why: String,
        written: u64,
    },
}

/// An earlier version's file for the account at `directory` (one per directory URL).
pub(super) fn path(state: &Path, directory: &str) -> PathBuf {
    let hash = Sha256::digest(directory.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    state.join(format!("limits-{hex}.json"))
}

/// A fresh owner id for this process.
pub(super) fn owner() -> u64 {
    rand::random()
}

pub(super) fn read(path: &Path, now: u64) -> Stored {
    let damaged = |why: String| {
        let written = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(now, |d| d.as_secs().min(now));
        Stored::Damaged { why, written }
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Stored::Missing,
        Err(e) => return damaged(e.to_string()),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_BYTES + 1).read_to_end(&mut bytes) {
        return damaged(e.to_string());
    }
    parse(&bytes).map_or_else(damaged, Stored::Found)
}

/// The document as the store keeps it (or a file of an earlier version held it).
pub(super) fn parse(bytes: &[u8]) -> Result<Limits, String> {
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!("larger than {MAX_BYTES} bytes"));
    }
    match serde_json::from_slice::<Limits>(bytes) {
        Ok(l) if l.version == VERSION => Ok(l),
        Ok(l) => Err(format!(
            "version {} (this daemon writes {VERSION})",
            l.version
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Merges `ours` (every entry of `me`) into the stored document `stored`, which it returns
/// with its JSON. A document that cannot be read counts as `last` (what we read the previous
/// time), so that other writers' entries are not lost to damage. Others' names and demands
/// are kept only for `wanted` names (entries for names no longer in the config are dropped).
pub(super) fn merge_stored(
    stored: Option<&str>,
    me: u64,
    ours: Limits,
    last: &Limits,
    wanted: &HashSet<String>,
    now: u64,
) -> (String, Limits) {
    let file = match stored.map(|s| parse(s.as_bytes())) {
        Some(Ok(l)) => l,
        None => Limits::default(),
        Some(Err(_)) => last.clone(),
    };
    let merged = merge(file, me, ours, wanted, now);
    let json = serde_json::to_string(&merged).unwrap_or_default();
    (json, merged)
}

/// `ours` (every entry of owner `me`, all it knows) with what other owners wrote in `file`
/// and still matters; what `file` holds of `me` is stale.
pub(super) fn merge(
    file: Limits,
    me: u64,
    ours: Limits,
    wanted: &HashSet<String>,
    now: u64,
) -> Limits {
    let theirs = |owner: u64| owner != me;

    let mut orders: Vec<Order> = ours
        .orders
        .into_iter()
        .chain(
            file.orders
                .into_iter()
                .filter(|o| theirs(o.owner) && o.at + HOUR > now),
        )
        .collect();
    orders.sort_by_key(|o| o.at);
    let excess = orders.len().saturating_sub(MAX_ORDERS);
    orders.drain(..excess);

    // The later of two pauses; one that is over is gone.
    let pause = [ours.pause, file.pause]
        .into_iter()
        .flatten()
        .filter(|p| p.until > now)
        .max_by_key(|p| p.until);

    let mut names: HashMap<String, NameWait> = HashMap::new();
    for n in file.names {
        if theirs(n.owner) && n.until > now && wanted.contains(&n.name) {
            match names.get(&n.name) {
                Some(have) if have.until >= n.until => {}
                _ => {
                    names.insert(n.name.clone(), n);
                }
            }
        }
    }
    // Ours win: we know whether the wait still holds.
    for n in ours.names {
        names.insert(n.name.clone(), n);
    }
    let mut names: Vec<NameWait> = names.into_values().map(cut).collect();
    names.sort_by(|a, b| b.until.cmp(&a.until).then_with(|| a.name.cmp(&b.name)));
    names.truncate(MAX_NAMES);
    names.sort_by(|a, b| a.name.cmp(&b.name));

    let mut seen = HashSet::new();
    let demands: Vec<Demand> = ours
        .demands
        .into_iter()
        .chain(
            file.demands
                .into_iter()
                .filter(|d| theirs(d.owner) && wanted.contains(&d.name)),
        )
        .filter(|d| seen.insert(d.name.clone()))
        .take(super::MAX_DEMANDS)
        .collect();

    Limits {
        version: VERSION,
        orders,
        pause: pause.map(|p| Pause {
            why: cut_text(p.why),
            ..p
        }),
        names,
        demands,
    }
}

fn cut(n: NameWait) -> NameWait {
    NameWait {
        error: n.error.map(cut_text),
        detail: n.detail.map(cut_text),
        ..n
    }
}

fn cut_text(s: String) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 1;
    const OTHER: u64 = 2;

    fn order(at: u64, name: &str, owner: u64) -> Order {
        Order {
            at,
            name: name.into(),
            owner,
        }
    }

    fn wait(name: &str, owner: u64, until: u64) -> NameWait {
        NameWait {
            name: name.into(),
            owner,
            until,
            attempts: 1,
            throttled: 0,
            error: None,
            detail: None,
        }
    }

    fn wanted(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn merge_keeps_what_others_wrote_while_it_matters_and_never_revives_ours() {
        let now = 10_000;
        let file = Limits {
            version: VERSION,
            orders: vec![
                order(now - HOUR, "old", OTHER),
                order(now - 10, "x", OTHER),
                // Ours, since dropped: an attempt that placed no order.
                order(now - 5, "y", ME),
            ],
            pause: Some(Pause {
                until: now + 100,
                why: "theirs".into(),
            }),
            names: vec![
                wait("a", OTHER, now + 50),
                wait("b", OTHER, now),
                wait("gone", OTHER, now + 50),
                wait("c", ME, now + 50),
            ],
            demands: vec![
                Demand {
                    name: "a".into(),
                    owner: OTHER,
                },
                Demand {
                    name: "gone".into(),
                    owner: OTHER,
                },
            ],
        };
        let ours = Limits {
            version: VERSION,
            orders: vec![order(now - 1, "z", ME)],
            pause: Some(Pause {
                until: now + 10,
                why: "ours".into(),
            }),
            names: vec![wait("d", ME, now + 5)],
            demands: vec![],
        };
        let m = merge(file, ME, ours, &wanted(&["a", "b", "c", "d"]), now);
        let orders: Vec<&str> = m.orders.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(orders, ["x", "z"]);
        assert_eq!(m.pause.unwrap().why, "theirs", "the later pause wins");
        let names: Vec<&str> = m.names.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "d"], "b's wait is over, c was ours, gone left");
        let demands: Vec<&str> = m.demands.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(demands, ["a"]);
    }

    #[test]
    fn ours_win_over_theirs_for_a_name_and_the_file_is_bounded() {
        let now = 10_000;
        let file = Limits {
            names: vec![wait("a", OTHER, now + 500)],
            ..Limits::default()
        };
        let ours = Limits {
            names: vec![NameWait {
                error: Some("e".repeat(10 * MAX_TEXT)),
                ..wait("a", ME, now + 5)
            }],
            orders: (0..2 * MAX_ORDERS as u64)
                .map(|i| order(now - i % HOUR, "n", ME))
                .collect(),
            ..Limits::default()
        };
        let m = merge(file, ME, ours, &wanted(&["a"]), now);
        assert_eq!(m.names.len(), 1);
        assert_eq!(m.names[0].until, now + 5);
        assert!(m.names[0].error.as_ref().unwrap().chars().count() <= MAX_TEXT + 1);
        assert_eq!(m.orders.len(), MAX_ORDERS);

        let many = Limits {
            names: (0..3 * MAX_NAMES as u64)
                .map(|i| wait(&format!("n{i}"), ME, now + i))
                .collect(),
            ..Limits::default()
        };
        let m = merge(Limits::default(), ME, many, &HashSet::new(), now);
        assert_eq!(m.names.len(), MAX_NAMES);
        assert!(
            m.names
                .iter()
                .all(|n| n.until >= now + 2 * MAX_NAMES as u64),
            "the longest waits are kept"
        );
        let json = serde_json::to_vec(&m).unwrap();
        assert!((json.len() as u64) < MAX_BYTES, "{}", json.len());
    }

    #[test]
    fn read_tells_missing_found_and_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "https://ca.example/dir");
        let now = crate::clock::unix_now() + 1000;
        assert!(matches!(read(&p, now), Stored::Missing));
        let l = Limits {
            version: VERSION,
            orders: vec![order(5, "a", ME)],
            ..Limits::default()
        };
        let (json, written) =
            merge_stored(None, ME, l.clone(), &Limits::default(), &HashSet::new(), 6);
        assert_eq!(written, l);
        std::fs::write(&p, &json).unwrap();
        match read(&p, now) {
            Stored::Found(f) => assert_eq!(f, l),
            other => panic!("{other:?}"),
        }
        for bad in [
            &b"{\"version\": 1, \"orders\": ["[..],
            b"\0\0\0",
            b"{\"version\": 99}",
        ] {
            std::fs::write(&p, bad).unwrap();
            match read(&p, now) {
                Stored::Damaged { written, .. } => assert!(written <= now && written > 0),
                other => panic!("{other:?}"),
            }
        }
        std::fs::write(&p, vec![b' '; MAX_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(&p, now), Stored::Damaged { .. }));
        // A damaged document merges as what we read last.
        let last = Limits {
            orders: vec![order(5, "b", OTHER)],
            ..Limits::default()
        };
        let (_, m) = merge_stored(Some("{\"version\": 1, "), ME, l, &last, &HashSet::new(), 6);
        assert_eq!(m.orders.len(), 2);
    }
}
