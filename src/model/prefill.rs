//! The prefill of cached decoding: a whole prompt through the transformer on plain f32
//! buffers, writing the keys and values straight into a [`FastCache`] for the steps after it.
//!
//! Why our own: through candle a prefill of 256 tokens spent half its time outside the
//! matrix products (each op allocating its output, the permutes and copies of the head split,
//! separate passes for bias, residual and cache writes). Here each block is four packed
//! matrix products (the `gemm` crate that candle itself calls, on both cores), with the bias
//! and the residual folded into the products' destinations, and the causal attention of
//! `attention.rs` per (sequence, head), reading the queries where they lie in the rows of
//! the fused q/k/v product and the keys and values from the cache it has just written.
//! Only the last position's logits are computed, which is all a prefill returns.

use super::decode::{layer_norm_rows, matvec_rows, BlockWeights, DecodeWeights, FastCache};
use super::matmul::{Outputs, SharedOut};
use super::spare_buffers::SPARE;
use super::{attention, ops, smeared_keys};
use candle_core::Result;
use rayon::prelude::*;

impl DecodeWeights {
    /// Runs `ids` (`batch` sequences of equal length, row-major) from position 0; returns the
    /// cache holding every position and each sequence's logits at its last position,
    /// (batch, vocab) row-major.
    pub(crate) fn prefill(&self, ids: &[u32], batch: usize) -> Result<(FastCache, Vec<f32>)> {
        if batch == 0 || ids.is_empty() || !ids.len().is_multiple_of(batch) {
            candle_core::bail!("{} ids do not make {batch} equal sequences", ids.len());
        }
        let t = ids.len() / batch;
        if t > self.max_seq_len {
            candle_core::bail!(
                "context {t} exceeds the model's {} positions",
                self.max_seq_len
            );
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            candle_core::bail!("token {id} is outside the model's {} ids", self.vocab);
        }
        if batch > 1 && ids.chunks_exact(t).all(|row| row == &ids[..t]) {
            // Candidates and variations read one prompt: read it once, and let every row
            // read its keys and values.
            let (one, logits) = self.prefill(&ids[..t], 1)?;
            return Ok((one.into_repeated(self, batch), logits.repeat(batch)));
        }
        let (d, n) = (self.d_model, ids.len());

        // Every buffer is written before it is read: spares from the last prefill serve.
        let mut x = SPARE.take(n * d);
        for (r, (row, &id)) in x.chunks_mut(d).zip(ids).enumerate() {
            let tok = &self.tokens.w[id as usize * d..][..d];
            let p = &self.positions[(r % t) * d..][..d];
            for ((o, a), b) in row.iter_mut().zip(tok).zip(p) {
                *o = a + b;
            }
        }
        let mut normed = SPARE.take(n * d);
        let mut qkv = SPARE.take(n * 3 * d);
        let mut attended = SPARE.take(n * d);
        let mut hidden = SPARE.take(n * self.d_ff);
        let mut cache = FastCache::empty(self, batch);
        let shape = PromptShape {
            batch,
            t,
            heads: self.n_heads,
            head_dim: d / self.n_heads,
            max: self.max_seq_len,
        };
        let last_block = self.blocks.len().saturating_sub(1);
        let layers = self
            .blocks
            .iter()
            .zip(cache.kv.iter_mut())
            .zip(cache.last_raw_keys.iter_mut());
        for (i, ((block, (keys, values)), last_raw_keys)) in layers.enumerate() {
            ops::layer_norm_rows_par(&x, (&block.ln1.0, &block.ln1.1), &mut normed);
            block
                .qkv
                .prefill_rows(&normed, &mut qkv, d, Outputs::Bias(&block.qkv.bias));
            if !block.key_smear.is_empty() {
                for (sequence, previous) in qkv
                    .chunks_exact_mut(t * 3 * d)
                    .zip(last_raw_keys.chunks_exact_mut(d))
                {
                    smeared_keys::smear_rows(sequence, &block.key_smear, previous);
                }
            }
            if i < last_block {
                attend_prompt(&qkv, keys, values, &mut attended, shape, t);
                self.attention_out_and_mlp(block, &mut x, &attended, &mut normed, &mut hidden);
            } else {
                // The cache needs the last block's keys and values at every position, but
                // the logits only its output at the last one: the rest of the block runs on
                // one row per sequence (a fifth of the prefill's arithmetic saved).
                attend_prompt(&qkv, keys, values, &mut attended[..batch * d], shape, 1);
                x = last_rows(x, t, d);
                let normed = &mut normed[..batch * d];
                let hidden = &mut hidden[..batch * self.d_ff];
                self.attention_out_and_mlp(block, &mut x, &attended[..batch * d], normed, hidden);
            }
        }
        cache.len = t;
        for buf in [normed, qkv, attended, hidden] {
            SPARE.give(buf);
        }

        if self.blocks.is_empty() {
            x = last_rows(x, t, d);
        }
        let mut last_normed = vec![0f32; batch * d];
        layer_norm_rows(&x, &self.ln_f, &mut last_normed);
        let mut logits = vec![0f32; batch * self.vocab];
        matvec_rows(&self.tokens.w, &[], &last_normed, &mut logits, d);
        Ok((cache, logits))
    }
}

