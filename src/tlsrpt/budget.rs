//! The bytes of report JSON being parsed and stored at once, in this process: bounded by
//! `[tlsrpt] parse_budget_bytes`, so many large reports at once cost at most that (times the
//! parse's overhead) instead of the daemon's memory. Over the budget a report is refused for
//! now (HTTPS 503 with Retry-After), never queued.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One per process, like the memory it guards.
pub static PARSING: Budget = Budget::new();

#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: &'static Budget,
    bytes: usize,
}

impl Budget {
    pub const fn new() -> Budget {
        Budget {
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if the bytes held stay within `limit`. The limit is read per call, so a
    /// reload that changes it applies to the next report.
    pub fn take(&'static self, bytes: usize, limit: usize) -> Option<Held> {
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

    pub fn used(&self) -> usize {
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
}
