//! ACME in the store (`migrations/20261207000400_acme.sql`): the account per directory URL,
//! a certificate per name written under the lease `acme:<name>` (fenced by its token), the
//! challenge answers of the orders in flight, and the CA's limits per directory. Rows only:
//! what they mean is `crate::acme`'s.

use std::time::Duration;

use super::seal;
use super::{bounded, Held, Store, StoreError};

/// Rows per read of the certificates.
const PAGE: i64 = 1_000;
/// Tries of a certificate write whose `seq` another writer took at the same moment.
const SEQ_TRIES: usize = 5;

/// The lease of a name's ACME order, the same on every replica.
pub(crate) fn acme_job(name: &str) -> String {
    format!("acme:{}", name.trim_end_matches('.').to_ascii_lowercase())
}

/// One stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertRow {
    pub name: String,
    pub chain_pem: String,
    pub key_pem: String,
    pub not_before: i64,
    pub not_after: i64,
    pub renew_at: i64,
    pub seq: i64,
    pub replica: String,
}

type Row = (String, String, String, i64, i64, i64, i64, String);

/// The identity a sealed value is bound to (its associated data).
fn cert_row_id(name: &str) -> String {
    format!("cert:{name}")
}

fn account_row_id(directory: &str) -> String {
    format!("account:{directory}")
}

const COLUMNS: &str =
    "name, chain_pem, key_pem, not_before, not_after, renew_at, seq, replica FROM store_acme_certs";

/// A certificate to write: what the leaf says, and when renewal is due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewCert<'a> {
    pub name: &'a str,
    pub chain_pem: &'a str,
    pub key_pem: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    pub renew_at: i64,
}

impl Store {
    fn cert_row(&self, r: Row) -> Result<CertRow, StoreError> {
        let key_pem = seal::open(self.sealer.as_deref(), &cert_row_id(&r.0), &r.2)
            .map_err(StoreError::Sealed)?;
        Ok(CertRow {
            name: r.0,
            chain_pem: r.1,
            key_pem,
            not_before: r.3,
            not_after: r.4,
            renew_at: r.5,
            seq: r.6,
            replica: r.7,
        })
    }

    /// At the start of `serve`: a store whose private keys were sealed opens only with the
    /// key they were sealed with (a clear error now, rather than no certificate later).
    pub(crate) async fn check_sealing(&self) -> Result<(), StoreError> {
        type Found = Option<(String, String)>;
        let (cert, account): (Found, Found) = bounded(async {
            let mut tx = self.pool.begin().await?;
            let c = sqlx::query_as(
                "SELECT name, key_pem FROM store_acme_certs WHERE key_pem LIKE 'sealed:%' LIMIT 1",
            )
            .persistent(false)
            .fetch_optional(&mut *tx)
            .await?;
            let a = sqlx::query_as(
                "SELECT directory, credentials FROM store_acme_accounts \
                     WHERE credentials LIKE 'sealed:%' LIMIT 1",
            )
            .persistent(false)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok((c, a))
        })
        .await?;
        let rows = cert
            .map(|(n, v)| (cert_row_id(&n), v))
            .into_iter()
            .chain(account.map(|(d, v)| (account_row_id(&d), v)));
        for (id, v) in rows {
            seal::open(self.sealer.as_deref(), &id, &v).map_err(StoreError::Sealed)?;
        }
        Ok(())
    }

