//! A small decoder-only transformer over the event vocabulary, with a KV cache.
//!
//! Pre-norm blocks (LayerNorm → causal self-attention → LayerNorm → GELU MLP), learned
//! absolute positions, output head tied to the token embedding; optionally smeared keys
//! (`smeared_keys.rs`).

use super::decode::{BlockWeights, DecodeWeights, Dense, FastCache, StepPrecision};
use super::{fused_block, ops, smeared_keys};
use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    /// Longest context the position table covers; decoding slides a window past it.
    pub max_seq_len: usize,
    /// Each attention key mixed with the previous position's (`smeared_keys.rs`); absent
    /// from the configs of models made before it (v4 and older), which do not smear.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smeared_keys: bool,
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(size: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    fn values(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.weight.to_vec1()?, self.bias.to_vec1()?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias)
    }
}

/// Keys and values of every past position, per layer, in buffers of (batch, heads,
/// max_seq_len, head_dim) allocated once: each step writes its row in place instead of
/// concatenating (which copied the whole cache and allocated a new one every token). On the
/// CPU with the fused kernels on, the prefill and every step use a [`FastCache`] instead;
/// candle's buffers serve the other devices and the composition the tests compare against.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    fast: Option<Box<FastCache>>,
}

struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
    /// The last position's key before its smear, (batch, heads, 1, head_dim).
    last_raw_key: Option<Tensor>,
}

impl LayerCache {
    /// Appends `k`, `v` (batch, heads, t, head_dim); returns every position held so far.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        self.k.slice_set(k, 2, self.len)?;
        self.v.slice_set(v, 2, self.len)?;
        self.len += k.dim(2)?;
        Ok((
            self.k.narrow(2, 0, self.len)?,
            self.v.narrow(2, 0, self.len)?,
        ))
    }
}

