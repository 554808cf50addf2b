//! `continuo bench`: training and decoding speed of a model configuration on this machine.
//! Every figure is measured in the same run, so ratios between them are meaningful even on a
//! noisy machine.

use crate::model::ops;
use crate::model::{generate_streaming, Architecture, GenerateOptions, Model, StepPrecision};
use crate::music::{Note, Phrase};
use crate::train::optim::AdamW;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub architecture: Architecture,
    pub parameters: usize,
    pub threads: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub train_tokens_per_s: f64,
    /// The same training step with candle's plain op compositions (no fused kernels).
    pub train_tokens_per_s_plain_ops: f64,
    /// Where a fused training step's time goes.
    pub train_step: StepTimes,
    pub infer_ms_per_token_ctx64: f64,
    /// Cached decoding steps read their weights in [`Self::step_precision`] (the default);
    /// this and the two beside it are that.
    pub infer_ms_per_token_ctx256: f64,
    pub infer_ms_per_token_ctx512: f64,
    /// The default [`StepPrecision`]'s name.
    pub step_precision: &'static str,
    /// [`Self::infer_ms_per_token_ctx256`] with the steps reading each precision by name
    /// (f32 is the precision the peers use).
    pub infer_ms_per_token_ctx256_by_step_precision: std::collections::BTreeMap<&'static str, f64>,
    pub infer_ms_per_token_nocache_ctx64: f64,
    pub infer_ms_per_token_nocache_ctx256: f64,
    pub infer_ms_per_token_nocache_ctx512: f64,
    pub prefill_ms_256: f64,
    /// Trigger (primer handed to the sampler) to the first decoded note, cache and sampling included.
    pub first_note_ms: f64,
    /// Decoding at context 256 including grammar masks and sampling (what the plugin pays).
    pub generate_ms_per_token: f64,
    /// This machine's f32 matrix-multiply rate through the same backend and threads: 1024 ×
    /// 1024 times 1024 × 1024, the limit a training step is read against.
    pub matmul_gflops_1024: f64,
    /// Floating-point operations of one training token (forward and backward), by
    /// [`training_flops_per_token`]; 0 for the LSTM.
    pub train_flops_per_token: f64,
    /// `train_tokens_per_s × train_flops_per_token`, in GFLOP/s.
    pub train_gflops: f64,
    /// `train_gflops / matmul_gflops_1024`.
    pub train_share_of_matmul: f64,
}

/// FLOPs of one training token of a transformer, the count the speed issue uses: the forward
/// is 2 × the weights of every matrix product (attention projections, MLP, the tied output
/// head) plus the attention itself (scores and weighted values, 2 × 2 × T × d per layer,
/// counted over the whole T × T square as it is computed); the backward costs twice that.
pub fn training_flops_per_token(arch: &Architecture, seq_len: usize) -> f64 {
    match arch {
        Architecture::Transformer(c) => {
            let d = c.d_model as f64;
            let per_layer = 3.0 * d * d + d * d + 2.0 * d * c.d_ff as f64;
            let weights = c.n_layers as f64 * per_layer + d * c.vocab_size as f64;
            let attention = c.n_layers as f64 * 4.0 * seq_len as f64 * d;
            3.0 * (2.0 * weights + attention)
        }
        Architecture::Lstm(_) => 0.0,
    }
}

/// GFLOP/s of a 1024 × 1024 f32 matmul on `device` (best of a few after a warm-up).
fn matmul_gflops(device: &Device) -> Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?;
    a.matmul(&b)?.sum_all()?.to_scalar::<f32>()?;
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        device.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

fn random_ids(rng: &mut impl Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.gen_range(4..vocab as u32)).collect()
}

/// Seconds of one training step and of its three phases, averaged over the timed steps.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StepTimes {
    pub total: f64,
    /// Embedding to the loss (candle's CPU backend computes eagerly, so this is the work).
    pub forward: f64,
    pub backward: f64,
    /// AdamW over every parameter, gradient clipping included.
    pub optimizer: f64,
}

