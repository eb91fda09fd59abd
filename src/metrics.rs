//! Prometheus metrics: one registry, counters kept as handles so the request path only
//! increments an atomic.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabel {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CertLabel {
    pub name: String,
    pub source: &'static str,
}

/// The HTTP statuses the policy server answers with; each has a counter handle.
const STATUSES: [u16; 4] = [200, 400, 404, 405];

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Vec<Counter>,
    /// The same family, for statuses outside `STATUSES`.
    requests_other: Family<StatusLabel, Counter>,
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
    pub last_reload_ok: Gauge,
    pub last_reload_timestamp: Gauge,
    pub domains: Gauge,
    pub connections: Gauge,
    pub connections_evicted: Counter,
    pub connections_refused: Counter,
    pub tls_handshake_failures: Counter,
    dns_updates: Family<DnsLabel, Counter>,
    /// Records found changed behind our back by a reconcile read, and put right.
    pub dns_repairs: Counter,
    drift: Family<SeverityLabel, Gauge>,
    dns_states: Family<StateLabel, Gauge>,
    publication_states: Family<StateLabel, Gauge>,
    /// 1 while the TLS-RPT store is open, 0 while `[tlsrpt]` waits for it; no series
    /// without `[tlsrpt]`, so that no alert fires for a store nobody configured.
    tlsrpt_store_up: Family<StoreLabel, Gauge>,
    pub drift_last_run: Gauge,
    /// 1 while the store takes writes and answers reads, 0 while it fails.
    pub store_up: Gauge,
    /// Id-history events kept in memory for the store.
    pub store_pending: Gauge,
    /// 1 while this process holds a job's lease, 0 for the jobs it held before.
    lease_held: Family<JobLabel, Gauge>,
    /// Reads of others' id-history events, by what started them (`poll`, `notify`).
    store_follows: Family<CauseLabel, Counter>,
    /// Seconds since the epoch at which each served certificate expires.
    pub cert_expiry: Family<CertLabel, Gauge>,
    acme_orders: Family<ResultLabel, Counter>,
    alerts: Family<ResultLabel, Counter>,
    pub tlsrpt: crate::tlsrpt::metrics::TlsrptMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("mta_stsd");
        let requests_family = Family::<StatusLabel, Counter>::default();
        registry.register(
            "http_requests",
            "Policy requests answered, by HTTP status",
            requests_family.clone(),
        );
        let requests = STATUSES
            .iter()
            .map(|&status| {
                requests_family
                    .get_or_create(&StatusLabel { status })
                    .clone()
            })
            .collect();
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads, by result",
            reloads.clone(),
        );
        let reloads_ok = reloads.get_or_create(&ResultLabel { result: "ok" }).clone();
        let reloads_failed = reloads
            .get_or_create(&ResultLabel { result: "error" })
            .clone();
        let m = Metrics {
            registry,
            requests,
            requests_other: requests_family,
            reloads_ok,
            reloads_failed,
            last_reload_ok: Gauge::default(),
            last_reload_timestamp: Gauge::default(),
            domains: Gauge::default(),
            connections: Gauge::default(),
            connections_evicted: Counter::default(),
            connections_refused: Counter::default(),
            tls_handshake_failures: Counter::default(),
            cert_expiry: Family::default(),
            acme_orders: Family::default(),
            alerts: Family::default(),
            dns_updates: Family::default(),
            dns_repairs: Counter::default(),
            drift: Family::default(),
            dns_states: Family::default(),
            publication_states: Family::default(),
            tlsrpt_store_up: Family::default(),
            drift_last_run: Gauge::default(),
            store_up: Gauge::default(),
            store_pending: Gauge::default(),
            lease_held: Family::default(),
            store_follows: Family::default(),
            tlsrpt: Default::default(),
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "config_last_reload_success",
            "1 if the last config reload succeeded, 0 if the last good config is still served",
            m.last_reload_ok.clone(),
        );
        r.register(
            "config_last_reload_timestamp_seconds",
            "When the config was last (re)loaded, successfully or not",
            m.last_reload_timestamp.clone(),
        );
        r.register("domains", "Domains served", m.domains.clone());
        r.register(
            "dns_repairs",
            "Domains whose records a reconcile read found changed behind our back, and repaired",
            m.dns_repairs.clone(),
        );
        r.register(
            "connections_open",
            "Client connections open on the public listeners",
            m.connections.clone(),
        );
        r.register(
            "connections_evicted",
            "Quiet connections closed at max_connections to make room for a new one",
            m.connections_evicted.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at once: their address held max_connections_per_ip already",
            m.connections_refused.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed (unknown SNI, timeout, protocol error)",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "When each served certificate expires",
            m.cert_expiry.clone(),
        );
        r.register(
            "alerts",
            "Alert deliveries, by result (delivered, retried, failed, dropped)",
            m.alerts.clone(),
        );
        r.register(
            "acme_orders",
            "ACME orders finished, by result (ok, error, throttled: the server asked to wait)",
            m.acme_orders.clone(),
        );
        r.register(
            "dns_updates",
            "Zone updates sent, by provider and result (ok, or the server's rcode or status)",
            m.dns_updates.clone(),
        );
        r.register(
            "drift_findings",
            "Findings of the last drift run, by severity",
            m.drift.clone(),
        );
        r.register(
            "domains_by_dns_state",
            "Domains by the state of their DNS records as the last drift run saw them \
             (ok, warning, critical, unknown: the worst of sts-txt, ns-agreement, policy-host, tlsrpt, mx, delegation)",
            m.dns_states.clone(),
        );
        r.register(
            "domains_by_publication_state",
            "Domains with a DNS provider by the state of their publication (published, pending, \
             failed: the provider refused or could not be reached, retried with backoff)",
            m.publication_states.clone(),
        );
        r.register(
            "tlsrpt_store_up",
            "1 if the TLS-RPT report store (sqlite or postgresql) is open, 0 if [tlsrpt] is \
             configured but the store is not (reports are refused with 503 meanwhile)",
            m.tlsrpt_store_up.clone(),
        );
        r.register(
            "drift_last_run_timestamp_seconds",
            "When the drift checks last ran",
            m.drift_last_run.clone(),
        );
        r.register(
            "store_up",
            "1 while the store (SQLite or PostgreSQL) takes writes and answers reads",
            m.store_up.clone(),
        );
        r.register(
            "store_pending_events",
            "Id-history events kept in memory until the store takes them",
            m.store_pending.clone(),
        );
        r.register(
            "lease_held",
            "1 while this process holds the lease of a once-only job (a zone's DNS publication, \
             a reconcile round, a retirement step, a drift round), 0 for the jobs it held before",
            m.lease_held.clone(),
        );
        r.register(
            "store_follows",
            "Reads of the id-history events other replicas wrote, by cause: the poll every 2 s, \
             or a notification from the store ([state] listen)",
            m.store_follows.clone(),
        );
        m.tlsrpt.register(r);
        m
    }

    /// Brings `store_follows` up to the store's counts (`poll`, `notify`).
    pub(crate) fn store_follows(&self, (poll, notify): (u64, u64)) {
        for (cause, n) in [("poll", poll), ("notify", notify)] {
            let c = self.store_follows.get_or_create(&CauseLabel { cause });
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// Sets `lease_held` from the store's list of this process's leases.
    pub(crate) fn leases_held(&self, held: &[(String, bool)]) {
        for (job, h) in held {
            self.lease_held
                .get_or_create(&JobLabel { job: job.clone() })
                .set(i64::from(*h));
        }
    }

    pub(crate) fn drift_findings(&self, severity: &'static str, n: usize) {
        self.drift
            .get_or_create(&SeverityLabel { severity })
            .set(n as i64);
    }

    /// Sets the number of domains whose DNS records drift saw in `state`.
    pub(crate) fn domains_by_dns_state(&self, state: &'static str, n: usize) {
        self.dns_states
            .get_or_create(&StateLabel { state })
            .set(n as i64);
    }

    /// Sets the number of domains whose DNS publication is in `state`.
    pub(crate) fn domains_by_publication_state(&self, state: &'static str, n: usize) {
        self.publication_states
            .get_or_create(&StateLabel { state })
            .set(n as i64);
    }

    /// Sets whether the `store` (`sqlite`, `postgresql`; `None`: no `[tlsrpt]`) is open.
    pub(crate) fn tlsrpt_store_up(&self, store: Option<&'static str>, up: bool) {
        self.tlsrpt_store_up.clear();
        if let Some(store) = store {
            self.tlsrpt_store_up
                .get_or_create(&StoreLabel { store })
                .set(i64::from(up));
        }
    }

    /// Counts alert deliveries: `delivered`, `retried`, `failed` or `dropped`.
    pub(crate) fn alerts(&self, result: &'static str, n: u64) {
        self.alerts.get_or_create(&ResultLabel { result }).inc_by(n);
    }

    /// Counts one finished ACME order: `ok` or `error`.
    pub(crate) fn acme_order(&self, result: &'static str) {
        self.acme_orders
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts one zone update: `result` is `ok` or the provider's error code.
    pub(crate) fn dns_update(&self, provider: &str, result: &str) {
        self.dns_updates
            .get_or_create(&DnsLabel {
                provider: provider.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts one answered request: an atomic increment for the usual statuses.
    pub(crate) fn request(&self, status: u16) {
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.requests[i].inc(),
            None => self
                .requests_other
                .get_or_create(&StatusLabel { status })
                .inc(),
        };
    }

    /// The Prometheus text exposition.
    #[allow(clippy::expect_used, reason = "writing to a String cannot fail")]
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
