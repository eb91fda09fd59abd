//! What DANE publication must remember across restarts and replicas: per MX host, the key
//! its certificate presented, each TLSA value we published (since when, and when it may go),
//! and an unannounced rollover. In the store (`store_dane`, one row per host), written under
//! the "dane" lease; `<[state] dir>/dane.json`, where earlier versions kept it, is imported
//! once and left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::store::{Lease, Store};

/// The file is small (a few hosts); a larger one is not ours.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Memory {
    /// By host (no trailing dot).
    pub hosts: BTreeMap<String, Host>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Host {
    /// Where the records are, so a host removed from the config can still be withdrawn.
    pub provider: String,
    pub zone: Option<String>,
    pub ttl: u32,
    /// The `3 1 1` value of the key the certificate presented when last read.
    pub presented: Option<String>,
    /// Our TLSA values (presentation form, `3 1 1 HEX`).
    pub values: BTreeMap<String, Value>,
    /// An unannounced rollover, until its key has been published for a TTL.
    pub finding: Option<Finding>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Value {
    /// When we first saw it in DNS (published by us); `None` while it is not there yet.
    pub published_at: Option<u64>,
    /// Set when the value stopped being wanted: it is withdrawn at this time, one TTL later.
    pub withdraw_at: Option<u64>,
    /// It was in DNS before we published it: someone else's, never removed by us.
    #[serde(default)]
    pub found: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finding {
    pub at: u64,
    pub message: String,
}

pub(crate) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("dane.json")
}

/// Reads the file; a missing file is an empty memory. A damaged one is an error: guessing
/// would withdraw records too early or never.
pub(crate) fn load(state_dir: &Path) -> Result<Memory, String> {
    use std::io::Read;
    let p = path(state_dir);
    let file = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Memory::default()),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let mut buf = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if buf.len() as u64 > MAX_BYTES {
        return Err(format!("{}: larger than 4 MiB", p.display()));
    }
    serde_json::from_slice(&buf).map_err(|e| format!("{}: {e}", p.display()))
}

/// One row per host, as the store keeps them.
fn rows(memory: &Memory) -> Result<Vec<(String, String)>, String> {
    memory
        .hosts
        .iter()
        .map(|(host, h)| {
            serde_json::to_string(h)
                .map(|json| (host.clone(), json))
                .map_err(|e| format!("{host}: {e}"))
        })
        .collect()
}

/// The memory in the store. A damaged row is an error, as a damaged file was.
pub(crate) async fn load_store(store: &Store) -> Result<Memory, String> {
    let mut memory = Memory::default();
    for (host, json) in store.dane_rows().await.map_err(|e| e.to_string())? {
        let h = serde_json::from_str(&json).map_err(|e| {
            format!("the store's DANE memory of {host} (store_dane) is damaged: {e}")
        })?;
        memory.hosts.insert(host, h);
    }
    Ok(memory)
}

/// Writes the memory if `lease` (the "dane" job) is still held; false: lost, nothing written.
pub(crate) async fn save_store(
    store: &Store,
    lease: &Lease,
    memory: &Memory,
) -> Result<bool, String> {
    store
        .save_dane(lease, &rows(memory)?)
        .await
        .map_err(|e| e.to_string())
}

/// Imports `<state_dir>/dane.json` into the store unless this store has imported one (any
/// replica's); the file is left as it is. `Some(hosts)`: imported now. A damaged file is an
/// error and nothing is marked, so the next start tries again.
pub(crate) async fn import(store: &Store, state_dir: &Path) -> Result<Option<usize>, String> {
    if store.dane_imported().await.map_err(|e| e.to_string())? {
        if path(state_dir).exists() {
            tracing::info!("dane.json in the state directory is not imported again (done before); it is no longer read or written");
        }
        return Ok(None);
    }
    let memory = load(state_dir)?;
    let note = serde_json::json!({
        "from": path(state_dir),
        "replica": store.replica(),
        "hosts": memory.hosts.len(),
    })
    .to_string();
    let imported = store
        .import_dane(&rows(&memory)?, &note)
        .await
        .map_err(|e| e.to_string())?;
    if !imported || memory.hosts.is_empty() {
        return Ok(None);
    }
    tracing::info!(
        hosts = memory.hosts.len(),
        "imported the DANE memory from dane.json into the store (the file is left as it is)"
    );
    Ok(Some(memory.hosts.len()))
}