/// A training step (forward, backward, AdamW) timed by phase, averaged over `steps` after one
/// warm-up.
fn train_step_seconds(
    model: &Model,
    varmap: &VarMap,
    batch: usize,
    seq_len: usize,
    steps: usize,
    device: &Device,
) -> Result<StepTimes> {
    let vocab = match model {
        Model::Transformer(m) => m.config().vocab_size,
        Model::Lstm(_) => crate::tokens::Vocab.size(),
    };
    let mut opt = AdamW::for_varmap(varmap, 0.01)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut step = |rng: &mut rand_chacha::ChaCha8Rng, times: &mut StepTimes| -> Result<()> {
        let ids = random_ids(rng, batch * (seq_len + 1), vocab);
        let t = Instant::now();
        let loss = crate::train::trainer::window_loss(model, ids, batch, seq_len, 1.0, device)?;
        let forward = t.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let backward = t.elapsed().as_secs_f64();
        opt.step(&grads, 1e-4, 1.0)?;
        let total = t.elapsed().as_secs_f64();
        times.forward += forward;
        times.backward += backward - forward;
        times.optimizer += total - backward;
        times.total += total;
        Ok(())
    };
    step(&mut rng, &mut StepTimes::default())?;
    let mut times = StepTimes::default();
    for _ in 0..steps {
        step(&mut rng, &mut times)?;
    }
    let n = steps.max(1) as f64;
    Ok(StepTimes {
        total: times.total / n,
        forward: times.forward / n,
        backward: times.backward / n,
        optimizer: times.optimizer / n,
    })
}

/// How `decode_ms` feeds each token.
#[derive(Clone, Copy, PartialEq)]
enum Decoding {
    /// `Model::decode_step`: KV cache (what the sampler does).
    Cached,
    /// The whole context again for every token.
    NoCache,
}

