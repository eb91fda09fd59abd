//! `serve`: load, bind every listener, tell systemd we are ready, reload on change, and shut
//! down gracefully on SIGTERM/SIGINT.

pub(crate) mod admin;
pub(crate) mod context;
pub(crate) mod dane_task;
pub(crate) mod drift_task;
pub(crate) mod pages;
pub(crate) mod publication;
pub(crate) mod publish;
pub(crate) mod reload;
pub(crate) mod scrape;
pub(crate) mod serving;
pub(crate) mod settle;
pub(crate) mod store;
pub(crate) mod trim;
pub(crate) mod view;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config;
use crate::serve::conns::Conns;
use crate::serve::listener::{Kind, Listener};
use crate::serve::{tls, Respond};
use context::Daemon;

/// A start gives up on a store that does not answer within this, and says so.
const OPEN_STORE: std::time::Duration = std::time::Duration::from_secs(30);
/// At shutdown, how long the store may take to write what is queued.
const FLUSH_AT_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// Admin connections have their own small cap, apart from the public one.
const ADMIN_CONNECTIONS: usize = 64;

/// Runs the daemon until SIGTERM or SIGINT; 0 on a clean shutdown, 1 if it could not start.
pub(crate) fn run(config_path: &Path) -> Result<u8> {
    // Kept for reloads: they parse again only the included files that changed.
    let mut cache = config::Cache::default();
    let loaded = match config::load_cached(config_path, &mut cache) {
        Ok(l) => l,
        Err(failed) => {
            for d in &failed.diagnostics {
                error!("{d}");
            }
            error!("not starting: the config is invalid");
            return Ok(1);
        }
    };
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config_path, loaded, cache))
}

/// S3 of the hardening issue: a config that serves none of the domains the store has in
/// service is a second, unrelated config on a shared store; refused at start, naming the
/// configs that serve them, before it retires any. Else this start is recorded as theirs.
async fn refuse_foreign(
    store: &crate::state::store::Store,
    history: &crate::state::history::History,
    config: &config::Config,
    config_path: &Path,
) -> Result<()> {
    let ours = config_path.display().to_string();
    let foreign = crate::lifecycle::foreign_domains(config, history);
    if !foreign.is_empty() {
        let claims = store.claims().await.unwrap_or_default();
        let by: Vec<String> = claims
            .iter()
            .filter(|c| c.replica != store.replica() || c.config != ours)
            .map(|c| {
                format!(
                    "replica {:?} with {} (started {})",
                    c.replica,
                    c.config,
                    crate::clock::rfc3339(c.started_at)
                )
            })
            .collect();
        let by = if by.is_empty() {
            "another config".to_owned()
        } else {
            by.join(", ")
        };
        let shown = foreign
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = match foreign.len() {
            n if n > 5 => format!(" and {} more", n - 5),
            _ => String::new(),
        };
        anyhow::bail!(
            "refusing to start: the store ({}) has {} domains in service ({shown}{more}), served by {by}, and this config (replica {:?} with {ours}) serves none of them: two unrelated configs on one store retire each other's domains. Give this config its own [state] dir (or database); to replace every domain of one config, change it by a reload while serve runs, or keep one of its domains for this start",
            crate::daemon::store::describe_short(&config.state),
            foreign.len(),
            store.replica(),
        );
    }
    if let Err(e) = store.claim(&ours).await {
        warn!(error = %e, "could not record this config in the store");
    }
    Ok(())
}

