//! One memory budget for all of an engine's views. Each view's runtime
//! holds a [`Share`] and reports what it holds now (its groups, changes
//! not yet committed, a commit in flight); it may hold the budget less
//! what the others hold, and never less than an even split. A live view
//! at its head holds little, so a backfill beside it can use nearly all
//! of the budget; views that all replay at once split it as they grow.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

#[derive(Debug)]
pub struct MemoryPool {
    budget: usize,
    shares: Mutex<Vec<Weak<AtomicUsize>>>,
}

/// One view's part of a [`MemoryPool`]; it leaves the pool when dropped.
#[derive(Debug)]
pub struct Share {
    pool: Arc<MemoryPool>,
    used: Arc<AtomicUsize>,
}

impl MemoryPool {
    pub fn new(budget: usize) -> Arc<MemoryPool> {
        Arc::new(MemoryPool {
            budget,
            shares: Mutex::new(Vec::new()),
        })
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn share(self: &Arc<Self>) -> Share {
        let used = Arc::new(AtomicUsize::new(0));
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares.retain(|s| s.strong_count() > 0);
        shares.push(Arc::downgrade(&used));
        Share {
            pool: self.clone(),
            used,
        }
    }

    /// Bytes held by every share, and how many shares there are.
    fn held(&self) -> (usize, usize) {
        let shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares
            .iter()
            .filter_map(Weak::upgrade)
            .fold((0, 0), |(sum, n), s| {
                (sum + s.load(Ordering::Relaxed), n + 1)
            })
    }
}

impl Share {
    /// What this view holds now.
    pub fn set(&self, bytes: usize) {
        self.used.store(bytes, Ordering::Relaxed);
    }

    /// What this view may hold: the budget less what the others hold,
    /// but at least an even split of it.
    pub fn limit(&self) -> usize {
        let (held, n) = self.pool.held();
        let others = held.saturating_sub(self.used.load(Ordering::Relaxed));
        let budget = self.pool.budget;
        budget.saturating_sub(others).max(budget / n.max(1))
    }
}

/// Bytes a hashbrown table of `u32` holding `capacity` entries takes: a
/// bucket (4 bytes and a control byte) per entry, with buckets at least
/// 8/7 of the capacity.
pub(crate) fn table_bytes(capacity: usize) -> usize {
    capacity * 8 / 7 * 5
}

/// Tunes glibc's allocator for a process that runs views with a memory
/// budget of `budget` bytes. Call before any other thread starts (a
/// thread keeps the arena it first allocated in); a no-op elsewhere.
///
/// - Big blocks (pending changes, commit buffers, read batches) are mapped
///   on their own, so that freeing one gives its memory back at once
///   instead of leaving a hole that small allocations (store pages)
///   fragment. Without it, a replay at 10M keys peaked ~200 MiB above
///   what it held. (glibc raises its threshold as big blocks are freed, up
///   to 32 MiB; this pins it.) "Big" is 1/128 of the budget, from 256 KiB
///   to 8 MiB ([`mmap_threshold`]): a mapped block is faulted in afresh
///   each time, which cost a 1M-record replay ~15% of its CPU at 1 MiB
///   against 8 MiB, but at a 64 MiB budget the holes left by blocks of
///   0.5–8 MiB (read spans, columns, a commit's sorted keys) took 10 MiB
///   more memory than the replay held.
/// - Free memory at the top of a heap is kept up to 1/16 of the budget
///   (at most 16 MiB) instead of 128 KiB: a catch-up frees and allocates
///   its batches' buffers (~12 MB of records per batch) over and over,
///   and each time they were given back, the kernel faulted and zeroed
///   them in again: ~10% of a replay's CPU.
/// - One malloc arena per four cores, not glibc's eight per core: each
///   arena keeps its own free memory, and a view's threads (operators,
///   decoders, committer) free in one what another allocated. At 10M keys
///   and a 256 MiB budget, one arena instead of the default peaked 40–60
///   MiB lower, with the replay's speed unchanged within the noise
///   (small allocations come from each thread's cache without the lock).
///   `MALLOC_ARENA_MAX` in the environment overrides it.
pub fn tune_allocator(budget: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let keep = (budget / 16).clamp(128 << 10, 16 << 20);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = (cores / 4).max(1);
        // SAFETY: mallopt only sets a malloc parameter; it is safe to call
        // at any time.
        unsafe {
            libc::mallopt(
                libc::M_MMAP_THRESHOLD,
                mmap_threshold(budget) as libc::c_int,
            );
            libc::mallopt(libc::M_TRIM_THRESHOLD, keep as libc::c_int);
            // The operator's own setting wins.
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = budget;
}

/// The size from which [`tune_allocator`] has blocks mapped on their own
/// for a memory budget of `budget` bytes: 1/128 of it, from 256 KiB to
/// 8 MiB.
pub fn mmap_threshold(budget: usize) -> usize {
    (budget / 128).clamp(256 << 10, 8 << 20)
}

/// Asks the CPU to bring the cache lines of `value` (every line it
/// spans) in, ahead of a use that would otherwise wait for memory: a
/// replay looks groups up at random, and each lookup that misses the
/// cache costs more than the work done on the group. A hint only: it
/// never faults.
///
/// Every line, not just the first: an aggregate's slot is 120 bytes, so
/// most slots in its vector straddle three lines, and the field read
/// first (the accumulators' inline-or-heap tag) sat in the third one.
/// Fetching it too took a 1M-record replay's CPU from a median of
/// 0.955 s to 0.825 s (eight alternated runs each).
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    prefetch_lines((value as *const T).cast(), std::mem::size_of::<T>());
}

/// [`prefetch`] for the bytes of `bytes` (a row or key in an arena: a
/// row of 40 bytes straddles two lines more often than not).
#[inline(always)]
pub(crate) fn prefetch_bytes(bytes: &[u8]) {
    prefetch_lines(bytes.as_ptr(), bytes.len());
}

/// Prefetches the lines holding the `len` bytes at `p` (at least one).
#[inline(always)]
fn prefetch_lines(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        // From the start of the line holding the first byte to the line
        // holding the last.
        let into = p as usize % LINE;
        let lines = (into + len.max(1) - 1) / LINE + 1;
        let first = p.wrapping_sub(into).cast::<i8>();
        for line in 0..lines {
            // SAFETY: a prefetch reads nothing and cannot fault, whatever
            // the address; the addresses are only hints.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(line * LINE)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_blocks_are_mapped_from_a_share_of_the_budget() {
        assert_eq!(mmap_threshold(16 << 20), 256 << 10, "never below 256 KiB");
        assert_eq!(mmap_threshold(64 << 20), 512 << 10);
        assert_eq!(mmap_threshold(256 << 20), 2 << 20);
        assert_eq!(mmap_threshold(1 << 30), 8 << 20);
        assert_eq!(mmap_threshold(64 << 30), 8 << 20, "never above 8 MiB");
    }

    #[test]
    fn a_view_may_use_what_the_others_do_not_hold() {
        let pool = MemoryPool::new(1000);
        let live = pool.share();
        let backfill = pool.share();
        assert_eq!(backfill.limit(), 1000);
        live.set(100);
        assert_eq!(backfill.limit(), 900);
        backfill.set(800);
        assert_eq!(backfill.limit(), 900, "its own holding does not count");
        // Never less than an even split.
        assert_eq!(live.limit(), 500);
        backfill.set(300);
        assert_eq!(live.limit(), 700);
        drop(backfill);
        assert_eq!(live.limit(), 1000, "a dropped view leaves the pool");
        let third = pool.share();
        third.set(10);
        assert_eq!(live.limit(), 990);
    }
}
