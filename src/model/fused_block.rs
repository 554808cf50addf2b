//! Training's transformer block as one candle op with its own backward: what
//! `transformer::Block` runs on the CPU with the fused kernels on and no cache.
//!
//! Why: as a chain of candle ops (the fused ones of `ops.rs` included) a block's backward
//! spent about a quarter of a training step on candle's backprop bookkeeping rather than
//! arithmetic: a zero-filled gradient buffer for every node and an add into it, the permutes
//! and copies of the head split, a pass per bias and residual (`perf`, BENCHMARKS.md). Here
//! the forward is the prefill's (four packed products, bias and residual in the products'
//! destinations, causal attention per (sequence, head) from `attention.rs`) and keeps what the
//! backward reads; the backward writes each gradient once: the weights' as packed products
//! straight into one flat buffer, the residual stream's in place.
//!
//! The block's thirteen parameters reach the op as one flat tensor (`Tensor::cat`, whose
//! backward hands each parameter its slice of the flat gradient): candle's custom ops take
//! at most three arguments.

use super::matmul::SharedOut;
use super::matmul::{add_x_wt, all_threads, g_w, gt_x};
use super::ops;
use super::prefill::{add_rows, attend_prompt, rows_of, PromptShape};
use super::{attention, smeared_keys};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// The block's parameters in the order of the flat argument: LayerNorm 1 (weight, bias),
/// the fused q/k/v projection, the output projection, LayerNorm 2, the MLP's up and down
/// projections (each weight (out, in) row-major, as candle's `Linear` holds it, then its bias),
/// then the keys' smear (`smeared_keys.rs`; zeros for a model without it).
pub(crate) struct Params<S> {
    pub ln1: (S, S),
    pub qkv: (S, S),
    pub out: (S, S),
    pub ln2: (S, S),
    pub up: (S, S),
    pub down: (S, S),
    pub key_smear: S,
}

impl<S> Params<S> {
    /// The parameters named in order from the thirteen parts of the flat argument.
    fn named(parts: Vec<S>) -> Self {
        let mut it = parts.into_iter();
        let mut next = || it.next().expect("thirteen parts");
        Self {
            ln1: (next(), next()),
            qkv: (next(), next()),
            out: (next(), next()),
            ln2: (next(), next()),
            up: (next(), next()),
            down: (next(), next()),
            key_smear: next(),
        }
    }
}

/// Widths of a block.
#[derive(Clone, Copy, Debug)]
struct Dims {
    d: usize,
    ff: usize,
    heads: usize,
}

impl Dims {
    /// Sizes of the thirteen parts of the flat argument, in order.
    fn sizes(self) -> [usize; 13] {
        let Dims { d, ff, .. } = self;
        [
            d,
            d,
            3 * d * d,
            3 * d,
            d * d,
            d,
            d,
            d,
            ff * d,
            ff,
            d * ff,
            d,
            d,
        ]
    }

    fn flat_len(self) -> usize {
        self.sizes().iter().sum()
    }

    fn split(self, flat: &[f32]) -> Params<&[f32]> {
        let mut rest = flat;
        let parts = self.sizes().map(|n| {
            let (part, tail) = rest.split_at(n);
            rest = tail;
            part
        });
        Params::named(parts.into())
    }

    fn split_mut(self, flat: &mut [f32]) -> Params<&mut [f32]> {
        let mut rest = flat;
        let parts = self.sizes().map(|n| {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            part
        });
        Params::named(parts.into())
    }
}

/// What the forward keeps for the backward (rows = batch · t).
struct Saved {
    batch: usize,
    t: usize,
    /// LayerNorm 1's output, (rows, d).
    h1: Vec<f32>,
    /// The q/k/v projection, keys smeared, (rows, 3d).
    qkv: Vec<f32>,
    /// The keys before the smear, (rows, d).
    raw_keys: Vec<f32>,
    /// Keys and values per (sequence, head), (batch, heads, t, head_dim).
    keys: Vec<f32>,
    values: Vec<f32>,
    /// The attention's output, heads side by side, (rows, d).
    attended: Vec<f32>,
    /// The residual stream after the attention, (rows, d).
    x2: Vec<f32>,
    /// LayerNorm 2's output, (rows, d).
    h2: Vec<f32>,
    /// The MLP's up projection before and after GELU, (rows, ff).
    up: Vec<f32>,
    gelu: Vec<f32>,
}

struct BlockOp {
    dims: Dims,
    saved: Mutex<Option<Saved>>,
}