async fn serve(config_path: &Path, loaded: config::Loaded, cache: config::Cache) -> Result<u8> {
    let (shared, events) = start(config_path, loaded).await?;
    let server = shared.live.load().config.server.clone();
    let domains = shared.live.load().config.domains.len();
    let (stop, stopped) = watch::channel(false);
    let tracker = TaskTracker::new();
    let accept_loops = listen(&shared, &server, &stopped, &tracker).await?;

    // Watching before the first record: an edit made meanwhile is not missed; its reload
    // waits for the record (the swap lock), so the history sees the start first.
    let reloader = reload::Reloader::start(shared.clone(), cache)?;
    // Recorded once served, as a reload does: a million domains' first record takes seconds,
    // during which they are answered already.
    {
        let _swap = shared.hold_swap().await;
        serving::commit_owned(&shared, events);
    }
    // `ready` means the start's history is in the store (a command run next reads it), unless
    // the store does not take it in time: then serving goes on and the writer keeps trying.
    if !shared.writer.flush(OPEN_STORE).await {
        warn!(
            events = shared.writer.pending(),
            "the store has not taken the start's id-history events yet; serving meanwhile"
        );
    }
    let tasks = Tasks::start(&shared);
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    notify(&[NotifyState::Ready]);
    info!(domains, "ready");

    let why = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    info!("{why}: shutting down");
    notify(&[NotifyState::Stopping]);
    drop(reloader);
    tasks.stop();
    // What the store has not taken yet is kept if it comes back within a few seconds.
    if !shared.writer.flush(FLUSH_AT_STOP).await {
        warn!(
            events = shared.writer.pending(),
            "the store did not take every id-history event before stopping; the next start records what it serves again"
        );
    }
    let _ = stop.send(true);
    for l in accept_loops {
        let _ = l.await;
    }
    tracker.close();
    let bound = server.limits.shutdown_timeout;
    if tokio::time::timeout(bound, tracker.wait()).await.is_err() {
        warn!(
            connections = tracker.len(),
            "connections still open after {bound:?}; closing them"
        );
    }
    info!("stopped");
    Ok(0)
}

