//! One block of Continuo on the audio thread: capture, trigger, playback, wired together.
//! Independent of the plugin API so it can be driven directly in tests.

use super::capture::Capture;
use super::clock::{BlockTime, Clock, TransportInfo};
use super::messages::{GenerationSettings, PhraseChunk, PrimerSnapshot};
use super::playback::{BlockEvents, NoteEmit, Playback};
use super::trigger::{Trigger, TriggerMode};
use crate::shared::Shared;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::Ordering;

/// A phrase starts at least this far after its trigger, so the worker has a moment.
const START_MARGIN_BEATS: f64 = 0.125;

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
    /// The last primer sent, kept to generate again without new input.
    primer: PrimerSnapshot,
    /// (id, host beat) of the phrase requested by this thread and not yet begun.
    pending: Option<(u64, f64)>,
    last_channel: u8,
    release_on_next_block: bool,
    block: Option<BlockTime>,
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
            primer: PrimerSnapshot::empty(settings),
            pending: None,
            last_channel: 0,
            release_on_next_block: false,
            block: None,
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
        }
        if bt.discontinuity {
            self.capture.rebase(bt.start_beat);
            if self.block.is_some_and(|b| b.host_driven != bt.host_driven) {
                // Transport started or stopped: the phrase's anchor no longer means anything.
                self.playback.stop(0, &mut self.events);
                self.pending = None;
            } else {
                // Jump or loop: the phrase stays on the timeline; what sounded is released.
                self.playback.release_all(0, &mut self.events);
            }
        }
        if s.channel != self.last_channel || s.bypass {
            self.playback.release_all(0, &mut self.events);
            self.last_channel = s.channel;
        }
        self.block = Some(bt);
        bt
    }

    /// One incoming note: captured, passed through, or taken as the trigger key.
    pub fn input(&mut self, n: InputNote, s: &EngineSettings) {
        let Some(bt) = self.block else { return };
        if s.bypass {
            self.events.push(NoteEmit {
                offset: n.offset,
                channel: n.channel,
                pitch: n.pitch,
                velocity: n.velocity,
                on: n.on,
            });
            return;
        }
        let beat = bt.beat_at(n.offset);
        if s.trigger == TriggerMode::Key && n.pitch == s.trigger_note {
            if n.on {
                self.key_trigger_at = Some(beat);
            }
            return;
        }
        if n.on {
            self.capture.note_on(beat, n.pitch, n.velocity);
        } else {
            self.capture.note_off(beat, n.pitch);
        }
        if s.pass_through {
            self.events.push(NoteEmit {
                offset: n.offset,
                channel: n.channel,
                pitch: n.pitch,
                velocity: n.velocity,
                on: n.on,
            });
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
        if s.bypass {
            return self.events.sorted();
        }
        while let Ok(chunk) = chunks.try_recv() {
            if chunk.id > self.playback.id() {
                let start = match self.pending {
                    Some((id, start)) if id == chunk.id && start >= bt.start_beat => start,
                    _ => bt.next_line(bt.start_beat + START_MARGIN_BEATS, self.grid(s, &bt)),
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

        self.playback
            .render(&bt, s.channel, s.looping, &mut self.events);
        shared.playhead.store(self.playback.playhead());
        shared.host_beat.store(now);
        shared.tempo.store(bt.tempo);
        self.events.sorted()
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
    use crate::audio::messages::KeyLock;
    use crate::music::Note;

    fn settings() -> EngineSettings {
        EngineSettings {
            bypass: false,
            trigger: TriggerMode::Auto,
            silence_beats: 1.0,
            trigger_note: 36,
            generate_on: false,
            pass_through: true,
            quantize_to_bar: true,
            looping: false,
            channel: 0,
            generation: GenerationSettings {
                bars: 1,
                temperature: 1.0,
                top_p: 1.0,
                seed: 0,
                key_lock: KeyLock::Off,
                low: 0,
                high: 127,
                texture: Default::default(),
                rhythm: Default::default(),
                candidates: 1,
            },
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
}
