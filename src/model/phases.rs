//! Work in phases that whichever of the pool's threads join share, chunk by chunk.
//!
//! Why our own: a decoding step of four candidates is about twenty short phases (a product
//! split by its outputs, then attention split by heads, then the next product...), each of
//! 5–20 µs. A rayon hand-off per phase costs a few µs (the other thread wakes or is
//! found), which is what made splitting a batch's products slower than splitting its rows.
//! Here one hand-off starts both threads and they meet between phases on two counters. A
//! thread takes the next chunk by ticket and runs it once every chunk of the earlier
//! phases is done; it only ever waits for chunks that a running thread has taken, so one
//! thread alone (the other busy with another instance's step, or never started) finishes
//! every phase by itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A counter on its own cache line, so that the two counters do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Line(AtomicUsize);

#[derive(Default)]
struct Tickets {
    /// The next chunk to hand out, numbered phase after phase.
    next: Line,
    /// Chunks finished.
    done: Line,
    /// A chunk panicked: the waiting threads stop waiting (the panic then reaches the caller).
    failed: AtomicBool,
}

/// Runs `run(phase, chunk)` for every chunk of every phase, `chunks[phase]` chunks per
/// phase, on up to two threads of the current rayon pool: every chunk of a phase after all
/// chunks of the phases before it, the chunks of one phase in any order and at once.
///
/// `run` must give the same results whichever thread runs a chunk and in whichever order
/// the chunks of a phase run (each chunk writing only its own part of the outputs).
pub(crate) fn run_phases(chunks: &[usize], run: impl Fn(usize, usize) + Sync) {
    let total: usize = chunks.iter().sum();
    if total <= chunks.len() || rayon::current_num_threads() < 2 {
        for (phase, &n) in chunks.iter().enumerate() {
            (0..n).for_each(|chunk| run(phase, chunk));
        }
        return;
    }
    let tickets = Tickets::default();
    let work = || take_chunks(&tickets, chunks, total, &run);
    rayon::join(work, work);
}

/// One thread's share: chunks by ticket until none is left.
fn take_chunks(tickets: &Tickets, chunks: &[usize], total: usize, run: &impl Fn(usize, usize)) {
    /// Marks the run failed if the chunk unwinds.
    struct FailOnUnwind<'a>(&'a AtomicBool);
    impl Drop for FailOnUnwind<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Release);
            }
        }
    }
    // Tickets rise, so each thread walks the phases forward.
    let (mut phase, mut start) = (0, 0);
    loop {
        let ticket = tickets.next.0.fetch_add(1, Ordering::Relaxed);
        if ticket >= total {
            return;
        }
        while ticket >= start + chunks[phase] {
            start += chunks[phase];
            phase += 1;
        }
        // Every earlier chunk has been taken by a running thread: wait for them to finish.
        let mut spins = 0u32;
        while tickets.done.0.load(Ordering::Acquire) < start {
            if tickets.failed.load(Ordering::Acquire) {
                return;
            }
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                // The other thread may have been descheduled: give it the core.
                std::thread::yield_now();
            }
        }
        let guard = FailOnUnwind(&tickets.failed);
        run(phase, ticket - start);
        drop(guard);
        tickets.done.0.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_chunk_runs_once_after_every_chunk_of_the_phases_before() {
        let chunks = [2, 1, 3, 2, 2];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for _ in 0..50 {
                let log = Mutex::new(Vec::new());
                pool.install(|| {
                    run_phases(&chunks, |phase, chunk| {
                        log.lock().unwrap().push((phase, chunk));
                    })
                });
                let log = log.into_inner().unwrap();
                assert_eq!(log.len(), chunks.iter().sum::<usize>());
                // Phases in order; each chunk once.
                assert!(log.windows(2).all(|w| w[0].0 <= w[1].0), "{log:?}");
                let mut sorted = log.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), log.len(), "{log:?}");
            }
        }
    }

    #[test]
    fn one_thread_alone_finishes_when_the_other_is_busy() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let count = AtomicUsize::new(0);
        pool.install(|| {
            rayon::join(
                // The other thread is held here while this one's phases run.
                || std::thread::sleep(std::time::Duration::from_millis(50)),
                || {
                    run_phases(&[2, 2, 2], |_, _| {
                        count.fetch_add(1, Ordering::Relaxed);
                    })
                },
            )
        });
        assert_eq!(count.into_inner(), 6);
    }
}
