//! One block of Continuo on the audio thread: capture, trigger, playback, wired together.
//! Independent of the plugin API so it can be driven directly in tests.

use super::capture::Capture;
use super::clock::{BlockTime, Clock, TransportInfo};
use super::messages::{GenerationSettings, PhraseChunk, PrimerSnapshot};
use super::playback::{BlockEvents, NoteEmit, Playback};
use super::trigger::{Trigger, TriggerMode};
use super::voices::OutputVoices;
use crate::shared::Shared;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::Ordering;

/// A phrase starts at least this far after its trigger, so the worker has a moment.
const START_MARGIN_BEATS: f64 = 0.125;
/// A transport stop that lasts at most this many blocks and is followed by play is a
/// relocation (Ardour locates through a stopped block when a loop is engaged or the timeline
/// clicked): the phrase stays on the timeline.
const STOP_GRACE_BLOCKS: u32 = 2;

/// Parameter values for one block (read from atomics by the caller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineSettings {
    pub bypass: bool,
    pub trigger: TriggerMode,
    pub silence_beats: f64,
    pub trigger_note: u8,
    pub generate_on: bool,
    pub pass_through: bool,
    pub quantize_to_bar: bool,
    pub looping: bool,
    /// 0-based MIDI channel.
    pub channel: u8,
    pub generation: GenerationSettings,
}

impl Default for EngineSettings {
    /// Neutral settings (the plugin reads its parameters instead): *Auto* after a beat of
    /// silence, pass-through on, bar-quantized, not looping, channel 1.
    fn default() -> Self {
        Self {
            bypass: false,
            trigger: TriggerMode::Auto,
            silence_beats: 1.0,
            trigger_note: 36,
            generate_on: false,
            pass_through: true,
            quantize_to_bar: true,
            looping: false,
            channel: 0,
            generation: GenerationSettings::default(),
        }
    }
}

/// An incoming note event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputNote {
    pub offset: u32,
    pub channel: u8,
    pub pitch: u8,
    pub velocity: u8,
    pub on: bool,
}

pub struct Engine {
    clock: Clock,
    capture: Capture,
    playback: Playback,
    trigger: Trigger,
    events: BlockEvents,
    voices: OutputVoices,
    /// The last primer sent, kept to generate again without new input.
    primer: PrimerSnapshot,
    /// (id, host beat) of the phrase requested by this thread and not yet begun.
    pending: Option<(u64, f64)>,
    last_channel: u8,
    release_on_next_block: bool,
    block: Option<BlockTime>,
    /// Blocks since the transport stopped, while a stop may still be a relocation.
    stopped_blocks: u32,
    /// Loop wraps of this block the take has moved back by.
    capture_wraps: f64,
    key_trigger_at: Option<f64>,
}

impl Engine {
    pub fn new(settings: GenerationSettings) -> Self {
        Self {
            clock: Clock::new(),
            capture: Capture::new(),
            playback: Playback::new(),
            trigger: Trigger::default(),
            events: BlockEvents::new(),
            voices: OutputVoices::new(),
            primer: PrimerSnapshot::empty(settings),
            pending: None,
            last_channel: 0,
            release_on_next_block: false,
            block: None,
            stopped_blocks: 0,
            capture_wraps: 0.0,
            key_trigger_at: None,
        }
    }

    pub fn playback(&self) -> &Playback {
        &self.playback
    }

    /// Loads a phrase without scheduling it (restored session state).
    pub fn restore_phrase(&mut self, notes: &[crate::music::Note], length_beats: f64) {
        self.playback.load(0, notes, length_beats, None);
    }

    /// Plays the loaded phrase from host beat `start` (benchmarks, tests).
    pub fn schedule_at(&mut self, start: f64) {
        self.playback.schedule(start, 0, &mut self.events);
    }

    /// The host deactivated or reset the plugin: nothing can be sent now, so every sounding
    /// note is released at the first sample of the next block.
    pub fn schedule_release(&mut self) {
        self.release_on_next_block = true;
    }

