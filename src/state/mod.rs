//! What the daemon must remember across restarts: the id history and the retirement of
//! removed domains (`history`), the leases, drift findings and ACME (account, certificates,
//! challenge answers, limits) in the store (`store`: SQLite in `[state] dir`, or PostgreSQL
//! shared by every replica); files in `[state] dir`: the TLS-RPT store. Every file write here
//! is atomic and durable.
//!
//! Layout of `[state] dir`:
//! - `state.sqlite`: the embedded store (when no URL is given), 0600: it holds private keys.
//! - `history.jsonl`: the journal of an earlier version, imported once, then left alone.
//! - `acme/`: an earlier version's ACME files (unless `[acme] state` says), imported once.

pub(crate) mod history;
mod journal;
pub(crate) mod show;
pub(crate) mod store;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub(crate) use journal::Journal;

/// Replaces `path` with `bytes` so that a crash at any point leaves the old content or the
/// new, never a mix: write a temporary file, fsync it, rename it over, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // Unique per process: replicas sharing the directory never write the same temporary file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
