//! Allocator settings for the command-line tool's training and benchmarks.
//!
//! candle allocates a fresh buffer for every tensor op. glibc serves large requests with
//! `mmap`, so each one costs page faults and zeroing (15–20 % of a training step in `perf`).
//! Raising the mmap threshold keeps those buffers in the heap for reuse. One arena for every
//! thread: the buffers of candle's rayon workers otherwise land in per-thread arenas, heaps of
//! at most 64 MB that a 33.5 MB training tensor overflows into fresh mapped pages again (the
//! kernel's `clear_page_rep` was 6 % of a training step in `perf` until then; gone with one
//! arena). Only the CLI calls this: a plugin must not change its host's allocator.

/// Keeps large allocations in the reusable heap (glibc only; a no-op elsewhere).
pub fn keep_large_allocations_in_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: mallopt only changes glibc's tuning parameters; called once at start-up.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
