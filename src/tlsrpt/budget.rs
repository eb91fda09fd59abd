//! The bytes of report JSON being parsed and stored at once: bounded by `[tlsrpt]
//! parse_budget_bytes`, so many large reports at once cost at most that (times the parse's
//! overhead) instead of the daemon's memory. Over the budget a report is refused for now
//! (HTTPS 503 with Retry-After, mail 75), never queued. In `serve` the bytes are counted; the
//! `tlsrpt ingest` processes (one per mail) each take a slot of `max_report_bytes`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One per process, like the memory it guards.
pub(crate) static PARSING: Budget = Budget::new();

#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: &'static Budget,
    bytes: usize,
}

impl Budget {
    pub(crate) const fn new() -> Budget {
        Budget {
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if the bytes held stay within `limit`. The limit is read per call, so a
    /// reload that changes it applies to the next report.
    pub(crate) fn take(&'static self, bytes: usize, limit: usize) -> Option<Held> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= limit)
            })
            .ok()
            .map(|_| Held {
                budget: self,
                bytes,
            })
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One of `slots` ingest slots in `dir` (`tlsrpt-ingest.<n>.lock`, an advisory lock held as
/// long as the file): `None` when every slot is held by another ingest. The kernel drops the
/// lock when the process ends, however it ends.
pub fn ingest_slot(dir: &Path, slots: usize) -> io::Result<Option<File>> {
    for n in 0..slots.max(1) {
        let path = dir.join(format!("tlsrpt-ingest.{n}.lock"));
        // Read-only when it exists (a lock needs no write access, and another user may
        // have made it); created otherwise.
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => File::options()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        // SAFETY: a valid descriptor, owned by `file` for the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(file));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_within_the_limit_and_given_back() {
        static B: Budget = Budget::new();
        let a = B.take(60, 100).unwrap();
        assert!(B.take(41, 100).is_none(), "over the limit");
        let b = B.take(40, 100).unwrap();
        assert_eq!(B.used(), 100);
        drop(a);
        assert_eq!(B.used(), 40);
        assert!(B.take(60, 100).is_some());
        drop(b);
        assert_eq!(B.used(), 0);
        assert!(B.take(usize::MAX, usize::MAX).is_some());
        assert!(B.take(101, 100).is_none(), "never more than the limit");
    }

    #[test]
    fn ingest_slots_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let a = ingest_slot(dir.path(), 2).unwrap().expect("a free slot");
        let b = ingest_slot(dir.path(), 2)
            .unwrap()
            .expect("the second slot");
        assert!(ingest_slot(dir.path(), 2).unwrap().is_none(), "both held");
        drop(a);
        assert!(ingest_slot(dir.path(), 2).unwrap().is_some(), "given back");
        drop(b);
    }
}
