//! An append-only file of JSON lines, safe against crashes and shared between processes.
//!
//! A crash mid-append leaves at most one torn last line, which reading skips and the next
//! append starts after (on a fresh line). Appends and compaction hold an exclusive lock on a
//! lock file beside the journal, so replicas sharing the directory never interleave.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    lock: PathBuf,
}

/// What a read found: the records, where the next read starts, and how many lines were
/// unreadable (a torn last line after a crash, or damage).
pub struct Lines<T> {
    pub records: Vec<T>,
    pub end: u64,
    pub skipped: usize,
}

impl Journal {
    /// The journal `name` in `dir`, which is created if missing.
    pub fn open(dir: &Path, name: &str) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        Ok(Journal {
            path: dir.join(format!("{name}.jsonl")),
            lock: dir.join(format!("{name}.lock")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the complete lines from byte `from` on (0: everything). A journal that was
    /// compacted since (shorter than `from`) is read from the start: `end < from` tells.
    pub fn read<T: DeserializeOwned>(&self, from: u64) -> io::Result<Lines<T>> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Lines {
                    records: Vec::new(),
                    end: 0,
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
        Ok(Lines {
            records,
            end: start + complete as u64,
            skipped,
        })
    }

    /// Appends records durably: on return they survive a crash.
    pub fn append<T: Serialize>(&self, records: &[T]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let created = !self.path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        // After a torn append (crash), start on a line of our own.
        let len = f.metadata()?.len();
        let mut torn = false;
        if len > 0 {
            let mut last = [0u8];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            torn = last[0] != b'\n';
        }
        // Written as serialized: a start's million lines are never all in memory at once.
        let mut out = io::BufWriter::with_capacity(1 << 20, &mut f);
        if torn {
            out.write_all(b"\n")?;
        }
        for r in records {
            serde_json::to_writer(&mut out, r)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        drop(out);
        f.sync_data()?;
        if created {
            super::sync_dir(self.path.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(())
    }

    /// Replaces the whole journal with `records` (compaction), atomically.
    pub fn rewrite<T: Serialize>(&self, records: &[T]) -> io::Result<()> {
        let mut out = Vec::with_capacity(records.len() * 96);
        for r in records {
            serde_json::to_writer(&mut out, r)?;
            out.push(b'\n');
        }
        let _lock = self.lock()?;
        super::write_atomic(&self.path, &out)
    }

    /// The size of the journal on disk.
    pub fn size(&self) -> u64 {
        fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn lock(&self) -> io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        f.lock()?;
        Ok(f)
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
    fn a_torn_last_line_is_skipped_and_the_next_append_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), "t").unwrap();
        j.append(&[N { n: 1 }, N { n: 2 }]).unwrap();
        // A crash in the middle of writing `{"n":3}\n`: records are objects, so a torn one
        // never parses.
        let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
        f.write_all(br#"{"n":3"#).unwrap();
        drop(f);
        let r = j.read::<N>(0).unwrap();
        assert_eq!(ns(&r), vec![1, 2]);
        j.append(&[N { n: 4 }]).unwrap();
        let r = j.read::<N>(0).unwrap();
        assert_eq!((ns(&r), r.skipped), (vec![1, 2, 4], 1));
        // Reading on from where the last read ended sees only what is new.
        j.append(&[N { n: 5 }]).unwrap();
        assert_eq!(ns(&j.read::<N>(r.end).unwrap()), vec![5]);
    }

    #[test]
    fn damaged_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), "t").unwrap();
        fs::write(j.path(), b"{\"n\":1}\n{oops\n{\"n\":2}\n").unwrap();
        let r = j.read::<N>(0).unwrap();
        assert_eq!((ns(&r), r.skipped), (vec![1, 2], 1));
    }
}