/// One transformer block (pre-norm: x + attention(LN1 x), then + MLP(LN2 ·)) on `x` (batch,
/// t, d), causal, no cache; differentiable in `x` and in every parameter. `params` are the
/// block's thirteen tensors in the order of [`Params`].
pub fn forward(x: &Tensor, params: &[&Tensor; 13], heads: usize) -> Result<Tensor> {
    let (_, _, d) = x.dims3()?;
    let ff = params[9].elem_count();
    let dims = Dims { d, ff, heads };
    if heads == 0 || !d.is_multiple_of(heads) {
        candle_core::bail!("{heads} heads do not divide a width of {d}");
    }
    for (i, (p, n)) in params.iter().zip(dims.sizes()).enumerate() {
        if p.elem_count() != n {
            candle_core::bail!("block parameter {i} has {} values, not {n}", p.elem_count());
        }
    }
    let flat = Tensor::cat(
        &params
            .iter()
            .map(|p| p.flatten_all())
            .collect::<Result<Vec<_>>>()?,
        0,
    )?;
    let op = BlockOp {
        dims,
        saved: Mutex::new(None),
    };
    x.contiguous()?.apply_op2(&flat, op)
}

impl CustomOp2 for BlockOp {
    fn name(&self) -> &'static str {
        "continuo-block"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, t, _) = l1.shape().dims3()?;
        let (x, flat) = (ops::f32_slice(s1, l1)?, ops::f32_slice(s2, l2)?);
        let (y, saved) = self.run_forward(x, &self.dims.split(flat), batch, t);
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        flat: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(saved) = saved else {
            candle_core::bail!("the fused block's backward ran twice or before its forward");
        };
        let (xv, pv, gv) = (ops::vec_of(x)?, ops::vec_of(flat)?, ops::vec_of(g)?);
        let (dx, dflat) = self.run_backward(&xv, &self.dims.split(&pv), &saved, &gv);
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dflat, flat.shape(), flat.device())?),
        ))
    }
}

impl BlockOp {
    fn shape(&self, batch: usize, t: usize) -> PromptShape {
        PromptShape {
            batch,
            t,
            heads: self.dims.heads,
            head_dim: self.dims.d / self.dims.heads,
            max: t,
        }
    }

    fn run_forward(
        &self,
        x: &[f32],
        p: &Params<&[f32]>,
        batch: usize,
        t: usize,
    ) -> (Vec<f32>, Saved) {
        let Dims { d, ff, .. } = self.dims;
        let (rows, par) = (batch * t, all_threads());
        let mut h1 = vec![0f32; rows * d];
        ops::layer_norm_rows_par(x, p.ln1, &mut h1);
        let mut qkv = vec![0f32; rows * 3 * d];
        rows_of(&mut qkv, p.qkv.1);
        add_x_wt(&h1, p.qkv.0, &mut qkv, d, par);
        let raw_keys: Vec<f32> = qkv
            .chunks_exact(3 * d)
            .flat_map(|row| row[d..2 * d].iter().copied())
            .collect();
        qkv.par_chunks_mut(t * 3 * d).for_each(|sequence| {
            smeared_keys::smear_rows(sequence, p.key_smear, &mut vec![0f32; d])
        });
        let mut keys = vec![0f32; rows * d];
        let mut values = vec![0f32; rows * d];
        let mut attended = vec![0f32; rows * d];
        attend_prompt(
            &qkv,
            &mut keys,
            &mut values,
            &mut attended,
            self.shape(batch, t),
            t,
        );
        let mut x2 = x.to_vec();
        add_rows(&mut x2, p.out.1);
        add_x_wt(&attended, p.out.0, &mut x2, d, par);
        let mut h2 = vec![0f32; rows * d];
        ops::layer_norm_rows_par(&x2, p.ln2, &mut h2);
        let mut up = vec![0f32; rows * ff];
        rows_of(&mut up, p.up.1);
        add_x_wt(&h2, p.up.0, &mut up, d, par);
        let mut gelu = vec![0f32; rows * ff];
        gelu.par_chunks_mut(4096)
            .zip(up.par_chunks(4096))
            .for_each(|(o, u)| {
                o.iter_mut()
                    .zip(u)
                    .for_each(|(o, &v)| *o = ops::gelu_value(v))
            });
        let mut y = x2.clone();
        add_rows(&mut y, p.down.1);
        add_x_wt(&gelu, p.down.0, &mut y, ff, par);
        let saved = Saved {
            batch,
            t,
            h1,
            qkv,
            raw_keys,
            keys,
            values,
            attended,
            x2,
            h2,
            up,
            gelu,
        };
        (y, saved)
    }

