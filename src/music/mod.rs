//! Pure music logic: notes and phrases in beats, key detection, scales.
//! No I/O and no candle here, so the CLI, the trainer and the plugin share it.

pub mod key;
pub mod metrics;
pub mod parse;
pub mod phrase;

pub use key::{detect_key, Key, Mode};
pub use phrase::{Note, Phrase};
