//! The task that keeps every ACME name served: follows the live config, loads certificates
//! from the store, and runs orders — at most [`MAX_IN_FLIGHT`] at once, at most
//! `[acme] orders_per_hour` started in any hour (first certificates before renewals), each
//! name on its own schedule (renewal spread over 60–75 % of the lifetime, backoff after a
//! failure, the server's `Retry-After`).

mod outcome;
mod persist;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn, Instrument};

use super::attempt::{attempt, AccountCell, Keep, Outcome};
use super::limits::HOUR;
use super::store::StoredCert;
use super::{AcmeState, CertState, MAX_IN_FLIGHT};
use crate::clock::unix_now;
use crate::config::{self, CertSource};
use crate::live::{Live, Reloads};
use crate::metrics::Metrics;
use crate::state::store::{CertRow, Store};

/// How soon to look at the store again while another replica holds a name's lease.
const LEASE_RECHECK: Duration = Duration::from_secs(5);
/// How often a name in backoff looks at the store, for a certificate another replica got.
const STORE_RECHECK: Duration = Duration::from_secs(60);
/// How often the certificates other replicas wrote are read (one indexed query): what one
/// replica obtains, every replica serves within this.
pub(super) const FOLLOW: Duration = Duration::from_secs(2);
/// What the task reads and writes, handed in by the daemon: the live snapshot it follows, the
/// ACME state the listeners and `/status` read, the metrics.
#[derive(Debug)]
pub(crate) struct ManagerContext {
    pub live: Arc<ArcSwap<Live>>,
    pub acme: Arc<AcmeState>,
    pub metrics: Arc<Metrics>,
    /// Account, certificates, challenge answers and limits, shared by every replica.
    pub store: Store,
}

/// Owns the task; dropping it stops the task and every order in flight.
pub(crate) struct Manager {
    _task: AbortOnDropHandle<()>,
    _follow: AbortOnDropHandle<()>,
}

impl Manager {
    /// Starts the task; it looks at the live config again at each of `reloads`.
    pub(crate) fn start(shared: ManagerContext, reloads: Reloads) -> Manager {
        let shared = Arc::new(shared);
        shared.acme.challenges.set_store(Some(shared.store.clone()));
        let (tx, rows) = mpsc::channel(256);
        let follow = AbortOnDropHandle::new(tokio::spawn(follow(shared.store.clone(), tx)));
        let keep = Keep {
            store: shared.store.clone(),
            lease: shared.live.load().config.state.lease,
        };
        let task = AbortOnDropHandle::new(tokio::spawn(
            Run {
                shared,
                reloads,
                keep,
                rows,
                cfg: None,
                generation: 0,
                account: Arc::default(),
                names: HashMap::new(),
                order_after: HashMap::new(),
                queue: BTreeSet::new(),
                paused: None,
                throttled: HashMap::new(),
                urgent: HashSet::new(),
                orders: VecDeque::new(),
                wanted: Arc::default(),
                persist: persist::Persist::default(),
                starting: Vec::new(),
                in_flight: JoinSet::new(),
            }
            .run(),
        ));
        Manager {
            _task: task,
            _follow: follow,
        }
    }
}

