//! Gives memory back to the system once it is no longer used. glibc's malloc keeps what a
//! burst of connections or an old config freed in its arenas: after 10,000 TLS connections
//! closed, RSS stayed at 175 MB (idle 16 MB); one `malloc_trim(0)` brought it to 20 MB
//! (bench/rss-burst.sh). jemalloc and mimalloc, preloaded, still held 64 % and 56 % of the
//! burst ten seconds on. So a task looks every few seconds at how much malloc holds unused,
//! and trims when that is large.

use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

/// How often the memory held but unused is looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Resident bytes beyond what malloc has handed out that are worth giving back (the binary,
/// stacks and the like are under it).
const WORTH: usize = 32 << 20;

/// Starts the task (glibc only; elsewhere nothing to do). Aborted when dropped.
pub(crate) fn start() -> Option<AbortOnDropHandle<()>> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    Some(AbortOnDropHandle::new(tokio::spawn(async {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Both walk malloc's arenas under their locks: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(trim_if_worth).await;
        }
    })))
}

/// Trims when the process holds more than [`WORTH`] resident beyond what is allocated;
/// returns those bytes before and after.
pub(crate) fn trim_if_worth() -> Option<(usize, usize)> {
    let before = held()?;
    if before < WORTH {
        return None;
    }
    trim();
    let after = held()?;
    debug!(before, after, "gave freed memory back to the system");
    Some((before, after))
}

/// Resident bytes minus the bytes malloc has handed out (from the heap and by mmap).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn held() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf and mallinfo2 only read (mallinfo2: glibc ≥ 2.33; Debian 12 has 2.36).
    let (page, info) = unsafe { (libc::sysconf(libc::_SC_PAGESIZE), libc::mallinfo2()) };
    let resident = pages * usize::try_from(page).ok()?;
    Some(resident.saturating_sub(info.uordblks + info.hblkhd))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim releases free pages of every arena; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn held() -> Option<usize> {
    None
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_is_given_back() {
        // Many small blocks, as connections leave them, then all freed but one at the end
        // (which keeps the heap from shrinking by itself).
        let blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 400]).collect();
        let keep = vec![1u8; 400];
        drop(blocks);
        let (before, after) = trim_if_worth().expect("over 32 MiB free after the drop");
        assert!(before >= WORTH, "{before}");
        // Other tests of this process hold memory too: count what came back, not a ratio.
        // The blocks took about 83 MB (400 bytes and malloc's header each).
        assert!(before - after > 60 << 20, "{before} → {after}");
        drop(keep);
    }
}
