//! The live snapshot: a loaded config with what answering needs built beside it (the domain
//! index, the served certificates, since when each policy is served). Swapped whole on
//! reload; every layer that answers reads one `Live`, never a mix of two. Each reload bumps
//! the [`Generation`], which the tasks that act on a new config follow.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use tokio::sync::watch;

use crate::certs::CertStore;
use crate::clock::unix_now;
use crate::config::{Config, Domain};

/// Everything a request needs, built completely before it is swapped in: a request sees
/// either the old `Live` or the new one, never a mix.
#[derive(Debug)]
pub(crate) struct Live {
    pub config: Config,
    /// Indices into `config.domains`, hashed by name: a lookup allocates nothing.
    index: HashTable<u32>,
    hasher: RandomState,
    /// Per domain (same order as `config.domains`): Unix seconds since its current policy
    /// has been served.
    since: Vec<u64>,
    pub certs: CertStore,
    pub loaded_at: u64,
    /// Removed domains whose records are being withdrawn (no longer served).
    pub withdraw: Vec<Domain>,
    /// When the next retirement step is due.
    pub next_deadline: Option<u64>,
}

impl Live {
    /// Builds the state for a loaded config; `previous` carries over "served since" for
    /// domains whose policy did not change.
    pub(crate) fn build(config: Config, previous: Option<&Live>) -> Result<Live, String> {
        let certs = CertStore::load(&config.tls.certs)?;
        let now = unix_now();
        // Both lists are sorted by name, and a reload shares most domains with the previous
        // state: a walk along the previous list finds them without a lookup each (a million
        // at a one-file edit); a name the walk does not meet is looked up.
        let mut at = 0;
        // Every domain at the position it had: the previous index answers for this state too.
        let mut same_places =
            previous.is_some_and(|p| p.config.domains.len() == config.domains.len());
        let mut carried = |i: usize, d: &Domain| -> Option<u64> {
            let p = previous?;
            let before = &p.config.domains;
            while at < before.len()
                && !Domain::ptr_eq(&before[at], d)
                && before[at].name.as_str() < d.name.as_str()
            {
                at += 1;
            }
            let (old, since) = match before.get(at) {
                Some(old) if Domain::ptr_eq(old, d) || old.name == d.name => {
                    same_places &= at == i;
                    (old, p.since[at])
                }
                _ => {
                    same_places = false;
                    p.served(d.name.as_str())?
                }
            };
            (old.policy.id() == d.policy.id()).then_some(since)
        };
        let since: Vec<u64> = config
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| carried(i, d).unwrap_or(now))
            .collect();
        let (index, hasher) = match previous {
            // The same names in the same places (an edit of settings only): the same index.
            Some(p) if same_places => (p.index.clone(), p.hasher.clone()),
            _ => {
                let hasher = RandomState::new();
                let mut index = HashTable::with_capacity(config.domains.len());
                for (i, d) in config.domains.iter().enumerate() {
                    let h = hasher.hash_one(d.name.as_str());
                    index.insert_unique(h, i as u32, |&j| {
                        hasher.hash_one(config.domains[j as usize].name.as_str())
                    });
                }
                (index, hasher)
            }
        };
        Ok(Live {
            config,
            index,
            hasher,
            since,
            certs,
            loaded_at: now,
            withdraw: Vec::new(),
            next_deadline: None,
        })
    }

    /// The domain for a lowercase name without trailing dot.
    pub(crate) fn domain(&self, name: &str) -> Option<&Domain> {
        self.position(name).map(|i| &self.config.domains[i])
    }

    /// The domain and since when its policy is served.
    pub(crate) fn served(&self, name: &str) -> Option<(&Domain, u64)> {
        self.position(name)
            .map(|i| (&self.config.domains[i], self.since[i]))
    }

    fn position(&self, name: &str) -> Option<usize> {
        let h = self.hasher.hash_one(name);
        self.index
            .find(h, |&i| {
                self.config.domains[i as usize].name.as_str() == name
            })
            .map(|&i| i as usize)
    }

    /// SPEC "Host → domain": port and trailing dot stripped, case folded, `mta-sts.`
    /// removed; no allocation for hosts up to 253 bytes.
    pub(crate) fn domain_for_host(&self, host: &str) -> Option<&Domain> {
        with_normalized_host(host, |name| {
            let name = name.strip_prefix("mta-sts.").unwrap_or(name);
            self.domain(name)
        })
    }

    /// Which `[tlsrpt] hosts` entry `name` is (case, port and a trailing dot ignored).
    pub(crate) fn tlsrpt_host(&self, name: &str) -> Option<usize> {
        let t = self.config.tlsrpt.as_ref()?;
        with_normalized_host(name, |n| t.hosts.iter().position(|h| h.as_str() == n))
    }

    /// The domain a TLS SNI names: only `mta-sts.<domain>` is served.
    pub(crate) fn domain_for_sni(&self, sni: &str) -> Option<&Domain> {
        with_normalized_host(sni, |name| self.domain(name.strip_prefix("mta-sts.")?))
    }
}

