//! The plugin: nice-plug glue. `process()` reads the host's transport and parameters and hands
//! each block to the audio engine; everything slow lives on the worker thread.

use crate::audio::clock::TransportInfo;
use crate::audio::engine::{Engine, EngineSettings, InputNote};
use crate::params::{ContinuoParams, Quantize};
use crate::shared::Shared;
use crate::worker::{command_channel, AudioEnds, Command, ModelSource, Worker};
use crossbeam_channel::{Receiver, Sender};
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;
use nice_plug_egui::EguiEditor;
use std::sync::Arc;

/// Environment variable naming a model folder to load instead of the built-in model.
pub const MODEL_DIR_ENV: &str = "CONTINUO_MODEL_DIR";

pub struct Continuo {
    params: Arc<ContinuoParams>,
    commands: (Sender<Command>, Receiver<Command>),
    shared: Arc<Shared>,
    worker: Option<Worker>,
    worker_source: Option<ModelSource>,
    ends: Option<AudioEnds>,
    engine: Engine,
    sample_rate: f64,
}

impl Default for Continuo {
    fn default() -> Self {
        let params = Arc::new(ContinuoParams::default());
        let engine = Engine::new(params.generation_settings());
        Self {
            params,
            commands: command_channel(),
            shared: Arc::new(Shared::default()),
            worker: None,
            worker_source: None,
            ends: None,
            engine,
            sample_rate: 48_000.0,
        }
    }
}

impl Continuo {
    fn model_source(&self) -> ModelSource {
        let chosen = self
            .params
            .session
            .lock()
            .ok()
            .and_then(|s| s.model_path.clone());
        match chosen.or_else(|| std::env::var(MODEL_DIR_ENV).ok()) {
            Some(p) if !p.is_empty() => ModelSource::Folder(p.into()),
            _ => ModelSource::Embedded,
        }
    }

    /// Starts the worker, or points it at another model if the session names one.
    fn ensure_worker(&mut self) {
        let source = self.model_source();
        if let Some(w) = &self.worker {
            if self.worker_source.as_ref() != Some(&source) {
                w.send(Command::LoadModel(source.clone()));
                self.worker_source = Some(source);
            }
            return;
        }
        let params = self.params.clone();
        let hooks = crate::worker::Hooks {
            on_model_loaded: Box::new({
                let params = params.clone();
                move |status| {
                    if let Ok(mut s) = params.session.lock() {
                        s.model_status = match &status.error {
                            Some(e) => format!("error: {e}"),
                            None => format!(
                                "loaded: {} ({}, {})",
                                status.name, status.description, status.device
                            ),
                        };
                    }
                }
            }),
            on_idea: Box::new(move |idea| {
                if let Ok(mut s) = params.session.lock() {
                    s.last_primer = idea.primer.clone();
                    s.last_phrase = Some(idea.clone());
                }
            }),
        };
        let (worker, ends) = Worker::spawn(
            self.shared.clone(),
            source.clone(),
            hooks,
            self.commands.clone(),
        );
        self.worker = Some(worker);
        self.worker_source = Some(source);
        self.ends = Some(ends);
    }

