//! Work in phases that the calling thread and a helper thread share, chunk by chunk.
//!
//! Why our own: a decoding step of four candidates is about twenty short phases (a product
//! split by its outputs, then attention split by heads, then the next product...), each of
//! 5–20 µs. A rayon hand-off per phase costs a few µs (the other thread wakes or is
//! found), which is what made splitting a batch's products slower than splitting its rows.
//! Here the two threads meet between phases on two counters. A thread takes the next chunk
//! by ticket and runs it once every chunk of the earlier phases is done; it only ever waits
//! for chunks that a running thread has taken, so one thread alone (the helper busy with
//! another instance's step, or not yet awake) finishes every phase by itself.
//!
//! Why a helper of our own rather than a rayon pool: the steps come every 0.2–0.4 ms with
//! 10–30 µs of sampling between them, and a pool's hand-off costs two wake-ups per step (the
//! pool's second thread for the join, the caller for the result), 20–30 µs in all. The
//! caller runs its share itself, and the helper spins for a while after each step, so
//! during a decoding loop nothing sleeps; it parks after [`HELPER_PARKS_AFTER`] without work.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
/// phase, on the calling thread and the helper ([`Helper`], where the machine has a second
/// core and no other caller holds it): every chunk of a phase after all chunks of the phases
/// before it, the chunks of one phase in any order and at once.
///
/// `run` must give the same results whichever thread runs a chunk and in whichever order
/// the chunks of a phase run (each chunk writing only its own part of the outputs).
pub(crate) fn run_phases(chunks: &[usize], run: impl Fn(usize, usize) + Sync) {
    let total: usize = chunks.iter().sum();
    let helper = Helper::get();
    if total <= chunks.len() || helper.is_none() {
        for (phase, &n) in chunks.iter().enumerate() {
            (0..n).for_each(|chunk| run(phase, chunk));
        }
        return;
    }
    let tickets = Tickets::default();
    let work = || take_chunks(&tickets, chunks, total, &run);
    if let Some(helper) = helper {
        helper.share(&work);
    }
}

/// How long the helper waits for the next step before it parks: a step's sampling (10–30 µs
/// for four candidates) is well under it, and a prefill (a slide's, or the next answer's,
/// on rayon's threads) well over it, which it must not slow by keeping a core.
const HELPER_PARKS_AFTER: Duration = Duration::from_micros(300);

/// How long of that it spins before it yields its core to any thread that wants it.
const HELPER_SPINS_FOR: Duration = Duration::from_micros(60);

