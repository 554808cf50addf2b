//! Next-token models over the event vocabulary (candle), their files on disk, and sampling.

pub mod answer;
mod attention;
pub mod candidates;
pub mod copy_guard;
pub mod decode;
pub use decode::StepPrecision;
pub mod files;
mod fused_block;
pub mod lstm;
mod matmul;
pub mod ops;
mod phases;
mod prefill;
mod prefill_products;
mod row_math;
pub mod sampler;
mod smeared_keys;
mod spare_buffers;
pub mod steering;
mod step_products;
pub mod transformer;
pub mod variation;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use answer::{generate, generate_streaming, generate_with};
pub use files::{load_model, save_model, LoadedModel, ModelCard, ModelError};
pub use sampler::{GenerateOptions, Generated, KeyPrefix, StreamedNote};

/// Largest size of any dimension a model folder may name (layers, heads, widths, context).
pub const MAX_DIMENSION: usize = 1 << 16;

/// Which architecture and its size; stored in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum Architecture {
    Transformer(transformer::Config),
    Lstm(lstm::Config),
}

impl Architecture {
    pub fn vocab_size(&self) -> usize {
        match self {
            Architecture::Transformer(c) => c.vocab_size,
            Architecture::Lstm(c) => c.vocab_size,
        }
    }

    /// Sizes a model can be built with: every size above zero, heads that divide the width.
    /// A `config.json` that breaks one is refused with the field's name, before any weights
    /// are read (a zero head count would divide by zero deep in the model).
    pub fn check(&self) -> std::result::Result<(), String> {
        let positive: Vec<(&str, usize)> = match self {
            Architecture::Transformer(c) => vec![
                ("vocab_size", c.vocab_size),
                ("d_model", c.d_model),
                ("n_layers", c.n_layers),
                ("n_heads", c.n_heads),
                ("d_ff", c.d_ff),
                ("max_seq_len", c.max_seq_len),
            ],
            Architecture::Lstm(c) => vec![
                ("vocab_size", c.vocab_size),
                ("d_embed", c.d_embed),
                ("hidden", c.hidden),
                ("n_layers", c.n_layers),
            ],
        };
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("\"{name}\" is 0; it must be at least 1"));
        }
        // A size no model of this kind has would only make loading allocate without bound.
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v > MAX_DIMENSION) {
            return Err(format!(
                "\"{name}\" is {v}; Continuo loads sizes of at most {MAX_DIMENSION}"
            ));
        }
        if let Architecture::Transformer(c) = self {
            if c.d_model % c.n_heads != 0 {
                return Err(format!(
                    "\"n_heads\" {} does not divide \"d_model\" {}",
                    c.n_heads, c.d_model
                ));
            }
        }
        Ok(())
    }

    pub fn parameter_count(&self) -> usize {
        match self {
            Architecture::Transformer(c) => transformer::parameter_count(c),
            Architecture::Lstm(c) => lstm::parameter_count(c),
        }
    }

    /// Longest context the model can attend to at once (unbounded for the LSTM).
    pub fn max_context(&self) -> Option<usize> {
        match self {
            Architecture::Transformer(c) => Some(c.max_seq_len),
            Architecture::Lstm(_) => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Architecture::Transformer(c) => format!(
                "transformer {} layers, d{}, {} heads, ff {}, ctx {}",
                c.n_layers, c.d_model, c.n_heads, c.d_ff, c.max_seq_len
            ),
            Architecture::Lstm(c) => {
                format!("LSTM {}×{}, embed {}", c.n_layers, c.hidden, c.d_embed)
            }
        }
    }
}

/// A model of either architecture.
pub enum Model {
    Transformer(transformer::Transformer),
    Lstm(lstm::Lstm),
}

/// What a model remembers of the tokens it has been fed.
pub enum DecodeCache {
    Transformer(transformer::KvCache),
    Lstm(lstm::LstmCache),
}

impl Model {
    pub fn new(arch: &Architecture, vb: VarBuilder) -> Result<Self> {
        Ok(match arch {
            Architecture::Transformer(c) => {
                Model::Transformer(transformer::Transformer::new(c, vb)?)
            }
            Architecture::Lstm(c) => Model::Lstm(lstm::Lstm::new(c, vb)?),
        })
    }

    /// Logits for every position: (batch, time) → (batch, time, vocab).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Model::Transformer(m) => m.forward(ids),
            Model::Lstm(m) => m.forward(ids),
        }
    }

    /// Token ids the model reads and scores (fewer than [`crate::tokens::Vocab::size`] for
    /// a model of an older vocabulary that this one extends).
    pub fn vocab_size(&self) -> usize {
        match self {
            Model::Transformer(m) => m.config().vocab_size,
            Model::Lstm(m) => m.vocab_size(),
        }
    }

    pub fn new_cache(&self) -> DecodeCache {
        match self {
            Model::Transformer(_) => DecodeCache::Transformer(Default::default()),
            Model::Lstm(_) => DecodeCache::Lstm(Default::default()),
        }
    }

    /// What cached decoding steps read their weight matrices in (transformer only; the LSTM
    /// decodes through candle in f32).
    pub fn set_step_precision(&mut self, precision: decode::StepPrecision) {
        if let Model::Transformer(m) = self {
            m.set_step_precision(precision);
        }
    }

    /// Positions the cache holds beyond which the model cannot go (transformer only).
    pub fn max_context(&self) -> Option<usize> {
        match self {
            Model::Transformer(m) => Some(m.config().max_seq_len),
            Model::Lstm(_) => None,
        }
    }

    /// Feeds `ids` (batch, time) after what the cache holds; logits of the last position.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut DecodeCache) -> Result<Tensor> {
        match (self, cache) {
            (Model::Transformer(m), DecodeCache::Transformer(c)) => m.forward_cached(ids, c),
            (Model::Lstm(m), DecodeCache::Lstm(c)) => m.forward_cached(ids, c),
            _ => candle_core::bail!("decode cache belongs to another architecture"),
        }
    }

    /// [`Model::forward_cached`] for a step of one token per row: the transformer's step runs
    /// on the calling thread and the steps' helper thread (`phases.rs`).
    pub fn decode_step(&self, ids: &Tensor, cache: &mut DecodeCache) -> Result<Tensor> {
        self.forward_cached(ids, cache)
    }

    /// Logits of the last position of `ids` without any cache (re-reads the whole context).
    pub fn forward_last(&self, ids: &Tensor) -> Result<Tensor> {
        let logits = self.forward(ids)?;
        let t = logits.dim(1)?;
        logits.narrow(1, t - 1, 1)?.squeeze(1)
    }
}

/// Frees the large buffers that finished prefills and caches keep for the next answer
/// (`spare_buffers.rs`, up to 64 MiB). The worker calls it as it ends: a plugin instance once
/// closed leaves none of them behind, and the next answer only allocates afresh.
pub fn release_spare_buffers() {
    spare_buffers::SPARE.release();
}

/// Largest absolute difference between two tensors of one shape (the models' tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("tensors of one shape")
}

impl DecodeCache {
    /// Positions held (transformer); `None` for the LSTM, whose state has no length.
    pub fn positions(&self) -> Option<usize> {
        match self {
            DecodeCache::Transformer(c) => Some(c.len()),
            DecodeCache::Lstm(_) => None,
        }
    }

    /// Sequence `row` is finished: steps after this may leave it out, its logits then
    /// meaningless (the transformer's CPU steps do; the LSTM computes every row).
    pub fn finish(&mut self, row: usize) {
        if let DecodeCache::Transformer(c) = self {
            c.finish(row);
        }
    }
}
