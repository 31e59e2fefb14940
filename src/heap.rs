//! What the memory allocator holds, for `/metrics`.
//!
//! The resident size alone cannot tell a leak from memory being touched for the first time:
//! actix-http gives every connection two 8 KiB buffers up front, of which a small request
//! writes one page each, and glibc's malloc hands out memory without touching it. Under
//! reconnects those chunks are reused for other things that do write them, so the resident
//! size climbs for many minutes towards the heap's size while the heap itself stays flat.
//! The allocator's own counts show which of the two is growing.
//!
//! This is the one other module allowed `unsafe`: a call into the C library.
#![allow(unsafe_code)]

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The allocator's own figures, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Taken from the kernel for the heap (its arenas plus blocks mapped on their own),
    /// touched or not.
    pub mapped: u64,
    /// Handed out to the program and not yet freed.
    pub in_use: u64,
}

/// How long one reading serves: `/metrics` is open to anyone, and each reading takes every
/// arena's lock, so a client scraping in a loop must not make the workers wait on malloc.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The allocator's figures, read at most once a second (see [`FRESH_FOR`]), where the
/// allocator can tell (glibc); `None` elsewhere.
pub fn stats() -> Option<HeapStats> {
    static LAST: Mutex<Option<(Instant, HeapStats)>> = Mutex::new(None);
    // A poisoned lock only means a reader panicked; the figures in it are still whole.
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    match *last {
        Some((at, stats)) if at.elapsed() < FRESH_FOR => Some(stats),
        _ => {
            let stats = read()?;
            *last = Some((Instant::now(), stats));
            Some(stats)
        }
    }
}

/// The allocator's figures now. Takes each arena's lock in turn and walks its free lists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn read() -> Option<HeapStats> {
    // SAFETY: `mallinfo2` takes no arguments, has no preconditions and only reads the
    // allocator's state under its locks. It needs glibc 2.33; the binary already needs 2.34.
    let info = unsafe { libc::mallinfo2() };
    let mapped_alone = info.hblkhd as u64;
    Some(HeapStats {
        mapped: info.arena as u64 + mapped_alone,
        in_use: info.uordblks as u64 + mapped_alone,
    })
}

/// Other allocators keep their own books, which `mallinfo2` cannot read.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn read() -> Option<HeapStats> {
    None
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    // One test, not two: the other would allocate its own 64 MiB in parallel.
    #[test]
    fn counts_what_is_allocated_and_freed_and_reads_at_most_once_a_second() {
        let before = read().expect("glibc");
        assert!(before.in_use <= before.mapped);
        let cached = stats().expect("glibc");
        // Large enough to be mapped on its own: other tests' allocations cannot hide it.
        let block = vec![1u8; 64 << 20];
        let during = read().expect("glibc");
        assert!(
            during.in_use >= before.in_use + (60 << 20),
            "{before:?} {during:?}"
        );
        assert!(
            during.mapped >= before.mapped + (60 << 20),
            "{before:?} {during:?}"
        );
        // Within the second, `/metrics` gets the reading from before the block.
        assert_eq!(stats(), Some(cached));
        std::thread::sleep(FRESH_FOR);
        let fresh = stats().expect("glibc");
        assert!(
            fresh.in_use >= cached.in_use + (60 << 20),
            "{cached:?} {fresh:?}"
        );
        drop(block);
        let after = read().expect("glibc");
        assert!(
            after.in_use + (60 << 20) <= during.in_use,
            "{during:?} {after:?}"
        );
    }
}
