//! Live reload: file changes (once the files are quiet, see [`super::settle`]) and SIGHUP load
//! the config anew; a config that fails
//! leaves the last good one serving, and the failure shows in logs, `/status` and metrics.
//!
//! Directories are watched, not files, so that editors saving by rename and Kubernetes
//! ConfigMaps (which swap a `..data` symlink) are seen.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{error, info, warn};

use super::context::{Daemon, ReloadStatus};
use super::notify;
use super::settle::{self, Change, Touch};
use crate::clock::unix_now;
use crate::config::{self, Config, Diagnostic, Severity};

/// Changes waiting for the reload task; beyond, events are dropped (a reload is pending).
const PENDING_CHANGES: usize = 256;

/// Which paths matter; replaced after every successful reload.
#[derive(Debug, Default)]
struct WatchSet {
    dirs: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    patterns: Vec<glob::Pattern>,
}

impl WatchSet {
    fn of(config: &Config) -> Self {
        let mut files: HashSet<PathBuf> = config.files.iter().map(|f| absolute(f)).collect();
        for c in &config.tls.certs {
            files.insert(absolute(&c.cert));
            files.insert(absolute(&c.key));
        }
        // A renewed DANE certificate or a new next key: a reload, then a DANE round.
        for d in &config.dane {
            files.insert(absolute(&d.cert));
            files.extend(d.next_key.as_deref().map(absolute));
        }
        let include_patterns: Vec<String> = config
            .include_patterns
            .iter()
            .map(|p| absolute(Path::new(p)).to_string_lossy().into_owned())
            .collect();
        let patterns: Vec<glob::Pattern> = include_patterns
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        let mut dirs: HashSet<PathBuf> = files.iter().filter_map(|f| parent(f)).collect();
        for p in &include_patterns {
            // The deepest directory without a wildcard: new files appear there.
            let fixed: PathBuf = Path::new(p)
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
                .collect();
            let dir = if fixed.as_os_str() == p.as_str() {
                parent(&fixed)
            } else {
                Some(fixed)
            };
            dirs.extend(dir);
        }
        WatchSet {
            dirs,
            files,
            patterns,
        }
    }

    fn matters(&self, path: &Path) -> bool {
        if self.files.contains(path) || self.patterns.iter().any(|p| p.matches_path(path)) {
            return true;
        }
        // Kubernetes ConfigMap volumes swap `..data`; other atomic deployers use `..`-names too.
        let dotdot = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".."));
        dotdot && parent(path).is_some_and(|d| self.dirs.contains(&d))
    }
}

/// The watcher reports absolute paths; a relative `--config` must compare equal to them.
/// Not canonicalized: symlinks (a ConfigMap's `..data`) must stay as they are.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

fn parent(p: &Path) -> Option<PathBuf> {
    p.parent().map(|d| {
        if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d.to_owned()
        }
    })
}

/// Owns the watcher and the reload task; dropping it stops both.
pub(crate) struct Reloader {
    _task: AbortOnDropHandle<()>,
}

impl Reloader {
    /// `cache` holds the included files of the load that started the daemon.
    #[allow(clippy::expect_used, reason = "fresh lock")]
    pub(crate) fn start(shared: Arc<Daemon>, cache: config::Cache) -> Result<Reloader> {
        let (tx, rx) = mpsc::channel::<Change>(PENDING_CHANGES);
        let set = Arc::new(Mutex::new(WatchSet::of(&shared.live.load().config)));
        let filter = set.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if !changes_content(&event.kind) {
                return;
            }
            let set = filter.lock().unwrap_or_else(|e| e.into_inner());
            for path in event.paths.iter().filter(|p| set.matters(p)) {
                let touch = touch_of(&event.kind);
                // A full channel already holds a pending reload.
                let _ = tx.try_send(Change {
                    path: path.clone(),
                    touch,
                });
            }
        })
        .context("starting the config file watcher")?;
        let mut watched = HashSet::new();
        watch_dirs(
            &mut watcher,
            &mut watched,
            &set.lock().expect("fresh lock").dirs,
        );
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let cache = Arc::new(Mutex::new(cache));
        // The warnings of the config being served: a reload logs only those not among them.
        // At start, the start's.
        let mut good = shared.last_reload().problems;
        let task = tokio::spawn(async move {
            let mut rx = rx;
            loop {
                tokio::select! {
                    _ = hup.recv() => info!("SIGHUP: reloading"),
                    got = rx.recv() => {
                        let Some(first) = got else { return };
                        if !settle::settle(first, &mut rx).await {
                            return;
                        }
                        info!("config changed: reloading");
                    }
                }
                if let Some(config_set) = reload(&shared, &cache, &mut good).await {
                    watch_dirs(&mut watcher, &mut watched, &config_set.dirs);
                    *set.lock().unwrap_or_else(|e| e.into_inner()) = config_set;
                }
            }
        });
        Ok(Reloader {
            _task: AbortOnDropHandle::new(task),
        })
    }
}

