//! Copy detection: does a continuation repeat a run of notes from a training file?

use super::Piece;
use crate::music::Note;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Consecutive notes that count as a copy.
pub const COPY_RUN: usize = 8;

/// Every run of [`COPY_RUN`] consecutive pitches (in onset order) of the training pieces.
pub struct CopyIndex {
    runs: HashSet<u64>,
}

fn pitches(notes: &[Note]) -> Vec<u8> {
    let mut sorted = notes.to_vec();
    crate::music::phrase::sort_notes(&mut sorted);
    sorted.iter().map(|n| n.pitch).collect()
}

fn run_hash(run: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    run.hash(&mut h);
    h.finish()
}

impl CopyIndex {
    pub fn new(pieces: &[Piece]) -> Self {
        let mut runs = HashSet::new();
        for p in pieces {
            for w in pitches(&p.phrase.notes).windows(COPY_RUN) {
                runs.insert(run_hash(w));
            }
        }
        Self { runs }
    }

    /// Whether `notes` contain a run of [`COPY_RUN`] pitches found in a training piece.
    pub fn copies(&self, notes: &[Note]) -> bool {
        pitches(notes)
            .windows(COPY_RUN)
            .any(|w| self.runs.contains(&run_hash(w)))
    }
}
