//! Continuo's parameters (stable ids: renaming one breaks saved sessions) and the state
//! persisted with a DAW session.

use crate::audio::messages::{GenerationSettings, KeyLock};
use crate::audio::trigger::TriggerMode;
use crate::model::sampler::{DEFAULT_CANDIDATES, MAX_CANDIDATES};
use crate::music::texture::{
    Rhythm, TextureRequest, Told, DENSITY_NAMES, POLYPHONY_NAMES, REGISTER_NAMES,
};
use crate::music::variation::Variation;
use crate::music::{Key, Note};
use crate::shared::Idea;
use nice_plug::prelude::*;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Quantize {
    #[name = "Next beat"]
    Beat,
    #[name = "Next bar"]
    Bar,
}

/// Where the answer's onsets may fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum RhythmMode {
    #[name = "Free"]
    Free,
    #[name = "Like primer"]
    LikePrimer,
}

/// How much of the answer replays the primer's bars ([`Variation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum VariationMode {
    #[name = "Loop"]
    Loop,
    #[name = "Develop"]
    Develop,
    #[name = "New"]
    New,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum KeyLockMode {
    #[name = "Off"]
    Off,
    #[name = "From primer"]
    FromPrimer,
    #[name = "Fixed key"]
    Fixed,
}

/// Persisted with the session, beside the parameters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionState {
    /// A user model folder; `None` uses the built-in default model.
    pub model_path: Option<String>,
    /// The last primer the worker continued.
    pub last_primer: Vec<Note>,
    /// The last phrase, for playback and the editor after reloading the session.
    pub last_phrase: Option<Idea>,
    /// The model status when the session was saved (why no model loaded, if so).
    pub model_status: String,
}

#[derive(Params)]
pub struct ContinuoParams {
    #[id = "bypass"]
    pub bypass: BoolParam,
    #[id = "trigger"]
    pub trigger: EnumParam<TriggerMode>,
    #[id = "silence"]
    pub silence_beats: FloatParam,
    #[id = "trignote"]
    pub trigger_note: IntParam,
    /// Automatable Generate button: each off→on change asks for a phrase.
    #[id = "generate"]
    pub generate: BoolParam,
    #[id = "thru"]
    pub pass_through: BoolParam,
    #[id = "quantize"]
    pub quantize: EnumParam<Quantize>,
    #[id = "bars"]
    pub bars: IntParam,
    #[id = "loop"]
    pub loop_phrase: BoolParam,
    #[id = "channel"]
    pub channel: IntParam,
    #[id = "temp"]
    pub temperature: FloatParam,
    #[id = "topp"]
    pub top_p: FloatParam,
    #[id = "keylock"]
    pub key_lock: EnumParam<KeyLockMode>,
    #[id = "key"]
    pub key: IntParam,
    #[id = "low"]
    pub low: IntParam,
    #[id = "high"]
    pub high: IntParam,
    #[id = "seed"]
    pub seed: IntParam,
    /// Notes per onset the model is told: 0 = like the primer, else a bin + 1.
    #[id = "poly"]
    pub polyphony: IntParam,
    /// Notes per beat: 0 = like the primer, else a bin + 1.
    #[id = "density"]
    pub density: IntParam,
    /// Median pitch: 0 = like the primer, else a bin + 1.
    #[id = "register"]
    pub register: IntParam,
    #[id = "rhythm"]
    pub rhythm: EnumParam<RhythmMode>,
    /// Loop, Develop (the default) or New.
    #[id = "variation"]
    pub variation: EnumParam<VariationMode>,
    /// Candidates per answer: the one most in kind with the primer is played.
    #[id = "cands"]
    pub candidates: IntParam,

    #[persist = "session"]
    pub session: Arc<Mutex<SessionState>>,
    /// Window size; not persisted (nice-plug-egui's state type is not serializable).
    pub editor_state: Arc<nice_plug_egui::EguiEditorState>,
}

