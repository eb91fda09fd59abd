//! The JSON-lines journal an earlier version kept the id history in (`history.jsonl`), read
//! once to import it into the store (`store::import`); nothing writes it any more.
//!
//! A crash mid-append left at most one torn last line, which reading skips.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
}

/// What a read found: the records, and how many lines were unreadable (a torn last line after
/// a crash, or damage).
pub(crate) struct Lines<T> {
    pub records: Vec<T>,
    pub skipped: usize,
}

impl Journal {
    /// The journal `name` in `dir`, if there is one.
    pub(crate) fn open_existing(dir: &Path, name: &str) -> Option<Journal> {
        let path = dir.join(format!("{name}.jsonl"));
        path.exists().then_some(Journal { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the complete lines from byte `from` on (0: everything). A journal that was
    /// compacted since (shorter than `from`) is read from the start.
    pub(crate) fn read<T: DeserializeOwned>(&self, from: u64) -> io::Result<Lines<T>> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Lines {
                    records: Vec::new(),
                    skipped: 0,
                })
            }
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let start = if from > len { 0 } else { from };
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        f.read_to_end(&mut buf)?;
        // Only complete lines: a torn tail is left for a later read (it may still be written).
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut records = Vec::new();
        let mut skipped = 0;
        for line in buf[..complete].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(r) => records.push(r),
                Err(_) => skipped += 1,
            }
        }
        Ok(Lines { records, skipped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct N {
        n: u32,
    }

    fn ns(r: &Lines<N>) -> Vec<u32> {
        r.records.iter().map(|r| r.n).collect()
    }

    #[test]
    fn a_torn_last_line_is_left_unread() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.jsonl"),
            b"{\"n\":1}\n{\"n\":2}\n{\"n\":3",
        )
        .unwrap();
        let j = Journal::open_existing(dir.path(), "t").unwrap();
        let r = j.read::<N>(0).unwrap();
        assert_eq!((ns(&r), r.skipped), (vec![1, 2], 0));
        assert!(Journal::open_existing(dir.path(), "none").is_none());
    }

    #[test]
    fn damaged_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.jsonl"), b"{\"n\":1}\n{oops\n{\"n\":2}\n").unwrap();
        let j = Journal::open_existing(dir.path(), "t").unwrap();
        let r = j.read::<N>(0).unwrap();
        assert_eq!((ns(&r), r.skipped), (vec![1, 2], 1));
    }
}
