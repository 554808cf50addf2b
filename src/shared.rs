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
