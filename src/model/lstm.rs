//! The seeds' architecture as a baseline: embedding → stacked LSTM → linear head.

use candle_core::{Module, Result, Tensor};
use candle_nn::rnn::{LSTMConfig, LSTMState, LSTM, RNN};
use candle_nn::{embedding, linear, Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub d_embed: usize,
    pub hidden: usize,
    pub n_layers: usize,
}

pub struct Lstm {
    tokens: Embedding,
    layers: Vec<LSTM>,
    head: Linear,
}

/// Hidden and cell state of every layer.
#[derive(Clone, Default)]
pub struct LstmCache {
    states: Vec<LSTMState>,
}

impl LstmCache {
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

impl Lstm {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let input = if i == 0 { cfg.d_embed } else { cfg.hidden };
            let c = LSTMConfig {
                layer_idx: i,
                ..Default::default()
            };
            layers.push(candle_nn::rnn::lstm(input, cfg.hidden, c, vb.pp("lstm"))?);
        }
        Ok(Self {
            tokens: embedding(cfg.vocab_size, cfg.d_embed, vb.pp("tokens"))?,
            layers,
            head: linear(cfg.hidden, cfg.vocab_size, vb.pp("head"))?,
        })
    }

    /// Rows of the token table (and of the output).
    pub fn vocab_size(&self) -> usize {
        self.tokens.embeddings().dims()[0]
    }

    /// Logits for every position of `ids` (batch, time) → (batch, time, vocab).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut x = self.tokens.forward(ids)?;
        for layer in &self.layers {
            let states = layer.seq(&x)?;
            x = layer.states_to_tensor(&states)?;
        }
        self.head.forward(&x)
    }

    /// Feeds `ids` (batch, time) after the cached state; logits of the last position.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut LstmCache) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if cache.states.is_empty() {
            cache.states = self
                .layers
                .iter()
                .map(|l| l.zero_state(b))
                .collect::<Result<_>>()?;
        }
        let emb = self.tokens.forward(ids)?;
        let mut last = None;
        for step in 0..t {
            let mut x = emb.narrow(1, step, 1)?.squeeze(1)?;
            for (layer, state) in self.layers.iter().zip(cache.states.iter_mut()) {
                *state = layer.step(&x, state)?;
                x = state.h.clone();
            }
            last = Some(x);
        }
        match last {
            Some(h) => self.head.forward(&h),
            None => candle_core::bail!("forward_cached needs at least one token"),
        }
    }
}

pub fn parameter_count(cfg: &Config) -> usize {
    let mut n = cfg.vocab_size * cfg.d_embed + cfg.hidden * cfg.vocab_size + cfg.vocab_size;
    for i in 0..cfg.n_layers {
        let input = if i == 0 { cfg.d_embed } else { cfg.hidden };
        n += 4 * cfg.hidden * (input + cfg.hidden) + 8 * cfg.hidden;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    #[test]
    fn stepping_with_the_cache_matches_the_full_forward() {
        let dev = Device::Cpu;
        let cfg = Config {
            vocab_size: 23,
            d_embed: 8,
            hidden: 16,
            n_layers: 2,
        };
        let vm = VarMap::new();
        let model = Lstm::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let ids: Vec<u32> = (0..20u32).map(|i| (i * 5 + 1) % 23).collect();
        let ids = Tensor::from_vec(ids, (2, 10), &dev).unwrap();
        let full = model.forward(&ids).unwrap();
        let mut cache = LstmCache::default();
        let mut got = vec![model
            .forward_cached(&ids.i((.., ..4)).unwrap(), &mut cache)
            .unwrap()];
        for t in 4..10 {
            got.push(
                model
                    .forward_cached(&ids.i((.., t..t + 1)).unwrap(), &mut cache)
                    .unwrap(),
            );
        }
        for (logits, t) in got.iter().zip(3..10) {
            let err = crate::model::max_abs_diff(logits, &full.i((.., t)).unwrap());
            assert!(err < 1e-5, "position {t}: max abs difference {err}");
        }
    }
}