/// For a command that reads, never writes (`plan`, `check`): the store's memory when the
/// store exists and has taken `dane.json` in, else the file (not imported: that is for
/// `serve` and `apply`).
pub(crate) async fn read(state: &crate::config::State) -> Result<Memory, String> {
    let target = crate::state::store::Target {
        dir: state.dir.clone(),
        url: state.url.clone(),
        replica: state.replica.clone(),
        key: state.key.clone(),
    };
    if let Some(store) = Store::open_existing(&target)
        .await
        .map_err(|e| e.to_string())?
    {
        if store.dane_imported().await.map_err(|e| e.to_string())? || !path(&target.dir).exists() {
            return load_store(&store).await;
        }
    }
    load(&target.dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::open_sqlite;

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), Ok(Memory::default()));
        let mut m = Memory::default();
        m.hosts
            .entry("mail.example.org".into())
            .or_default()
            .values
            .insert(
                "3 1 1 AB".into(),
                Value {
                    published_at: Some(5),
                    withdraw_at: None,
                    found: false,
                },
            );
        std::fs::write(path(dir.path()), serde_json::to_vec(&m).expect("json")).expect("write");
        assert_eq!(load(dir.path()), Ok(m));
        std::fs::write(path(dir.path()), b"{").expect("write");
        assert!(load(dir.path()).is_err());
    }

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/main-state");

    /// `dane.json` as main wrote it goes into the store on the first start, every host and
    /// every value as it was (a withdrawal's time, a finding, a foreign value); the file is
    /// left as it is, and a second start (or another replica's first) imports nothing, even
    /// after the memory moved on.
    #[tokio::test]
    async fn dane_json_written_by_main_is_imported_entry_by_entry() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(format!("{FIXTURE}/dane.json")).unwrap();
        std::fs::write(path(dir.path()), &bytes).unwrap();
        let want = load(Path::new(FIXTURE)).unwrap();
        assert_eq!(want.hosts.len(), 3);

        let a = open_sqlite(dir.path(), "a").await;
        assert_eq!(import(&a, dir.path()).await, Ok(Some(3)));
        let got = load_store(&a).await.unwrap();
        assert_eq!(
            got.hosts.keys().collect::<Vec<_>>(),
            want.hosts.keys().collect::<Vec<_>>()
        );
        for (host, w) in &want.hosts {
            let g = &got.hosts[host];
            assert_eq!(
                (&g.provider, &g.zone, g.ttl, &g.presented, &g.finding),
                (&w.provider, &w.zone, w.ttl, &w.presented, &w.finding),
                "{host}"
            );
            assert_eq!(g.values.len(), w.values.len(), "{host}");
            for (value, wv) in &w.values {
                assert_eq!(g.values.get(value), Some(wv), "{host} {value}");
            }
        }
        assert_eq!(
            std::fs::read(path(dir.path())).unwrap(),
            bytes,
            "file left alone"
        );

        // The memory moves on under the lease; no import (this replica's or another's)
        // brings the file's older state back.
        let held = a
            .hold(
                crate::state::store::DANE_JOB,
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap()
            .expect("free");
        let mut next = got.clone();
        next.hosts.remove("mx3.example.net");
        assert_eq!(save_store(&a, held.lease(), &next).await, Ok(true));
        held.release().await;
        assert_eq!(import(&a, dir.path()).await, Ok(None));
        let b = open_sqlite(dir.path(), "b").await;
        assert_eq!(import(&b, dir.path()).await, Ok(None));
        assert_eq!(load_store(&b).await.unwrap(), next);
    }

    /// A damaged `dane.json` is not imported and not marked as done: the start that meets it
    /// says so, and the next tries again; a damaged row in the store is an error, never an
    /// empty memory (which would drop a scheduled withdrawal).
    #[tokio::test]
    async fn damage_is_an_error_not_an_empty_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"{\"hosts\": {").unwrap();
        let a = open_sqlite(dir.path(), "a").await;
        let e = import(&a, dir.path()).await.unwrap_err();
        assert!(e.contains("dane.json"), "{e}");
        assert!(!a.dane_imported().await.unwrap());
        std::fs::write(path(dir.path()), b"{\"hosts\": {}}").unwrap();
        assert_eq!(import(&a, dir.path()).await, Ok(None));
        assert!(a.dane_imported().await.unwrap());

        sqlx::query(
            "INSERT INTO store_dane (host, entry, token, updated_at) VALUES ('x', '{', 1, 0)",
        )
        .execute(a.pool())
        .await
        .unwrap();
        let e = load_store(&a).await.unwrap_err();
        assert!(e.contains("damaged") && e.contains('x'), "{e}");
    }

    /// A write under a lease that was lost (expired and taken by another replica) writes
    /// nothing: the new holder's memory stands.
    #[tokio::test]
    async fn a_lost_lease_writes_no_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            open_sqlite(dir.path(), "a").await,
            open_sqlite(dir.path(), "b").await,
        );
        let ttl = std::time::Duration::from_secs(30);
        let job = crate::state::store::DANE_JOB;
        let old = a.hold(job, ttl).await.unwrap().expect("free");
        let lease = old.lease().clone();
        drop(old);
        sqlx::query("UPDATE store_leases SET expires_at = 0")
            .execute(a.pool())
            .await
            .unwrap();
        let held = b.hold(job, ttl).await.unwrap().expect("expired");
        let mut m = Memory::default();
        m.hosts.insert("b.example".into(), Host::default());
        assert_eq!(save_store(&b, held.lease(), &m).await, Ok(true));
        let mut stale = Memory::default();
        stale.hosts.insert("a.example".into(), Host::default());
        assert_eq!(save_store(&a, &lease, &stale).await, Ok(false));
        assert_eq!(load_store(&a).await.unwrap(), m);
    }
}
