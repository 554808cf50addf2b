//! What crosses between the audio thread and the worker: plain fixed-size `Copy` values, so
//! sending one through a pre-allocated bounded channel never allocates or frees.

use crate::music::texture::{Rhythm, TextureRequest};
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
    /// Candidates sampled per answer; the one most in kind with the primer is played.
    pub candidates: u8,
}

impl Default for GenerationSettings {
    /// Neutral settings (the plugin reads its parameters instead): two bars, plain sampling,
    /// the whole pitch range, no key lock, the texture like the primer, one candidate.
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

/// Part of a phrase, streamed while the worker is still generating. Note times are beats
/// from the phrase start.
#[derive(Debug, Clone, Copy)]
pub struct PhraseChunk {
    pub id: u64,
    pub notes: [Note; CHUNK_CAPACITY],
    pub len: usize,
    /// The last chunk of this phrase.
    pub finished: bool,
    /// Phrase length in beats (bars × bar length), for looping.
    pub length_beats: f64,
}

impl PhraseChunk {
    pub fn new(id: u64, length_beats: f64) -> Self {
        Self {
            id,
            notes: [PrimerSnapshot::EMPTY_NOTE; CHUNK_CAPACITY],
            len: 0,
            finished: false,
            length_beats,
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
