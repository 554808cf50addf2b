//! Incoming host notes, stamped in host beats, kept in a fixed-capacity buffer.

use super::messages::{PrimerSnapshot, PRIMER_CAPACITY};
use crate::music::Note;

/// The primer is at most this many bars before the trigger.
pub const MAX_PRIMER_BARS: f64 = 8.0;

#[derive(Debug, Clone, Copy)]
struct Captured {
    start: f64,
    /// `None` while the key is held.
    end: Option<f64>,
    pitch: u8,
    velocity: u8,
}

/// The notes of the current take: everything played since the last trigger.
pub struct Capture {
    notes: [Captured; PRIMER_CAPACITY],
    len: usize,
    held: u32,
    /// Beat of the last key release (or press), for the silence trigger.
    last_activity: f64,
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl Capture {
    pub fn new() -> Self {
        Self {
            notes: [Captured {
                start: 0.0,
                end: None,
                pitch: 0,
                velocity: 0,
            }; PRIMER_CAPACITY],
            len: 0,
            held: 0,
            last_activity: 0.0,
        }
    }

    pub fn note_on(&mut self, beat: f64, pitch: u8, velocity: u8) {
        // A key pressed again without a release (some controllers): the held note ends here,
        // so that one release lets go of the key.
        self.note_off(beat, pitch);
        if self.len == PRIMER_CAPACITY {
            // Full: forget the oldest note (a memmove inside the fixed array, no allocation).
            if self.notes[0].end.is_none() {
                self.held = self.held.saturating_sub(1);
            }
            self.notes.copy_within(1.., 0);
            self.len -= 1;
        }
        self.notes[self.len] = Captured {
            start: beat,
            end: None,
            pitch,
            velocity: velocity.max(1),
        };
        self.len += 1;
        self.held += 1;
        self.last_activity = beat;
    }

    pub fn note_off(&mut self, beat: f64, pitch: u8) {
        if let Some(n) = self.notes[..self.len]
            .iter_mut()
            .find(|n| n.pitch == pitch && n.end.is_none())
        {
            n.end = Some(beat.max(n.start));
            self.held = self.held.saturating_sub(1);
        }
        self.last_activity = beat;
    }

    /// Keys currently held.
    pub fn held(&self) -> u32 {
        self.held
    }

    /// Whether the take holds `pitch` down.
    pub fn holds(&self, pitch: u8) -> bool {
        self.notes[..self.len]
            .iter()
            .any(|n| n.pitch == pitch && n.end.is_none())
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Beats since the last key went up or down.
    pub fn silence(&self, now: f64) -> f64 {
        now - self.last_activity
    }

    /// Time moved discontinuously by `beats` (a jump, a loop back, the transport starting):
    /// the take moves with it, so held keys stay held and the notes played before the jump
    /// keep their place before the notes played after it.
    pub fn shift(&mut self, beats: f64) {
        if beats == 0.0 || !beats.is_finite() {
            return;
        }
        for n in self.notes[..self.len].iter_mut() {
            n.start += beats;
            n.end = n.end.map(|e| e + beats);
        }
        self.last_activity += beats;
    }

    /// Writes the take into `out` as a primer (bar-aligned: time 0 is the bar line at or before
    /// its first kept note) and starts a new take. Returns the primer's origin in host beats.
    pub fn take_primer(
        &mut self,
        now: f64,
        bar_origin: f64,
        beats_per_bar: f64,
        out: &mut PrimerSnapshot,
    ) -> f64 {
        let earliest = now - MAX_PRIMER_BARS * beats_per_bar;
        // What was played before the trigger (a trigger key inside a block comes before the
        // block's later notes, which belong to the next take).
        let in_primer = |n: &&Captured| n.start >= earliest && n.start <= now;
        let first = self.notes[..self.len]
            .iter()
            .filter(in_primer)
            .map(|n| n.start)
            .fold(f64::INFINITY, f64::min);
        let origin = if first.is_finite() {
            bar_origin + ((first - bar_origin) / beats_per_bar + 1e-9).floor() * beats_per_bar
        } else {
            now
        };
        out.len = 0;
        out.beats_per_bar = beats_per_bar;
        for n in self.notes[..self.len].iter().filter(in_primer) {
            let end = n.end.unwrap_or(now).min(now);
            out.notes[out.len] = Note {
                start: n.start - origin,
                duration: (end - n.start).max(1.0 / 96.0),
                pitch: n.pitch,
                velocity: n.velocity,
            };
            out.len += 1;
        }
        // Keys still held stay in the next take too, with what came after the trigger; the
        // rest is consumed.
        let mut kept = 0;
        for i in 0..self.len {
            if self.notes[i].end.is_none() || self.notes[i].start > now {
                self.notes[kept] = self.notes[i];
                kept += 1;
            }
        }
        self.len = kept;
        origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::messages::GenerationSettings;

    fn settings() -> GenerationSettings {
        GenerationSettings::default()
    }

    #[test]
    fn a_triad_played_in_bar_three_becomes_a_bar_aligned_primer() {
        let mut c = Capture::new();
        for p in [60, 64, 67] {
            c.note_on(8.25, p, 100);
        }
        assert_eq!(c.held(), 3);
        for p in [60, 64, 67] {
            c.note_off(12.0, p);
        }
        assert_eq!(c.held(), 0);
        assert_eq!(c.silence(13.0), 1.0);
        let mut out = PrimerSnapshot::empty(settings());
        let origin = c.take_primer(13.0, 0.0, 4.0, &mut out);
        assert_eq!(origin, 8.0);
        assert_eq!(out.len, 3);
        assert_eq!(out.notes[0].start, 0.25);
        assert_eq!(out.notes[0].duration, 3.75);
        assert!(c.is_empty(), "a primer consumes its take");
    }

    #[test]
    fn the_buffer_keeps_the_newest_notes_when_full() {
        let mut c = Capture::new();
        for i in 0..(PRIMER_CAPACITY + 10) {
            c.note_on(i as f64 * 0.1, 60, 90);
            c.note_off(i as f64 * 0.1 + 0.05, 60);
        }
        let mut out = PrimerSnapshot::empty(settings());
        let origin = c.take_primer(27.0, 0.0, 4.0, &mut out);
        assert_eq!(out.len, PRIMER_CAPACITY);
        // The ten oldest notes (beats 0.0–0.9) were dropped; the first kept is at beat 1.0.
        assert_eq!(origin, 0.0);
        assert!((out.notes[0].start - 1.0).abs() < 1e-9);
    }
}
