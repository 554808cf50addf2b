//! A phrase in beats → note events at sample offsets, block by block.

use super::bar_swap::PendingSwap;
use super::clock::BlockTime;
use super::messages::{PhraseChunk, PHRASE_CAPACITY};
use crate::music::Note;

/// Most events one block holds. Note-offs are always taken (up to this), so a crowded block
/// never leaves a key on; note-ons beyond [`MAX_ONS_PER_BLOCK`] are dropped and counted.
pub const MAX_EVENTS_PER_BLOCK: usize = 4096;
/// Most events a block takes while note-ons are still accepted: the rest of the buffer is
/// kept for the note-offs that every sounding key may need.
pub const MAX_ONS_PER_BLOCK: usize = 1024;

/// One output event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteEmit {
    pub offset: u32,
    pub channel: u8,
    pub pitch: u8,
    pub velocity: u8,
    pub on: bool,
}

impl NoteEmit {
    /// A note-off of `pitch` on `channel` at `offset`.
    pub const fn off(offset: u32, channel: u8, pitch: u8) -> NoteEmit {
        NoteEmit {
            offset,
            channel,
            pitch,
            velocity: 0,
            on: false,
        }
    }
}

/// Who an event belongs to: a key the player holds (passed through) or a note of the phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Input,
    Phrase,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    event: NoteEmit,
    source: Source,
    /// Sort key after the offset: a release the engine makes goes before anything else at its
    /// sample (a key ends before it starts again); input keeps the host's order.
    rank: u8,
    seq: u16,
}

/// Events of one block, sorted by offset: at one sample the engine's releases first, then
/// the rest in the order they were pushed (so input order is kept).
pub struct BlockEvents {
    entries: [Entry; MAX_EVENTS_PER_BLOCK],
    len: usize,
    dropped_ons: u32,
}

impl Default for BlockEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockEvents {
    pub fn new() -> Self {
        Self {
            entries: [Entry {
                event: NoteEmit::off(0, 0, 0),
                source: Source::Phrase,
                rank: 0,
                seq: 0,
            }; MAX_EVENTS_PER_BLOCK],
            len: 0,
            dropped_ons: 0,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.dropped_ons = 0;
    }

    /// An event of the phrase (or a release of it).
    pub(crate) fn push(&mut self, e: NoteEmit) {
        self.push_from(e, Source::Phrase, if e.on { 1 } else { 0 });
    }

    /// An input event passed through, in the host's order.
    pub(crate) fn push_input(&mut self, e: NoteEmit) {
        self.push_from(e, Source::Input, 1);
    }

    /// A release of a key `source` owns (the output ledger's).
    pub(crate) fn push_release(&mut self, e: NoteEmit, source: Source) {
        self.push_from(e, source, 0);
    }

    fn push_from(&mut self, event: NoteEmit, source: Source, rank: u8) {
        let room = if event.on {
            MAX_ONS_PER_BLOCK
        } else {
            MAX_EVENTS_PER_BLOCK
        };
        if self.len < room {
            self.entries[self.len] = Entry {
                event,
                source,
                rank,
                seq: self.len as u16,
            };
            self.len += 1;
        } else if event.on {
            self.dropped_ons += 1;
        }
    }

    /// Note-ons refused this block because it was full.
    pub fn dropped_ons(&self) -> u32 {
        self.dropped_ons
    }

    /// Sorts in place (unstable sort on a unique key: no allocation, same result as stable).
    fn sort(&mut self) {
        self.entries[..self.len].sort_unstable_by_key(|e| (e.event.offset, e.rank, e.seq));
    }

    /// Sorts and returns the events.
    pub fn sorted(&mut self) -> impl Iterator<Item = &NoteEmit> + '_ {
        self.sort();
        self.entries[..self.len].iter().map(|e| &e.event)
    }

    /// Sorts and returns the events with their sources.
    pub(crate) fn sorted_with_sources(&mut self) -> impl Iterator<Item = (NoteEmit, Source)> + '_ {
        self.sort();
        self.entries[..self.len].iter().map(|e| (e.event, e.source))
    }
}

