//! Large f32 buffers that a finished prefill or cache gives back, for the next one to take.
//!
//! Why: glibc serves a block of more than its mmap threshold with fresh pages from the OS and
//! unmaps it on free, so every prefill faulted in its scratch rows and its cache's keys and
//! values page by page: a tenth of a 256-token prefill's time went to page faults and
//! unmapping (`perf` on this 2-core AVX2 machine: 13.0 → 11.2 ms with the faults tuned away).
//! An answer makes up to three model calls of the same sizes in a row, so the buffers of one
//! fit the next.
//!
//! A buffer taken here holds whatever its last user wrote: only for buffers written before
//! they are read (a cache's positions beyond its length, rows a product or a LayerNorm sets).
//! Only the worker's and the CLI's threads decode, never the audio thread; the lock is held
//! for a scan of a few entries. The worker frees the spares as it ends
//! ([`crate::model::release_spare_buffers`]).

use std::sync::Mutex;

/// Values kept for reuse at most (64 MiB of f32: the cache of an 8-candidate answer of the
/// default model and a prefill's scratch); a buffer given back beyond it is freed. Only the
/// pages a user wrote are resident.
const KEEP_VALUES: usize = 16 << 20;

/// Buffers below this many values (128 KiB) come from the allocator's own free lists, below
/// glibc's mmap threshold: faster than a trip through the lock.
const SMALLEST: usize = 32 << 10;

/// The process's spares, shared by every model.
pub(crate) static SPARE: SpareBuffers = SpareBuffers::new(KEEP_VALUES);

pub(crate) struct SpareBuffers {
    spare: Mutex<Vec<Vec<f32>>>,
    keep_values: usize,
}

impl SpareBuffers {
    const fn new(keep_values: usize) -> Self {
        Self {
            spare: Mutex::new(Vec::new()),
            keep_values,
        }
    }

    /// A buffer of `len` values, contents unspecified unless freshly allocated (then zeros).
    pub(crate) fn take(&self, len: usize) -> Vec<f32> {
        if len >= SMALLEST {
            let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
            // The smallest that fits, so that a large buffer stays for a large request; one
            // more than twice the size is left for a larger request.
            let best = spare
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len && b.len() <= 2 * len)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let mut buf = spare.swap_remove(i);
                buf.truncate(len);
                return buf;
            }
        }
        vec![0.0; len]
    }

    /// Frees every spare: the worker calls it as it ends, so that a plugin instance once
    /// closed leaves none of its buffers in the host's process.
    pub(crate) fn release(&self) {
        // Taken out under the lock, freed after it (the guard ends with the statement): the
        // unmapping of up to 64 MiB never holds up another thread's take or give.
        let freed = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|e| e.into_inner()));
        drop(freed);
    }

    /// Gives `buf` back for a later [`SpareBuffers::take`], or frees it when the spares are
    /// full.
    pub(crate) fn give(&self, mut buf: Vec<f32>) {
        if buf.len() < SMALLEST {
            return;
        }
        // Back to the size it was made at (the tail a shorter user left alone, zeroed), so
        // that a prompt of a few tokens does not shrink a spare below the next long one.
        buf.resize(buf.capacity(), 0.0);
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        let kept: usize = spare.iter().map(Vec::len).sum();
        if kept + buf.len() <= self.keep_values {
            spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_at_the_size_asked() {
        let spares = SpareBuffers::new(4 * SMALLEST);
        let len = SMALLEST * 3;
        let mut buf = spares.take(len);
        assert_eq!(buf.len(), len);
        buf[0] = 42.0;
        let ptr = buf.as_ptr();
        spares.give(buf);
        let again = spares.take(len - 5);
        assert_eq!((again.len(), again.as_ptr()), (len - 5, ptr), "not reused");
        assert_eq!(again[0], 42.0);
        spares.give(again);
        // Given back whole: the size it was made at serves again.
        let whole = spares.take(len);
        assert_eq!((whole.len(), whole.as_ptr()), (len, ptr), "shrunk");
        spares.give(whole);
        // A far smaller request does not take it (it would hold a large block for little),
        // nor a larger one.
        let (small, large) = (spares.take(SMALLEST), spares.take(len + 1));
        assert!(small.as_ptr() != ptr && large.as_ptr() != ptr);
        assert_eq!(spares.spare.lock().unwrap().len(), 1, "the spare was taken");
        // Up to the limit a buffer given back is kept, beyond it freed.
        spares.give(vec![0.0; SMALLEST]);
        spares.give(vec![0.0; SMALLEST]);
        assert_eq!(
            spares.spare.lock().unwrap().len(),
            2,
            "kept beyond the limit"
        );
        spares.release();
        assert!(
            spares.spare.lock().unwrap().is_empty(),
            "spares left after release"
        );
    }
}
