//! The state store shared by replicas: a previous version's state dir imported and PostgreSQL
//! behind PgBouncer (`state`), leases (`leases`), replicas racing on one BIND (`replicas`).

mod leases;
mod replicas;
pub(crate) mod state;
