//! What crosses between the audio thread and the worker: plain fixed-size `Copy` values, so
//! sending one through a pre-allocated bounded channel never allocates or frees.

use crate::music::texture::{Rhythm, TextureRequest};
use crate::music::variation::Variation;
use crate::music::Note;

/// Notes a primer can hold (the most recent win).
pub const PRIMER_CAPACITY: usize = 256;
/// Notes per streamed chunk of a phrase.
pub const CHUNK_CAPACITY: usize = 16;
/// Notes a phrase can hold on the audio thread.
pub const PHRASE_CAPACITY: usize = 2048;

/// Which scale generation keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLock {
    Off,
    FromPrimer,
    /// A key by index (0–11 major, 12–23 minor), see [`crate::music::Key::from_index`].
    Fixed(u8),
}

/// The generation settings at the moment of the trigger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationSettings {
    pub bars: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub key_lock: KeyLock,
    pub low: u8,
    pub high: u8,
    /// Polyphony, density and register the model is told (the Polyphony, Density and
    /// Register parameters).
    pub texture: TextureRequest,
    pub rhythm: Rhythm,
    /// How much of the answer replays the primer's bars (the *Variation* parameter).
    pub variation: Variation,
    /// Candidates sampled per answer; the one most in kind with the primer is played.
    pub candidates: u8,
}

impl Default for GenerationSettings {
    /// Neutral settings (the plugin reads its parameters instead): two bars, plain sampling,
    /// the whole pitch range, no key lock, the texture like the primer, the model's own bars
    /// (*New*), one candidate.
    fn default() -> Self {
        Self {
            bars: 2,
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
            key_lock: KeyLock::Off,
            low: 0,
            high: 127,
            texture: TextureRequest::default(),
            rhythm: Rhythm::Free,
            variation: Variation::New,
            candidates: 1,
        }
    }
}

/// A request to generate: the primer in beats (from its first bar line) and the settings.
#[derive(Debug, Clone, Copy)]
pub struct PrimerSnapshot {
    /// Generation id; a newer id supersedes every older one.
    pub id: u64,
    pub notes: [Note; PRIMER_CAPACITY],
    pub len: usize,
    pub beats_per_bar: f64,
    pub settings: GenerationSettings,
}

impl PrimerSnapshot {
    pub const EMPTY_NOTE: Note = Note {
        start: 0.0,
        duration: 0.0,
        pitch: 0,
        velocity: 0,
    };

    pub fn empty(settings: GenerationSettings) -> Self {
        Self {
            id: 0,
            notes: [Self::EMPTY_NOTE; PRIMER_CAPACITY],
            len: 0,
            beats_per_bar: 4.0,
            settings,
        }
    }

    pub fn notes(&self) -> &[Note] {
        &self.notes[..self.len]
    }
}

/// Bars of the playing phrase to be played anew (the editor's *Regenerate bar* and its
/// *Undo*): the notes that start in `[from, to)` give way to the chunks' notes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarSwap {
    /// The id the phrase plays under; a swap for any other phrase is ignored.
    pub target: u64,
    /// Phrase-relative beats, on bar lines.
    pub from: f64,
    pub to: f64,
}

impl BarSwap {
    /// Whether a note starting at phrase beat `start` belongs to the swapped bars (bar lines
    /// sit on the tick grid, so a hair of tolerance absorbs float noise).
    pub fn holds(&self, start: f64) -> bool {
        const EPS: f64 = 1e-6;
        start >= self.from - EPS && start < self.to - EPS
    }
}

/// Part of a phrase, streamed while the worker is still generating. Note times are beats
/// from the phrase start.
#[derive(Debug, Clone, Copy)]
pub struct PhraseChunk {
    /// The request's id: a newer id supersedes every older one.
    pub id: u64,
    pub notes: [Note; CHUNK_CAPACITY],
    pub len: usize,
    /// The last chunk of this phrase (or of this swap).
    pub finished: bool,
    /// Phrase length in beats (bars × bar length), for looping.
    pub length_beats: f64,
    /// `Some`: these notes replace bars of the playing phrase instead of starting a new one.
    pub swap: Option<BarSwap>,
}

impl PhraseChunk {
    pub fn new(id: u64, length_beats: f64) -> Self {
        Self {
            id,
            notes: [PrimerSnapshot::EMPTY_NOTE; CHUNK_CAPACITY],
            len: 0,
            finished: false,
            length_beats,
            swap: None,
        }
    }

    /// A chunk of the new notes of `swap`.
    pub fn for_swap(id: u64, length_beats: f64, swap: BarSwap) -> Self {
        Self {
            swap: Some(swap),
            ..Self::new(id, length_beats)
        }
    }

    pub fn notes(&self) -> &[Note] {
        &self.notes[..self.len]
    }

    pub fn is_full(&self) -> bool {
        self.len == CHUNK_CAPACITY
    }

    pub fn push(&mut self, n: Note) {
        if self.len < CHUNK_CAPACITY {
            self.notes[self.len] = n;
            self.len += 1;
        }
    }
}