/// ms per decoded token at batch 1 after a context of `ctx` tokens: with a cache, the median
/// of three runs from fresh prompts (as the ONNX Runtime peer measures it); without one, one
/// run (each token re-reads the whole context).
fn decode_ms(
    model: &Model,
    ctx: usize,
    tokens: usize,
    how: Decoding,
    device: &Device,
) -> Result<f64> {
    let repeats = if how == Decoding::NoCache { 1 } else { 3 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let mut times = (0..repeats)
        .map(|_| decode_run_ms(model, ctx, tokens, how, device, &mut rng))
        .collect::<Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// One run of [`decode_ms`].
fn decode_run_ms(
    model: &Model,
    ctx: usize,
    tokens: usize,
    how: Decoding,
    device: &Device,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<f64> {
    let vocab = crate::tokens::Vocab.size();
    let prompt = random_ids(rng, ctx - tokens, vocab);
    let mut cache = model.new_cache();
    let mut all = prompt.clone();
    if how != Decoding::NoCache {
        model.forward_cached(
            &Tensor::from_vec(prompt, (1, ctx - tokens), device)?,
            &mut cache,
        )?;
    }
    let t = Instant::now();
    for _ in 0..tokens {
        let next = rng.gen_range(4..vocab as u32);
        all.push(next);
        let ids = Tensor::from_vec(vec![next], (1, 1), device)?;
        let logits = match how {
            Decoding::Cached => model.decode_step(&ids, &mut cache)?,
            Decoding::NoCache => {
                model.forward_last(&Tensor::from_vec(all.clone(), (1, all.len()), device)?)?
            }
        };
        let _ = logits.to_vec2::<f32>()?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e3 / tokens as f64)
}

fn triad() -> Phrase {
    let notes = [60, 64, 67]
        .iter()
        .map(|&p| Note {
            start: 0.0,
            duration: 4.0,
            pitch: p,
            velocity: 100,
        })
        .collect();
    Phrase::new(notes, 4.0)
}

/// Prefills of 256 tokens timed for their median (`benches/peers/onnx_peer.py` times as many).
const PREFILL_REPEATS: usize = 9;

/// The median of [`PREFILL_REPEATS`] prefills of `len` random tokens from an empty cache.
fn prefill_ms(model: &Model, len: usize, device: &Device) -> Result<f64> {
    let vocab = crate::tokens::Vocab.size();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let prompt = Tensor::from_vec(random_ids(&mut rng, len, vocab), (1, len), device)?;
    let mut cache = model.new_cache();
    // A warm-up, then the median of several, as the ONNX Runtime peer times it: a mean of a
    // few let one slow run on a shared machine move the figure by a fifth.
    model.forward_cached(&prompt, &mut cache)?;
    let mut times = Vec::new();
    for _ in 0..PREFILL_REPEATS {
        let t = Instant::now();
        let mut cache = model.new_cache();
        model
            .forward_cached(&prompt, &mut cache)?
            .to_vec2::<f32>()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The prefill of 256 tokens alone ([`prefill_ms`]) of a configuration with random weights:
/// a few seconds, so that `benches/peers/run.sh` can alternate it with ONNX Runtime's.
pub fn prefill_only(arch: &Architecture, device: &Device) -> Result<f64> {
    let varmap = VarMap::new();
    let model = Model::new(arch, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    ops::set_fused(true);
    prefill_ms(&model, arch.max_context().unwrap_or(512).min(256), device)
}

/// Measures a configuration with random weights (speed does not depend on the values).
pub fn run(
    arch: &Architecture,
    batch: usize,
    seq_len: usize,
    train_steps: usize,
    device: &Device,
) -> Result<BenchReport> {
    let varmap = VarMap::new();
    let mut model = Model::new(arch, VarBuilder::from_varmap(&varmap, DType::F32, device))?;

    let matmul_gflops_1024 = matmul_gflops(device)?;
    ops::set_fused(true);
    let fused = train_step_seconds(&model, &varmap, batch, seq_len, train_steps, device)?;
    ops::set_fused(false);
    let plain = train_step_seconds(
        &model,
        &varmap,
        batch,
        seq_len,
        train_steps.div_ceil(2),
        device,
    )?;
    ops::set_fused(true);

    let ctx_max = arch.max_context().unwrap_or(512);
    let ctx = |c: usize| c.min(ctx_max);
    let n = 32;
    // Warm-up: starts the decode pool's thread and faults in the cache buffers.
    decode_ms(&model, ctx(64), 8, Decoding::Cached, device)?;
    let cached: Vec<f64> = [64, 256, 512]
        .iter()
        .map(|&c| decode_ms(&model, ctx(c), n, Decoding::Cached, device))
        .collect::<Result<_>>()?;
    let uncached: Vec<f64> = [64, 256, 512]
        .iter()
        .map(|&c| decode_ms(&model, ctx(c), 8, Decoding::NoCache, device))
        .collect::<Result<_>>()?;
    let mut by_step_precision = std::collections::BTreeMap::new();
    for p in StepPrecision::ALL {
        model.set_step_precision(p);
        decode_ms(&model, ctx(64), 8, Decoding::Cached, device)?; // the copy made, warm
        by_step_precision.insert(
            p.name(),
            decode_ms(&model, ctx(256), n, Decoding::Cached, device)?,
        );
    }
    model.set_step_precision(StepPrecision::default());

    let prefill_ms_256 = prefill_ms(&model, ctx(256), device)?;

    let opts = GenerateOptions {
        bars: 4,
        seed: 1,
        start_on_downbeat: true,
        ..Default::default()
    };
    let t = Instant::now();
    let mut first = None;
    let g = generate_streaming(&model, device, &triad(), &opts, |_| {
        first.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
        true
    })?;

    let train_tokens_per_s = (batch * seq_len) as f64 / fused.total;
    let train_flops_per_token = training_flops_per_token(arch, seq_len);
    let train_gflops = train_tokens_per_s * train_flops_per_token / 1e9;
    Ok(BenchReport {
        matmul_gflops_1024,
        train_flops_per_token,
        train_gflops,
        train_share_of_matmul: train_gflops / matmul_gflops_1024,
        architecture: arch.clone(),
        parameters: arch.parameter_count(),
        threads: candle_core::utils::get_num_threads(),
        batch,
        seq_len,
        train_tokens_per_s,
        train_tokens_per_s_plain_ops: (batch * seq_len) as f64 / plain.total,
        train_step: fused,
        infer_ms_per_token_ctx64: cached[0],
        infer_ms_per_token_ctx256: cached[1],
        infer_ms_per_token_ctx512: cached[2],
        step_precision: StepPrecision::default().name(),
        infer_ms_per_token_ctx256_by_step_precision: by_step_precision,
        infer_ms_per_token_nocache_ctx64: uncached[0],
        infer_ms_per_token_nocache_ctx256: uncached[1],
        infer_ms_per_token_nocache_ctx512: uncached[2],
        prefill_ms_256,
        first_note_ms: first.unwrap_or(f64::NAN),
        generate_ms_per_token: g.ms_per_token,
    })
}
