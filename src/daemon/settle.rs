//! When to load after a config file changed: once the changed files are quiet, so that a file
//! read mid-write never becomes the served config.
//!
//! A file replaced whole (rename, as editors and config management save; a new `..data` link)
//! is complete at once: it loads after [`DEBOUNCE`]. A file written in place may be only half
//! written: it must be closed by its writer and then see no write for [`IN_PLACE_QUIET`]
//! (writers that close between chunks pause less than that), and its size and mtime must hold
//! still over a last [`DEBOUNCE`]. A file written without end still loads after
//! [`MAX_SETTLE`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::Receiver;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, warn};

/// Changes closer together than this are one reload: editors write in bursts.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(200);
/// How long a file written in place must see no write before it is read.
pub(crate) const IN_PLACE_QUIET: Duration = Duration::from_secs(2);
/// How long a writer may hold a file open, writing nothing, before it is read anyway.
pub(crate) const OPEN_QUIET: Duration = Duration::from_secs(5);
/// From the first change, the longest a reload waits for quiet.
pub(crate) const MAX_SETTLE: Duration = Duration::from_secs(10);

/// What happened to a watched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touch {
    /// Bytes written in place (or the file truncated).
    Wrote,
    /// A writer closed the file.
    Closed,
    /// Created, removed or renamed: whole.
    Replaced,
}

#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub path: PathBuf,
    pub touch: Touch,
}

/// What the changes so far say about the files.
#[derive(Debug, Default)]
struct Seen {
    /// Written and not closed since.
    open: HashSet<PathBuf>,
    /// Written in place at all.
    in_place: HashSet<PathBuf>,
}

impl Seen {
    fn note(&mut self, c: Change) {
        match c.touch {
            Touch::Wrote => {
                self.open.insert(c.path.clone());
                self.in_place.insert(c.path);
            }
            Touch::Closed => {
                self.open.remove(&c.path);
            }
            Touch::Replaced => {}
        }
    }

    fn window(&self) -> Duration {
        if !self.open.is_empty() {
            OPEN_QUIET
        } else if !self.in_place.is_empty() {
            IN_PLACE_QUIET
        } else {
            DEBOUNCE
        }
    }
}

/// Waits, from `first`, until the changed files are quiet (or [`MAX_SETTLE`] has passed).
/// Returns false when the channel closed.
pub(crate) async fn settle(first: Change, rx: &mut Receiver<Change>) -> bool {
    let start = Instant::now();
    let give_up = start + MAX_SETTLE;
    let mut seen = Seen::default();
    seen.note(first);
    let mut last = start;
    loop {
        let quiet_at = (last + seen.window()).min(give_up);
        match timeout_at(quiet_at, rx.recv()).await {
            Ok(Some(c)) => {
                seen.note(c);
                last = Instant::now();
                continue;
            }
            Ok(None) => return false,
            Err(_) => {}
        }
        if Instant::now() >= give_up {
            warn!("config files still changing after {MAX_SETTLE:?}: loading them as they are now");
            return true;
        }
        if seen.in_place.is_empty() {
            return true;
        }
        // Quiet by the events; the files themselves must agree over one more debounce
        // (a writer on another host of a network filesystem sends no events here).
        let before = stats(&seen.in_place);
        match timeout_at((Instant::now() + DEBOUNCE).min(give_up), rx.recv()).await {
            Ok(Some(c)) => {
                seen.note(c);
                last = Instant::now();
                continue;
            }
            Ok(None) => return false,
            Err(_) => {}
        }
        if stats(&seen.in_place) == before {
            return true;
        }
        debug!("a config file changed size or time without an event: waiting on");
        last = Instant::now();
    }
}

/// Size and mtime of each file (`None` if it cannot be read).
fn stats(paths: &HashSet<PathBuf>) -> HashMap<PathBuf, Option<(u64, SystemTime)>> {
    paths
        .iter()
        .map(|p| {
            let s = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)));
            (p.clone(), s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn change(path: &str, touch: Touch) -> Change {
        Change {
            path: PathBuf::from(path),
            touch,
        }
    }

    /// Runs `settle` against `events` sent at the given offsets; how long it took.
    async fn settled_after(events: Vec<(u64, Change)>) -> Duration {
        let (tx, mut rx) = mpsc::channel(16);
        let mut events = events.into_iter();
        let (_, first) = events.next().unwrap();
        let start = Instant::now();
        let sender = tokio::spawn(async move {
            for (at_ms, c) in events {
                tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
                tx.send(c).await.unwrap();
            }
            // Keep the channel open.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert!(settle(first, &mut rx).await);
        sender.abort();
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_file_loads_after_the_debounce() {
        let took = settled_after(vec![
            (0, change("/c/a.toml", Touch::Replaced)),
            (100, change("/c/a.toml", Touch::Replaced)),
        ])
        .await;
        assert_eq!(took, Duration::from_millis(100) + DEBOUNCE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_written_in_two_chunks_loads_after_the_second() {
        // Held open between the chunks, 1.2 s apart.
        let took = settled_after(vec![
            (0, change("/nonexistent/a.toml", Touch::Wrote)),
            (1200, change("/nonexistent/a.toml", Touch::Wrote)),
            (1200, change("/nonexistent/a.toml", Touch::Closed)),
        ])
        .await;
        assert_eq!(
            took,
            Duration::from_millis(1200) + IN_PLACE_QUIET + DEBOUNCE
        );
        // Closed between the chunks.
        let took = settled_after(vec![
            (0, change("/nonexistent/a.toml", Touch::Wrote)),
            (0, change("/nonexistent/a.toml", Touch::Closed)),
            (1200, change("/nonexistent/a.toml", Touch::Wrote)),
            (1200, change("/nonexistent/a.toml", Touch::Closed)),
        ])
        .await;
        assert_eq!(
            took,
            Duration::from_millis(1200) + IN_PLACE_QUIET + DEBOUNCE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_writer_is_waited_for_but_not_forever() {
        let took = settled_after(vec![(0, change("/nonexistent/a.toml", Touch::Wrote))]).await;
        assert_eq!(took, OPEN_QUIET + DEBOUNCE);
        // A write every second, forever: loaded at the bound.
        let events = (0..60)
            .map(|i| (i * 1000, change("/nonexistent/a.toml", Touch::Wrote)))
            .collect();
        assert_eq!(settled_after(events).await, MAX_SETTLE);
    }
}
