//! The daemon's shared state: the live snapshot (swapped whole on reload), the last reload's
//! outcome, the self-signed certificate cache and the metrics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::publication::Publication;
use crate::clock::unix_now;
use crate::config::Diagnostic;
use crate::live::{Generation, Live, Reloads};
use crate::metrics::Metrics;
use crate::serve::tls::SelfSigned;
use crate::serve::Site;
use crate::state::history::History;
use crate::state::store::Writer;

/// The outcome of the last (re)load, for `/status` and logs.
#[derive(Debug, Clone)]
pub(crate) struct ReloadStatus {
    pub at: u64,
    pub ok: bool,
    /// After a good load, shared with the reload task's copy of the served config's warnings
    /// (50,000 of them at a million domains with 1 in 20 in `testing`).
    pub problems: Arc<[Diagnostic]>,
}

/// What every task of the daemon shares. The fields a task owns are private: that task
/// writes them through the methods below, and the rest read.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub(super) config_path: PathBuf,
    pub(super) live: Arc<ArcSwap<Live>>,
    /// Bumped by each reload; the tasks that act on a new config follow it.
    generation: Generation,
    /// The reload task's: the outcome of the last (re)load.
    last_reload: Mutex<ReloadStatus>,
    pub(super) self_signed: Arc<SelfSigned>,
    pub(super) metrics: Arc<Metrics>,
    started_at: u64,
    /// The publisher's table; the admin pages and metrics read it.
    publication: Mutex<Publication>,
    /// Wakes the publisher after a retirement step swapped in a new state (a reload wakes it
    /// through `generation`).
    publish_wake: Notify,
    /// The DANE task's: its last round, for `/status`.
    dane: Mutex<Option<crate::dane::sync::Round>>,
    /// The drift task's: the last report, once the first run is done.
    drift: Mutex<Option<Arc<crate::drift::report::Report>>>,
    /// `[alerts]` deliveries and failures.
    pub(super) alerts: crate::alerts::Stats,
    /// ACME certificates, challenge answers and order status.
    pub(super) acme: Arc<crate::acme::AcmeState>,
    /// The id history and retirements, as the store holds them plus what is queued.
    pub(super) history: Arc<Mutex<History>>,
    /// Takes the id-history events for the store; its health is in `/status`.
    pub(super) writer: Writer,
    /// Wakes the lifecycle task for a step (with `lifecycle_step` set): a finished withdrawal,
    /// or another replica's events (a reload wakes it through `generation`).
    lifecycle_wake: Notify,
    lifecycle_step: AtomicBool,
    /// Held from building a new `Live` to swapping it in (reloads, retirement steps), so
    /// that one never replaces a newer state with an older one.
    swap: tokio::sync::Mutex<()>,
    /// The TLS-RPT store, once opened (`[tlsrpt]` configured and the database reachable).
    pub(super) reports: Arc<std::sync::OnceLock<crate::tlsrpt::store::Store>>,
    /// Report POSTs per client address; shared by every listener, kept across reloads.
    pub(super) tlsrpt_limiter: Arc<crate::tlsrpt::ratelimit::Limiter>,
}

impl Daemon {
    pub(crate) fn new(
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
        let shared = Daemon {
            config_path,
            last_reload: Mutex::new(ReloadStatus {
                at: now,
                ok: true,
                problems: warnings,
            }),
            live: Arc::new(ArcSwap::from_pointee(live)),
            generation: Generation::new(),
            self_signed: Arc::default(),
            metrics: Arc::new(metrics),
            started_at: now,
            publication: Mutex::new(Publication::default()),
            publish_wake: Notify::new(),
            dane: Mutex::new(None),
            drift: Mutex::new(None),
            alerts: crate::alerts::Stats::default(),
            acme: Arc::default(),
            history: Arc::new(Mutex::new(history)),
            writer,
            lifecycle_wake: Notify::new(),
            lifecycle_step: AtomicBool::new(false),
            swap: tokio::sync::Mutex::new(()),
            reports: Arc::default(),
            tlsrpt_limiter: Arc::default(),
        };
        shared.publish_cert_metrics();
        Arc::new(shared)
    }

    pub(crate) fn started_at(&self) -> u64 {
        self.started_at
    }

    /// The publisher's table, locked: the publisher writes it, the rest read.
    pub(super) fn publication(&self) -> std::sync::MutexGuard<'_, Publication> {
        self.publication.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held from building a new `Live` to swapping it in.
    pub(super) async fn hold_swap(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.swap.lock().await
    }

    /// A reload swapped in a new config: every task that follows the reloads wakes once.
    pub(super) fn reloaded(&self) {
        self.generation.bump();
    }

    /// The reloads from now on, for a task that acts on a new config.
    pub(crate) fn reloads(&self) -> Reloads {
        self.generation.follow()
    }

    pub(super) fn set_last_reload(&self, status: ReloadStatus) {
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    pub(crate) fn last_reload(&self) -> ReloadStatus {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A retirement step swapped in a new state: its records may be published.
    pub(super) fn wake_publisher(&self) {
        self.publish_wake.notify_one();
    }

    /// Returns when a retirement step asks the publisher to look again.
    pub(super) async fn publisher_woken(&self) {
        self.publish_wake.notified().await;
    }

    /// Asks the lifecycle task for a step (a withdrawal finished, another replica's events).
    pub(super) fn ask_lifecycle_step(&self) {
        self.lifecycle_step.store(true, Ordering::Release);
        self.lifecycle_wake.notify_one();
    }

    /// Returns when a step is asked for.
    pub(super) async fn lifecycle_woken(&self) {
        self.lifecycle_wake.notified().await;
    }

    /// Whether a step was asked for since the last call.
    pub(super) fn take_lifecycle_step(&self) -> bool {
        self.lifecycle_step.swap(false, Ordering::AcqRel)
    }

    pub(super) fn set_dane_round(&self, round: crate::dane::sync::Round) {
        *self.dane.lock().unwrap_or_else(|e| e.into_inner()) = Some(round);
    }

    /// The last DANE round, seen under its lock.
    pub(crate) fn with_dane_round<R>(
        &self,
        f: impl FnOnce(Option<&crate::dane::sync::Round>) -> R,
    ) -> R {
        f(self.dane.lock().unwrap_or_else(|e| e.into_inner()).as_ref())
    }

    pub(super) fn set_drift_report(&self, report: crate::drift::report::Report) {
        *self.drift.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(report));
    }

    /// The last drift report, once the first run is done.
    pub(crate) fn drift_report(&self) -> Option<Arc<crate::drift::report::Report>> {
        self.drift.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the public listeners read of all this.
    pub(crate) fn site(&self) -> Site {
        Site {
            live: self.live.clone(),
            self_signed: self.self_signed.clone(),
            acme: self.acme.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// What the TLS-RPT receiver and its store task read and fill.
    pub(crate) fn tlsrpt(&self) -> crate::tlsrpt::ReceiverContext {
        crate::tlsrpt::ReceiverContext {
            live: self.live.clone(),
            reports: self.reports.clone(),
            history: self.history.clone(),
            metrics: self.metrics.tlsrpt.clone(),
            reloads: self.reloads(),
            limiter: self.tlsrpt_limiter.clone(),
            state_store: Some(self.writer.store().clone()),
        }
    }

    /// Sets the expiry gauge of every configured certificate.
    pub(crate) fn publish_cert_metrics(&self) {
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