impl KvCache {
    /// Positions already held.
    pub fn len(&self) -> usize {
        if let Some(f) = &self.fast {
            return f.len();
        }
        match self.layers.first() {
            Some(Some(c)) => c.len,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence `row` is finished: the CPU's steps leave it out from now on (candle's
    /// path, which computes every row, ignores this).
    pub fn finish(&mut self, row: usize) {
        if let Some(f) = &mut self.fast {
            f.finish(row);
        }
    }
}

struct Attention {
    qkv: Linear,
    out: Linear,
    /// The keys' smear, one value per key channel; zeros (not a weight) when the model does
    /// not smear, so that the fused block has one layout.
    key_smear: Tensor,
    smeared: bool,
    n_heads: usize,
    head_dim: usize,
    max_seq_len: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let key_smear = if cfg.smeared_keys {
            vb.get_with_hints(cfg.d_model, "key_smear", candle_nn::Init::Const(0.0))?
        } else {
            Tensor::zeros(cfg.d_model, candle_core::DType::F32, vb.device())?
        };
        Ok(Self {
            key_smear,
            smeared: cfg.smeared_keys,
            qkv: linear(cfg.d_model, 3 * cfg.d_model, vb.pp("qkv"))?,
            max_seq_len: cfg.max_seq_len,
            out: linear(cfg.d_model, cfg.d_model, vb.pp("out"))?,
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
        })
    }

    fn forward(&self, x: &Tensor, cache: Option<&mut Option<LayerCache>>) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let qkv = ops::linear(x, &self.qkv)?
            .reshape((b, t, 3, self.n_heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let raw_k = qkv.get(1)?.contiguous()?;
        let mut v = qkv.get(2)?.contiguous()?;
        let mut k = raw_k.clone();
        match cache {
            Some(slot) => {
                let c = match slot {
                    Some(c) => c,
                    None => {
                        let shape = (b, self.n_heads, self.max_seq_len, self.head_dim);
                        slot.insert(LayerCache {
                            k: Tensor::zeros(shape, k.dtype(), k.device())?,
                            v: Tensor::zeros(shape, v.dtype(), v.device())?,
                            len: 0,
                            last_raw_key: None,
                        })
                    }
                };
                if self.smeared {
                    k = smeared_keys::smear(&raw_k, &self.key_smear, c.last_raw_key.as_ref())?;
                    c.last_raw_key = Some(raw_k.narrow(2, t - 1, 1)?);
                }
                (k, v) = c.append(&k, &v)?;
            }
            None if self.smeared => k = smeared_keys::smear(&raw_k, &self.key_smear, None)?,
            None => {}
        }
        let y = ops::causal_attention(&q, &k, &v)?;
        let y = y.transpose(1, 2)?.reshape((b, t, d))?;
        ops::linear(&y, &self.out)
    }
}

struct Mlp {
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            up: linear(cfg.d_model, cfg.d_ff, vb.pp("up"))?,
            down: linear(cfg.d_ff, cfg.d_model, vb.pp("down"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear(&ops::gelu(&ops::linear(x, &self.up)?)?, &self.down)
    }
}

struct Block {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    mlp: Mlp,
}

/// A linear layer's bias; every layer of a block has one.
fn bias_of(l: &Linear) -> Result<&Tensor> {
    l.bias()
        .ok_or_else(|| candle_core::Error::Msg("a block's linear layer has no bias".into()))
}

impl Block {
    /// The thirteen tensors in the order `fused_block` reads them.
    fn params(&self) -> Result<[&Tensor; 13]> {
        let (a, m) = (&self.attn, &self.mlp);
        Ok([
            &self.ln1.weight,
            &self.ln1.bias,
            a.qkv.weight(),
            bias_of(&a.qkv)?,
            a.out.weight(),
            bias_of(&a.out)?,
            &self.ln2.weight,
            &self.ln2.bias,
            m.up.weight(),
            bias_of(&m.up)?,
            m.down.weight(),
            bias_of(&m.down)?,
            &a.key_smear,
        ])
    }

    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            ln1: LayerNorm::new(cfg.d_model, vb.pp("ln1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            ln2: LayerNorm::new(cfg.d_model, vb.pp("ln2"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, x: &Tensor, cache: Option<&mut Option<LayerCache>>) -> Result<Tensor> {
        if cache.is_none() && ops::fused_on(x) {
            return fused_block::forward(x, &self.params()?, self.attn.n_heads);
        }
        let x = (x + self.attn.forward(&self.ln1.forward(x)?, cache)?)?;
        &x + self.mlp.forward(&self.ln2.forward(&x)?)?
    }
}

pub struct Transformer {
    tokens: Embedding,
    positions: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    cfg: Config,
    /// The weights as the prefill and the decoding steps read them, copied at the first
    /// prefill. A model being trained never decodes (training and its evaluations run whole
    /// windows), so the copy cannot go stale.
    decode_weights: OnceLock<Box<DecodeWeights>>,
    /// What the decoding steps read their matrices in.
    step_precision: StepPrecision,
}

/// A `Linear`'s weight (out, in) row-major and its bias.
fn linear_values(l: &Linear) -> Result<(Vec<f32>, Vec<f32>)> {
    let bias = match l.bias() {
        Some(b) => b.to_vec1()?,
        None => Vec::new(),
    };
    Ok((l.weight().flatten_all()?.to_vec1()?, bias))
}

impl Transformer {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..cfg.n_layers)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            tokens: small_embedding(cfg.vocab_size, cfg.d_model, vb.pp("tokens"))?,
            positions: small_embedding(cfg.max_seq_len, cfg.d_model, vb.pp("positions"))?,
            blocks,
            ln_f: LayerNorm::new(cfg.d_model, vb.pp("ln_f"))?,
            cfg: cfg.clone(),
            decode_weights: OnceLock::new(),
            step_precision: StepPrecision::default(),
        })
    }

    /// Sets what the decoding steps read their matrices in (i8 unless told); the copy for
    /// decoding is made again at the next prefill.
    pub fn set_step_precision(&mut self, precision: StepPrecision) {
        self.step_precision = precision;
        self.decode_weights = OnceLock::new();
    }