    /// The gradients of the block's input and of its flat parameters from the gradient `dy`
    /// of its output.
    fn run_backward(
        &self,
        x: &[f32],
        p: &Params<&[f32]>,
        s: &Saved,
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let Dims { d, ff, .. } = self.dims;
        let (rows, par) = (s.batch * s.t, all_threads());
        let mut flat = vec![0f32; self.dims.flat_len()];
        let gp = self.dims.split_mut(&mut flat);

        // MLP: y = x2 + down(gelu(up(LN2 x2))).
        gt_x(dy, &s.gelu, gp.down.0, ff, par);
        gp.down.1.copy_from_slice(&ops::column_sums(dy, d));
        let mut d_up = vec![0f32; rows * ff];
        g_w(dy, p.down.0, &mut d_up, ff, par);
        d_up.par_chunks_mut(4096)
            .zip(s.up.par_chunks(4096))
            .for_each(|(g, u)| {
                g.iter_mut()
                    .zip(u)
                    .for_each(|(g, &v)| *g *= ops::gelu_slope(v))
            });
        gt_x(&d_up, &s.h2, gp.up.0, d, par);
        gp.up.1.copy_from_slice(&ops::column_sums(&d_up, ff));
        let mut d_normed = vec![0f32; rows * d];
        g_w(&d_up, p.up.0, &mut d_normed, d, par);
        drop(d_up);
        let mut dx2 = dy.to_vec();
        let (dw, db) = ops::layer_norm_backward_rows(&s.x2, p.ln2.0, &d_normed, &mut dx2);
        gp.ln2.0.copy_from_slice(&dw);
        gp.ln2.1.copy_from_slice(&db);

        // Attention: x2 = x + out(attention(qkv(LN1 x))).
        gt_x(&dx2, &s.attended, gp.out.0, d, par);
        gp.out.1.copy_from_slice(&ops::column_sums(&dx2, d));
        let mut d_attended = vec![0f32; rows * d];
        g_w(&dx2, p.out.0, &mut d_attended, d, par);
        let mut d_qkv = vec![0f32; rows * 3 * d];
        self.attention_backward(s, &d_attended, &mut d_qkv);
        drop(d_attended);
        for (sequence, raw) in d_qkv
            .chunks_exact_mut(s.t * 3 * d)
            .zip(s.raw_keys.chunks_exact(s.t * d))
        {
            smeared_keys::smear_rows_backward(sequence, raw, p.key_smear, gp.key_smear);
        }
        gt_x(&d_qkv, &s.h1, gp.qkv.0, d, par);
        gp.qkv.1.copy_from_slice(&ops::column_sums(&d_qkv, 3 * d));
        g_w(&d_qkv, p.qkv.0, &mut d_normed, d, par);
        let mut dx = dx2;
        let (dw, db) = ops::layer_norm_backward_rows(x, p.ln1.0, &d_normed, &mut dx);
        gp.ln1.0.copy_from_slice(&dw);
        gp.ln1.1.copy_from_slice(&db);
        (dx, flat)
    }

    /// The gradient of the q/k/v projection (rows, 3d) from the attention output's: one task
    /// per (sequence, head), each writing only its head's columns.
    fn attention_backward(&self, s: &Saved, d_attended: &[f32], d_qkv: &mut [f32]) {
        let shape = self.shape(s.batch, s.t);
        let (t, hd, d) = (s.t, shape.head_dim, self.dims.d);
        let out = SharedOut(d_qkv.as_mut_ptr());
        let span = t * hd;
        (0..s.batch * shape.heads).into_par_iter().for_each_init(
            || (attention::Scratch::new(t), vec![0f32; 5 * span]),
            |(scratch, buf), slot| {
                let (b, h) = (slot / shape.heads, slot % shape.heads);
                let (o, rest) = buf.split_at_mut(span);
                let (g, rest) = rest.split_at_mut(span);
                let (dq, rest) = rest.split_at_mut(span);
                let (dk, dv) = rest.split_at_mut(span);
                let column = |src: &[f32], dst: &mut [f32]| {
                    for (i, row) in dst.chunks_exact_mut(hd).enumerate() {
                        row.copy_from_slice(&src[(b * t + i) * d + h * hd..][..hd]);
                    }
                };
                column(&s.attended, o);
                column(d_attended, g);
                let head = attention::Head {
                    q: &s.qkv[b * t * 3 * d + h * hd..],
                    q_stride: 3 * d,
                    k: &s.keys[slot * span..][..span],
                    v: &s.values[slot * span..][..span],
                    tq: t,
                    tk: t,
                    head_dim: hd,
                };
                attention::backward(head, o, g, (dq, dk, dv), scratch);
                for i in 0..t {
                    let row = (b * t + i) * 3 * d + h * hd;
                    for (part, src) in [&*dq, &*dk, &*dv].into_iter().enumerate() {
                        // SAFETY: this task alone writes the columns of head h (in each of
                        // the q, k and v thirds) of sequence b's rows; `d_qkv` holds
                        // batch · t rows of 3d (its length is rows · 3d) and outlives the
                        // tasks, which end inside this call.
                        unsafe {
                            let dst = out.get().add(row + part * d);
                            std::ptr::copy_nonoverlapping(src[i * hd..].as_ptr(), dst, hd);
                        }
                    }
                }
            },
        );
    }
}