    /// The account credentials (JSON) stored for `directory`.
    pub(crate) async fn acme_account(&self, directory: &str) -> Result<Option<String>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let v: Option<String> = sqlx::query_scalar(
                "SELECT credentials FROM store_acme_accounts WHERE directory = $1",
            )
            .persistent(false)
            .bind(directory)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(v)
        })
        .await?
        .map(|v| {
            seal::open(self.sealer.as_deref(), &account_row_id(directory), &v)
                .map_err(StoreError::Sealed)
        })
        .transpose()
    }

    /// Stores the account of `directory`; `replace`: over one stored before (else the first
    /// stays, for an import that must not overwrite).
    pub(crate) async fn put_acme_account(
        &self,
        directory: &str,
        credentials: &str,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let on_conflict = if replace {
            "DO UPDATE SET credentials = excluded.credentials, updated_at = excluded.updated_at"
        } else {
            "DO NOTHING"
        };
        let sql = format!(
            "INSERT INTO store_acme_accounts (directory, credentials, updated_at) \
             VALUES ($1, $2, {}) ON CONFLICT (directory) {on_conflict}",
            self.clock_sql()
        );
        let credentials = seal::seal(
            self.sealer.as_deref(),
            &account_row_id(directory),
            credentials,
        )
        .map_err(StoreError::Sealed)?;
        bounded(async {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(directory)
                .bind(credentials)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n == 1)
        })
        .await
    }

    /// Forgets the account of `directory` (the server no longer knows it).
    pub(crate) async fn forget_acme_account(&self, directory: &str) -> Result<(), StoreError> {
        bounded(async {
            let mut tx = self.begin_write().await?;
            sqlx::query("DELETE FROM store_acme_accounts WHERE directory = $1")
                .persistent(false)
                .bind(directory)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The certificate stored for `name`.
    pub(crate) async fn acme_cert(&self, name: &str) -> Result<Option<CertRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} WHERE name = $1");
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let r: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(r)
        })
        .await?
        .map(|r| self.cert_row(r))
        .transpose()
    }

    /// Up to a page of certificates written after `after` (a `seq`), in order: every replica
    /// polls this (one indexed query) to serve what another obtained.
    pub(crate) async fn acme_certs_since(&self, after: i64) -> Result<Vec<CertRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2");
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(rows)
        })
        .await?
        .into_iter()
        .map(|r| self.cert_row(r))
        .collect()
    }

    /// Writes `cert` if `lease` (its `acme:<name>`) is still held, with the lease's token;
    /// false: lost, nothing written (a replica that lost the lease never overwrites its
    /// successor's certificate).
    pub(crate) async fn save_acme_cert(
        &self,
        lease: &super::Lease,
        cert: NewCert<'_>,
    ) -> Result<bool, StoreError> {
        self.write_cert(Some(lease), cert).await
    }

    /// Writes `cert` unless one is stored for its name (the import of an earlier version's
    /// files); false: one was there.
    pub(crate) async fn import_acme_cert(&self, cert: NewCert<'_>) -> Result<bool, StoreError> {
        self.write_cert(None, cert).await
    }

    async fn write_cert(
        &self,
        lease: Option<&super::Lease>,
        cert: NewCert<'_>,
    ) -> Result<bool, StoreError> {
        let mut tries = 0;
        loop {
            match bounded(self.write_cert_once(lease, cert)).await {
                // Another writer took the same `seq` (the unique index): read the max again.
                Err(StoreError::Unavailable(sqlx::Error::Database(e)))
                    if tries < SEQ_TRIES && e.is_unique_violation() =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20 * tries as u64)).await;
                }
                r => return r,
            }
        }
    }

    async fn write_cert_once(
        &self,
        lease: Option<&super::Lease>,
        cert: NewCert<'_>,
    ) -> Result<bool, StoreError> {
        let key_pem = seal::seal(
            self.sealer.as_deref(),
            &cert_row_id(cert.name),
            cert.key_pem,
        )
        .map_err(StoreError::Sealed)?;
        let mut tx = self.begin_write().await?;
        if let Some(lease) = lease {
            if !self.renew_in(&mut tx, lease).await? {
                return Ok(false);
            }
        }
        let on_conflict = if lease.is_some() {
            "DO UPDATE SET chain_pem = excluded.chain_pem, key_pem = excluded.key_pem, \
             not_before = excluded.not_before, not_after = excluded.not_after, \
             renew_at = excluded.renew_at, token = excluded.token, seq = excluded.seq, \
             replica = excluded.replica, updated_at = excluded.updated_at"
        } else {
            "DO NOTHING"
        };
        let sql = format!(
            "INSERT INTO store_acme_certs (name, chain_pem, key_pem, not_before, not_after, \
             renew_at, token, seq, replica, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM store_acme_certs), $8, {}) \
             ON CONFLICT (name) {on_conflict}",
            self.clock_sql()
        );
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(cert.name)
            .bind(cert.chain_pem)
            .bind(&key_pem)
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(cert.renew_at)
            .bind(lease.map_or(0, |l| l.token))
            .bind(self.replica.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            self.notify_in(&mut tx, super::Topic::Certs).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Takes the lease `acme:<name>` for an order. On PostgreSQL the name's certificate row
    /// is claimed first with `FOR UPDATE SKIP LOCKED`, in the lease's transaction: of
    /// replicas finding the same renewal due at once, those that come second skip it at once
    /// rather than queue behind the row. `None`: another holds it.
    pub(crate) async fn hold_acme(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Held>, StoreError> {
        let job = acme_job(name);
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2).max(2);
        let token = bounded(async {
            let mut tx = self.begin_write().await?;
            if self.postgres {
                let claimed: Option<String> = sqlx::query_scalar(
                    "SELECT name FROM store_acme_certs WHERE name = $1 FOR UPDATE SKIP LOCKED",
                )
                .persistent(false)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                if claimed.is_none() {
                    // None stored (a first certificate: the lease alone decides), or another
                    // replica is claiming it right now.
                    let exists: Option<i64> =
                        sqlx::query_scalar("SELECT seq FROM store_acme_certs WHERE name = $1")
                            .persistent(false)
                            .bind(name)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if exists.is_some() {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                }
            }
            let t = self.acquire_in(&mut tx, &job, ttl_secs).await?;
            tx.commit().await?;
            Ok(t)
        })
        .await?;
        Ok(self
            .acquired(&job, token, ttl)
            .await?
            .map(|lease| self.keep(lease)))
    }

    /// Publishes a challenge answer for every replica, until `ttl` from now (the store's
    /// clock).
    pub(crate) async fn put_acme_challenge(
        &self,
        kind: &str,
        id: &str,
        key_authorization: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock_sql();
        let sql = format!(
            "INSERT INTO store_acme_challenges (kind, id, key_authorization, expires_at) \
             VALUES ($1, $2, $3, {now} + $4) ON CONFLICT (kind, id) DO UPDATE SET \
             key_authorization = excluded.key_authorization, expires_at = excluded.expires_at"
        );
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        bounded(async {
            let mut tx = self.begin_write().await?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(kind)
                .bind(id)
                .bind(key_authorization)
                .bind(ttl)
                .execute(&mut *tx)
                .await?;
            // Answers of orders that ended without withdrawing them (a crash).
            let gone = format!("DELETE FROM store_acme_challenges WHERE expires_at <= {now}");
            sqlx::query(sqlx::AssertSqlSafe(gone))
                .persistent(false)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// A challenge answer published by any replica and not expired.
    pub(crate) async fn acme_challenge(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = format!(
            "SELECT key_authorization FROM store_acme_challenges \
             WHERE kind = $1 AND id = $2 AND expires_at > {}",
            self.clock_sql()
        );
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let v = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(kind)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(v)
        })
        .await
    }

    /// Withdraws a challenge answer.
    pub(crate) async fn drop_acme_challenge(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        bounded(async {
            let mut tx = self.begin_write().await?;
            sqlx::query("DELETE FROM store_acme_challenges WHERE kind = $1 AND id = $2")
                .persistent(false)
                .bind(kind)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The limits document of `directory`, as last written.
    pub(crate) async fn acme_limits(&self, directory: &str) -> Result<Option<String>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let v: Option<String> =
                sqlx::query_scalar("SELECT limits FROM store_acme_limits WHERE directory = $1")
                    .persistent(false)
                    .bind(directory)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(v.filter(|v| !v.is_empty()))
        })
        .await
    }

    /// Replaces the limits document of `directory` with `merge(what is stored)`, in one
    /// transaction with the row locked, so that two replicas merging at once both count.
    pub(crate) async fn merge_acme_limits<T>(
        &self,
        directory: &str,
        merge: impl FnOnce(Option<&str>) -> (String, T),
    ) -> Result<T, StoreError> {
        let now = self.clock_sql();
        let create = format!(
            "INSERT INTO store_acme_limits (directory, limits, updated_at) VALUES ($1, '', {now}) \
             ON CONFLICT (directory) DO NOTHING"
        );
        let lock = if self.postgres { " FOR UPDATE" } else { "" };
        let read = format!("SELECT limits FROM store_acme_limits WHERE directory = $1{lock}");
        let write = format!(
            "UPDATE store_acme_limits SET limits = $2, updated_at = {now} WHERE directory = $1"
        );
        bounded(async {
            let mut tx = self.begin_write().await?;
            sqlx::query(sqlx::AssertSqlSafe(create))
                .persistent(false)
                .bind(directory)
                .execute(&mut *tx)
                .await?;
            let old: String = sqlx::query_scalar(sqlx::AssertSqlSafe(read))
                .persistent(false)
                .bind(directory)
                .fetch_one(&mut *tx)
                .await?;
            let (new, out) = merge(Some(old.as_str()).filter(|o| !o.is_empty()));
            sqlx::query(sqlx::AssertSqlSafe(write))
                .persistent(false)
                .bind(directory)
                .bind(new)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    /// The `store_meta` row `name` (what was imported, and when).
    pub(crate) async fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let v = sqlx::query_scalar("SELECT value FROM store_meta WHERE name = $1")
                .persistent(false)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(v)
        })
        .await
    }

    /// Sets the `store_meta` row `name` unless it is set; false: it was.
    pub(crate) async fn set_meta_once(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        bounded(async {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(
                "INSERT INTO store_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .persistent(false)
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(n == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{open_sqlite, Target};
    use super::*;

    fn cert<'a>(name: &'a str, pem: &'a str) -> NewCert<'a> {
        NewCert {
            name,
            chain_pem: pem,
            key_pem: "key",
            not_before: 1,
            not_after: 100,
            renew_at: 60,
        }
    }

    /// A certificate is written under its name's lease with the token; once the lease went
    /// to another, the old holder's write is refused and the new one's stands. Every write
    /// gets a larger `seq`, which is what the other replicas follow; an import never
    /// overwrites.
    #[tokio::test]
    async fn a_certificate_is_fenced_by_its_lease_and_followed_by_seq() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            open_sqlite(dir.path(), "a").await,
            open_sqlite(dir.path(), "b").await,
        );
        let ttl = Duration::from_secs(30);
        let name = "mta-sts.example.org";
        let held = a.hold_acme(name, ttl).await.unwrap().expect("free");
        assert!(b.hold_acme(name, ttl).await.unwrap().is_none(), "held by a");
        assert_eq!(held.lease().job, "acme:mta-sts.example.org");
        assert!(a
            .save_acme_cert(held.lease(), cert(name, "one"))
            .await
            .unwrap());
        let first = b.acme_cert(name).await.unwrap().unwrap();
        assert_eq!(
            (first.chain_pem.as_str(), first.replica.as_str()),
            ("one", "a")
        );

        // a stalls past its expiry; b takes the name over and writes; a's late write is refused.
        let old = held.lease().clone();
        drop(held);
        sqlx::query("UPDATE store_leases SET expires_at = 0")
            .execute(&a.pool)
            .await
            .unwrap();
        let next = b.hold_acme(name, ttl).await.unwrap().expect("expired");
        assert!(next.lease().token > old.token);
        assert!(b
            .save_acme_cert(next.lease(), cert(name, "two"))
            .await
            .unwrap());
        assert!(!a.save_acme_cert(&old, cert(name, "late")).await.unwrap());
        let now = a.acme_cert(name).await.unwrap().unwrap();
        assert_eq!(now.chain_pem, "two");
        assert!(now.seq > first.seq);
        let since = a.acme_certs_since(first.seq).await.unwrap();
        assert_eq!(
            since.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![now.seq]
        );
        assert!(a.acme_certs_since(now.seq).await.unwrap().is_empty());

        assert!(!a.import_acme_cert(cert(name, "imported")).await.unwrap());
        assert!(a
            .import_acme_cert(cert("mta-sts.other.org", "x"))
            .await
            .unwrap());
        assert_eq!(a.acme_cert(name).await.unwrap().unwrap().chain_pem, "two");
    }

    /// Two writers merging the limits each see the other's document; challenge answers
    /// expire by the store's clock.
    #[tokio::test]
    async fn limits_merge_and_challenges_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            open_sqlite(dir.path(), "a").await,
            open_sqlite(dir.path(), "b").await,
        );
        let d = "https://ca/dir";
        assert_eq!(a.acme_limits(d).await.unwrap(), None);
        let seen = a
            .merge_acme_limits(d, |old| (format!("{}a", old.unwrap_or("")), old.is_none()))
            .await
            .unwrap();
        assert!(seen);
        b.merge_acme_limits(d, |old| (format!("{}b", old.unwrap_or("")), ()))
            .await
            .unwrap();
        assert_eq!(a.acme_limits(d).await.unwrap().as_deref(), Some("ab"));

        a.put_acme_challenge("http-01", "tok", "tok.ka", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            b.acme_challenge("http-01", "tok").await.unwrap().as_deref(),
            Some("tok.ka")
        );
        a.put_acme_challenge("http-01", "old", "old.ka", Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(b.acme_challenge("http-01", "old").await.unwrap(), None);
        a.drop_acme_challenge("http-01", "tok").await.unwrap();
        assert_eq!(b.acme_challenge("http-01", "tok").await.unwrap(), None);
    }

    /// With a key, the certificate's key and the account are stored sealed (no PEM in the
    /// row) and read back as they were; the same store opened without the key, or with
    /// another, is a clear error at the start.
    #[tokio::test]
    async fn private_keys_are_sealed_with_the_key_and_open_only_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let with = |key: Option<&str>| {
            let dir = dir.path().to_owned();
            let key = key.map(|k| mta_stsd_providers::Secret::new(k.to_owned()));
            async move {
                Store::open(&Target {
                    dir,
                    url: None,
                    replica: "a".into(),
                    key,
                })
                .await
                .unwrap()
            }
        };
        let key = "11".repeat(32);
        let a = with(Some(&key)).await;
        a.check_sealing().await.unwrap();
        let name = "mta-sts.example.org";
        let pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        let held = a
            .hold_acme(name, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let c = NewCert {
            key_pem: pem,
            ..cert(name, "chain")
        };
        assert!(a.save_acme_cert(held.lease(), c).await.unwrap());
        a.put_acme_account("https://ca/dir", "{\"key\": \"secret\"}", true)
            .await
            .unwrap();
        let raw: Vec<String> = sqlx::query_scalar(
            "SELECT key_pem FROM store_acme_certs UNION ALL SELECT credentials FROM store_acme_accounts",
        )
        .fetch_all(&a.pool)
        .await
        .unwrap();
        assert_eq!(raw.len(), 2);
        assert!(
            raw.iter().all(|v| v.starts_with("sealed:v1:")
                && !v.contains("PRIVATE")
                && !v.contains("secret")),
            "{raw:?}"
        );
        assert_eq!(a.acme_cert(name).await.unwrap().unwrap().key_pem, pem);
        assert_eq!(
            a.acme_account("https://ca/dir").await.unwrap().as_deref(),
            Some("{\"key\": \"secret\"}")
        );

        let none = with(None).await;
        let e = none.check_sealing().await.unwrap_err().to_string();
        assert!(e.contains("sealed") && e.contains("key_file"), "{e}");
        assert!(none.acme_cert(name).await.is_err());
        let other = with(Some(&"22".repeat(32))).await;
        let e = other.check_sealing().await.unwrap_err().to_string();
        assert!(e.contains("another key"), "{e}");
        with(Some(&key)).await.check_sealing().await.unwrap();
    }
}