/// Sends every certificate row written from now on (by any replica) to the task, read every
/// [`FOLLOW`] and at once on another's notification (`[state] listen`); a store that does
/// not answer is asked again at the next tick.
async fn follow(store: Store, tx: mpsc::Sender<CertRow>) {
    // Where the store is now: what is there already, the task reads when it adds names.
    let mut seq = loop {
        match last_seq(&store).await {
            Ok(s) => break s,
            Err(e) => {
                warn!("ACME: reading the store's certificates: {e}");
                tokio::time::sleep(FOLLOW).await;
            }
        }
    };
    loop {
        store
            .wait_follow(crate::state::store::Topic::Certs, FOLLOW)
            .await;
        loop {
            let rows = match store.acme_certs_since(seq).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("ACME: reading the store's certificates: {e}");
                    break;
                }
            };
            let Some(last) = rows.last().map(|r| r.seq) else {
                break;
            };
            seq = last;
            for r in rows {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The last `seq` of the certificates, read page by page.
async fn last_seq(store: &Store) -> Result<i64, crate::state::store::StoreError> {
    let mut seq = 0;
    loop {
        match store.acme_certs_since(seq).await?.last() {
            Some(r) => seq = r.seq,
            None => return Ok(seq),
        }
    }
}

/// The certificates stored for `names`, read page by page; unusable ones are logged and
/// left out.
async fn load_wanted(
    store: &Store,
    names: &HashSet<String>,
) -> Result<HashMap<String, StoredCert>, crate::state::store::StoreError> {
    let mut found = HashMap::new();
    let mut seq = 0;
    loop {
        let rows = store.acme_certs_since(seq).await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            return Ok(found);
        };
        seq = last;
        for r in rows.iter().filter(|r| names.contains(&r.name)) {
            match StoredCert::from_row(r) {
                Ok(c) => {
                    found.insert(r.name.clone(), c);
                }
                Err(e) => warn!(name = %r.name, "ignoring the stored certificate: {e}"),
            }
        }
    }
}

struct Run {
    shared: Arc<ManagerContext>,
    reloads: Reloads,
    /// The store and the lease the orders use.
    keep: Keep,
    /// Certificates written to the store by any replica, from [`follow`].
    rows: mpsc::Receiver<CertRow>,
    cfg: Option<Arc<config::Acme>>,
    /// Bumped when `[acme]` changes: outcomes of older orders are dropped.
    generation: u64,
    account: Arc<tokio::sync::Mutex<AccountCell>>,
    /// Every ACME name and when to look at it next; `None` while an attempt runs.
    names: HashMap<Arc<str>, Option<u64>>,
    /// Names in backoff after a failure: no order before then (the store is still read).
    order_after: HashMap<Arc<str>, u64>,
    queue: BTreeSet<(u64, Arc<str>)>,
    /// An account-wide limit of the server: no name orders before then (Unix seconds), and
    /// why.
    paused: Option<(u64, String)>,
    /// Throttles in a row per name, for the fallback when the server gave no `Retry-After`.
    throttled: HashMap<Arc<str>, u32>,
    /// Names without a certificate asked for by a handshake (`[acme] on_demand`): ordered
    /// before every other name, as soon as pacing, backoff and the server allow.
    urgent: HashSet<Arc<str>>,
    /// Attempts that could order, by start time, over the last [`HOUR`]; those that found a
    /// certificate in the store (or the lease held by another) leave it again.
    orders: VecDeque<(u64, Arc<str>)>,
    /// The names of the config, for what the limits file keeps.
    wanted: Arc<HashSet<String>>,
    /// The CA's limits across restarts (see [`persist`]).
    persist: persist::Persist,
    /// Attempts chosen by [`Run::start_due`], spawned once their orders are written down.
    starting: Vec<(Arc<str>, bool)>,
    in_flight: JoinSet<(u64, Arc<str>, Outcome)>,
}

impl Run {
    async fn run(mut self) {
        let mut seen: Option<Arc<Live>> = None;
        loop {
            let live = self.shared.live.load_full();
            if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &live)) {
                self.sync(&live).await;
                seen = Some(live);
            }
            self.take_demands();
            self.start_due();
            self.save().await;
            self.spawn_starting();
            let now = unix_now();
            let paused = self.paused.as_ref().map_or(0, |(t, _)| *t);
            let mut sleep = match self.queue.first() {
                Some((t, _)) if self.in_flight.len() < MAX_IN_FLIGHT => {
                    Duration::from_secs((*t).max(paused).saturating_sub(now))
                }
                _ => Duration::from_secs(3600),
            };
            if let Some(save) = self.persist.due_in() {
                sleep = sleep.min(save);
            }
            tokio::select! {
                Some(joined) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok((generation, name, outcome)) = joined {
                        if generation == self.generation {
                            self.finish(name, outcome);
                        }
                    }
                }
                _ = self.reloads.next() => {}
                Some(row) = self.rows.recv() => self.followed(row),
                _ = self.shared.acme.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Follows the live config: names added are looked up in the store (a fresh certificate
    /// there means no order), names gone are dropped.
    async fn sync(&mut self, live: &Live) {
        let cfg = live.config.acme.clone().map(Arc::new);
        let new_setup = !same_setup(self.cfg.as_deref(), cfg.as_deref());
        if new_setup {
            // A new directory, account or state: start over.
            self.generation += 1;
            self.in_flight.abort_all();
            *self.account.lock().await = AccountCell::default();
            for name in std::mem::take(&mut self.names).into_keys() {
                self.forget(&name);
            }
            self.queue.clear();
            self.order_after.clear();
            self.throttled.clear();
            self.urgent.clear();
            self.pause(None);
        }
        self.cfg = cfg;
        self.keep.lease = live.config.state.lease;
        let wanted: HashSet<String> = live
            .config
            .domains
            .iter()
            .filter(|d| d.cert == CertSource::Acme)
            .map(|d| d.name.policy_host())
            // [tlsrpt] hosts get theirs the same way.
            .chain(live.config.tlsrpt.iter().flat_map(|t| {
                t.hosts
                    .iter()
                    .zip(&t.certs)
                    .filter(|(_, c)| **c == CertSource::Acme)
                    .map(|(h, _)| h.to_string())
            }))
            .collect();
        self.wanted = Arc::new(wanted.clone());
        let gone: Vec<Arc<str>> = self
            .names
            .keys()
            .filter(|n| !wanted.contains(&***n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(Some(t)) = self.names.remove(&name) {
                self.queue.remove(&(t, name.clone()));
            }
            self.order_after.remove(&name);
            self.throttled.remove(&name);
            self.urgent.remove(&name);
            self.forget(&name);
            self.persist.mark(false);
        }
        let added: Vec<String> = wanted
            .into_iter()
            .filter(|n| !self.names.contains_key(n.as_str()))
            .collect();
        let Some(cfg) = self.cfg.clone() else { return };
        let mut waits = if new_setup {
            super::import::import(&self.keep.store, &cfg).await;
            self.restore(&cfg).await
        } else {
            HashMap::new()
        };
        if added.is_empty() {
            return;
        }
        let asked: HashSet<String> = added.iter().cloned().collect();
        let mut loaded = match load_wanted(&self.keep.store, &asked).await {
            Ok(l) => l,
            // Each name looks at the store again on its first attempt.
            Err(e) => {
                warn!("ACME: cannot read the certificates from the store: {e}");
                HashMap::new()
            }
        };
        let now = unix_now();
        let mut served = 0;
        for name in added {
            let cert = loaded.remove(&name);
            let name: Arc<str> = name.into();
            let mut due = now;
            if let Some(c) = cert {
                served += 1;
                if c.fresh(now as i64) {
                    due = c.renew_at() as u64;
                }
                self.install(&name, &c, None);
            }
            // The last run's wait, where it still matters.
            if let Some(w) = waits.remove(&*name).filter(|_| due <= now) {
                self.restore_wait(&name, w);
            }
            self.schedule(&name, due);
        }
        if let Some((until, why)) = self.paused.clone() {
            self.show_paused(until, &why);
        }
        if served > 0 {
            info!(
                certificates = served,
                "ACME certificates loaded from the store"
            );
        }
    }

    /// Starts attempts for the names that are due, up to the bounds: names without a
    /// certificate first, then renewals, each group by due time. A name that may order but
    /// finds no slot in the hour stays queued until the oldest order leaves the window.
    fn start_due(&mut self) {
        let Some(cfg) = self.cfg.clone() else { return };
        let now = unix_now();
        match &self.paused {
            // The whole queue waits for the server (see `throttle`).
            Some((until, _)) if *until > now => return,
            Some(_) => self.pause(None),
            None => {}
        }
        while self.orders.front().is_some_and(|(t, _)| t + HOUR <= now) {
            self.orders.pop_front();
        }
        // Other writers' orders of the hour (an earlier run's, other replicas'): the CA
        // counts them with ours.
        let others: Vec<u64> = self.persist.others(now).collect();
        let mut ordered = false;
        let (mut first, renewals): (Vec<_>, Vec<_>) = self
            .queue
            .iter()
            .take_while(|(t, _)| *t <= now)
            .cloned()
            .partition(|(_, name)| !self.has_cert(name));
        // Asked for by a handshake: ahead of the other first certificates (a stable sort).
        if !self.urgent.is_empty() {
            first.sort_by_key(|(_, name)| !self.urgent.contains(name));
        }
        for (due, name) in first.into_iter().chain(renewals) {
            if self.in_flight.len() + self.starting.len() >= MAX_IN_FLIGHT {
                break;
            }
            let may_order = self.order_after.get(&name).is_none_or(|t| *t <= now);
            if may_order {
                if let Some(limit) = cfg.orders_per_hour {
                    let used = self.orders.len() + others.len();
                    if used >= limit as usize {
                        // When the hour holds one order less than the limit.
                        let mut starts: Vec<u64> = self
                            .orders
                            .iter()
                            .map(|(t, _)| *t)
                            .chain(others.clone())
                            .collect();
                        starts.sort_unstable();
                        let free_at = starts[used - limit as usize] + HOUR;
                        self.queue.remove(&(due, name.clone()));
                        self.schedule(&name, free_at);
                        let detail =
                            format!("{limit} orders started in the last hour (orders_per_hour)");
                        self.update(&name, |s| {
                            if s.state != CertState::Valid {
                                s.state = CertState::Queued;
                            }
                            s.detail = Some(detail);
                        });
                        continue;
                    }
                }
                self.orders.push_back((now, name.clone()));
                ordered = true;
                self.urgent.remove(&name);
                self.update(&name, |s| {
                    s.state = CertState::Ordering;
                    s.detail = None;
                });
            }
            self.queue.remove(&(due, name.clone()));
            self.names.insert(name.clone(), None);
            self.starting.push((name, may_order));
        }
        if ordered {
            // Written down before any of them is sent (see `persist`).
            self.persist.mark(true);
        }
    }

    /// Spawns the attempts [`Run::start_due`] chose.
    fn spawn_starting(&mut self) {
        let Some(cfg) = self.cfg.clone() else {
            self.starting.clear();
            return;
        };
        for (name, may_order) in std::mem::take(&mut self.starting) {
            let span = tracing::info_span!("acme", name = %name);
            let generation = self.generation;
            let (cfg, account) = (cfg.clone(), self.account.clone());
            let challenges = self.shared.acme.challenges.clone();
            let keep = self.keep.clone();
            self.in_flight.spawn(
                async move {
                    let outcome =
                        attempt(&cfg, &keep, &account, &challenges, &name, may_order).await;
                    (generation, name, outcome)
                }
                .instrument(span),
            );
        }
    }

    /// `[acme] on_demand`: names asked for by a handshake are due now and go first. Names
    /// that left the config, have a certificate meanwhile, or are being ordered are
    /// dropped; a name in backoff or waiting for the server keeps its wait.
    fn take_demands(&mut self) {
        let demands = self.shared.acme.take_demands();
        if !self.cfg.as_ref().is_some_and(|c| c.on_demand) {
            return;
        }
        let now = unix_now();
        for host in demands {
            let Some((name, Some(due))) = self.names.get_key_value(host.as_str()) else {
                continue;
            };
            let (name, due) = (name.clone(), *due);
            if self.has_cert(&name) || !self.urgent.insert(name.clone()) {
                continue;
            }
            info!(name = %name, "ACME: a handshake asked for it, ordering it first");
            self.persist.mark(false);
            if due > now {
                self.queue.remove(&(due, name.clone()));
                self.schedule(&name, now);
            }
        }
    }

    fn has_cert(&self, name: &str) -> bool {
        self.shared
            .acme
            .status_map()
            .get(name)
            .is_some_and(|s| s.not_after.is_some())
    }
}

/// Whether two `[acme]` sections share directory, account and state (challenge and contact
/// changes apply to the next order without starting over).
fn same_setup(a: Option<&config::Acme>, b: Option<&config::Acme>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.directory == b.directory && a.state == b.state && a.ca == b.ca,
        _ => false,
    }
}