/// A job on offer to the helper: the caller's share of the work, which it runs too, and
/// whether the helper has left it.
struct Job {
    work: *const (dyn Fn() + Sync + 'static),
    /// The helper will not touch the job again.
    left: AtomicBool,
    /// The work panicked on the helper.
    panicked: AtomicBool,
}

/// The thread that takes the chunks of a step beside its caller.
struct Helper {
    /// The job on offer: null, or a caller's [`Job`], which stays alive until the helper has
    /// left it or the caller has taken it back.
    offer: AtomicPtr<Job>,
    /// The helper is parked, or about to: a caller that offers a job unparks it.
    sleeping: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Helper {
    /// The process's helper, started on first use; `None` on one core or if it cannot start.
    fn get() -> Option<&'static Helper> {
        static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();
        *HELPER.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if cores < 2 {
                return None;
            }
            let helper: &'static Helper = Box::leak(Box::new(Helper {
                offer: AtomicPtr::new(std::ptr::null_mut()),
                sleeping: AtomicBool::new(false),
                thread: OnceLock::new(),
            }));
            let thread = std::thread::Builder::new()
                .name("continuo-decode".into())
                .spawn(move || helper.serve())
                .ok()?;
            helper.thread.get_or_init(|| thread.thread().clone());
            Some(helper)
        })
    }

    /// Runs `work` on this thread and, if it takes the offer in time, on the helper; returns
    /// once neither runs it. A panic in either reaches the caller.
    fn share(&self, work: &(dyn Fn() + Sync)) {
        // SAFETY (the lifetime's erasure): the helper only calls `work` between taking the
        // offer and setting `left`, and this function returns only after taking the offer
        // back or seeing `left`, so `work` outlives every call.
        let work: *const (dyn Fn() + Sync + 'static) = unsafe { std::mem::transmute(work) };
        let job = UnsafeCell::new(Job {
            work,
            left: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let offered = self
            .offer
            .compare_exchange(
                std::ptr::null_mut(),
                job.get(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok();
        if offered && self.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
        // Another caller's job on offer: this one's work runs here alone.
        let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: `work` is alive (it is this function's argument).
            unsafe { (*work)() }
        }));
        if offered {
            let taken_back = self
                .offer
                .compare_exchange(
                    job.get(),
                    std::ptr::null_mut(),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok();
            // SAFETY: only shared references to the job are made after it was offered.
            let job = unsafe { &*job.get() };
            if !taken_back {
                wait_until(|| job.left.load(Ordering::Acquire));
            }
            if job.panicked.load(Ordering::Acquire) && own.is_ok() {
                panic!("a decoding step's chunk panicked on the helper thread");
            }
        }
        if let Err(payload) = own {
            std::panic::resume_unwind(payload);
        }
    }

    /// The helper's loop: takes offers; spins, then yields, then parks while there are none.
    fn serve(&self) {
        let mut idle_since = Instant::now();
        let mut polls = 0u32;
        loop {
            let job = self.offer.swap(std::ptr::null_mut(), Ordering::SeqCst);
            if !job.is_null() {
                // SAFETY: an offered job stays alive until `left` is set (`share`).
                let job = unsafe { &*job };
                // SAFETY: as above, `work` outlives this call.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    (*job.work)()
                }));
                if ran.is_err() {
                    job.panicked.store(true, Ordering::Release);
                }
                job.left.store(true, Ordering::Release);
                idle_since = Instant::now();
                continue;
            }
            polls = polls.wrapping_add(1);
            // The clock read every 64 polls: a poll is a few ns, a clock read tens.
            if !polls.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let idle = idle_since.elapsed();
            if idle < HELPER_SPINS_FOR {
                std::hint::spin_loop();
            } else if idle < HELPER_PARKS_AFTER {
                std::thread::yield_now();
            } else {
                self.sleeping.store(true, Ordering::SeqCst);
                // An offer made before `sleeping` was set is seen here; one made after it
                // finds `sleeping` set and unparks (a token park returns on at once).
                if self.offer.load(Ordering::SeqCst).is_null() {
                    std::thread::park();
                }
                self.sleeping.store(false, Ordering::SeqCst);
                idle_since = Instant::now();
            }
        }
    }
}

/// Spins until `done()`, then yields between polls: the thread it waits for may have been
/// descheduled, and yielding gives it the core.
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins += 1;
        if spins < 1 << 14 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
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
        wait_until(|| {
            tickets.failed.load(Ordering::Acquire)
                || tickets.done.0.load(Ordering::Acquire) >= start
        });
        if tickets.failed.load(Ordering::Acquire) {
            return;
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
        for _ in 0..100 {
            let log = Mutex::new(Vec::new());
            run_phases(&chunks, |phase, chunk| {
                log.lock().unwrap().push((phase, chunk));
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

    #[test]
    fn a_caller_finishes_alone_while_the_helper_is_held_by_another() {
        let other_done = AtomicBool::new(false);
        let count = AtomicUsize::new(0);
        std::thread::scope(|s| {
            // Another caller's step whose chunks take long: the helper is in it meanwhile.
            s.spawn(|| {
                run_phases(&[2, 2], |_, _| {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                });
                other_done.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            run_phases(&[2, 2, 2], |_, _| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            // Finished long before the other step: it did not wait for the helper.
            assert!(!other_done.load(Ordering::SeqCst));
        });
        assert_eq!(count.into_inner(), 6);
    }

    #[test]
    fn a_panicking_chunk_reaches_the_caller_and_the_helper_serves_on() {
        for _ in 0..20 {
            let caught = std::panic::catch_unwind(|| {
                run_phases(&[2, 2, 2], |phase, _| {
                    if phase == 1 {
                        panic!("chunk");
                    }
                })
            });
            assert!(caught.is_err());
        }
        let count = AtomicUsize::new(0);
        run_phases(&[2, 3, 2], |_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.into_inner(), 7);
    }
}