#[derive(Debug, Clone, Copy)]
struct Sounding {
    /// Host beat at which the note ends.
    end: f64,
    channel: u8,
    /// Sample offset of its note-on when that went out in the current block.
    on_offset: Option<u32>,
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
    invalid_notes: u32,
    /// Bars waiting to be replaced while they are not sounding.
    swap: PendingSwap,
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
            invalid_notes: 0,
            swap: PendingSwap::new(),
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
        self.length_beats = valid_length(length_beats);
        self.finished = false;
        self.swap.clear();
    }

    /// Loads a whole phrase at once (restored state, a recalled idea), scheduled at `start`.
    /// The notes are checked like streamed ones: invalid notes are dropped, the rest sorted.
    pub fn load(&mut self, id: u64, notes: &[Note], length_beats: f64, start: Option<f64>) {
        self.id = id;
        self.start = start;
        self.len = 0;
        for n in notes {
            self.insert(n);
        }
        self.length_beats = valid_length(length_beats);
        self.finished = true;
        self.swap.clear();
    }

    /// Takes a chunk of bars to swap into the playing phrase ([`PendingSwap`]); the swap
    /// happens in [`Playback::render`] once it is whole and its bars are not sounding.
    pub fn receive_swap(&mut self, chunk: &PhraseChunk) {
        self.swap.receive(chunk, self.id);
    }

    /// Swaps the waiting bars in unless the playhead at `beat` (host) is inside them; a bar
    /// that sounds now is replaced from its end on (on a loop, for the next pass). Notes of
    /// the old bars that still sound keep their note-offs.
    fn swap_unless_sounding(&mut self, beat: f64, looping: bool) {
        let Some(swap) = self.swap.ready(self.id) else {
            return;
        };
        if let Some(start) = self.start {
            let mut at = beat - start;
            if looping {
                at = at.rem_euclid(self.length_beats.max(MIN_LOOP_BEATS));
            }
            if swap.holds(at) {
                return;
            }
        }
        let mut kept = 0;
        for i in 0..self.len {
            let n = self.notes[i];
            if !swap.holds(n.start) {
                self.notes[kept] = n;
                kept += 1;
            }
        }
        self.len = kept;
        for i in 0..self.swap.notes().len() {
            let n = self.swap.notes()[i];
            self.insert(&n);
        }
        self.swap.clear();
    }

    /// Appends a streamed chunk if it belongs to the current phrase.
    pub fn receive(&mut self, chunk: &PhraseChunk) {
        if chunk.id != self.id {
            return;
        }
        for n in chunk.notes() {
            self.insert(n);
        }
        self.length_beats = valid_length(chunk.length_beats);
        self.finished |= chunk.finished;
    }

    /// Adds a note in onset order (notes come in time order, so this is an append unless a
    /// state was edited), or drops it if it is not a valid note or the phrase is full.
    fn insert(&mut self, n: &Note) {
        let Some(n) = valid_note(n) else {
            self.invalid_notes += 1;
            return;
        };
        if self.len == PHRASE_CAPACITY {
            return;
        }
        let at = self.notes[..self.len].partition_point(|m| m.start <= n.start);
        self.notes.copy_within(at..self.len, at + 1);
        self.notes[at] = n;
        self.len += 1;
    }

    /// Notes refused since the plugin started (pitch or velocity out of MIDI's range, a time
    /// that is not a number): a restored or edited state can hold them.
    pub fn invalid_notes(&self) -> u32 {
        self.invalid_notes
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
                out.push(NoteEmit::off(offset, snd.channel, pitch as u8));
            }
        }
    }

    /// Emits this block's note-ons and note-offs on `channel`; with `looping` the phrase
    /// repeats every `length_beats`. Onsets go first, each ending a sounding note of its key
    /// at its own sample (a key is never started twice); then the offs that fall in the block.
    pub fn render(&mut self, bt: &BlockTime, channel: u8, looping: bool, out: &mut BlockEvents) {
        let (b0, b1) = bt.window();
        self.swap_unless_sounding(b0, looping);
        if let Some(start) = self.start {
            self.playhead = b1 - start;
            if b1 > start && self.len > 0 {
                self.render_onsets(bt, start, b0, b1, channel, looping, out);
            }
        } else {
            self.playhead = -1.0;
        }
        for (pitch, s) in self.sounding.iter_mut().enumerate() {
            let Some(snd) = s.as_mut() else { continue };
            let on_offset = snd.on_offset.take();
            if snd.end >= b1 {
                continue;
            }
            let offset = bt.offset_of(snd.end);
            if on_offset.is_some_and(|on| offset <= on) {
                // So short its off would share (or precede) the on's sample: release it at
                // the next block's first sample.
                snd.end = b1;
                continue;
            }
            out.push(NoteEmit::off(offset, snd.channel, pitch as u8));
            *s = None;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render_onsets(
        &mut self,
        bt: &BlockTime,
        start: f64,
        b0: f64,
        b1: f64,
        channel: u8,
        looping: bool,
        out: &mut BlockEvents,
    ) {
        if looping {
            let length = self.length_beats.max(MIN_LOOP_BEATS);
            // Phrase cycles overlapping this block (a block longer than many cycles of a
            // degenerate phrase is bounded by MAX_CYCLES_PER_BLOCK).
            let first = ((b0 - start) / length).floor().max(0.0) as i64;
            let last = ((b1 - start) / length).floor() as i64;
            let last = last.min(first + MAX_CYCLES_PER_BLOCK);
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
                // The same key again: end the sounding note first, at its own end if that
                // comes earlier in this block, else at this onset.
                let off = if prev.end < b1 {
                    bt.offset_of(prev.end).min(offset)
                } else {
                    offset
                };
                out.push(NoteEmit::off(off, prev.channel, n.pitch));
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
            *slot = Some(Sounding {
                end,
                channel,
                on_offset: Some(offset),
            });
        }
    }
}

/// Longest note or phrase taken (beats): 64 bars of 8.
const MAX_BEATS: f64 = 512.0;

/// `n` if it is a MIDI note with a time that makes sense (velocity 0 becomes 1: it is an
/// onset, not a release); `None` otherwise.
fn valid_note(n: &Note) -> Option<Note> {
    let time_ok = n.start.is_finite() && (0.0..=MAX_BEATS).contains(&n.start);
    let duration_ok = n.duration.is_finite() && n.duration > 0.0;
    (time_ok && duration_ok && n.pitch <= 127 && n.velocity <= 127).then(|| Note {
        duration: n.duration.min(MAX_BEATS),
        velocity: n.velocity.max(1),
        ..*n
    })
}

/// A phrase length that bounds a block's work: finite and in (0, MAX_BEATS].
fn valid_length(beats: f64) -> f64 {
    if beats.is_finite() && beats > 0.0 {
        beats.min(MAX_BEATS)
    } else {
        MAX_BEATS
    }
}

/// A looping phrase shorter than this (a broken state) loops at this length.
const MIN_LOOP_BEATS: f64 = 1.0 / 16.0;
/// Most cycles of a looping phrase one block renders.
const MAX_CYCLES_PER_BLOCK: i64 = 64;

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
            loop_range: None,
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
            ev.sorted().copied().collect::<Vec<_>>(),
            [NoteEmit {
                offset: 0,
                channel: 0,
                pitch: 64,
                velocity: 0,
                on: false
            }]
        );
        assert_eq!(p.sounding_count(), 0);
    }

    /// Four bars of 4/4, a quarter note on every beat, pitch 60 + bar index.
    fn four_bars() -> Vec<Note> {
        (0..16)
            .map(|b| Note {
                start: b as f64,
                duration: 1.0,
                pitch: 60 + (b / 4) as u8,
                velocity: 100,
            })
            .collect()
    }

    /// A swap of bar `bar` (0-based) of phrase 1 to one whole-bar note of `pitch`.
    fn swap_chunk(id: u64, bar: u32, pitch: u8) -> PhraseChunk {
        let from = bar as f64 * 4.0;
        let swap = super::super::messages::BarSwap {
            target: 1,
            from,
            to: from + 4.0,
        };
        let mut c = PhraseChunk::for_swap(id, 16.0, swap);
        c.push(Note {
            start: from,
            duration: 4.0,
            pitch,
            velocity: 90,
        });
        // A note outside the bar is refused: the other bars stay as they were.
        c.push(Note {
            start: from + 4.0,
            duration: 1.0,
            pitch: 100,
            velocity: 90,
        });
        c.finished = true;
        c
    }

    /// (sample of the onset, pitch) of every note-on; panics unless every on has its off.
    fn onsets_closed(events: &[(u64, NoteEmit)]) -> Vec<(u64, u8)> {
        let mut sounding = [false; 128];
        let mut ons = Vec::new();
        for (t, e) in events {
            let k = e.pitch as usize;
            if e.on {
                assert!(!sounding[k], "key {k} started twice at {t}");
                sounding[k] = true;
                ons.push((*t, e.pitch));
            } else {
                sounding[k] = false;
            }
        }
        assert!(sounding.iter().all(|s| !s), "a key is left on: {events:?}");
        ons
    }

    #[test]
    fn a_swapped_bar_changes_only_that_bar_from_the_next_bar_line() {
        let mut p = Playback::new();
        let mut clock = Clock::new();
        p.load(1, &four_bars(), 16.0, Some(0.0));
        // Bar 2 plays (beats 4–8) when bar 3's new notes come.
        // Split points on block boundaries (512 samples = 1/46.875 beat): 240 and 450 blocks.
        let mut events = run(&mut p, &mut clock, 0.0, 5.12, 512, false);
        p.receive_swap(&swap_chunk(7, 2, 50));
        events.extend(run(&mut p, &mut clock, 5.12, 18.0, 512, false));
        let ons = onsets_closed(&events);
        let pitches: Vec<u8> = ons.iter().map(|o| o.1).collect();
        let mut expected: Vec<u8> = [[60; 4], [61; 4]].concat();
        expected.push(50);
        expected.extend([63; 4]);
        assert_eq!(pitches, expected);
        // The new note starts on bar 3's line: beat 8 = 192 000 samples.
        assert!(ons.contains(&(192_000, 50)));
        assert_eq!(p.id(), 1, "the phrase plays on under its id");
    }

    #[test]
    fn a_bar_that_sounds_is_swapped_for_the_next_pass_of_the_loop() {
        let mut p = Playback::new();
        let mut clock = Clock::new();
        p.load(1, &four_bars(), 16.0, Some(0.0));
        let mut events = run(&mut p, &mut clock, 0.0, 9.6, 512, true);
        // Bar 3 sounds: it plays out as it was, and changes on the loop's next pass.
        p.receive_swap(&swap_chunk(7, 2, 50));
        events.extend(run(&mut p, &mut clock, 9.6, 31.5, 512, true));
        let mut ev = BlockEvents::new();
        p.stop(0, &mut ev);
        events.extend(ev.sorted().map(|e| (u64::MAX, *e)));
        let pitches: Vec<u8> = onsets_closed(&events).iter().map(|o| o.1).collect();
        let first: Vec<u8> = [[60; 4], [61; 4], [62; 4], [63; 4]].concat();
        let mut second: Vec<u8> = [[60; 4], [61; 4]].concat();
        second.push(50);
        second.extend([63; 4]);
        assert_eq!(pitches, [first, second].concat());
    }

    #[test]
    fn a_swap_for_another_phrase_or_a_new_phrase_is_dropped() {
        let mut p = Playback::new();
        let mut ev = BlockEvents::new();
        p.load(2, &four_bars(), 16.0, None);
        p.receive_swap(&swap_chunk(7, 2, 50));
        p.swap_unless_sounding(0.0, false);
        assert_eq!(p.notes(), &four_bars()[..]);
        p.load(1, &four_bars(), 16.0, None);
        p.receive_swap(&swap_chunk(7, 2, 50));
        p.begin(8, 0.0, 16.0, 0, &mut ev);
        p.load(1, &four_bars(), 16.0, None);
        p.swap_unless_sounding(0.0, false);
        assert_eq!(p.notes(), &four_bars()[..]);
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
