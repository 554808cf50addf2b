//! A phrase is a list of notes timed in beats (quarter notes), plus its bar length.

use serde::{Deserialize, Serialize};

/// One note, timed in beats from the start of its phrase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// Onset in beats (quarter notes).
    pub start: f64,
    /// Length in beats; always > 0.
    pub duration: f64,
    /// MIDI key number, 0..=127.
    pub pitch: u8,
    /// MIDI velocity, 1..=127.
    pub velocity: u8,
}

impl Note {
    pub fn end(&self) -> f64 {
        self.start + self.duration
    }
}

/// Notes sorted by onset then pitch, with the bar length they were written in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phrase {
    pub notes: Vec<Note>,
    /// Bar length in beats (4.0 for 4/4, 3.0 for 3/4 and 6/8, 3.5 for 7/8).
    pub beats_per_bar: f64,
}

impl Phrase {
    pub fn new(mut notes: Vec<Note>, beats_per_bar: f64) -> Self {
        sort_notes(&mut notes);
        Self {
            notes,
            beats_per_bar,
        }
    }

    /// Beat at which the last note ends (0 for an empty phrase).
    pub fn end_beat(&self) -> f64 {
        self.notes.iter().map(Note::end).fold(0.0, f64::max)
    }

    /// Number of bars that hold at least the start of one note.
    pub fn bar_count(&self) -> usize {
        self.notes
            .iter()
            .map(|n| (n.start / self.beats_per_bar).floor() as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Notes whose onset lies in `[from_beat, to_beat)`, shifted so that `from_beat` becomes 0.
    pub fn slice(&self, from_beat: f64, to_beat: f64) -> Phrase {
        let notes = self
            .notes
            .iter()
            .filter(|n| n.start >= from_beat && n.start < to_beat)
            .map(|n| Note {
                start: n.start - from_beat,
                ..*n
            })
            .collect();
        Phrase::new(notes, self.beats_per_bar)
    }
}

/// The notes as one MIDI channel can play them: a note that starts while the same pitch
/// still sounds cuts the earlier one short (of two starting together, the longer stays).
pub fn without_overlaps(notes: &[Note]) -> Vec<Note> {
    let mut sorted = notes.to_vec();
    sort_notes(&mut sorted);
    let mut out: Vec<Note> = Vec::with_capacity(sorted.len());
    let mut last_of_pitch: [Option<usize>; 128] = [None; 128];
    for n in sorted {
        let slot = &mut last_of_pitch[n.pitch.min(127) as usize];
        if let Some(i) = *slot {
            let prev = &mut out[i];
            if prev.start == n.start {
                continue;
            }
            if prev.end() > n.start {
                prev.duration = n.start - prev.start;
            }
        }
        *slot = Some(out.len());
        out.push(n);
    }
    out
}

/// The one ordering every part of Continuo uses: by onset, then by pitch.
pub fn sort_notes(notes: &mut [Note]) {
    notes.sort_by(|a, b| {
        a.start
            .total_cmp(&b.start)
            .then(a.pitch.cmp(&b.pitch))
            .then(b.duration.total_cmp(&a.duration))
    });
}

/// A note of velocity 80, for the tests of the modules that measure notes.
#[cfg(test)]
pub(crate) fn test_note(start: f64, duration: f64, pitch: u8) -> Note {
    Note {
        start,
        duration,
        pitch,
        velocity: 80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(start: f64, pitch: u8) -> Note {
        Note {
            start,
            duration: 1.0,
            pitch,
            velocity: 90,
        }
    }

    #[test]
    fn bar_count_counts_bars_up_to_the_last_onset() {
        let p = Phrase::new(vec![n(0.0, 60), n(4.5, 62)], 4.0);
        assert_eq!(p.bar_count(), 2);
        assert_eq!(Phrase::new(vec![], 4.0).bar_count(), 0);
    }

    #[test]
    fn a_retriggered_pitch_cuts_the_sounding_note() {
        let a = Note {
            start: 0.0,
            duration: 2.0,
            pitch: 60,
            velocity: 90,
        };
        let b = Note {
            start: 1.0,
            duration: 0.5,
            pitch: 60,
            velocity: 90,
        };
        let c = Note {
            start: 1.0,
            duration: 0.25,
            pitch: 60,
            velocity: 90,
        };
        let out = without_overlaps(&[a, b, c]);
        assert_eq!(out, vec![Note { duration: 1.0, ..a }, b]);
    }

    #[test]
    fn slice_shifts_notes_to_the_window_start() {
        let p = Phrase::new(vec![n(0.0, 60), n(4.5, 62), n(8.0, 64)], 4.0);
        let s = p.slice(4.0, 8.0);
        assert_eq!(s.notes, vec![n(0.5, 62)]);
    }
}
