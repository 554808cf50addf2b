//! Training and evaluation on a folder of MIDI files.

pub mod baselines;
pub mod card_text;
pub mod continuation_eval;
pub mod continuation_set;
pub mod copy;
pub mod dataset;
pub mod eval;
pub mod in_kind_eval;
pub mod infill_eval;
pub mod optim;
pub mod seeded_init;
pub mod trainer;
pub mod warm_start;

pub use dataset::{load_corpus, Corpus, Piece, Skipped};
pub use trainer::{train, BaseMix, TrainOptions, TrainReport};
