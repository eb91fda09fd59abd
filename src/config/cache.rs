//! What `serve` keeps of each included file between loads, so that a reload parses again only
//! the files that changed: with a million domains in a thousand files, one edited file costs
//! one file's parse, not a thousand.
//!
//! A file is taken as unchanged when its device, inode, size, mtime and ctime are those of the
//! last read, unless that read was so close to its last write that a later write could carry
//! the same times (timestamps are coarse): then its content is compared. A file whose times
//! changed but whose bytes did not is not parsed again either. The parse of an included file
//! depends on its bytes and its directory only, so a cached one is what a fresh parse would
//! give. Its domains' resolution depends on the parse and on what they inherit (the main
//! file, `[tls]` certificates, every file's provider names: a digest of them, the key): while
//! both are the same, the last resolution is reused, and the new config shares those domains
//! with the one served (a one-file edit at a million domains resolves a thousand, and holds
//! a million only once).

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::diag::{Pending, Source};
use super::raw::RawFile;
use super::Domain;

/// Writes this close before a read may share its timestamps with a write just after it.
/// Covers the coarsest common filesystems (FAT and some network filesystems: 1-2 s).
const RACY: Duration = Duration::from_secs(2);

/// The included files of the last load, by path.
#[derive(Debug)]
pub(crate) struct Cache {
    files: HashMap<PathBuf, Cached>,
    /// What the last load did, for the log and tests.
    last: Counts,
    /// [`RACY`]; shorter in tests, which would otherwise wait for it.
    racy: Duration,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            files: HashMap::new(),
            last: Counts::default(),
            racy: RACY,
        }
    }
}

/// Files of the last load: included in all, read (content looked at), parsed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub included: usize,
    pub read: usize,
    pub parsed: usize,
}

impl Cache {
    /// How many included files the last load read and parsed (the rest came from the cache).
    pub(crate) fn last_load(&self) -> Counts {
        self.last
    }

    /// A file number for each path: a cached file keeps its number (its parse refers to it),
    /// a new one gets the lowest free number. 0 is the main file.
    #[allow(clippy::expect_used, reason = "fewer files than numbers")]
    pub(crate) fn numbers(&self, paths: &[PathBuf]) -> Vec<u32> {
        let kept: HashSet<u32> = paths
            .iter()
            .filter_map(|p| self.files.get(p).map(|c| c.file))
            .collect();
        let mut free = (1u32..).filter(|n| !kept.contains(n));
        paths
            .iter()
            .map(|p| match self.files.get(p) {
                Some(c) => c.file,
                None => free.next().expect("fewer files than numbers"),
            })
            .collect()
    }

    pub(crate) fn get(&self, path: &Path) -> Option<&Cached> {
        self.files.get(path)
    }

    pub(crate) fn racy_window(&self) -> Duration {
        self.racy
    }

    /// Keeps what this load read: exactly the files it included and could read.
    pub(crate) fn replace(&mut self, files: HashMap<PathBuf, Cached>, last: Counts) {
        self.files = files;
        self.last = last;
    }
}

/// One included file as last read.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub file: u32,
    pub stamp: Stamp,
    /// Read too soon after its last write for the stamp alone to prove it unchanged.
    pub racy: bool,
    /// Its path and text, for the line and column of problems.
    pub source: Arc<Source>,
    pub parsed: Arc<Parsed>,
    /// Its domains as last resolved (against the globals its key names): reused while the
    /// parse and the globals are the same, so a reload resolves only the files that changed
    /// and shares the others' domains with the config served.
    pub resolved: Option<Arc<Resolution>>,
}

impl Cached {
    /// Whether the file is, by its metadata alone, the one read.
    pub(crate) fn unchanged(&self, meta: &Metadata) -> bool {
        !self.racy && self.stamp == Stamp::of(meta)
    }
}

/// A file's parse: its contribution (absent after TOML syntax errors) and its own problems.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub raw: Option<RawFile>,
    pub problems: Vec<Pending>,
}

/// An included file's domains resolved, in the file's order (`None` where a domain did not
/// resolve: its problems say why), with the problems found resolving them.
#[derive(Debug)]
pub(crate) struct Resolution {
    /// What resolving a domain depends on besides its own table: see `resolve::globals_key`.
    pub key: GlobalsKey,
    pub domains: Vec<Option<Domain>>,
    pub problems: Vec<Pending>,
}

/// A digest of everything a domain inherits (SHA-256).
pub(crate) type GlobalsKey = [u8; 32];

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a write right after `now` could leave this stamp as it is: the file was
    /// written less than `window` before.
    pub(crate) fn racy(&self, now: SystemTime, window: Duration) -> bool {
        let latest = self.mtime.max(self.ctime);
        let Ok(secs) = u64::try_from(latest.0) else {
            return true;
        };
        let at = UNIX_EPOCH + Duration::new(secs, latest.1.clamp(0, 999_999_999) as u32);
        // A clock that went back is racy too.
        now.duration_since(at).map_or(true, |d| d < window)
    }
}

#[cfg(test)]
mod tests;
