//! Leases: a job that must happen once across replicas (and hand-run commands) is done by
//! whoever holds its row in `store_leases`. Taken and renewed by one conditional statement
//! each (no advisory lock, no session state: fine behind a transaction pooler); expiry by
//! the store's clock; the token grows at every change of holder, and a write made under a
//! lease checks it in the same transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

use super::{bounded, Store, StoreError};

/// Whether a process with `pid` runs on this machine (one we may not signal runs too).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A lease's length in the store's whole seconds. At least 2: an expiry of `now + 1` taken at
/// x.9 s would be gone 0.1 s later, before the first renewal.
fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2).max(2)
}

/// The lease of a zone's DNS publication, the same for `serve` and `apply`.
pub(crate) fn zone_job(zone: &str) -> String {
    format!("zone:{}", zone.trim_end_matches('.').to_ascii_lowercase())
}

/// A lease held by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub job: String,
    pub token: i64,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Store {
    /// `<replica>/<pid>`: a hand-run command on the same machine is another holder.
    pub(crate) fn holder(&self) -> String {
        format!("{}/{}", self.replica, std::process::id())
    }

    /// Takes `job` for `ttl` unless another holder's lease has not expired. `None`: held.
    pub(crate) async fn acquire(
        &self,
        job: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let ttl_secs = ttl_secs(ttl);
        let token: Option<i64> = bounded(async {
            let mut tx = self.pool.begin().await?;
            let t = self.acquire_in(&mut tx, job, ttl_secs).await?;
            tx.commit().await?;
            Ok(t)
        })
        .await?;
        self.acquired(job, token, ttl).await
    }

    /// The statement of [`Store::acquire`] inside `tx`: the new token, or `None` (held).
    pub(super) async fn acquire_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        job: &str,
        ttl_secs: i64,
    ) -> Result<Option<i64>, StoreError> {
        let now = self.clock_sql();
        // An expired lease (or none) is taken with a new token; our own is renewed.
        let sql = format!(
            "INSERT INTO store_leases (job, holder, token, expires_at) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
             token = CASE WHEN store_leases.holder = excluded.holder THEN store_leases.token \
                          ELSE store_leases.token + 1 END \
             WHERE store_leases.expires_at <= {now} OR store_leases.holder = excluded.holder \
             RETURNING token"
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(job)
            .bind(self.holder())
            .bind(ttl_secs)
            .fetch_optional(&mut **tx)
            .await?)
    }

    /// After [`Store::acquire_in`]: a lease of a gone process of ours is taken over; the
    /// lease, if held now.
    pub(super) async fn acquired(
        &self,
        job: &str,
        token: Option<i64>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let holder = self.holder();
        let token = match token {
            Some(t) => Some(t),
            None => self.take_from_dead(job, &holder, ttl_secs(ttl)).await?,
        };
        self.note_held(job, token.is_some());
        Ok(token.map(|token| Lease {
            job: job.to_owned(),
            token,
            holder,
            ttl,
        }))
    }

    /// Extends `lease` by its ttl; false: it was lost (expired and taken, or expired).
    pub(crate) async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        let held = bounded(async {
            let mut tx = self.pool.begin().await?;
            let held = self.renew_in(&mut tx, lease).await?;
            tx.commit().await?;
            Ok(held)
        })
        .await?;
        if !held {
            self.note_held(&lease.job, false);
        }
        Ok(held)
    }

    /// Renews inside `tx`: a write made after it in the same transaction is fenced (the row
    /// stays locked until the commit).
    pub(super) async fn renew_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        lease: &Lease,
    ) -> Result<bool, StoreError> {
        let now = self.clock_sql();
        let sql = format!(
            "UPDATE store_leases SET expires_at = {now} + $1 \
             WHERE job = $2 AND holder = $3 AND token = $4 AND expires_at > {now}"
        );
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(ttl_secs(lease.ttl))
            .bind(&lease.job)
            .bind(&lease.holder)
            .bind(lease.token)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Gives `lease` up at once, so that the next holder need not wait for its expiry.
    pub(crate) async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.note_held(&lease.job, false);
        bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE store_leases SET expires_at = 0 WHERE job = $1 AND holder = $2 AND token = $3",
            )
            .persistent(false)
            .bind(&lease.job)
            .bind(&lease.holder)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// A lease held by an earlier process of this replica (same name, this machine) that is
    /// gone — a crash or kill -9 just before a restart — is taken over at once rather than
    /// after its expiry: no other process can be renewing it. Compare-and-swap on the dead
    /// holder, so a live taker that got there first wins.
    async fn take_from_dead(
        &self,
        job: &str,
        holder: &str,
        ttl_secs: i64,
    ) -> Result<Option<i64>, StoreError> {
        let Some((old, _)) = self.holder_of(job).await? else {
            return Ok(None);
        };
        let dead = old
            .strip_prefix(&*self.replica)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && !process_alive(pid));
        if !dead {
            return Ok(None);
        }
        let now = self.clock_sql();
        let sql = format!(
            "UPDATE store_leases SET holder = $2, token = token + 1, expires_at = {now} + $3 \
             WHERE job = $1 AND holder = $4 RETURNING token"
        );
        let token: Option<i64> = bounded(async {
            let mut tx = self.pool.begin().await?;
            let t = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(job)
                .bind(holder)
                .bind(ttl_secs)
                .bind(&old)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(t)
        })
        .await?;
        if token.is_some() {
            tracing::info!(job, dead = %old, "lease of a gone process of this replica taken over");
        }
        Ok(token)
    }

    /// Who holds `job` now (holder, expiry in unix seconds by the store's clock); `None`:
    /// nobody, or an expired holder.
    pub(crate) async fn holder_of(&self, job: &str) -> Result<Option<(String, i64)>, StoreError> {
        let now = self.clock_sql();
        let sql = format!(
            "SELECT holder, expires_at FROM store_leases WHERE job = $1 AND expires_at > {now}"
        );
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(job)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        })
        .await
    }

    /// Takes `job` unless another holds it, and keeps it renewed (every third of `ttl`) until
    /// the [`Held`] is released or dropped.
    pub(crate) async fn hold(&self, job: &str, ttl: Duration) -> Result<Option<Held>, StoreError> {
        Ok(self.acquire(job, ttl).await?.map(|lease| self.keep(lease)))
    }

    /// Keeps `lease` renewed (every third of its ttl) until the [`Held`] is released or
    /// dropped.
    pub(super) fn keep(&self, lease: Lease) -> Held {
        let lost = Arc::new(AtomicBool::new(false));
        let renewing = {
            let (store, lease, lost) = (self.clone(), lease.clone(), lost.clone());
            AbortOnDropHandle::new(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease.ttl() / 3).await;
                    match store.renew(&lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(job = %lease.job, "lost the lease while the job ran (the store stalled?); its next holder does the job again");
                            lost.store(true, Ordering::Release);
                            return;
                        }
                        // Still ours until it expires; the next renewal may get through.
                        Err(e) => warn!(job = %lease.job, error = %e, "cannot renew the lease"),
                    }
                }
            }))
        };
        Held {
            store: self.clone(),
            lease: Some(lease),
            lost,
            _renewing: renewing,
        }
    }

    /// [`Store::hold`], waiting up to `within` for another holder to finish (a command).
    /// `Err`: still held after `within`, by this holder until this expiry (if known).
    pub(crate) async fn hold_waiting(
        &self,
        job: &str,
        ttl: Duration,
        within: Duration,
    ) -> Result<Result<Held, Option<(String, i64)>>, StoreError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(held) = self.hold(job, ttl).await? {
                return Ok(Ok(held));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Err(self.holder_of(job).await?));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Records that `job` was done now, if `lease` (on that job) is still held: the write is
    /// fenced by its token. False: lost, nothing written.
    pub(crate) async fn job_done(&self, lease: &Lease) -> Result<bool, StoreError> {
        let now = self.clock_sql();
        let sql = format!(
            "INSERT INTO store_jobs (job, done_at, token) VALUES ($1, {now}, $2) \
             ON CONFLICT (job) DO UPDATE SET done_at = excluded.done_at, token = excluded.token"
        );
        bounded(async {
            let mut tx = self.pool.begin().await?;
            if !self.renew_in(&mut tx, lease).await? {
                return Ok(false);
            }
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(&lease.job)
                .bind(lease.token)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Seconds since `job` was last done (by any replica, by the store's clock); `None`: never.
    pub(crate) async fn since_done(&self, job: &str) -> Result<Option<u64>, StoreError> {
        let now = self.clock_sql();
        let sql = format!("SELECT {now} - done_at FROM store_jobs WHERE job = $1");
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let ago: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(job)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(ago.map(|a| u64::try_from(a).unwrap_or(0)))
        })
        .await
    }

    /// The jobs this process took a lease on since it started, and whether it holds each now
    /// (for `mta_stsd_lease_held`).
    pub(crate) fn held_here(&self) -> Vec<(String, bool)> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(j, h)| (j.clone(), *h))
            .collect()
    }

    fn note_held(&self, job: &str, held: bool) {
        let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(job) {
            Some(h) => *h = held,
            None if held => {
                map.insert(job.to_owned(), true);
            }
            None => {}
        }
    }

    /// Who holds each lease, for `/status`: (job, holder, token, expires_at).
    pub(crate) async fn leases(&self) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query_as(
                "SELECT job, holder, token, expires_at FROM store_leases ORDER BY job",
            )
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(rows)
        })
        .await
    }

    /// The last drift findings (JSON) and when they were checked.
    pub(crate) async fn drift_findings(&self) -> Result<Option<(String, i64)>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let row =
                sqlx::query_as("SELECT report, checked_at FROM store_drift WHERE name = 'last'")
                    .persistent(false)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(row)
        })
        .await
    }

    /// Keeps the drift findings if `lease` (the "drift" job) is still held; false: lost, and
    /// nothing was written.
    pub(crate) async fn save_drift(
        &self,
        lease: &Lease,
        report: &str,
        checked_at: i64,
    ) -> Result<bool, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            if !self.renew_in(&mut tx, lease).await? {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO store_drift (name, report, token, checked_at) VALUES ('last', $1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET report = excluded.report, token = excluded.token, \
                 checked_at = excluded.checked_at",
            )
            .persistent(false)
            .bind(report)
            .bind(lease.token)
            .bind(checked_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}

/// A lease kept renewed while a job runs; released (at once, for the next holder) by
/// [`Held::release`], or on drop.
#[derive(Debug)]
pub(crate) struct Held {
    store: Store,
    lease: Option<Lease>,
    lost: Arc<AtomicBool>,
    _renewing: AbortOnDropHandle<()>,
}

impl Held {
    #[allow(clippy::expect_used, reason = "taken only by release or drop")]
    pub(crate) fn lease(&self) -> &Lease {
        self.lease.as_ref().expect("taken only by release or drop")
    }

    /// The renewal found the lease taken: the job's result must not be written.
    pub(crate) fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    pub(crate) async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            if let Err(e) = self.store.release(&lease).await {
                warn!(job = %lease.job, error = %e, "cannot release the lease; it expires by itself");
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let store = self.store.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = store.release(&lease).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{open_sqlite, sqlite_url, SQLITE_FILE};
    use super::*;

    /// A held lease shuts others out and names its holder; its "done" write is fenced: once
    /// it expired and another took it, the old holder's write is refused and the new one's
    /// stands. `held_here` follows this process's holding.
    #[tokio::test]
    async fn a_held_lease_names_its_holder_and_fences_its_done_write() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            open_sqlite(dir.path(), "a").await,
            open_sqlite(dir.path(), "b").await,
        );
        let ttl = Duration::from_secs(30);
        let held = a.hold("zone:x", ttl).await.unwrap().expect("free");
        assert!(b.hold("zone:x", ttl).await.unwrap().is_none(), "held by a");
        let (holder, _) = b.holder_of("zone:x").await.unwrap().expect("a holder");
        assert_eq!(holder, a.holder());
        assert!(a.job_done(held.lease()).await.unwrap());
        assert!(b
            .since_done("zone:x")
            .await
            .unwrap()
            .is_some_and(|s| s <= 1));
        assert_eq!(a.held_here(), vec![("zone:x".to_owned(), true)]);

        // a stalls past its expiry; b takes over with a larger token.
        let old = held.lease().clone();
        drop(held);
        sqlx::any::install_default_drivers();
        let raw = sqlx::AnyPool::connect(&sqlite_url(&dir.path().join(SQLITE_FILE), "rw"))
            .await
            .unwrap();
        // The drop's release may not have run yet: expire it by hand either way.
        sqlx::raw_sql("UPDATE store_leases SET expires_at = 0")
            .execute(&raw)
            .await
            .unwrap();
        let next = b.hold("zone:x", ttl).await.unwrap().expect("expired");
        assert!(next.lease().token > old.token);
        assert!(
            !a.job_done(&old).await.unwrap(),
            "a lost lease writes nothing"
        );
        assert!(b.job_done(next.lease()).await.unwrap());
        let token: i64 = sqlx::query_scalar("SELECT token FROM store_jobs WHERE job = 'zone:x'")
            .fetch_one(&raw)
            .await
            .unwrap();
        assert_eq!(token, next.lease().token);
        next.release().await;
        assert!(b.holder_of("zone:x").await.unwrap().is_none(), "released");
        assert_eq!(b.held_here(), vec![("zone:x".to_owned(), false)]);
    }

    /// A restart after a crash: the lease of this replica's earlier, gone process is taken at
    /// once; a live process's, or another replica's, waits for its expiry.
    #[tokio::test]
    async fn a_gone_process_of_this_replica_leaves_its_lease_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(dir.path(), "r").await;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let ttl = Duration::from_secs(60);
        let put = |job: &'static str, holder: String| {
            let store = store.clone();
            async move {
                let now = store.now().await.unwrap() as i64;
                sqlx::query(
                    "INSERT INTO store_leases (job, holder, token, expires_at) VALUES ($1, $2, 7, $3)",
                )
                .bind(job)
                .bind(holder)
                .bind(now + 600)
                .execute(&store.pool)
                .await
                .unwrap();
            }
        };
        put("a", format!("r/{gone}")).await;
        put("b", format!("other/{gone}")).await;
        put("c", format!("r/{}", std::os::unix::process::parent_id())).await;
        let a = store
            .acquire("a", ttl)
            .await
            .unwrap()
            .expect("a gone holder's lease");
        assert_eq!(a.token, 8, "a new holder, a new token");
        assert!(
            store.acquire("b", ttl).await.unwrap().is_none(),
            "another replica's"
        );
        assert!(
            store.acquire("c", ttl).await.unwrap().is_none(),
            "a live process's"
        );
    }
}
