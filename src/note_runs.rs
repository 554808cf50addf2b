//! Runs of consecutive notes, hashed: what "repeating N notes of a tune" means. Shared by the
//! copy metric of `continuo eval` (`train::copy`) and the copy guard the sampler uses
//! (`model::copy_guard`), so the guard forbids exactly what the metric counts.
//!
//! A note here is its pitch, its onset distance from the previous note and its duration (on the
//! token grid), so a copy is a literal repeat of melody and rhythm, not merely the same pitches.
//! Transpositions are not counted.

use crate::music::{Note, Phrase};
use crate::tokens::{quantize, TICKS_PER_BEAT};

/// Consecutive notes that count as a copy (the model issue's definition): the copy metric's
/// run and the copy guard's.
pub const COPY_RUN: usize = 8;
/// A longer run, which stock phrases of a style rarely fill: a copied tune rather than an idiom.
pub const LONG_COPY_RUN: usize = 16;

/// One note of a run, in grid ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteKey {
    pub pitch: u8,
    /// Ticks since the previous note's onset (0 for the first note, and within a chord).
    pub gap: i64,
    pub duration: i64,
}

fn ticks(beats: f64) -> i64 {
    (beats * TICKS_PER_BEAT as f64).round() as i64
}

/// Keys of notes already on the token grid and in token order (onset, then pitch), as the
/// decoder produces them.
pub fn grid_note_keys(notes: &[Note]) -> Vec<NoteKey> {
    let mut prev = None;
    notes
        .iter()
        .map(|n| {
            let onset = ticks(n.start);
            let gap = prev.map_or(0, |p| onset - p);
            prev = Some(onset);
            NoteKey {
                pitch: n.pitch,
                gap,
                duration: ticks(n.duration),
            }
        })
        .collect()
}

/// Keys of any notes: quantized to the token grid first, as a real performance is not on it.
pub fn note_keys(notes: &[Note]) -> Vec<NoteKey> {
    grid_note_keys(&quantize(&Phrase::new(notes.to_vec(), 4.0)).notes)
}

/// FNV-1a over the run's bytes: stable across Rust versions and machines, because hashes of
/// training runs are stored in model folders (`copy_guard.safetensors`).
pub fn run_hash(run: &[NoteKey]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(PRIME);
        }
    };
    for (i, k) in run.iter().enumerate() {
        eat(&[k.pitch]);
        // The first note's gap depends on what came before the run: leave it out.
        if i > 0 {
            eat(&(k.gap as i32).to_le_bytes());
        }
        eat(&(k.duration as i32).to_le_bytes());
    }
    h
}

/// Hashes of every run of `len` consecutive notes, in order.
pub fn note_runs(notes: &[Note], len: usize) -> Vec<u64> {
    note_keys(notes).windows(len).map(run_hash).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(start: f64, pitch: u8) -> Note {
        Note {
            start,
            duration: 0.5,
            pitch,
            velocity: 80,
        }
    }

    #[test]
    fn a_run_hashes_the_same_wherever_it_starts() {
        let a = [note(0.0, 60), note(0.5, 62), note(1.0, 64)];
        let b = [note(7.0, 60), note(7.5, 62), note(8.0, 64)];
        assert_eq!(note_runs(&a, 3), note_runs(&b, 3));
        // Another rhythm, or another pitch, is another run.
        let c = [note(0.0, 60), note(1.0, 62), note(1.5, 64)];
        let d = [note(0.0, 60), note(0.5, 62), note(1.0, 65)];
        assert_ne!(note_runs(&a, 3), note_runs(&c, 3));
        assert_ne!(note_runs(&a, 3), note_runs(&d, 3));
    }

    #[test]
    fn the_hash_is_stable() {
        // Stored in model folders: changing it silently disarms every shipped copy guard.
        let k = |pitch, gap, duration| NoteKey {
            pitch,
            gap,
            duration,
        };
        assert_eq!(
            run_hash(&[k(60, 5, 12), k(62, 12, 12)]),
            0x310a_c80c_acc8_e45b
        );
    }
}