/// Strips `:port` and one trailing dot, and lowercases into a stack buffer.
fn with_normalized_host<'a, T>(host: &str, f: impl FnOnce(&str) -> Option<T>) -> Option<T>
where
    T: 'a,
{
    let host = crate::name::bare_host(host)?;
    if host.len() > 253 || !host.is_ascii() {
        return None;
    }
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return f(host);
    }
    let mut buf = [0u8; 253];
    let buf = &mut buf[..host.len()];
    buf.copy_from_slice(host.as_bytes());
    buf.make_ascii_lowercase();
    f(std::str::from_utf8(buf).ok()?)
}

/// Counts the reloads: bumped once a new config is swapped in. Each task that acts on a new
/// config follows it through its own [`Reloads`], so one reload wakes each of them once.
#[derive(Debug)]
pub(crate) struct Generation(watch::Sender<u64>);

impl Generation {
    pub(crate) fn new() -> Self {
        Generation(watch::Sender::new(0))
    }

    /// A new config is live: every follower wakes (once, however many bumps it missed).
    pub(crate) fn bump(&self) {
        self.0.send_modify(|g| *g += 1);
    }

    /// Follows the reloads from now on.
    pub(crate) fn follow(&self) -> Reloads {
        Reloads(self.0.subscribe())
    }
}

impl Default for Generation {
    fn default() -> Self {
        Generation::new()
    }
}

/// One task's view of the [`Generation`]; clones follow on their own.
#[derive(Debug, Clone)]
pub(crate) struct Reloads(watch::Receiver<u64>);

impl Reloads {
    /// Returns at the next reload, or at once if one happened since the last call.
    /// Cancel-safe, so it can be one arm of a `select!`.
    pub(crate) async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            // The daemon is gone: no reload comes any more.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalization() {
        let cases = [
            ("mta-sts.example.org", Some("mta-sts.example.org")),
            ("MTA-STS.Example.Org.:443", Some("mta-sts.example.org")),
            ("[::1]:443", None),
            ("bücher.example", None),
        ];
        for (host, want) in cases {
            let got = with_normalized_host(host, |n| Some(n.to_owned()));
            assert_eq!(got.as_deref(), want, "{host}");
        }
    }

    /// A state built along the previous one: "served since" kept where the policy is the
    /// same (shared or not), new where it changed or the domain is new; every name found, when
    /// the names stay in place (the index reused) and when they move (a domain added first).
    #[test]
    fn a_state_built_on_the_previous_carries_since_and_finds_every_name() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.toml");
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(
            &main,
            "include = [\"d/*.toml\"]\n[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\n[state]\ndir = \"state\"\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\n",
        )
        .unwrap();
        let save = |rel: &str, text: &str| {
            let tmp = dir.path().join("new.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(tmp, dir.path().join(rel)).unwrap();
        };
        save(
            "d/a.toml",
            "[domains.\"b.example\"]\n[domains.\"c.example\"]\n",
        );
        save("d/b.toml", "[domains.\"d.example\"]\n");
        let mut cache = crate::config::Cache::default();
        let mut load = || {
            crate::config::load_cached(&main, &mut cache)
                .unwrap()
                .config
        };
        let mut first = Live::build(load(), None).unwrap();
        // As if served for a while.
        first.since.iter_mut().for_each(|s| *s = 1000);

        save("d/b.toml", "[domains.\"d.example\"]\nmode = \"testing\"\n");
        let second = Live::build(load(), Some(&first)).unwrap();
        assert_eq!(second.served("b.example").unwrap().1, 1000);
        assert_eq!(second.served("c.example").unwrap().1, 1000);
        assert!(
            second.served("d.example").unwrap().1 > 1000,
            "its policy changed"
        );
        assert!(second.domain("e.example").is_none());

        save(
            "d/c.toml",
            "[domains.\"a.example\"]\n[domains.\"cc.example\"]\n",
        );
        let third = Live::build(load(), Some(&second)).unwrap();
        for (name, since) in [("b.example", 1000), ("c.example", 1000)] {
            assert_eq!(third.served(name).unwrap().1, since, "{name}");
        }
        assert!(third.served("a.example").unwrap().1 > 1000, "new");
        assert!(third.served("cc.example").unwrap().1 > 1000, "new");
        assert_eq!(third.config.domains.len(), 5);
        for d in &third.config.domains {
            let found = third.domain(d.name.as_str()).unwrap();
            assert_eq!(found.name, d.name);
        }
    }

    #[tokio::test]
    async fn a_reload_wakes_each_follower_once() {
        use futures_util::FutureExt;
        let generation = Generation::new();
        let mut a = generation.follow();
        let mut b = generation.follow();
        // Idle: nothing wakes.
        assert!(a.next().now_or_never().is_none());
        generation.bump();
        generation.bump();
        // Two reloads since the last look are one wake-up, for each follower.
        assert!(a.next().now_or_never().is_some());
        assert!(a.next().now_or_never().is_none());
        assert!(b.next().now_or_never().is_some());
        assert!(b.next().now_or_never().is_none());
        // A follower that came later sees only what comes after it.
        let mut c = generation.follow();
        assert!(c.next().now_or_never().is_none());
        generation.bump();
        assert!(c.next().now_or_never().is_some());
    }
}
