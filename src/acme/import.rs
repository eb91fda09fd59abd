//! The ACME state directory of an earlier version (`[acme] state`: the account as
//! `account-<hash>.json`, `<name>.crt` and `<name>.key`, `limits-<hash>.json`) is imported
//! into the store once, on the first start that has it; the files are left as they are.
//! What the store holds already wins: an import never overwrites.

use serde_json::json;
use tracing::{error, info, warn};

use super::limits::{self, Stored};
use super::store::{Legacy, StoredCert};
use crate::clock::unix_now;
use crate::config;
use crate::state::store::{NewCert, Store};

/// What an import found and took.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Imported {
    pub account: bool,
    pub certificates: usize,
    /// Pairs that could not be read or did not go together.
    pub skipped: usize,
    pub limits: bool,
}

/// Imports `cfg.state` unless this store has imported that directory before (any replica's
/// start: the first does it). Failures are logged; a store that fails is tried again at the
/// next start.
pub(super) async fn import(store: &Store, cfg: &config::Acme) -> Option<Imported> {
    let marker = format!("acme_import:{}", cfg.state.display());
    match store.meta(&marker).await {
        Ok(Some(_)) => return None,
        Ok(None) => {}
        Err(e) => {
            warn!(
                "ACME: cannot tell whether {} was imported: {e}",
                cfg.state.display()
            );
            return None;
        }
    }
    let legacy = Legacy::new(&cfg.state);
    match import_dir(store, cfg, &legacy).await {
        Ok(done) => {
            let note = json!({
                "from": legacy.dir(),
                "replica": store.replica(),
                "account": done.account,
                "certificates": done.certificates,
                "skipped": done.skipped,
                "limits": done.limits,
            })
            .to_string();
            if let Err(e) = store.set_meta_once(&marker, &note).await {
                warn!(
                    "ACME: the import of {} is not marked done: {e}",
                    legacy.dir().display()
                );
            }
            if done != Imported::default() {
                info!(
                    dir = %legacy.dir().display(),
                    account = done.account,
                    certificates = done.certificates,
                    skipped = done.skipped,
                    limits = done.limits,
                    "ACME: imported the state directory of an earlier version into the store (the files are left as they are)"
                );
            }
            Some(done)
        }
        Err(e) => {
            error!(
                "ACME: importing {}: {e}; tried again at the next start",
                legacy.dir().display()
            );
            None
        }
    }
}

async fn import_dir(
    store: &Store,
    cfg: &config::Acme,
    legacy: &Legacy,
) -> Result<Imported, String> {
    let mut done = Imported::default();
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    if let Some(json) = legacy
        .read_account(&cfg.directory)
        .map_err(|e| io("the account", e))?
    {
        done.account = store
            .put_acme_account(&cfg.directory, &json, false)
            .await
            .map_err(|e| e.to_string())?;
    }
    for name in legacy.names().map_err(|e| io("the directory", e))? {
        let Some((chain, key)) = legacy.pair(&name).map_err(|e| io(&name, e))? else {
            continue;
        };
        let c = match StoredCert::from_pem(&name, &chain, &key) {
            Ok(c) => c,
            Err(e) => {
                warn!(name, "ACME import: {name}.crt/.key left out: {e}");
                done.skipped += 1;
                continue;
            }
        };
        let row = NewCert {
            name: &name,
            chain_pem: &chain,
            key_pem: &key,
            not_before: c.not_before,
            not_after: c.not_after,
            renew_at: c.renew_at(),
        };
        if store
            .import_acme_cert(row)
            .await
            .map_err(|e| e.to_string())?
        {
            done.certificates += 1;
        }
    }
    match limits::read(&limits::path(&cfg.state, &cfg.directory), unix_now()) {
        Stored::Missing => {}
        Stored::Found(l) => {
            let json = serde_json::to_string(&l).map_err(|e| e.to_string())?;
            done.limits = store
                .merge_acme_limits(&cfg.directory, |stored| match stored {
                    Some(s) => (s.to_owned(), false),
                    None => (json, true),
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        Stored::Damaged { why, .. } => {
            warn!("ACME import: the limits file is unreadable ({why}); not imported");
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/main-acme");

    fn cfg(state: &Path) -> config::Acme {
        let directory = std::fs::read_to_string(Path::new(FIXTURE).join("directory")).unwrap();
        config::Acme {
            directory: directory.trim().to_owned(),
            contact: Vec::new(),
            challenge: config::Challenge::TlsAlpn01,
            state: state.to_owned(),
            ca: None,
            orders_per_hour: None,
            on_demand: false,
        }
    }

    /// main's `[acme] state` (tests/fixtures/main-acme, written by main's daemon against
    /// pebble) goes into the store entry by entry: the account as it was, each name's chain
    /// and key byte for byte with the leaf's validity, the limits document with every entry;
    /// once only, and never over what the store holds.
    #[tokio::test]
    async fn main_acme_state_is_imported_entry_by_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::state::store::open_sqlite(tmp.path(), "r").await;
        let state = Path::new(FIXTURE).join("acme");
        let cfg = cfg(&state);
        let legacy = Legacy::new(&state);
        let done = import(&store, &cfg).await.expect("imported");
        let names = legacy.names().unwrap();
        assert_eq!(names, ["mta-sts.a.example", "mta-sts.b.example"]);
        assert_eq!(
            done,
            Imported {
                account: true,
                certificates: 2,
                skipped: 0,
                limits: true
            }
        );
        let account = std::fs::read_to_string(legacy.account_path(&cfg.directory)).unwrap();
        assert_eq!(
            store.acme_account(&cfg.directory).await.unwrap().unwrap(),
            account
        );
        for name in &names {
            let (chain, key) = legacy.pair(name).unwrap().unwrap();
            let row = store.acme_cert(name).await.unwrap().unwrap();
            assert_eq!(
                (row.chain_pem.as_str(), row.key_pem.as_str()),
                (chain.as_str(), key.as_str())
            );
            let c = StoredCert::from_pem(name, &chain, &key).unwrap();
            assert_eq!(
                (row.not_before, row.not_after, row.renew_at),
                (c.not_before, c.not_after, c.renew_at())
            );
        }
        let file = match limits::read(&limits::path(&state, &cfg.directory), unix_now()) {
            Stored::Found(l) => l,
            other => panic!("{other:?}"),
        };
        assert!(!file.orders.is_empty(), "the fixture has orders");
        let stored = store.acme_limits(&cfg.directory).await.unwrap().unwrap();
        assert_eq!(limits::parse(stored.as_bytes()).unwrap(), file);

        // Once: a second import does nothing, even with the store emptied meanwhile.
        sqlx::query("DELETE FROM store_acme_certs")
            .execute(store.pool())
            .await
            .unwrap();
        assert!(import(&store, &cfg).await.is_none());
        assert!(store.acme_certs_since(0).await.unwrap().is_empty());
    }
}
