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

/// The allocator's own figures, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Taken from the kernel for the heap (its arenas plus blocks mapped on their own),
    /// touched or not.
    pub mapped: u64,
    /// Handed out to the program and not yet freed.
    pub in_use: u64,
}

/// The allocator's figures now, where the allocator can tell (glibc); `None` elsewhere.
/// Takes each arena's lock in turn and walks its free lists: meant for a scrape, not for
/// every request.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn stats() -> Option<HeapStats> {
    // SAFETY: `mallinfo2` takes no arguments, has no preconditions and only reads the
    // allocator's state under its locks. It needs glibc 2.33; the binary already needs 2.34.
    let info = unsafe { libc::mallinfo2() };
    let mapped_alone = info.hblkhd as u64;
    Some(HeapStats {
        mapped: info.arena as u64 + mapped_alone,
        in_use: info.uordblks as u64 + mapped_alone,
    })
}

/// The allocator's figures now, where the allocator can tell (glibc); `None` elsewhere.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn stats() -> Option<HeapStats> {
    None
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_allocated_and_freed() {
        let before = stats().expect("glibc");
        assert!(before.in_use <= before.mapped);
        // Large enough to be mapped on its own: other tests' allocations cannot hide it.
        let block = vec![1u8; 64 << 20];
        let during = stats().expect("glibc");
        assert!(
            during.in_use >= before.in_use + (60 << 20),
            "{before:?} {during:?}"
        );
        assert!(
            during.mapped >= before.mapped + (60 << 20),
            "{before:?} {during:?}"
        );
        drop(block);
        let after = stats().expect("glibc");
        assert!(
            after.in_use + (60 << 20) <= during.in_use,
            "{during:?} {after:?}"
        );
    }
}