    fn decode_weights(&self) -> Result<&DecodeWeights> {
        if let Some(w) = self.decode_weights.get() {
            return Ok(w);
        }
        let dense = |l: &Linear| -> Result<Dense> {
            let inp = l.weight().dim(1)?;
            Ok(Dense::new(linear_values(l)?, inp, self.step_precision))
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                Ok(BlockWeights {
                    ln1: b.ln1.values()?,
                    qkv: dense(&b.attn.qkv)?,
                    out: dense(&b.attn.out)?,
                    ln2: b.ln2.values()?,
                    up: dense(&b.mlp.up)?,
                    down: dense(&b.mlp.down)?,
                    key_smear: if b.attn.smeared {
                        b.attn.key_smear.to_vec1()?
                    } else {
                        Vec::new()
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let w = DecodeWeights {
            d_model: self.cfg.d_model,
            n_heads: self.cfg.n_heads,
            d_ff: self.cfg.d_ff,
            vocab: self.cfg.vocab_size,
            max_seq_len: self.cfg.max_seq_len,
            tokens: Dense::new(
                (
                    self.tokens.embeddings().flatten_all()?.to_vec1()?,
                    Vec::new(),
                ),
                self.cfg.d_model,
                self.step_precision,
            ),
            positions: self.positions.embeddings().flatten_all()?.to_vec1()?,
            blocks,
            ln_f: self.ln_f.values()?,
        };
        Ok(self.decode_weights.get_or_init(|| Box::new(w)))
    }

    /// Cached decoding on [`FastCache`] on the CPU: a prefill from an empty cache
    /// (`prefill.rs`), then one token per sequence at a time; `None` where candle's ops must
    /// run (another device, fused kernels turned off to test against the composition, or a
    /// cache candle's ops already wrote).
    fn fast_steps(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Option<Tensor>> {
        let (b, t) = ids.dims2()?;
        let written_by_candle = cache.layers.iter().any(Option::is_some);
        if !ops::fused_on(self.tokens.embeddings()) || written_by_candle {
            return Ok(None);
        }
        let w = self.decode_weights()?;
        let device = self.tokens.embeddings().device();
        let Some(fast) = cache.fast.as_mut() else {
            let flat = ids.flatten_all()?.to_vec1::<u32>()?;
            let (fast, logits) = w.prefill(&flat, b)?;
            cache.fast = Some(Box::new(fast));
            return Tensor::from_vec(logits, (b, self.cfg.vocab_size), device).map(Some);
        };
        if fast.batch() != b {
            candle_core::bail!("{b} sequences fed to a cache of {}", fast.batch());
        }
        let ids = ids.to_vec2::<u32>()?;
        let mut logits = Vec::new();
        for step in 0..t {
            let next: Vec<u32> = ids.iter().map(|row| row[step]).collect();
            logits = w.step(fast, &next)?;
        }
        Tensor::from_vec(logits, (b, self.cfg.vocab_size), device).map(Some)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Logits for every position of `ids` (batch, time) → (batch, time, vocab), no cache.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let h = self.hidden(ids, 0, None)?;
        self.head(&h)
    }

    /// Feeds `ids` (batch, time) after what `cache` holds; logits of the last position (batch, vocab).
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        if let Some(logits) = self.fast_steps(ids, cache)? {
            return Ok(logits);
        }
        if cache.fast.is_some() {
            candle_core::bail!("this cache moved to decoding steps on the CPU");
        }
        if cache.layers.len() != self.blocks.len() {
            cache.layers = (0..self.blocks.len()).map(|_| None).collect();
        }
        let offset = cache.len();
        let h = self.hidden(ids, offset, Some(cache))?;
        let t = h.dim(1)?;
        self.head(&h.narrow(1, t - 1, 1)?)?.squeeze(1)
    }

    fn hidden(
        &self,
        ids: &Tensor,
        offset: usize,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if offset + t > self.cfg.max_seq_len {
            candle_core::bail!(
                "context {} exceeds the model's {} positions",
                offset + t,
                self.cfg.max_seq_len
            );
        }
        let pos = Tensor::arange(offset as u32, (offset + t) as u32, ids.device())?;
        let mut x = self
            .tokens
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&pos)?)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = block.forward(&x, slot)?;
        }
        self.ln_f.forward(&x)
    }

    fn head(&self, h: &Tensor) -> Result<Tensor> {
        let (b, t, d) = h.dims3()?;
        let logits = h
            .reshape((b * t, d))?
            .matmul(&self.tokens.embeddings().t()?)?;
        logits.reshape((b, t, self.cfg.vocab_size))
    }
}

/// An embedding initialised small (σ = 0.02, as GPT-2): the output head is tied to it, and
/// candle's default σ = 1 would start training from huge logits.
fn small_embedding(n: usize, d: usize, vb: VarBuilder) -> Result<Embedding> {
    let init = candle_nn::Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    };
    Ok(Embedding::new(
        vb.get_with_hints((n, d), "weight", init)?,
        d,
    ))
}