/// Opens the store, refuses a foreign config, and builds the state to serve: the daemon's
/// shared state, and the start's id-history events to record once served.
async fn start(
    config_path: &Path,
    loaded: config::Loaded,
) -> Result<(Arc<Daemon>, Vec<crate::state::history::Event>)> {
    let opened = tokio::time::timeout(OPEN_STORE, store::open(&loaded.config.state))
        .await
        .map_err(|_| anyhow::anyhow!("the store did not answer within {OPEN_STORE:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| store::describe(&loaded.config.state))?;
    let (store, seq) = (opened.store, opened.seq);
    refuse_foreign(&store, &opened.history, &loaded.config, config_path).await?;
    let history = std::sync::Mutex::new(opened.history);
    let prepared = serving::prepare(&history, loaded.config, None).map_err(anyhow::Error::msg)?;
    let mut warnings = loaded.warnings;
    if let Some(why) = &prepared.held {
        error!("{why}");
        warnings.push(config::Diagnostic {
            severity: config::Severity::Warning,
            file: config_path.into(),
            position: None,
            message: why.clone(),
        });
    }
    let live = prepared.live;
    let https = !live.config.server.https.is_empty();
    let history = history.into_inner().unwrap_or_else(|e| e.into_inner());
    let writer = crate::state::store::Writer::start(store.clone());
    let shared = Daemon::new(config_path.to_owned(), live, warnings, history, writer);
    store::follow(&shared, store, seq);
    if https {
        // Made now, so its path is in the log before the first handshake asks for it.
        let live = shared.live.load();
        if live.config.tls.self_signed {
            shared.self_signed.ca(&live.config.state.dir);
        }
    }
    Ok((shared, prepared.events))
}

/// Binds every listener (a port in use fails the start) and starts their accept loops.
async fn listen(
    shared: &Arc<Daemon>,
    server: &config::Server,
    stopped: &watch::Receiver<bool>,
    tracker: &TaskTracker,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let limits = &server.limits;
    let public = Conns::new(limits.max_connections, limits.max_connections_per_ip);
    let site = Arc::new(shared.site());
    let reports: Respond = {
        let tlsrpt = Arc::new(shared.tlsrpt());
        Arc::new(move |req| {
            let peer = req
                .extensions()
                .get::<crate::serve::listener::Peer>()
                .map(|p| p.0);
            Box::pin(crate::tlsrpt::receiver::respond(tlsrpt.clone(), req, peer))
        })
    };
    let listener = |kind: Kind, conns: Arc<Conns>| Listener {
        kind,
        site: site.clone(),
        reports: reports.clone(),
        limits: server.limits.clone(),
        conns,
        trusted_proxies: server.trusted_proxies.clone().into(),
        shutdown: stopped.clone(),
        tracker: tracker.clone(),
    };

    // Bind everything before announcing readiness: a port in use fails the start.
    let tls_config = tls::server_config(site.clone());
    let mut bound = Vec::new();
    for addr in &server.https {
        let socket = bind("https", *addr).await?;
        bound.push((
            listener(Kind::Https(tls_config.clone()), public.clone()),
            socket,
        ));
    }
    for addr in &server.http {
        let socket = bind("http", *addr).await?;
        bound.push((listener(Kind::Http, public.clone()), socket));
    }
    if let Some(addr) = server.admin {
        let socket = bind("admin", addr).await?;
        let conns = Conns::new(ADMIN_CONNECTIONS, ADMIN_CONNECTIONS);
        let admin: Respond = {
            let shared = shared.clone();
            let token = Arc::new(server.admin_token.clone());
            Arc::new(move |req| {
                let shared = shared.clone();
                let token = token.clone();
                Box::pin(
                    async move { admin::respond(&shared, token.as_ref().as_ref(), &req).await },
                )
            })
        };
        bound.push((listener(Kind::Admin(admin), conns), socket));
    }
    Ok(bound
        .into_iter()
        .map(|(l, socket)| tokio::spawn(l.run(socket)))
        .collect())
}

/// The daemon's background tasks; each stops when dropped.
struct Tasks {
    retirements: serving::LifecycleTask,
    publisher: publish::Publisher,
    dane: dane_task::DaneTask,
    drift: drift_task::DriftTask,
    acme: crate::acme::Manager,
    reports: crate::tlsrpt::task::Task,
    trimmer: Option<tokio_util::task::AbortOnDropHandle<()>>,
}

impl Tasks {
    fn start(shared: &Arc<Daemon>) -> Tasks {
        // Listening already: a policy is served before its id is published.
        let publisher = publish::Publisher::start(shared.clone());
        let retirements = serving::LifecycleTask::start(shared.clone());
        let dane = dane_task::DaneTask::start(shared.clone());
        // Idle until a config has [drift]; reloads may add, change or remove it.
        let drift = drift_task::DriftTask::start(shared.clone());
        // Listening already: challenges are answered by the listeners above.
        let acme = crate::acme::Manager::start(
            crate::acme::ManagerContext {
                live: shared.live.clone(),
                acme: shared.acme.clone(),
                metrics: shared.metrics.clone(),
                store: shared.writer.store().clone(),
            },
            shared.reloads(),
        );
        let reports = crate::tlsrpt::task::start(shared.tlsrpt());
        let trimmer = trim::start();
        Tasks {
            retirements,
            publisher,
            dane,
            drift,
            acme,
            reports,
            trimmer,
        }
    }

    /// Stops them, in this order.
    fn stop(self) {
        drop(self.retirements);
        drop(self.publisher);
        drop(self.dane);
        drop(self.drift);
        drop(self.acme);
        drop(self.reports);
        drop(self.trimmer);
    }
}

async fn bind(proto: &str, addr: SocketAddr) -> Result<TcpListener> {
    let socket = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {proto} {addr}"))?;
    // Tests and operators learn the real port (when configured as 0) from this line.
    info!("listening on {proto} {}", socket.local_addr()?);
    Ok(socket)
}

/// Tells systemd (Type=notify) about our state; a no-op outside systemd.
pub(crate) fn notify(state: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(state) {
            warn!(error = %e, "sd_notify failed");
        }
    }
}
