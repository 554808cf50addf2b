//! A phrase in beats → note events at sample offsets, block by block.

use super::clock::BlockTime;
use super::messages::{PhraseChunk, PHRASE_CAPACITY};
use crate::music::Note;

/// Most note events one block can emit (offs and ons of every pitch, twice over).
pub const MAX_EVENTS_PER_BLOCK: usize = 512;

/// One output event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteEmit {
    pub offset: u32,
    pub channel: u8,
    pub pitch: u8,
    pub velocity: u8,
    pub on: bool,
}

/// Events of one block, sorted by offset (offs before ons at the same sample).
pub struct BlockEvents {
    events: [NoteEmit; MAX_EVENTS_PER_BLOCK],
    len: usize,
}

impl Default for BlockEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockEvents {
    pub fn new() -> Self {
        Self {
            events: [NoteEmit {
                offset: 0,
                channel: 0,
                pitch: 0,
                velocity: 0,
                on: false,
            }; MAX_EVENTS_PER_BLOCK],
            len: 0,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub(crate) fn push(&mut self, e: NoteEmit) {
        if self.len < MAX_EVENTS_PER_BLOCK {
            self.events[self.len] = e;
            self.len += 1;
        }
    }

    /// Sorts in place (unstable sort: no allocation) and returns the events.
    pub fn sorted(&mut self) -> &[NoteEmit] {
        self.events[..self.len].sort_unstable_by_key(|e| (e.offset, e.on, e.pitch));
        &self.events[..self.len]
    }
}

#[derive(Debug, Clone, Copy)]
struct Sounding {
    /// Host beat at which the note ends.
    end: f64,
    channel: u8,
}

/// Plays one phrase anchored at a host beat; releases everything it started.
pub struct Playback {
    notes: [Note; PHRASE_CAPACITY],
    len: usize,
    id: u64,
    /// Host beat of the phrase's time 0; `None` while nothing is scheduled.
    start: Option<f64>,
    length_beats: f64,
    finished: bool,
    sounding: [Option<Sounding>; 128],
    /// Phrase-relative beat of the last block, for the editor's playhead.
    playhead: f64,
}

impl Default for Playback {
    fn default() -> Self {
        Self::new()
    }
}

impl Playback {
    pub fn new() -> Self {
        Self {
            notes: [Note {
                start: 0.0,
                duration: 0.0,
                pitch: 0,
                velocity: 0,
            }; PHRASE_CAPACITY],
            len: 0,
            id: 0,
            start: None,
            length_beats: 0.0,
            finished: false,
            sounding: [None; 128],
            playhead: -1.0,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn notes(&self) -> &[Note] {
        &self.notes[..self.len]
    }

    pub fn start(&self) -> Option<f64> {
        self.start
    }

    pub fn length_beats(&self) -> f64 {
        self.length_beats
    }

    /// Every chunk of the current phrase has arrived.
    pub fn is_complete(&self) -> bool {
        self.finished
    }

    /// Phrase-relative beat at the end of the last block (negative before the start).
    pub fn playhead(&self) -> f64 {
        self.playhead
    }

    pub fn sounding_count(&self) -> usize {
        self.sounding.iter().filter(|s| s.is_some()).count()
    }

    /// A new phrase `id` will start at host beat `start`; its notes arrive in chunks. Whatever
    /// sounds is released at `offset`.
    pub fn begin(
        &mut self,
        id: u64,
        start: f64,
        length_beats: f64,
        offset: u32,
        out: &mut BlockEvents,
    ) {
        self.release_all(offset, out);
        self.id = id;
        self.start = Some(start);
        self.len = 0;
        self.length_beats = length_beats;
        self.finished = false;
    }

    /// Loads a whole phrase at once (restored state, a recalled idea), scheduled at `start`.
    pub fn load(&mut self, id: u64, notes: &[Note], length_beats: f64, start: Option<f64>) {
        self.id = id;
        self.start = start;
        self.len = notes.len().min(PHRASE_CAPACITY);
        self.notes[..self.len].copy_from_slice(&notes[..self.len]);
        self.length_beats = length_beats;
        self.finished = true;
    }

    /// Appends a streamed chunk if it belongs to the current phrase.
    pub fn receive(&mut self, chunk: &PhraseChunk) {
        if chunk.id != self.id {
            return;
        }
        for n in chunk.notes() {
            if self.len < PHRASE_CAPACITY {
                // Chunks arrive in generation order, which is time order: no sorting needed.
                self.notes[self.len] = *n;
                self.len += 1;
            }
        }
        self.length_beats = chunk.length_beats;
        self.finished |= chunk.finished;
    }

    /// Stops scheduling (the phrase stays loaded) and releases everything at `offset`.
    pub fn stop(&mut self, offset: u32, out: &mut BlockEvents) {
        self.start = None;
        self.release_all(offset, out);
    }

    /// Re-anchors a loaded phrase at `start` (replay, recall).
    pub fn schedule(&mut self, start: f64, offset: u32, out: &mut BlockEvents) {
        self.release_all(offset, out);
        self.start = Some(start);
    }

    /// Note-off for every sounding note at `offset`.
    pub fn release_all(&mut self, offset: u32, out: &mut BlockEvents) {
        for (pitch, s) in self.sounding.iter_mut().enumerate() {
            if let Some(snd) = s.take() {
                out.push(NoteEmit {
                    offset,
                    channel: snd.channel,
                    pitch: pitch as u8,
                    velocity: 0,
                    on: false,
                });
            }
        }
    }

    /// Emits this block's note-offs and note-ons on `channel`; with `looping` the phrase repeats
    /// every `length_beats`.
    pub fn render(&mut self, bt: &BlockTime, channel: u8, looping: bool, out: &mut BlockEvents) {
        let (b0, b1) = bt.window();
        // Offs first: notes whose end falls in this block.
        for (pitch, s) in self.sounding.iter_mut().enumerate() {
            if let Some(snd) = *s {
                if snd.end < b1 {
                    out.push(NoteEmit {
                        offset: bt.offset_of(snd.end),
                        channel: snd.channel,
                        pitch: pitch as u8,
                        velocity: 0,
                        on: false,
                    });
                    *s = None;
                }
            }
        }
        let Some(start) = self.start else {
            self.playhead = -1.0;
            return;
        };
        self.playhead = b1 - start;
        if b1 <= start || self.len == 0 {
            return;
        }
        let length = self.length_beats.max(1e-6);
        if looping {
            // Phrase cycles overlapping this block.
            let first = ((b0 - start) / length).floor().max(0.0) as i64;
            let last = ((b1 - start) / length).floor() as i64;
            for k in first..=last {
                self.emit_window(
                    bt,
                    start + k as f64 * length,
                    b0,
                    b1,
                    channel,
                    Some(start + (k + 1) as f64 * length),
                    out,
                );
            }
        } else {
            self.emit_window(bt, start, b0, b1, channel, None, out);
        }
    }

    /// Note-ons of the phrase placed at host beat `origin` whose onsets fall in `[b0, b1)`.
    #[allow(clippy::too_many_arguments)]
    fn emit_window(
        &mut self,
        bt: &BlockTime,
        origin: f64,
        b0: f64,
        b1: f64,
        channel: u8,
        cycle_end: Option<f64>,
        out: &mut BlockEvents,
    ) {
        let from = b0 - origin;
        let to = b1 - origin;
        let first = self.notes[..self.len].partition_point(|n| n.start < from);
        for i in first..self.len {
            let n = self.notes[i];
            if n.start >= to {
                break;
            }
            if let Some(end) = cycle_end {
                if origin + n.start >= end {
                    break;
                }
            }
            let onset = origin + n.start;
            let offset = bt.offset_of(onset);
            let slot = &mut self.sounding[n.pitch as usize & 127];
            if let Some(prev) = slot.take() {
                // The same pitch again: end the sounding one first, as one channel would.
                out.push(NoteEmit {
                    offset,
                    channel: prev.channel,
                    pitch: n.pitch,
                    velocity: 0,
                    on: false,
                });
            }
            let mut end = onset + n.duration.max(1e-4);
            if let Some(ce) = cycle_end {
                end = end.min(ce);
            }
            out.push(NoteEmit {
                offset,
                channel,
                pitch: n.pitch,
                velocity: n.velocity.max(1),
                on: true,
            });
            let off_offset = bt.offset_of(end);
            if end < b1 && off_offset > offset {
                // Ends inside this block: its off goes out now.
                out.push(NoteEmit {
                    offset: off_offset,
                    channel,
                    pitch: n.pitch,
                    velocity: 0,
                    on: false,
                });
            } else {
                // Ends later, or so soon it would share the on's sample: release it in a later
                // block (at the latest at the next block's first sample).
                *slot = Some(Sounding {
                    end: end.max(b1),
                    channel,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::clock::{Clock, TransportInfo};

    fn host(pos: f64) -> TransportInfo {
        TransportInfo {
            playing: true,
            tempo: Some(120.0),
            pos_beats: Some(pos),
            time_sig: Some((4, 4)),
            bar_start_beats: Some(0.0),
        }
    }

    fn phrase() -> PhraseChunk {
        let mut c = PhraseChunk::new(1, 4.0);
        c.push(Note {
            start: 0.0,
            duration: 1.0,
            pitch: 60,
            velocity: 100,
        });
        c.push(Note {
            start: 1.0,
            duration: 2.0,
            pitch: 64,
            velocity: 90,
        });
        c.finished = true;
        c
    }

    /// Runs blocks from `from` beat until `to`, returning (absolute sample, event).
    fn run(
        p: &mut Playback,
        clock: &mut Clock,
        from: f64,
        to: f64,
        block: usize,
        looping: bool,
    ) -> Vec<(u64, NoteEmit)> {
        let mut all = Vec::new();
        let mut out = BlockEvents::new();
        let sr = 48_000.0;
        // Positions come from a sample counter, as a host computes them.
        let mut sample = (from * sr / 2.0).round() as u64;
        let end = (to * sr / 2.0).round() as u64;
        while sample < end {
            let pos = sample as f64 * 2.0 / sr;
            let bt = clock.advance(&host(pos), block, sr);
            out.clear();
            p.render(&bt, 0, looping, &mut out);
            for e in out.sorted() {
                all.push((sample + e.offset as u64, *e));
            }
            sample += block as u64;
        }
        all
    }

    #[test]
    fn notes_land_on_their_samples_whatever_the_block_size() {
        for block in [1, 64, 512, 4096] {
            let mut p = Playback::new();
            let mut clock = Clock::new();
            let mut ev = BlockEvents::new();
            p.begin(1, 4.0, 4.0, 0, &mut ev);
            p.receive(&phrase());
            let events = run(&mut p, &mut clock, 0.0, 12.0, block, false);
            let on: Vec<u64> = events.iter().filter(|e| e.1.on).map(|e| e.0).collect();
            let off: Vec<u64> = events.iter().filter(|e| !e.1.on).map(|e| e.0).collect();
            // 120 BPM at 48 kHz: 24 000 samples per beat.
            assert_eq!(on, vec![96_000, 120_000], "block {block}");
            assert_eq!(off, vec![120_000, 168_000], "block {block}");
        }
    }

    #[test]
    fn looping_repeats_the_phrase_and_closes_every_note() {
        let mut p = Playback::new();
        let mut clock = Clock::new();
        let mut ev = BlockEvents::new();
        p.begin(1, 0.0, 4.0, 0, &mut ev);
        p.receive(&phrase());
        let events = run(&mut p, &mut clock, 0.0, 12.0, 512, true);
        // Three cycles of 4 beats = 288 000 samples; the last block runs a little past them.
        let three_cycles: Vec<_> = events.iter().filter(|e| e.0 < 288_000).collect();
        assert_eq!(
            three_cycles.iter().filter(|e| e.1.on).count(),
            6,
            "{events:?}"
        );
        assert_eq!(
            three_cycles.iter().filter(|e| !e.1.on).count(),
            6,
            "{events:?}"
        );
        let ons: Vec<u64> = three_cycles
            .iter()
            .filter(|e| e.1.on)
            .map(|e| e.0)
            .collect();
        assert_eq!(ons, vec![0, 24_000, 96_000, 120_000, 192_000, 216_000]);
    }

    #[test]
    fn stop_releases_every_sounding_note() {
        let mut p = Playback::new();
        let mut clock = Clock::new();
        let mut ev = BlockEvents::new();
        p.begin(1, 0.0, 4.0, 0, &mut ev);
        p.receive(&phrase());
        run(&mut p, &mut clock, 0.0, 1.5, 512, false);
        assert_eq!(p.sounding_count(), 1);
        ev.clear();
        p.stop(0, &mut ev);
        assert_eq!(
            ev.sorted(),
            &[NoteEmit {
                offset: 0,
                channel: 0,
                pitch: 64,
                velocity: 0,
                on: false
            }]
        );
        assert_eq!(p.sounding_count(), 0);
    }

    #[test]
    fn chunks_of_an_older_phrase_are_ignored() {
        let mut p = Playback::new();
        let mut ev = BlockEvents::new();
        p.begin(2, 0.0, 4.0, 0, &mut ev);
        p.receive(&phrase());
        assert!(p.notes().is_empty());
    }
}
