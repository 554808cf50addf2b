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