/// Whether an event can change what a load reads. Opens, reads and closes after reading (by
/// anyone, our own reload included) and metadata changes (atime) cannot; reacting to them made
/// every reload trigger the next one.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        // The end of a write: an in-place edit that the Modify events already announced.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// How an event (one that [`changes_content`]) touched a file, for [`settle`].
fn touch_of(kind: &notify::EventKind) -> Touch {
    use notify::event::{AccessKind, EventKind, ModifyKind};
    match kind {
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Create(_) | EventKind::Remove(_) => {
            Touch::Replaced
        }
        EventKind::Access(AccessKind::Close(_)) => Touch::Closed,
        _ => Touch::Wrote,
    }
}

fn watch_dirs(
    watcher: &mut RecommendedWatcher,
    watched: &mut HashSet<PathBuf>,
    dirs: &HashSet<PathBuf>,
) {
    for d in dirs {
        if watched.contains(d) {
            continue;
        }
        match watcher.watch(d, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(d.clone());
            }
            Err(e) => warn!(dir = %d.display(), error = %e, "cannot watch directory"),
        }
    }
}

/// Loads and swaps in the new config, or records why not. Returns the new watch set.
async fn reload(
    shared: &Arc<Daemon>,
    cache: &Arc<Mutex<config::Cache>>,
    good: &mut Arc<[Diagnostic]>,
) -> Option<WatchSet> {
    notify(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
    ]);
    let _swap = shared.hold_swap().await;
    let started = std::time::Instant::now();
    let built = build(shared, cache, started).await;
    let now = unix_now();
    shared.metrics.last_reload_timestamp.set(now as i64);
    let result = match built {
        Ok((prepared, warnings, spent)) => Some(swap_in(
            shared, good, prepared, warnings, spent, started, now,
        )),
        Err(problems) => {
            refused(shared, good, problems, now);
            None
        }
    };
    // The state replaced (or the one refused) is freed by now: tens of MB at a million
    // domains, given back at once rather than at the trimmer's next round, which starts
    // only once the store has the start's history (half a minute at that size).
    tokio::task::spawn_blocking(super::trim::trim_if_worth);
    notify(&[NotifyState::Ready]);
    result
}

type Built = (super::serving::Prepared, Vec<Diagnostic>, Spent);

/// Loads the config (the files that changed) and prepares its state, off the runtime.
async fn build(
    shared: &Arc<Daemon>,
    cache: &Arc<Mutex<config::Cache>>,
    started: std::time::Instant,
) -> Result<Built, Vec<Diagnostic>> {
    let path = shared.config_path.clone();
    let previous = shared.live.load_full();
    let s = shared.clone();
    let cache = cache.clone();
    tokio::task::spawn_blocking(move || {
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = config::load_cached(&path, &mut cache);
        let counts = cache.last_load();
        drop(cache);
        let loaded = loaded.map_err(|f| f.diagnostics)?;
        let load_ms = started.elapsed().as_millis();
        let live =
            super::serving::prepare(&s.history, loaded.config, Some(&previous)).map_err(|e| {
                vec![Diagnostic {
                    severity: Severity::Error,
                    file: path.as_path().into(),
                    position: None,
                    message: e,
                }]
            })?;
        let spent = Spent {
            files: counts,
            load_ms,
            prepare_ms: started.elapsed().as_millis() - load_ms,
            prepare: live.spent,
        };
        Ok::<_, Vec<Diagnostic>>((live, loaded.warnings, spent))
    })
    .await
    .unwrap_or_else(|e| Err(vec![internal(&shared.config_path, e)]))
}

