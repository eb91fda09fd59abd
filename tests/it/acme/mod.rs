//! ACME (issues 8, 16, 24): certificates from a real pebble, validated over the daemon's own
//! listeners; `obtain` the issuance itself, `keys` sealed keys, `restart` the CA's limits
//! across a restart, `scale` many names and `rateLimited`, `replicas` three daemons on one
//! PostgreSQL, `shared_store` two on one SQLite file, `import` main's state directory.

mod import;
mod keys;
mod obtain;
mod replicas;
mod restart;
pub(crate) mod scale;
mod shared_store;