impl DecodeWeights {
    /// The rest of a block after its attention, on the rows of `x` (the residual stream):
    /// output projection and residual, LayerNorm, the GELU MLP and its residual.
    fn attention_out_and_mlp(
        &self,
        block: &BlockWeights,
        x: &mut [f32],
        attended: &[f32],
        normed: &mut [f32],
        hidden: &mut [f32],
    ) {
        let d = self.d_model;
        let out = Outputs::AddBias(&block.out.bias);
        block.out.prefill_rows(attended, x, d, out);
        ops::layer_norm_rows_par(x, (&block.ln2.0, &block.ln2.1), normed);
        let up = Outputs::BiasGelu(&block.up.bias);
        block.up.prefill_rows(normed, hidden, d, up);
        let down = Outputs::AddBias(&block.down.bias);
        block.down.prefill_rows(hidden, x, self.d_ff, down);
    }
}

/// The last row of each sequence of `t` rows of `d` values (`x` goes back to the spares).
fn last_rows(x: Vec<f32>, t: usize, d: usize) -> Vec<f32> {
    let last = x
        .chunks(t * d)
        .flat_map(|seq| seq[(t - 1) * d..].iter().copied())
        .collect();
    SPARE.give(x);
    last
}

/// Rows a task of [`rows_of`] and [`add_rows`] takes (training's fused block): both cores
/// write, since one alone spent 8 % of a prefill copying bias rows (`perf`) before the
/// prefill set its biases in its products' tasks.
const BIAS_ROWS_PER_TASK: usize = 32;

/// Every row of `dst` set to `bias` (zeros for a layer without one).
pub(crate) fn rows_of(dst: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return dst.par_chunks_mut(1 << 14).for_each(|c| c.fill(0.0));
    }
    dst.par_chunks_mut(bias.len() * BIAS_ROWS_PER_TASK)
        .for_each(|c| {
            c.chunks_mut(bias.len())
                .for_each(|r| r.copy_from_slice(bias))
        });
}

/// `bias` added to every row of `dst`.
pub(crate) fn add_rows(dst: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    dst.par_chunks_mut(bias.len() * BIAS_ROWS_PER_TASK)
        .for_each(|c| {
            c.chunks_mut(bias.len())
                .for_each(|r| r.iter_mut().zip(bias).for_each(|(o, b)| *o += b))
        });
}

/// Where a prompt's attention reads and writes.
#[derive(Clone, Copy)]
pub(crate) struct PromptShape {
    pub batch: usize,
    pub t: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Positions a cache row holds.
    pub max: usize,
}

/// Causal attention of the last `queries` positions of every sequence: copies each
/// (sequence, head)'s keys and values into the cache, then writes its output columns of
/// `out` (batch · queries, d). Training's fused block calls it with a "cache" of the prompt's
/// own length, the keys and values its backward reads.
pub(crate) fn attend_prompt(
    qkv: &[f32],
    keys: &mut [f32],
    values: &mut [f32],
    out: &mut [f32],
    s: PromptShape,
    queries: usize,
) {
    let (t, hd) = (s.t, s.head_dim);
    let d = s.heads * hd;
    assert!(queries <= t && qkv.len() == s.batch * t * 3 * d);
    assert!(out.len() == s.batch * queries * d);
    assert!(keys.len() == s.batch * s.heads * s.max * hd && keys.len() == values.len());
    let out_rows = SharedOut(out.as_mut_ptr());
    keys.par_chunks_mut(s.max * hd)
        .zip(values.par_chunks_mut(s.max * hd))
        .enumerate()
        .for_each_init(
            || attention::Scratch::new(t),
            |scratch, (slot, (k, v))| {
                let (b, h) = (slot / s.heads, slot % s.heads);
                let rows = &qkv[b * t * 3 * d..(b + 1) * t * 3 * d];
                for (i, row) in rows.chunks_exact(3 * d).enumerate() {
                    k[i * hd..(i + 1) * hd].copy_from_slice(&row[d + h * hd..][..hd]);
                    v[i * hd..(i + 1) * hd].copy_from_slice(&row[2 * d + h * hd..][..hd]);
                }
                let head = attention::Head {
                    q: &rows[(t - queries) * 3 * d + h * hd..],
                    q_stride: 3 * d,
                    k,
                    v,
                    tq: queries,
                    tk: t,
                    head_dim: hd,
                };
                let first = b * queries * d + h * hd;
                // SAFETY: this task alone writes the head's columns h·hd..(h+1)·hd of rows
                // b·queries .. (b+1)·queries of `out` (rows d apart), all inside it (asserted
                // above).
                unsafe { attention::forward(head, out_rows.get().add(first), d, scratch) }
            },
        );
}
