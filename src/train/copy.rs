//! Copy detection for `continuo eval`: does a continuation repeat a run of notes from a
//! training file? What a run is lives in [`crate::note_runs`].

use super::Piece;
use crate::music::Note;
use crate::note_runs::note_runs;
use std::collections::HashSet;

pub use crate::note_runs::{COPY_RUN, LONG_COPY_RUN};

/// Every run of [`COPY_RUN`] and of [`LONG_COPY_RUN`] consecutive notes of the training pieces
/// (their merged notes and each part).
pub struct CopyIndex {
    runs: HashSet<u64>,
    long_runs: HashSet<u64>,
}

impl CopyIndex {
    pub fn new(pieces: &[Piece]) -> Self {
        let index = |len| {
            pieces
                .iter()
                .flat_map(|p| p.streams().flat_map(move |s| note_runs(&s.notes, len)))
                .collect()
        };
        Self {
            runs: index(COPY_RUN),
            long_runs: index(LONG_COPY_RUN),
        }
    }

    /// Whether `notes` contain a run of [`COPY_RUN`] notes found in a training piece.
    pub fn copies(&self, notes: &[Note]) -> bool {
        note_runs(notes, COPY_RUN)
            .iter()
            .any(|h| self.runs.contains(h))
    }

    /// The same for [`LONG_COPY_RUN`] notes.
    pub fn copies_long(&self, notes: &[Note]) -> bool {
        note_runs(notes, LONG_COPY_RUN)
            .iter()
            .any(|h| self.long_runs.contains(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scale(from: f64, pitches: &[u8], step: f64) -> Vec<Note> {
        pitches
            .iter()
            .enumerate()
            .map(|(i, &p)| Note {
                start: from + i as f64 * step,
                duration: step,
                pitch: p,
                velocity: 80,
            })
            .collect()
    }

    #[test]
    fn a_literal_run_of_eight_notes_is_a_copy_and_other_rhythms_are_not() {
        let tune = scale(0.0, &[60, 62, 64, 65, 67, 69, 71, 72, 74], 0.5);
        let piece = Piece::new(
            PathBuf::from("t.mid"),
            crate::music::Phrase::new(tune, 4.0),
            vec![],
        );
        let index = CopyIndex::new(&[piece]);
        // The same eight notes later in time: a copy.
        let later = scale(3.0, &[62, 64, 65, 67, 69, 71, 72, 74], 0.5);
        assert!(index.copies(&later));
        assert!(!index.copies_long(&later));
        // Same pitches, other rhythm: not a copy.
        assert!(!index.copies(&scale(0.0, &[62, 64, 65, 67, 69, 71, 72, 74], 1.0)));
        // Seven notes cannot be a copy.
        assert!(!index.copies(&scale(0.0, &[62, 64, 65, 67, 69, 71, 72], 0.5)));
    }
}