    fn settings(&self) -> EngineSettings {
        let p = &self.params;
        EngineSettings {
            bypass: p.bypass.value(),
            trigger: p.trigger.value(),
            silence_beats: p.silence_beats.value() as f64,
            trigger_note: p.trigger_note.value().clamp(0, 127) as u8,
            generate_on: p.generate.value(),
            pass_through: p.pass_through.value(),
            quantize_to_bar: p.quantize.value() == Quantize::Bar,
            looping: p.loop_phrase.value(),
            channel: (p.channel.value().clamp(1, 16) - 1) as u8,
            generation: p.generation_settings(),
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

fn transport_info(t: &Transport) -> TransportInfo {
    TransportInfo {
        playing: t.playing,
        tempo: t.tempo,
        pos_beats: t.pos_beats(),
        time_sig: t.time_sig_numerator.zip(t.time_sig_denominator),
        bar_start_beats: t.bar_start_pos_beats(),
        loop_range: t.loop_range_beats(),
    }
}

impl Plugin for Continuo {
    const NAME: &'static str = "Continuo";
    const VENDOR: &'static str = "Continuo";
    const URL: &'static str = "https://crates.io/crates/nice-plug";
    const EMAIL: &'static str = "continuo@example.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    // A stereo pass-through layout: Ableton Live only hosts VST3 MIDI effects that have one.
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout::const_default(),
    ];
    const MIDI_INPUT: MidiConfig = MidiConfig::Basic;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = EguiEditor<crate::editor::EditorApp>;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn setup_logger() -> Option<bool> {
        crate::logging::install()
    }

    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        crate::editor::create(
            self.params.clone(),
            self.shared.clone(),
            self.commands.0.clone(),
            self.params.editor_state.clone(),
        )
    }

    fn activate(
        &mut self,
        _layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.sample_rate = buffer_config.sample_rate as f64;
        self.ensure_worker();
        // A restored session brings its last phrase back (loaded, not playing).
        let restored = self
            .params
            .session
            .lock()
            .ok()
            .and_then(|s| s.last_phrase.clone());
        if let Some(saved) = restored {
            let (idea, dropped) = saved.validated();
            self.engine
                .restore_phrase(&idea.notes, idea.bars as f64 * idea.beats_per_bar);
            let mut view = self.shared.view();
            if dropped > 0 {
                view.last_error = Some(format!(
                    "the saved session held {dropped} notes MIDI cannot play; they were left out"
                ));
            }
            if view.history.iter().all(|i| i.id != idea.id) {
                view.history.push_front(idea);
            }
        }
        true
    }

    fn reset(&mut self) {
        self.engine.schedule_release();
    }

    fn deactivate(&mut self) {
        self.engine.schedule_release();
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        flush_subnormals(buffer);
        let Some(ends) = &self.ends else {
            return ProcessStatus::Normal;
        };
        let settings = self.settings();
        let transport = transport_info(context.transport());
        let samples = buffer.samples().max(1);
        self.engine
            .begin_block(&transport, samples, self.sample_rate, &settings);

        while let Some(event) = context.next_event() {
            let input = match event {
                NoteEvent::NoteOn {
                    timing,
                    channel,
                    key: Key::Number(pitch),
                    velocity,
                    ..
                } => InputNote {
                    offset: timing,
                    channel: channel_number(channel),
                    pitch,
                    velocity: (velocity * 127.0).round().clamp(1.0, 127.0) as u8,
                    on: true,
                },
                NoteEvent::NoteOff {
                    timing,
                    channel,
                    key: Key::Number(pitch),
                    ..
                } => InputNote {
                    offset: timing,
                    channel: channel_number(channel),
                    pitch,
                    velocity: 0,
                    on: false,
                },
                _ => continue,
            };
            self.engine.input(input, &settings);
        }

        for e in self
            .engine
            .end_block(&settings, &ends.requests, &ends.chunks, &self.shared)
        {
            let channel = Channel::Number(e.channel);
            let key = Key::Number(e.pitch);
            let event = if e.on {
                NoteEvent::NoteOn {
                    timing: e.offset,
                    voice_id: VoiceID::Wildcard,
                    channel,
                    key,
                    velocity: e.velocity as f32 / 127.0,
                }
            } else {
                NoteEvent::NoteOff {
                    timing: e.offset,
                    voice_id: VoiceID::Wildcard,
                    channel,
                    key,
                    velocity: 0.0,
                }
            };
            // A full host queue drops the event; nothing on this thread may wait.
            let _ = context.try_send_event(event);
        }
        ProcessStatus::Normal
    }
}

/// The stereo pass-through hands the host's input back as output; subnormal samples in it
/// are flushed to zero (they cost some hosts' DSP dearly, and validators refuse them).
fn flush_subnormals(buffer: &mut Buffer) {
    for channel in buffer.as_slice() {
        for sample in channel.iter_mut() {
            if sample.is_subnormal() {
                *sample = 0.0;
            }
        }
    }
}

fn channel_number(c: Channel) -> u8 {
    match c {
        Channel::Number(n) => n,
        Channel::Wildcard => 0,
    }
}

impl ClapPlugin for Continuo {
    const CLAP_ID: &'static str = "org.continuo.continuo";
    // The test host checks that the bundle under test aborts on audio-thread allocation.
    const CLAP_DESCRIPTION: Option<&'static str> = Some(
        if cfg!(all(feature = "assert_process_allocs", debug_assertions)) {
            "Answers what you play with a continuation from a small neural network (allocation checks on)"
        } else {
            "Answers what you play with a continuation from a small neural network"
        },
    );
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::NoteEffect, ClapFeature::Utility];
}

impl Vst3Plugin for Continuo {
    const VST3_CLASS_ID: [u8; 16] = *b"ContinuoMidiFx01";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Fx];
}