/// Parameter count of a configuration (what `VarMap` would hold).
pub fn parameter_count(cfg: &Config) -> usize {
    let d = cfg.d_model;
    let block = 2 * 2 * d
        + (d * 3 * d + 3 * d)
        + (d * d + d)
        + (d * cfg.d_ff + cfg.d_ff)
        + (cfg.d_ff * d + d)
        + if cfg.smeared_keys { d } else { 0 };
    cfg.vocab_size * d + cfg.max_seq_len * d + cfg.n_layers * block + 2 * d
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    /// A randomly initialised model: 2 blocks, d 32, 4 heads; its decoding steps read the
    /// f32 weights, so they compute what the full forward does.
    fn small_model(vocab_size: usize, max_seq_len: usize) -> Transformer {
        model_of(&Config {
            vocab_size,
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            d_ff: 64,
            max_seq_len,
            smeared_keys: true,
        })
    }

    /// A randomly initialised model of `cfg` whose steps read the f32 weights.
    fn model_of(cfg: &Config) -> Transformer {
        let vm = VarMap::new();
        let mut m =
            Transformer::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        // The smear starts at zero, where a cache that smeared wrongly would still agree.
        set_key_smears(&vm);
        m.set_step_precision(StepPrecision::F32);
        m
    }

    /// Every block's key smear set to values far from zero, both signs.
    fn set_key_smears(vm: &VarMap) {
        for (name, var) in vm.data().lock().unwrap().iter() {
            if name.ends_with("key_smear") {
                let n = var.elem_count();
                let v: Vec<f32> = (0..n).map(|i| ((i * 5) % 9) as f32 * 0.2 - 0.7).collect();
                var.set(&Tensor::from_vec(v, n, &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
    }

    /// A prefill of the first `prefill` positions of `ids` (batch, time), then one position at
    /// a time to the end; asserts each step's logits equal the full forward's at its position.
    fn assert_cached_decoding_matches(
        model: &Transformer,
        ids: &Tensor,
        prefill: usize,
    ) -> KvCache {
        assert_cached_decoding_within(model, ids, prefill, 1e-4).0
    }

    /// [`assert_cached_decoding_matches`] within `tolerance`; also the largest difference.
    fn assert_cached_decoding_within(
        model: &Transformer,
        ids: &Tensor,
        prefill: usize,
        tolerance: f32,
    ) -> (KvCache, f32) {
        let full = model.forward(ids).unwrap();
        let mut cache = KvCache::default();
        let first = model
            .forward_cached(&ids.i((.., ..prefill)).unwrap(), &mut cache)
            .unwrap();
        let mut rows = vec![(prefill - 1, first)];
        for t in prefill..ids.dim(1).unwrap() {
            let logits = model
                .forward_cached(&ids.i((.., t..t + 1)).unwrap(), &mut cache)
                .unwrap();
            rows.push((t, logits));
        }
        assert!(
            cache.fast.is_some(),
            "the prefill and steps ran on FastCache"
        );
        let mut largest = 0f32;
        for (t, cached) in rows {
            let err = crate::model::max_abs_diff(&cached, &full.i((.., t)).unwrap());
            assert!(err < tolerance, "position {t}: max abs difference {err}");
            largest = largest.max(err);
        }
        (cache, largest)
    }

    #[test]
    fn steps_reading_f16_weights_stay_within_their_rounding() {
        let mut model = small_model(31, 40);
        model.set_step_precision(StepPrecision::F16);
        let ids: Vec<u32> = (0..80u32).map(|i| (i * 7 + 3) % 31).collect();
        let ids = Tensor::from_vec(ids, (2, 40), &Device::Cpu).unwrap();
        // The prefill reads f32 (its logits are exact); the steps read the rounded weights:
        // logits of order 1 move by a few thousandths, not more.
        let (_, largest) = assert_cached_decoding_within(&model, &ids, 5, 1e-2);
        assert!(largest > 1e-6, "the steps read the f16 copy");
    }

    #[test]
    fn steps_reading_i8_weights_stay_within_their_rounding() {
        let mut model = small_model(31, 40);
        model.set_step_precision(StepPrecision::I8);
        let ids: Vec<u32> = (0..80u32).map(|i| (i * 7 + 3) % 31).collect();
        let ids = Tensor::from_vec(ids, (2, 40), &Device::Cpu).unwrap();
        // One part in 254 of each row's largest weight: logits of order 1 move by a few
        // hundredths at most.
        let (_, largest) = assert_cached_decoding_within(&model, &ids, 5, 5e-2);
        assert!(largest > 1e-5, "the steps read the i8 copy");
    }

    #[test]
    fn steps_on_two_threads_are_bit_for_bit_steps_on_one() {
        // On two threads every product splits its outputs (d 64: the q/k/v product has 192
        // outputs, the MLP's first 256, the head 200) and LayerNorm and attention their rows.
        let mut model = model_of(&Config {
            vocab_size: 200,
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            d_ff: 256,
            max_seq_len: 40,
            smeared_keys: true,
        });
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (one, two) = (pool(1), pool(2));
        // Five different sequences: the products take rows 0–3 as a block of four and row 4
        // alone, attention splits the heads; and one sequence alone.
        for precision in StepPrecision::ALL {
            model.set_step_precision(precision);
            for batch in [5, 1] {
                let ids: Vec<u32> = (0..batch as u32 * 20)
                    .map(|i| (i * 7 + i / 3) % 200)
                    .collect();
                let ids = Tensor::from_vec(ids, (batch, 20), &Device::Cpu).unwrap();
                let prompt = ids.i((.., ..6)).unwrap();
                let (mut alone, mut split) = (KvCache::default(), KvCache::default());
                two.install(|| model.forward_cached(&prompt, &mut alone))
                    .unwrap();
                two.install(|| model.forward_cached(&prompt, &mut split))
                    .unwrap();
                for t in 6..20 {
                    let next = ids.i((.., t..t + 1)).unwrap();
                    let a = one.install(|| model.forward_cached(&next, &mut alone));
                    let b = two.install(|| model.forward_cached(&next, &mut split));
                    let (a, b) = (a.unwrap(), b.unwrap());
                    assert_eq!(
                        a.to_vec2::<f32>().unwrap(),
                        b.to_vec2::<f32>().unwrap(),
                        "{precision:?}, batch {batch}, position {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn candidates_reading_one_shared_prompt_decode_as_each_would_alone() {
        let model = small_model(31, 40);
        // Three rows of one prompt (its keys and values held once), then different tokens.
        let prompt: Vec<u32> = (0..9u32).map(|i| (i * 5 + 2) % 31).collect();
        let tails: Vec<Vec<u32>> = (0..3u32)
            .map(|r| (0..12u32).map(|i| (i * 3 + r * 11 + 1) % 31).collect())
            .collect();
        let run = |rows: &[&Vec<u32>]| -> Vec<Vec<Vec<f32>>> {
            let b = rows.len();
            let ids: Vec<u32> = (0..b).flat_map(|_| prompt.iter().copied()).collect();
            let mut cache = KvCache::default();
            let first = model
                .forward_cached(
                    &Tensor::from_vec(ids, (b, 9), &Device::Cpu).unwrap(),
                    &mut cache,
                )
                .unwrap();
            let mut out = vec![first.to_vec2::<f32>().unwrap()];
            for t in 0..12 {
                let next: Vec<u32> = rows.iter().map(|r| r[t]).collect();
                let next = Tensor::from_vec(next, (b, 1), &Device::Cpu).unwrap();
                let logits = model.forward_cached(&next, &mut cache).unwrap();
                out.push(logits.to_vec2::<f32>().unwrap());
            }
            out
        };
        let together = run(&tails.iter().collect::<Vec<_>>());
        for (r, tail) in tails.iter().enumerate() {
            let alone = run(&[tail]);
            for (t, (a, b)) in alone.iter().zip(&together).enumerate() {
                assert_eq!(a[0], b[r], "row {r}, step {t}");
            }
        }
    }

    #[test]
    fn finished_sequences_leave_the_others_as_they_were() {
        let model = small_model(31, 40);
        // Five different sequences (the products take a block of four and one alone); rows
        // 1 and 3 finish along the way, leaving blocks of three, then two and one alone.
        let ids: Vec<u32> = (0..5 * 20u32).map(|i| (i * 7 + i / 3) % 31).collect();
        let ids = Tensor::from_vec(ids, (5, 20), &Device::Cpu).unwrap();
        let prompt = ids.i((.., ..6)).unwrap();
        let (mut all, mut some) = (KvCache::default(), KvCache::default());
        model.forward_cached(&prompt, &mut all).unwrap();
        model.forward_cached(&prompt, &mut some).unwrap();
        for t in 6..20 {
            let finished: &[usize] = match t {
                6..=9 => &[],
                10..=14 => &[3],
                _ => &[3, 1],
            };
            finished.iter().for_each(|&r| some.finish(r));
            let next = ids.i((.., t..t + 1)).unwrap();
            let a = model.forward_cached(&next, &mut all).unwrap();
            let b = model.forward_cached(&next, &mut some).unwrap();
            let (a, b) = (a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
            for r in 0..5 {
                if finished.contains(&r) {
                    assert!(b[r].iter().all(|&v| v == 0.0), "row {r} is left out");
                } else {
                    assert_eq!(a[r], b[r], "row {r}, position {t}");
                }
            }
        }
    }

    #[test]
    fn cached_decoding_matches_the_full_forward_up_to_the_last_position() {
        let model = small_model(31, 12);
        let ids: Vec<u32> = (0..24u32).map(|i| (i * 7 + 3) % 31).collect();
        let ids = Tensor::from_vec(ids, (2, 12), &Device::Cpu).unwrap();
        // A prefill of 5 positions, then one position at a time until the table is full.
        let mut cache = assert_cached_decoding_matches(&model, &ids, 5);
        assert_eq!(cache.len(), 12);
        // One more position does not fit the table: an error, not a panic.
        assert!(model
            .forward_cached(&ids.i((.., 0..1)).unwrap(), &mut cache)
            .is_err());
    }

    #[test]
    fn a_prefill_longer_than_a_query_tile_matches_the_full_forward() {
        let model = small_model(40, 160);
        // Two sequences of 150 positions, 131 prefilled: three tiles of 64 queries, the last
        // one partial.
        let ids: Vec<u32> = (0..300u32).map(|i| (i * 13 + i / 7) % 40).collect();
        let ids = Tensor::from_vec(ids, (2, 150), &Device::Cpu).unwrap();
        assert_cached_decoding_matches(&model, &ids, 131);
        // A prompt of one token is a prefill too.
        let one = model
            .forward_cached(&ids.i((.., ..1)).unwrap(), &mut KvCache::default())
            .unwrap();
        let full = model.forward(&ids.i((.., ..1)).unwrap()).unwrap();
        assert!(crate::model::max_abs_diff(&one, &full.i((.., 0)).unwrap()) < 1e-4);
    }
}