/// Swaps the new state in (served first), then logs, counts and tells the tasks.
fn swap_in(
    shared: &Daemon,
    good: &mut Arc<[Diagnostic]>,
    prepared: super::serving::Prepared,
    mut warnings: Vec<Diagnostic>,
    spent: Spent,
    started: std::time::Instant,
    now: u64,
) -> WatchSet {
    let m = &shared.metrics;
    let live = prepared.live;
    if live.config.server != shared.live.load().config.server {
        // Listeners are bound once; everything else in the config applies at once.
        warnings.push(Diagnostic {
            severity: Severity::Warning,
            file: shared.config_path.as_path().into(),
            position: None,
            message: "[server] changed: listeners and limits take effect at the next restart; the rest of the config is live".into(),
        });
    }
    let set = WatchSet::of(&live.config);
    let domains = live.config.domains.len();
    // Served first; what only the log and metrics need (a million lookups, thousands
    // of warnings at a million domains) comes after.
    let old = shared.live.swap(Arc::new(live));
    let served_at = started.elapsed().as_millis();
    let live = shared.live.load();
    let changed = live
        .config
        .domains
        .iter()
        .filter(|d| {
            old.domain(d.name.as_str())
                .is_none_or(|o| o.policy.id() != d.policy.id())
        })
        .count();
    drop((old, live));
    let warnings: Arc<[Diagnostic]> = warnings.into();
    let new_warnings = log_new(good, &warnings);
    *good = warnings.clone();
    super::serving::commit(shared, &prepared.events);
    // The new policies are being served: now their records may be published, and
    // every task that follows the config looks at it again.
    shared.reloaded();
    m.reloads_ok.inc();
    m.last_reload_ok.set(1);
    m.domains.set(domains as i64);
    shared.publish_cert_metrics();
    info!(
        domains,
        changed,
        files = spent.files.included,
        parsed = spent.files.parsed,
        load_ms = spent.load_ms,
        prepare_ms = spent.prepare_ms,
        history_wait_ms = spent.prepare[0],
        evaluate_ms = spent.prepare[1],
        build_ms = spent.prepare[2],
        served_ms = served_at,
        total_ms = started.elapsed().as_millis(),
        warnings = warnings.len(),
        new_warnings,
        "config reloaded"
    );
    shared.set_last_reload(ReloadStatus {
        at: now,
        ok: true,
        problems: warnings,
    });
    set
}

/// A config refused: the last good one stays; the problems are logged (the new ones) and kept.
fn refused(shared: &Daemon, good: &[Diagnostic], problems: Vec<Diagnostic>, now: u64) {
    let m = &shared.metrics;
    let problems: Arc<[Diagnostic]> = problems.into();
    let warnings = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .count();
    let new_warnings = log_new(good, &problems);
    error!(
        warnings,
        new_warnings, "reload failed: still serving the last good config"
    );
    m.reloads_failed.inc();
    m.last_reload_ok.set(0);
    shared.set_last_reload(ReloadStatus {
        at: now,
        ok: false,
        problems,
    });
}

/// Logs the errors, and the warnings that the config being served did not have (with a
/// million domains, the same 50,000 would otherwise fill the log on every reload; all are in
/// `/status`). A warning is the same when its file, line, column and text are. Returns how
/// many warnings were logged.
fn log_new(good: &[Diagnostic], problems: &[Diagnostic]) -> usize {
    let known: HashSet<&Diagnostic> = good.iter().collect();
    let mut logged = 0;
    for p in problems {
        match p.severity {
            Severity::Error => error!("{p}"),
            Severity::Warning if !known.contains(p) => {
                warn!("{p}");
                logged += 1;
            }
            Severity::Warning => {}
        }
    }
    logged
}

/// Where a reload's time went, for the log.
struct Spent {
    files: config::Counts,
    load_ms: u128,
    prepare_ms: u128,
    /// Of `prepare_ms`: waiting for the history, evaluating it, building the state.
    prepare: [u128; 3],
}

fn internal(path: &Path, e: tokio::task::JoinError) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: path.into(),
        position: None,
        message: format!("internal error while loading: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind};
    use notify::event::{MetadataKind, ModifyKind, RemoveKind, RenameMode};

    use super::changes_content;

    #[test]
    fn only_writes_creates_removes_and_renames_reload() {
        let reload = [
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ];
        let ignore = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            EventKind::Any,
            EventKind::Other,
        ];
        for k in reload {
            assert!(changes_content(&k), "{k:?}");
        }
        for k in ignore {
            assert!(!changes_content(&k), "{k:?}");
        }
    }
}
