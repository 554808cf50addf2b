//! Continuo: a MIDI effect that answers what you play with a continuation from a small
//! neural network. The library holds the engine (MIDI files, tokens, models, training) used
//! by both the `continuo` command and the plugin.

pub mod device;
pub mod editor;
pub mod midi_file;
pub mod model;
pub mod music;
pub mod note_runs;
pub mod plot;
pub mod tokens;
pub mod train;

pub mod allocator;
pub mod answer_bench;
pub mod audio;
pub mod bench;
pub mod logging;
pub mod params;
pub mod plugin;
pub mod shared;
pub mod worker;

nice_plug::nice_export_clap!(plugin::Continuo);
nice_plug::nice_export_vst3!(plugin::Continuo);
