//! The last check before events leave the plugin: which keys are sounding downstream, and who
//! started them. Pass-through and the phrase share the output, so a key can be asked to start
//! while it sounds (the player holds the key the phrase plays, a host sends a note-on twice)
//! or to end when it does not. A receiver that ends a key on its first note-off would then cut
//! the wrong note or leave one on. Here every note-on of a sounding key is preceded by a
//! note-off, and a note-off goes out only for a key its sender still owns.

use super::playback::{BlockEvents, NoteEmit, Source};

const CHANNELS: usize = 16;

/// Fixed-size output ledger (16 channels × 128 keys), kept on the audio thread.
pub struct OutputVoices {
    owner: [[Option<Source>; 128]; CHANNELS],
    events: [NoteEmit; CAPACITY],
    len: usize,
    dropped_ons: u32,
}

/// Events one block sends out at most: as many as the engine's block buffer can hold.
const CAPACITY: usize = super::playback::MAX_EVENTS_PER_BLOCK;
/// Out of [`CAPACITY`], what a block may fill while note-ons are still taken; the rest is kept
/// for note-offs (each on may need one before it, and every sounding key one after).
const ON_ROOM: usize = super::playback::MAX_ONS_PER_BLOCK * 2;

impl Default for OutputVoices {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputVoices {
    pub fn new() -> Self {
        Self {
            owner: [[None; 128]; CHANNELS],
            events: [NoteEmit::off(0, 0, 0); CAPACITY],
            len: 0,
            dropped_ons: 0,
        }
    }

    /// Keys sounding downstream.
    pub fn sounding(&self) -> usize {
        self.owner.iter().flatten().filter(|o| o.is_some()).count()
    }

    /// Note-ons refused in the last block because the block was full.
    pub fn dropped_ons(&self) -> u32 {
        self.dropped_ons
    }

    /// Queues a note-off for every sounding key, from its owner (deactivate, reset: the
    /// player's keys end too, since their note-offs may never come).
    pub fn release_all(&self, out: &mut BlockEvents) {
        for (ch, keys) in self.owner.iter().enumerate() {
            for (key, owner) in keys.iter().enumerate() {
                if let Some(source) = *owner {
                    out.push_release(NoteEmit::off(0, ch as u8, key as u8), source);
                }
            }
        }
    }

    /// What the last [`filter`](Self::filter) let out.
    pub fn events(&self) -> &[NoteEmit] {
        &self.events[..self.len]
    }

    /// Filters one block's events, in time order, into what goes out.
    pub fn filter(&mut self, events: impl Iterator<Item = (NoteEmit, Source)>) -> &[NoteEmit] {
        self.len = 0;
        self.dropped_ons = 0;
        for (e, source) in events {
            let (ch, key) = (e.channel as usize % CHANNELS, e.pitch as usize & 127);
            let owner = &mut self.owner[ch][key];
            if e.on {
                if self.len + 2 > ON_ROOM {
                    self.dropped_ons += 1;
                    continue;
                }
                if owner.is_some() {
                    self.events[self.len] = NoteEmit::off(e.offset, e.channel, e.pitch);
                    self.len += 1;
                }
                *owner = Some(source);
                self.events[self.len] = e;
                self.len += 1;
            } else if *owner == Some(source) && self.len < CAPACITY {
                *owner = None;
                self.events[self.len] = e;
                self.len += 1;
            }
        }
        &self.events[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(offset: u32, pitch: u8, on: bool) -> NoteEmit {
        NoteEmit {
            offset,
            channel: 0,
            pitch,
            velocity: if on { 100 } else { 0 },
            on,
        }
    }

    #[test]
    fn a_second_note_on_ends_the_sounding_key_first() {
        let mut v = OutputVoices::new();
        let out = v
            .filter(
                [
                    (ev(0, 60, true), Source::Phrase),
                    (ev(5, 60, true), Source::Input),
                ]
                .into_iter(),
            )
            .to_vec();
        assert_eq!(
            out,
            vec![ev(0, 60, true), ev(5, 60, false), ev(5, 60, true)]
        );
        // The phrase's own off no longer ends the player's note; the player's off does.
        let out = v
            .filter(
                [
                    (ev(1, 60, false), Source::Phrase),
                    (ev(9, 60, false), Source::Input),
                ]
                .into_iter(),
            )
            .to_vec();
        assert_eq!(out, vec![ev(9, 60, false)]);
        assert_eq!(v.sounding(), 0);
    }

    #[test]
    fn a_note_off_for_a_silent_key_is_not_sent() {
        let mut v = OutputVoices::new();
        assert!(v
            .filter([(ev(0, 61, false), Source::Input)].into_iter())
            .is_empty());
    }

    #[test]
    fn a_full_block_drops_note_ons_but_never_a_note_off() {
        let mut v = OutputVoices::new();
        let ons = (0..ON_ROOM as u32).map(|i| (ev(i, (i % 128) as u8, true), Source::Phrase));
        v.filter(ons);
        assert!(v.dropped_ons() > 0);
        let sounding = v.sounding();
        let offs: Vec<_> = (0..128u8)
            .map(|p| (ev(0, p, false), Source::Phrase))
            .collect();
        let out = v.filter(offs.into_iter()).len();
        assert_eq!(out, sounding);
        assert_eq!(v.sounding(), 0);
    }
}