impl Default for ContinuoParams {
    fn default() -> Self {
        Self {
            bypass: BoolParam::new("Bypass", false).make_bypass(),
            trigger: EnumParam::new("Trigger", TriggerMode::Auto),
            silence_beats: FloatParam::new(
                "Silence before answer",
                1.0,
                FloatRange::Linear {
                    min: 0.25,
                    max: 8.0,
                },
            )
            .with_step_size(0.25)
            .with_unit(" beats"),
            trigger_note: IntParam::new("Trigger key", 36, IntRange::Linear { min: 0, max: 127 })
                .with_value_to_string(formatters::v2s_i32_key_formatter())
                .with_string_to_value(formatters::s2v_i32_key_formatter()),
            generate: BoolParam::new("Generate", false),
            pass_through: BoolParam::new("Pass through", true),
            quantize: EnumParam::new("Start on", Quantize::Bar),
            bars: IntParam::new("Length", 4, IntRange::Linear { min: 1, max: 16 })
                .with_unit(" bars"),
            loop_phrase: BoolParam::new("Loop phrase", false),
            channel: IntParam::new("Output channel", 1, IntRange::Linear { min: 1, max: 16 }),
            temperature: FloatParam::new(
                "Temperature",
                0.9,
                FloatRange::Linear { min: 0.1, max: 2.0 },
            )
            .with_step_size(0.05),
            top_p: FloatParam::new("Top-p", 0.95, FloatRange::Linear { min: 0.1, max: 1.0 })
                .with_step_size(0.01),
            key_lock: EnumParam::new("Key lock", KeyLockMode::Off),
            key: IntParam::new("Fixed key", 0, IntRange::Linear { min: 0, max: 23 })
                .with_value_to_string(Arc::new(|i| {
                    Key::from_index(i.clamp(0, 23) as usize).name()
                }))
                .with_string_to_value(Arc::new(|s| {
                    crate::music::parse::parse_key(s).map(|k| k.index() as i32)
                })),
            low: IntParam::new("Lowest note", 36, IntRange::Linear { min: 0, max: 127 })
                .with_value_to_string(formatters::v2s_i32_key_formatter())
                .with_string_to_value(formatters::s2v_i32_key_formatter()),
            high: IntParam::new("Highest note", 96, IntRange::Linear { min: 0, max: 127 })
                .with_value_to_string(formatters::v2s_i32_key_formatter())
                .with_string_to_value(formatters::s2v_i32_key_formatter()),
            seed: IntParam::new("Variation seed", 1, IntRange::Linear { min: 0, max: 9999 }),
            polyphony: texture_param("Polyphony", &POLYPHONY_NAMES),
            density: texture_param("Density", &DENSITY_NAMES),
            register: texture_param("Register", &REGISTER_NAMES),
            rhythm: EnumParam::new("Rhythm", RhythmMode::Free),
            variation: EnumParam::new("Variation", VariationMode::Develop),
            candidates: IntParam::new(
                "Candidates",
                DEFAULT_CANDIDATES as i32,
                IntRange::Linear {
                    min: 1,
                    max: MAX_CANDIDATES as i32,
                },
            ),
            session: Arc::new(Mutex::new(SessionState::default())),
            editor_state: default_editor_state(),
        }
    }
}

impl ContinuoParams {
    /// The generation settings now (read on the audio thread: atomics only).
    pub fn generation_settings(&self) -> GenerationSettings {
        GenerationSettings {
            bars: self.bars.value().clamp(1, 16) as u32,
            temperature: self.temperature.value(),
            top_p: self.top_p.value(),
            seed: self.seed.value().max(0) as u64,
            key_lock: match self.key_lock.value() {
                KeyLockMode::Off => KeyLock::Off,
                KeyLockMode::FromPrimer => KeyLock::FromPrimer,
                KeyLockMode::Fixed => KeyLock::Fixed(self.key.value().clamp(0, 23) as u8),
            },
            low: self.low.value().clamp(0, 127) as u8,
            high: self.high.value().clamp(0, 127) as u8,
            texture: TextureRequest {
                polyphony: told(self.polyphony.value()),
                density: told(self.density.value()),
                register: told(self.register.value()),
            },
            rhythm: match self.rhythm.value() {
                RhythmMode::Free => Rhythm::Free,
                RhythmMode::LikePrimer => Rhythm::LikePrimer,
            },
            variation: match self.variation.value() {
                VariationMode::Loop => Variation::Loop,
                VariationMode::Develop => Variation::Develop,
                VariationMode::New => Variation::New,
            },
            candidates: self.candidates.value().clamp(1, MAX_CANDIDATES as i32) as u8,
        }
    }
}

/// A texture parameter's value as a request: 0 is "Like primer", `i` is bin `i - 1`.
fn told(value: i32) -> Told {
    match value {
        i if i <= 0 => Told::LikePrimer,
        i => Told::Bin((i - 1) as u8),
    }
}

/// A parameter over "Like primer" and the bins `names` of a texture attribute.
fn texture_param(name: &str, names: &'static [&'static str]) -> IntParam {
    IntParam::new(
        name,
        0,
        IntRange::Linear {
            min: 0,
            max: names.len() as i32,
        },
    )
    .with_value_to_string(Arc::new(move |i| match i {
        i if i <= 0 => "Like primer".to_string(),
        i => names[(i as usize - 1).min(names.len() - 1)].to_string(),
    }))
    .with_string_to_value(Arc::new(move |s| match Told::parse(s, names)? {
        Told::Bin(b) => Some(b as i32 + 1),
        _ => Some(0),
    }))
}

/// The editor window's size when it first opens, in logical pixels. Here, with the state it
/// starts, because the parameters own the editor's state (the editor reads the parameters,
/// never the other way).
const EDITOR_SIZE: (f32, f32) = (720.0, 460.0);

fn default_editor_state() -> Arc<nice_plug_egui::EguiEditorState> {
    let (width, height) = EDITOR_SIZE;
    nice_plug_egui::EguiEditorState::from_size(
        nice_plug::editor::dpi::LogicalSize::new(width, height),
        1.0,
    )
}
