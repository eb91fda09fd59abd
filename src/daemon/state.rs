//! The daemon's shared state: the live snapshot (swapped whole on reload), the last reload's
//! outcome, the self-signed certificate cache and the metrics.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::publication::Publication;
use crate::clock::unix_now;
use crate::config::Diagnostic;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::serve::tls::SelfSigned;
use crate::serve::Site;
use crate::state::history::History;
use crate::state::store::Writer;

/// The outcome of the last (re)load, for `/status` and logs.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: u64,
    pub ok: bool,
    /// Shared with [`Shared::good_warnings`] after a good load (50,000 of them at a million
    /// domains with 1 in 20 in `testing`).
    pub problems: Arc<[Diagnostic]>,
}

/// What every task shares.
#[derive(Debug)]
pub struct Shared {
    pub config_path: PathBuf,
    pub live: Arc<ArcSwap<Live>>,
    pub last_reload: Mutex<ReloadStatus>,
    /// The warnings of the config being served: a reload logs only the warnings not among
    /// them.
    pub good_warnings: Mutex<Arc<[Diagnostic]>>,
    pub self_signed: Arc<SelfSigned>,
    pub metrics: Arc<Metrics>,
    pub started_at: u64,
    pub publication: Mutex<Publication>,
    /// Wakes the publisher after a reload swapped in a new config.
    pub publish_wake: tokio::sync::Notify,
    /// Wakes the DANE task after a reload (a renewed certificate reloads too).
    pub dane_wake: tokio::sync::Notify,
    /// The last DANE round, for `/status`.
    pub dane: Mutex<Option<crate::dane::sync::Round>>,
    /// The last drift report, once the first run is done.
    pub drift: Mutex<Option<Arc<crate::drift::report::Report>>>,
    /// `[alerts]` deliveries and failures.
    pub alerts: crate::alerts::Stats,
    /// ACME certificates, challenge answers and order status.
    pub acme: Arc<crate::acme::AcmeState>,
    /// The id history and retirements, as the store holds them plus what is queued.
    pub history: Arc<Mutex<History>>,
    /// Takes the id-history events for the store; its health is in `/status`.
    pub writer: Writer,
    /// Wakes the lifecycle task: a new state to read the deadline of, or (with
    /// `lifecycle_step` set) a finished withdrawal to evaluate.
    pub lifecycle_wake: tokio::sync::Notify,
    pub lifecycle_step: std::sync::atomic::AtomicBool,
    /// Held from building a new `Live` to swapping it in (reloads, retirement steps), so
    /// that one never replaces a newer state with an older one.
    pub swap: tokio::sync::Mutex<()>,
    /// Tells the drift task that a reload may have changed `[drift]`.
    pub drift_wake: tokio::sync::Notify,
    /// The TLS-RPT store, once opened (`[tlsrpt]` configured and the database reachable).
    pub reports: Arc<std::sync::OnceLock<crate::tlsrpt::store::Store>>,
    /// Tells the TLS-RPT task that a reload may have added or changed `[tlsrpt]`.
    pub tlsrpt_wake: Arc<tokio::sync::Notify>,
    /// Report POSTs per client address; shared by every listener, kept across reloads.
    pub tlsrpt_limiter: Arc<crate::tlsrpt::ratelimit::Limiter>,
}

impl Shared {
    pub fn new(
        config_path: PathBuf,
        live: Live,
        warnings: Vec<Diagnostic>,
        history: History,
        writer: Writer,
    ) -> Arc<Self> {
        let metrics = Metrics::new();
        let now = unix_now();
        metrics.last_reload_ok.set(1);
        metrics.last_reload_timestamp.set(now as i64);
        metrics.domains.set(live.config.domains.len() as i64);
        let warnings: Arc<[Diagnostic]> = warnings.into();
        let shared = Shared {
            config_path,
            last_reload: Mutex::new(ReloadStatus {
                at: now,
                ok: true,
                problems: warnings.clone(),
            }),
            good_warnings: Mutex::new(warnings),
            live: Arc::new(ArcSwap::from_pointee(live)),
            self_signed: Arc::default(),
            metrics: Arc::new(metrics),
            started_at: now,
            publication: Mutex::new(Publication::default()),
            publish_wake: tokio::sync::Notify::new(),
            dane_wake: tokio::sync::Notify::new(),
            dane: Mutex::new(None),
            drift: Mutex::new(None),
            alerts: crate::alerts::Stats::default(),
            acme: Arc::default(),
            history: Arc::new(Mutex::new(history)),
            writer,
            lifecycle_wake: tokio::sync::Notify::new(),
            lifecycle_step: std::sync::atomic::AtomicBool::new(false),
            swap: tokio::sync::Mutex::new(()),
            drift_wake: tokio::sync::Notify::new(),
            reports: Arc::default(),
            tlsrpt_wake: Arc::default(),
            tlsrpt_limiter: Arc::default(),
        };
        shared.publish_cert_metrics();
        Arc::new(shared)
    }

    /// What the public listeners read of all this.
    pub fn site(&self) -> Site {
        Site {
            live: self.live.clone(),
            self_signed: self.self_signed.clone(),
            acme: self.acme.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// What the TLS-RPT receiver and its store task read and fill.
    pub fn tlsrpt(&self) -> crate::tlsrpt::Shared {
        crate::tlsrpt::Shared {
            live: self.live.clone(),
            reports: self.reports.clone(),
            history: self.history.clone(),
            metrics: self.metrics.tlsrpt.clone(),
            wake: self.tlsrpt_wake.clone(),
            limiter: self.tlsrpt_limiter.clone(),
            state_store: Some(self.writer.store().clone()),
        }
    }

    /// Sets the expiry gauge of every configured certificate.
    pub fn publish_cert_metrics(&self) {
        let live = self.live.load();
        self.metrics.cert_expiry.clear();
        for c in &live.config.tls.certs {
            let label = crate::metrics::CertLabel {
                name: c.names.first().cloned().unwrap_or_default(),
                source: "configured",
            };
            self.metrics
                .cert_expiry
                .get_or_create(&label)
                .set(c.not_after);
        }
        self.acme.publish_cert_metrics(&self.metrics);
    }
}
