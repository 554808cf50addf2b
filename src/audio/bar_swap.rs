//! Bars of the playing phrase waiting to be replaced (*Regenerate bar*, *Undo*): the new
//! notes are gathered chunk by chunk and handed to playback only when all have come, so a
//! bar never plays half old, half new.

use super::messages::{BarSwap, PhraseChunk, PrimerSnapshot};
use crate::music::Note;

/// Most notes one swap brings: eight bars of a dense part.
pub const SWAP_CAPACITY: usize = 512;

pub struct PendingSwap {
    /// The request's id; a newer swap replaces one still gathering.
    id: u64,
    swap: Option<BarSwap>,
    notes: [Note; SWAP_CAPACITY],
    len: usize,
    complete: bool,
}

impl Default for PendingSwap {
    fn default() -> Self {
        Self::new()
    }
}

impl PendingSwap {
    pub fn new() -> Self {
        Self {
            id: 0,
            swap: None,
            notes: [PrimerSnapshot::EMPTY_NOTE; SWAP_CAPACITY],
            len: 0,
            complete: false,
        }
    }

    /// Nothing waits any more (a new phrase began; the swap was applied).
    pub fn clear(&mut self) {
        self.swap = None;
        self.len = 0;
        self.complete = false;
    }

    /// Takes a chunk of a swap for the phrase playing as `playing`; chunks for another
    /// phrase, or of a swap older than the one gathering, are ignored. Notes outside the
    /// swapped bars are refused: the other bars stay as they are.
    pub fn receive(&mut self, chunk: &PhraseChunk, playing: u64) {
        let Some(swap) = chunk.swap else { return };
        if swap.target != playing || chunk.id < self.id {
            return;
        }
        if chunk.id != self.id || self.swap.is_none() {
            self.clear();
            self.id = chunk.id;
            self.swap = Some(swap);
        }
        for n in chunk.notes() {
            if self.len < SWAP_CAPACITY && swap.holds(n.start) {
                self.notes[self.len] = *n;
                self.len += 1;
            }
        }
        self.complete |= chunk.finished;
    }

    /// The swap, once every chunk of it has come, if it is for the phrase playing as `playing`.
    pub fn ready(&self, playing: u64) -> Option<BarSwap> {
        self.swap.filter(|s| self.complete && s.target == playing)
    }

    /// The new notes of the swap gathered so far.
    pub fn notes(&self) -> &[Note] {
        &self.notes[..self.len]
    }
}
