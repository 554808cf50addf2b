//! Pure music logic: notes and phrases in beats, key detection, scales, texture.
//! No I/O and no candle here, so the CLI, the trainer and the plugin share it.

pub mod coherence;
pub mod in_kind;
pub mod key;
pub mod metrics;
pub mod parse;
pub mod phrase;
pub mod texture;
pub mod variation;

pub use key::{detect_key, Key, Mode};
pub use phrase::{Note, Phrase};
pub use texture::{Texture, TextureBins};
