//! State shared between the audio thread, the worker and the editor.
//!
//! The audio thread touches only the atomics. The `view` mutex is for the worker and the
//! editor, which may wait on each other briefly; the audio thread never locks it.

use crate::music::Note;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Ideas kept for recall.
pub const HISTORY_LEN: usize = 8;

/// An f64 in an atomic, for playhead and tempo readouts.
#[derive(Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }
    pub fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub fn store(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }
}

/// One generated phrase, as the editor lists and recalls it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Idea {
    pub id: u64,
    pub seed: u64,
    pub primer: Vec<Note>,
    pub notes: Vec<Note>,
    pub beats_per_bar: f64,
    pub bars: u32,
    /// The key the model was told ("C major"): the Key lock's, else the primer's detected key.
    pub key: Option<String>,
    /// Set when this idea is another idea with some bars regenerated (*Undo* goes back).
    #[serde(default)]
    pub variant_of: Option<Variant>,
}

/// Where a variant comes from: the idea it was made from and the bars made anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Variant {
    pub parent: u64,
    /// Bars of the phrase (0-based, end exclusive) that differ from the parent's.
    pub bars: (u32, u32),
}

impl Variant {
    /// The bars as phrase beats `[from, to)`.
    pub fn beats(&self, beats_per_bar: f64) -> (f64, f64) {
        (
            self.bars.0 as f64 * beats_per_bar,
            self.bars.1 as f64 * beats_per_bar,
        )
    }
}

/// Longest idea taken from a saved state (bars).
pub const MAX_IDEA_BARS: u32 = 64;

impl Idea {
    /// This idea with what a saved (or edited) state may hold and MIDI cannot play taken out:
    /// notes with a pitch or velocity out of range or a time that is not a number are dropped,
    /// the rest sorted by onset; bar length and count are clamped. Returns it and the count of
    /// notes dropped.
    pub fn validated(&self) -> (Idea, usize) {
        let keep = |n: &Note| {
            n.pitch <= 127
                && (1..=127).contains(&n.velocity)
                && n.start.is_finite()
                && n.start >= 0.0
                && n.duration.is_finite()
                && n.duration > 0.0
        };
        let clean = |notes: &[Note]| -> Vec<Note> {
            let mut kept: Vec<Note> = notes.iter().copied().filter(keep).collect();
            kept.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.pitch.cmp(&b.pitch)));
            kept
        };
        let notes = clean(&self.notes);
        let primer = clean(&self.primer);
        let dropped = self.notes.len() - notes.len() + self.primer.len() - primer.len();
        let beats_per_bar = if self.beats_per_bar.is_finite() {
            self.beats_per_bar.clamp(0.5, 16.0)
        } else {
            4.0
        };
        let idea = Idea {
            notes,
            primer,
            beats_per_bar,
            bars: self.bars.clamp(1, MAX_IDEA_BARS),
            ..self.clone()
        };
        (idea, dropped)
    }
}

/// The model's state, in words for the editor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelStatus {
    /// e.g. "default (embedded)" or a folder path.
    pub name: String,
    pub description: String,
    pub parameters: usize,
    pub device: String,
    /// Training runs the copy guard refuses to complete (0: the model has no guard).
    pub guarded_runs: usize,
    /// Why no model is loaded (the plugin then passes MIDI through).
    pub error: Option<String>,
    /// The model knows the fill-in-the-middle markers: *Regenerate bar* works.
    pub can_infill: bool,
}

impl ModelStatus {
    pub fn loaded(&self) -> bool {
        self.error.is_none() && self.parameters > 0
    }
}

/// What the worker publishes for the editor.
#[derive(Debug, Clone, Default)]
pub struct WorkerView {
    pub model: ModelStatus,
    pub generating: bool,
    pub bars_done: u32,
    pub bars_total: u32,
    pub last_ms_per_token: f64,
    pub last_error: Option<String>,
    pub history: VecDeque<Idea>,
}

#[derive(Default)]
pub struct Shared {
    /// Id of the newest request; the worker abandons any older one.
    pub latest_id: AtomicU64,
    next_id: AtomicU64,
    /// The editor asked for a phrase from the last primer (the audio thread takes it).
    pub generate_requested: AtomicBool,
    /// Keep the current phrase: triggers do not replace it.
    pub locked: AtomicBool,
    /// A model is loaded; otherwise the audio thread only passes MIDI through.
    pub model_ready: AtomicBool,
    /// Phrase-relative playhead in beats (negative: not playing).
    pub playhead: AtomicF64,
    pub host_beat: AtomicF64,
    pub tempo: AtomicF64,
    /// Note-ons the audio thread dropped because a block held too many events.
    pub dropped_notes: AtomicU64,
    /// Phrase notes refused as invalid (a restored or edited state).
    pub invalid_notes: AtomicU64,
    pub view: Mutex<WorkerView>,
}

impl Shared {
    /// A fresh generation id (lock-free: the audio thread may call it).
    pub fn new_id(&self) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.latest_id.fetch_max(id, Ordering::Relaxed);
        id
    }

    pub fn is_current(&self, id: u64) -> bool {
        self.latest_id.load(Ordering::Relaxed) == id
    }

    /// The view, even if a panicking thread poisoned the lock.
    pub fn view(&self) -> std::sync::MutexGuard<'_, WorkerView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(start: f64, pitch: u8, velocity: u8) -> Note {
        Note {
            start,
            duration: 0.5,
            pitch,
            velocity,
        }
    }

    #[test]
    fn a_saved_idea_is_cleaned_before_it_plays() {
        let saved = Idea {
            id: 1,
            seed: 0,
            primer: vec![note(f64::NAN, 60, 90)],
            notes: vec![
                note(2.0, 64, 90),
                note(1.0, 200, 90),
                note(0.0, 60, 0),
                note(0.5, 62, 80),
            ],
            beats_per_bar: 0.0,
            bars: 0,
            key: None,
            variant_of: None,
        };
        let (idea, dropped) = saved.validated();
        assert_eq!(dropped, 3);
        assert_eq!(idea.notes, vec![note(0.5, 62, 80), note(2.0, 64, 90)]);
        assert_eq!((idea.beats_per_bar, idea.bars), (0.5, 1));
    }
}