    /// Starts a block: advances the clock and handles discontinuities and channel changes.
    pub fn begin_block(
        &mut self,
        transport: &TransportInfo,
        samples: usize,
        sample_rate: f64,
        s: &EngineSettings,
    ) -> BlockTime {
        let bt = self.clock.advance(transport, samples, sample_rate);
        self.events.clear();
        self.key_trigger_at = None;
        if self.release_on_next_block {
            self.release_on_next_block = false;
            self.playback.release_all(0, &mut self.events);
            self.voices.release_all(&mut self.events);
        }
        self.capture_wraps = 0.0;
        // Held keys stay held and the take stays whole: it moves with the timeline.
        self.capture.shift(bt.jump_beats);
        if bt.discontinuity {
            let was_driven = self.block.map(|b| b.host_driven);
            self.playback.release_all(0, &mut self.events);
            match (was_driven, bt.host_driven) {
                (Some(true), false) => {
                    // Stopped, or a relocation that passes through a stopped block or two:
                    // wait before dropping the phrase.
                    self.stopped_blocks = 1;
                }
                (Some(false), true) if self.stopped_blocks > 0 => {
                    // Playing again after a moment: a relocation, the phrase stays.
                    self.stopped_blocks = 0;
                }
                (Some(a), b) if a != b => {
                    // Transport started or stopped for good: the phrase's anchor no longer
                    // means anything.
                    self.drop_phrase();
                }
                _ => {}
            }
        } else if self.stopped_blocks > 0 {
            self.stopped_blocks += 1;
            if self.stopped_blocks > STOP_GRACE_BLOCKS {
                self.drop_phrase();
            }
        }
        if s.channel != self.last_channel || s.bypass {
            self.playback.release_all(0, &mut self.events);
            self.last_channel = s.channel;
        }
        self.block = Some(bt);
        bt
    }

    fn drop_phrase(&mut self) {
        self.playback.stop(0, &mut self.events);
        self.pending = None;
        self.stopped_blocks = 0;
    }

    /// Moves the take back by each loop wrap of this block at or before `offset`, so that it
    /// stays in the order played and inside the loop.
    fn wrap_capture(&mut self, bt: &BlockTime, offset: u32) {
        if let Some(w) = bt.wrap {
            let wraps = w.wraps_at(offset.min(bt.samples as u32));
            if wraps > self.capture_wraps {
                let by = (wraps - self.capture_wraps) * (w.to_beat - w.from_beat);
                self.capture.shift(by);
                self.capture_wraps = wraps;
            }
        }
    }

    /// One incoming note: captured, passed through, or taken as the trigger key.
    pub fn input(&mut self, n: InputNote, s: &EngineSettings) {
        let Some(bt) = self.block else { return };
        let event = NoteEmit {
            offset: n.offset,
            channel: n.channel & 15,
            pitch: n.pitch & 127,
            velocity: n.velocity.min(127),
            on: n.on,
        };
        // A note-off always goes to the output ledger, which sends it only if that key was
        // passed through: turning pass-through off, or making a held key the trigger key,
        // must not leave a key on downstream.
        let trigger_key = s.trigger == TriggerMode::Key && n.pitch == s.trigger_note;
        let pass = s.bypass || (s.pass_through && !trigger_key) || !n.on;
        if pass {
            self.events.push_input(event);
        }
        // The take follows the timeline and every key's release even while bypassed, so that
        // it never holds a key the player let go (Auto would wait for it for ever); it takes
        // no new notes then.
        self.wrap_capture(&bt, n.offset);
        let beat = bt.beat_at(n.offset);
        match (n.on, s.bypass, trigger_key) {
            (false, _, _) => self.capture.note_off(beat, n.pitch),
            (true, true, _) => {}
            (true, false, true) => self.key_trigger_at = Some(beat),
            (true, false, false) => self.capture.note_on(beat, n.pitch, n.velocity),
        }
    }

    /// Ends a block: takes phrase chunks, fires triggers, renders playback. Returns this
    /// block's output events in time order.
    pub fn end_block(
        &mut self,
        s: &EngineSettings,
        requests: &Sender<PrimerSnapshot>,
        chunks: &Receiver<PhraseChunk>,
        shared: &Shared,
    ) -> &[NoteEmit] {
        let Some(bt) = self.block else { return &[] };
        self.wrap_capture(&bt, u32::MAX);
        if s.bypass {
            return self.send(shared);
        }
        // Where the block's time ends up: after a wrap, in the loop.
        let last = bt.last_span();
        while let Ok(chunk) = chunks.try_recv() {
            if chunk.swap.is_some() {
                self.playback.receive_swap(&chunk);
                continue;
            }
            if chunk.id > self.playback.id() {
                let start = match self.pending {
                    Some((id, start)) if id == chunk.id && start >= last.start_beat => start,
                    _ => last.next_line(last.start_beat + START_MARGIN_BEATS, self.grid(s, &bt)),
                };
                self.playback
                    .begin(chunk.id, start, chunk.length_beats, 0, &mut self.events);
            }
            self.playback.receive(&chunk);
        }

        let now = bt.end_beat();
        let manual = self.trigger.generate_pressed(s.generate_on)
            | shared.generate_requested.swap(false, Ordering::Relaxed);
        let fire_at = match s.trigger {
            TriggerMode::Auto
                if super::trigger::Trigger::silence_elapsed(
                    !self.capture.is_empty(),
                    self.capture.held(),
                    self.capture.silence(now),
                    s.silence_beats,
                ) =>
            {
                Some(now)
            }
            TriggerMode::Key => self.key_trigger_at,
            _ => None,
        }
        .or(manual.then_some(now));
        let ready =
            shared.model_ready.load(Ordering::Acquire) && !shared.locked.load(Ordering::Relaxed);
        if let (Some(at), true) = (fire_at, ready) {
            self.fire(at, &bt, s, requests, shared);
        } else if fire_at.is_some()
            && !self.capture.is_empty()
            && !shared.model_ready.load(Ordering::Acquire)
        {
            // No model: the take is dropped so that it does not grow into the next one.
            self.capture
                .take_primer(now, bt.bar_origin, bt.beats_per_bar, &mut self.primer);
        }

        if self.stopped_blocks == 0 {
            for span in bt.spans() {
                if span.first_offset > bt.first_offset {
                    // A pass of the loop: nothing sounds past the loop end, and the loop
                    // start plays from its sample on.
                    self.playback
                        .release_all(span.first_offset, &mut self.events);
                }
                if !span.muted {
                    self.playback
                        .render(&span, s.channel, s.looping, &mut self.events);
                }
            }
        }
        shared.playhead.store(self.playback.playhead());
        shared.host_beat.store(now);
        shared.tempo.store(bt.tempo);
        self.send(shared)
    }

    /// The block's events in time order, through the output ledger.
    fn send(&mut self, shared: &Shared) -> &[NoteEmit] {
        let full = self.events.dropped_ons();
        self.voices.filter(self.events.sorted_with_sources());
        let dropped = full + self.voices.dropped_ons();
        if dropped > 0 {
            shared
                .dropped_notes
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        shared
            .invalid_notes
            .store(self.playback.invalid_notes() as u64, Ordering::Relaxed);
        self.voices.events()
    }

    /// Whether the take holds `pitch` down (tests: it never holds a released key).
    pub fn take_holds(&self, pitch: u8) -> bool {
        self.capture.holds(pitch)
    }

    /// Keys sounding downstream (pass-through and phrase).
    pub fn sounding(&self) -> usize {
        self.voices.sounding()
    }

    fn grid(&self, s: &EngineSettings, bt: &BlockTime) -> f64 {
        if s.quantize_to_bar {
            bt.beats_per_bar
        } else {
            1.0
        }
    }

    fn fire(
        &mut self,
        at: f64,
        bt: &BlockTime,
        s: &EngineSettings,
        requests: &Sender<PrimerSnapshot>,
        shared: &Shared,
    ) {
        if !self.capture.is_empty() {
            self.capture
                .take_primer(at, bt.bar_origin, bt.beats_per_bar, &mut self.primer);
        }
        let id = shared.new_id();
        self.primer.id = id;
        self.primer.settings = s.generation;
        // A copy of a fixed-size value: nothing is allocated or freed here.
        if requests.try_send(self.primer).is_ok() {
            self.pending = Some((id, bt.next_line(at + START_MARGIN_BEATS, self.grid(s, bt))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::Note;

    fn settings() -> EngineSettings {
        EngineSettings {
            generation: GenerationSettings {
                bars: 1,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    struct Rig {
        engine: Engine,
        shared: Shared,
        req: (Sender<PrimerSnapshot>, Receiver<PrimerSnapshot>),
        chunks: (Sender<PhraseChunk>, Receiver<PhraseChunk>),
        beat: f64,
    }

    impl Rig {
        fn new() -> Self {
            let shared = Shared::default();
            shared.model_ready.store(true, Ordering::Relaxed);
            Self {
                engine: Engine::new(settings().generation),
                shared,
                req: crossbeam_channel::bounded(4),
                chunks: crossbeam_channel::bounded(4),
                beat: 0.0,
            }
        }

        /// One 480-sample block at 48 kHz, 120 BPM (0.02 beats), with `inputs`.
        fn block(&mut self, s: &EngineSettings, inputs: &[InputNote]) -> Vec<NoteEmit> {
            let t = TransportInfo {
                playing: true,
                tempo: Some(120.0),
                pos_beats: Some(self.beat),
                time_sig: Some((4, 4)),
                bar_start_beats: None,
                loop_range: None,
            };
            let bt = self.engine.begin_block(&t, 480, 48_000.0, s);
            for &n in inputs {
                self.engine.input(n, s);
            }
            self.beat = bt.end_beat();
            self.engine
                .end_block(s, &self.req.0, &self.chunks.1, &self.shared)
                .to_vec()
        }

        /// Loads a one-note phrase lasting a whole bar, playing from beat 0.
        fn play_long_note(&mut self) {
            let mut chunk = PhraseChunk::new(1, 4.0);
            chunk.push(Note {
                start: 0.0,
                duration: 4.0,
                pitch: 70,
                velocity: 90,
            });
            chunk.finished = true;
            self.engine.restore_phrase(chunk.notes(), 4.0);
            self.engine.schedule_at(0.0);
        }
    }

    fn on(pitch: u8) -> InputNote {
        InputNote {
            offset: 10,
            channel: 0,
            pitch,
            velocity: 100,
            on: true,
        }
    }

    #[test]
    fn changing_the_output_channel_releases_sounding_notes_on_the_old_channel() {
        let mut r = Rig::new();
        r.play_long_note();
        let s = settings();
        let first = r.block(&s, &[]);
        assert_eq!(first.iter().filter(|e| e.on && e.pitch == 70).count(), 1);
        let moved = EngineSettings { channel: 5, ..s };
        let out = r.block(&moved, &[]);
        assert!(
            out.contains(&NoteEmit {
                offset: 0,
                channel: 0,
                pitch: 70,
                velocity: 0,
                on: false
            }),
            "{out:?}"
        );
    }

    #[test]
    fn bypass_releases_the_phrase_and_passes_input_through() {
        let mut r = Rig::new();
        r.play_long_note();
        r.block(&settings(), &[]);
        let bypassed = EngineSettings {
            bypass: true,
            ..settings()
        };
        let out = r.block(&bypassed, &[on(60)]);
        assert!(out.iter().any(|e| !e.on && e.pitch == 70), "{out:?}");
        assert!(out.iter().any(|e| e.on && e.pitch == 60), "{out:?}");
    }

    #[test]
    fn the_trigger_key_asks_for_a_phrase_and_is_not_passed_through() {
        let mut r = Rig::new();
        let s = EngineSettings {
            trigger: TriggerMode::Key,
            ..settings()
        };
        r.block(&s, &[on(60)]);
        let out = r.block(&s, &[on(36)]);
        assert!(out.iter().all(|e| e.pitch != 36), "{out:?}");
        let primer = r.req.1.try_recv().expect("no request sent");
        assert_eq!(
            primer.notes().iter().map(|n| n.pitch).collect::<Vec<_>>(),
            vec![60]
        );
    }

    #[test]
    fn without_a_model_notes_pass_through_and_nothing_is_requested() {
        let mut r = Rig::new();
        r.shared.model_ready.store(false, Ordering::Relaxed);
        let s = settings();
        let out = r.block(&s, &[on(60)]);
        assert!(out.iter().any(|e| e.on && e.pitch == 60));
        r.block(
            &s,
            &[InputNote {
                on: false,
                velocity: 0,
                ..on(60)
            }],
        );
        for _ in 0..200 {
            r.block(&s, &[]);
        }
        assert!(r.req.1.try_recv().is_err());
    }

    /// Downstream key state after `events`; fails on a note-on of a sounding key.
    fn play(events: &[NoteEmit], state: &mut [[bool; 128]; 16]) {
        for e in events {
            let slot = &mut state[e.channel as usize][e.pitch as usize];
            assert!(
                !(e.on && *slot),
                "note-on of a sounding key: {e:?} in {events:?}"
            );
            *slot = e.on;
        }
    }

    #[test]
    fn overlapping_notes_of_one_key_end_before_they_start_again() {
        let mut r = Rig::new();
        let n = |start: f64, duration: f64| Note {
            start,
            duration,
            pitch: 64,
            velocity: 90,
        };
        // Overlapping, and back to back with an end a hair after the next start.
        let notes = [n(0.0, 1.0), n(0.5, 1.0), n(1.5, 0.5 + 1e-7), n(2.0, 0.5)];
        r.engine.restore_phrase(&notes, 4.0);
        r.engine.schedule_at(0.0);
        let s = EngineSettings {
            pass_through: false,
            ..settings()
        };
        let mut state = [[false; 128]; 16];
        let mut ons = 0;
        for _ in 0..200 {
            let out = r.block(&s, &[]);
            ons += out.iter().filter(|e| e.on).count();
            play(&out, &mut state);
        }
        assert_eq!(ons, 4);
        assert!(!state[0][64], "the key was left on");
    }

    #[test]
    fn a_zero_length_input_note_keeps_its_order() {
        let mut r = Rig::new();
        let s = settings();
        let off = InputNote {
            on: false,
            velocity: 0,
            ..on(60)
        };
        let out = r.block(&s, &[on(60), off]);
        let mut state = [[false; 128]; 16];
        play(&out, &mut state);
        assert_eq!(
            out.iter()
                .filter(|e| e.pitch == 60)
                .map(|e| e.on)
                .collect::<Vec<_>>(),
            [true, false]
        );
        assert!(!state[0][60], "the key was left on: {out:?}");
    }

    #[test]
    fn a_crowded_block_drops_note_ons_but_never_a_note_off() {
        let mut r = Rig::new();
        let s = settings();
        // 128 keys held, then far more input than a block holds: every key is still ended.
        let presses: Vec<InputNote> = (0..128).map(|p| on(p as u8)).collect();
        r.block(&s, &presses);
        let flood: Vec<InputNote> = (0..3000)
            .map(|i| InputNote {
                pitch: (i % 128) as u8,
                ..on(0)
            })
            .chain((0..128).map(|p| InputNote {
                on: false,
                velocity: 0,
                ..on(p as u8)
            }))
            .collect();
        let out = r.block(&s, &flood);
        let mut state = [[true; 128]; 16];
        state[1..].iter_mut().for_each(|c| *c = [false; 128]);
        play(&out, &mut state);
        assert!(
            state[0].iter().all(|&k| !k),
            "keys left on after a full block"
        );
        assert!(r.shared.dropped_notes.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_restored_phrase_with_bad_notes_plays_only_the_good_ones_in_order() {
        let mut r = Rig::new();
        let n = |start: f64, pitch: u8| Note {
            start,
            duration: 0.25,
            pitch,
            velocity: 90,
        };
        // Pitch 200, a time that is not a number, and onsets out of order.
        let notes = [
            n(1.0, 67),
            n(0.0, 60),
            n(0.5, 200),
            n(f64::NAN, 62),
            n(0.5, 64),
        ];
        r.engine.restore_phrase(&notes, 0.0);
        r.engine.schedule_at(0.0);
        let s = EngineSettings {
            pass_through: false,
            looping: true,
            ..settings()
        };
        let mut state = [[false; 128]; 16];
        let mut pitches = Vec::new();
        for _ in 0..100 {
            let out = r.block(&s, &[]);
            pitches.extend(out.iter().filter(|e| e.on).map(|e| e.pitch));
            play(&out, &mut state);
        }
        assert_eq!(&pitches[..3], [60, 64, 67]);
        assert!(pitches.iter().all(|&p| p <= 127));
        assert_eq!(r.engine.playback().invalid_notes(), 2);
    }
}
