//! The tensor operations the models are built from. Each has a fused CPU kernel with its own
//! backward pass (candle's fused `softmax_last_dim` and `layer_norm` have none, so training
//! would fall back to long chains of small ops) and the plain candle composition it must match;
//! `set_fused(false)` selects the compositions (tests and `continuo bench` compare the two).
//! Off the CPU (CUDA, Metal) the compositions are used.

use super::attention;
use super::row_math::{fast_exp, fast_tanh, softmax_in_place, visible_keys};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

const LAYER_NORM_EPS: f32 = 1e-5;

static FUSED: AtomicBool = AtomicBool::new(true);

/// Chooses fused kernels (default) or plain candle compositions.
pub fn set_fused(on: bool) {
    FUSED.store(on, Ordering::Relaxed);
}

pub(crate) fn fused_on(t: &Tensor) -> bool {
    FUSED.load(Ordering::Relaxed) && matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

/// The contiguous f32 data of a CPU tensor argument.
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("fused op: expected f32"),
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused op: expected a contiguous tensor"),
    }
}

pub(crate) fn vec_of(t: &Tensor) -> Result<Vec<f32>> {
    t.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

// ---------------------------------------------------------------- layer norm

struct LayerNormOp;

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "continuo-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let mut y = vec![0f32; x.len()];
        layer_norm_rows_par(x, (w, b), &mut y);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (xv, wv, gv) = (vec_of(x)?, vec_of(w)?, vec_of(g)?);
        let d = wv.len();
        let mut dx = vec![0f32; xv.len()];
        let (dw, db) = layer_norm_backward_rows(&xv, &wv, &gv, &mut dx);
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, d, dev)?),
            Some(Tensor::from_vec(db, d, dev)?),
        ))
    }
}

/// Mean and 1 / standard deviation of a row, as LayerNorm uses them (also in decoding).
pub(crate) fn moments(xr: &[f32]) -> (f32, f32) {
    moments_of([xr])[0]
}

/// Rows that [`layer_norm_rows`] takes the moments of at once.
const ROWS_AT_ONCE: usize = 4;

/// [`moments`] of `N` rows of one length at once: each row's sums run left to right, one
/// addition after another as in a plain sum (the same numbers, bit for bit, as the row
/// alone), but the rows' chains of additions overlap. One row's 256 dependent additions are
/// bound by the adder's latency, which made a four-candidate step's LayerNorms four times
/// one row's; four chains side by side cost about what one does.
fn moments_of<const N: usize>(rows: [&[f32]; N]) -> [(f32, f32); N] {
    let d = rows[0].len();
    // -0.0, as `Iterator::sum` starts from: the identity of addition for every float.
    let mut sums = [-0.0f32; N];
    for i in 0..d {
        for (s, row) in sums.iter_mut().zip(&rows) {
            *s += row[i];
        }
    }
    let means = sums.map(|s| s / d as f32);
    let mut squares = [-0.0f32; N];
    for i in 0..d {
        for ((s, row), &mean) in squares.iter_mut().zip(&rows).zip(&means) {
            let centred = row[i] - mean;
            *s += centred * centred;
        }
    }
    std::array::from_fn(|r| {
        let var = squares[r] / d as f32;
        (means[r], 1.0 / (var + LAYER_NORM_EPS).sqrt())
    })
}

/// LayerNorm of each row of `x` (rows of `w.len()`) into `out`: the one kernel of training's
/// op, the fused block, the prefill and the decoding steps.
pub(crate) fn layer_norm_rows(x: &[f32], (w, b): (&[f32], &[f32]), out: &mut [f32]) {
    let d = w.len();
    let normalise = |xr: &[f32], or: &mut [f32], (mean, rstd): (f32, f32)| {
        for (((o, &v), &w), &b) in or.iter_mut().zip(xr).zip(w).zip(b) {
            *o = (v - mean) * rstd * w + b;
        }
    };
    let mut rows = x.chunks_exact(ROWS_AT_ONCE * d);
    let mut outs = out.chunks_exact_mut(ROWS_AT_ONCE * d);
    for (xs, os) in rows.by_ref().zip(outs.by_ref()) {
        let xs: [&[f32]; ROWS_AT_ONCE] = std::array::from_fn(|r| &xs[r * d..][..d]);
        for ((xr, or), m) in xs.iter().zip(os.chunks_mut(d)).zip(moments_of(xs)) {
            normalise(xr, or, m);
        }
    }
    let (rest, rest_out) = (rows.remainder(), outs.into_remainder());
    for (xr, or) in rest.chunks(d).zip(rest_out.chunks_mut(d)) {
        normalise(xr, or, moments(xr));
    }
}

/// [`layer_norm_rows`] on every core, 32 rows per task.
pub(crate) fn layer_norm_rows_par(x: &[f32], ln: (&[f32], &[f32]), out: &mut [f32]) {
    let rows = 32 * ln.0.len().max(1);
    out.par_chunks_mut(rows)
        .zip(x.par_chunks(rows))
        .for_each(|(o, x)| layer_norm_rows(x, ln, o));
}

/// LayerNorm's backward over rows: adds each row's input gradient into `dx` (so a residual
/// stream's gradient can already be there) and returns the gradients of the weight and the
/// bias, summed over the rows.
pub(crate) fn layer_norm_backward_rows(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    // Partial sums of dw and db per block of 64 rows, added in block order afterwards: the same
    // sums in the same order on every run (rayon's fold splits where its threads steal, and a
    // float sum in another order is another number, so training was not reproducible).
    let rows = 64 * d.max(1);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(rows)
        .zip(x.par_chunks(rows))
        .zip(g.par_chunks(rows))
        .map(|((dx, x), g)| {
            let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
            for ((dxr, xr), gr) in dx.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)) {
                let (mean, rstd) = moments(xr);
                let (mut sum_gw, mut sum_gw_xhat) = (0f32, 0f32);
                for i in 0..d {
                    let xhat = (xr[i] - mean) * rstd;
                    let gw = gr[i] * w[i];
                    sum_gw += gw;
                    sum_gw_xhat += gw * xhat;
                    dw[i] += gr[i] * xhat;
                    db[i] += gr[i];
                }
                let (m1, m2) = (sum_gw / d as f32, sum_gw_xhat / d as f32);
                for i in 0..d {
                    let xhat = (xr[i] - mean) * rstd;
                    dxr[i] += rstd * (gr[i] * w[i] - m1 - xhat * m2);
                }
            }
            (dw, db)
        })
        .collect();
    let (dw, db): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
    (sum_in_order(&dw, d), sum_in_order(&db, d))
}

fn add_into(acc: &mut [f32], v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
}

/// Blocks' partial sums (each `d` long) added in block order: the one order that makes a
/// parallel sum the same number on every run.
fn sum_in_order(partials: &[Vec<f32>], d: usize) -> Vec<f32> {
    partials.iter().fold(vec![0f32; d], |mut a, b| {
        add_into(&mut a, b);
        a
    })
}

/// The sums of the columns of `g` (rows of `d`): a bias's gradient. Rows in parallel blocks
/// of 64, the blocks' partial sums added in block order (the same number on every run, as in
/// [`layer_norm_backward_rows`]).
pub(crate) fn column_sums(g: &[f32], d: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = g
        .par_chunks(d.max(1) * 64)
        .map(|rows| {
            let mut acc = vec![0f32; d];
            rows.chunks(d).for_each(|r| add_into(&mut acc, r));
            acc
        })
        .collect();
    sum_in_order(&partials, d)
}

/// LayerNorm over the last dimension; differentiable.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fused_on(x) {
        x.contiguous()?.apply_op3(weight, bias, LayerNormOp)
    } else {
        candle_nn::ops::layer_norm_slow(x, weight, bias, LAYER_NORM_EPS)
    }
}

// ---------------------------------------------------------------- causal softmax

/// softmax(scale · x + causal mask) over the last dimension of (…, tq, tk) scores, where query
/// row i sits at absolute position tk − tq + i.
struct CausalSoftmax {
    scale: f32,
    tq: usize,
    tk: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "continuo-causal-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let (tq, tk, scale) = (self.tq, self.tk, self.scale);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(tk)
            .zip(x.par_chunks(tk))
            .enumerate()
            .for_each(|(row, (yr, xr))| {
                let visible = visible_keys(tq, tk, row % tq);
                for (y, &x) in yr[..visible].iter_mut().zip(xr) {
                    *y = x * scale;
                }
                softmax_in_place(&mut yr[..visible]);
            });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (yv, gv) = (vec_of(y)?, vec_of(g)?);
        let (tk, scale) = (self.tk, self.scale);
        let mut dx = vec![0f32; yv.len()];
        dx.par_chunks_mut(tk)
            .zip(yv.par_chunks(tk))
            .zip(gv.par_chunks(tk))
            .for_each(|((dr, yr), gr)| {
                let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for j in 0..tk {
                    dr[j] = scale * yr[j] * (gr[j] - dot);
                }
            });
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Causal scaled dot-product attention. `q`: (b, h, tq, d); `k`, `v`: (b, h, tk, d) with
/// tk ≥ tq: the queries are the last tq of the tk positions.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (_, _, tq, hd) = q.dims4()?;
    let tk = k.dim(2)?;
    let scale = 1.0 / (hd as f64).sqrt();
    // Several queries at once (training, whole windows): one op that never holds the scores.
    // One query: the matmuls. (Cached decoding on the CPU does not come here: `prefill.rs`
    // and `decode.rs`.)
    if fused_on(q) && tq > 1 {
        let op = CausalAttention { tq, tk, hd };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    let scores = q.matmul(&k.t()?)?;
    let probs = if fused_on(q) {
        scores.contiguous()?.apply_op1(CausalSoftmax {
            scale: scale as f32,
            tq,
            tk,
        })?
    } else {
        let mut s = (scores * scale)?;
        if tq > 1 {
            s = s.broadcast_add(&causal_mask(tq, tk, q.device())?)?;
        }
        candle_nn::ops::softmax(&s, D::Minus1)?
    };
    probs.matmul(v)
}

/// Causal attention as one op with its own backward, flash-style on the CPU: the tiles of
/// `attention.rs`, one rayon task per (batch, head), so the (b, h, tq, tk) scores and
/// probabilities are never stored (32 × 4 × 256² floats = 33 MB per layer in training, each
/// written, read and zero-filled for its gradient several times); the backward recomputes
/// them tile by tile. Written here because candle 0.11 has no CPU attention kernel.
struct CausalAttention {
    tq: usize,
    tk: usize,
    hd: usize,
}

impl CausalAttention {
    /// The inputs of the (batch, head) numbered `bh`.
    fn head<'a>(&self, bh: usize, q: &'a [f32], k: &'a [f32], v: &'a [f32]) -> attention::Head<'a> {
        let (qn, kn) = (self.tq * self.hd, self.tk * self.hd);
        attention::Head {
            q: &q[bh * qn..(bh + 1) * qn],
            q_stride: self.hd,
            k: &k[bh * kn..(bh + 1) * kn],
            v: &v[bh * kn..(bh + 1) * kn],
            tq: self.tq,
            tk: self.tk,
            head_dim: self.hd,
        }
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "continuo-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let mut o = vec![0f32; q.len()];
        o.par_chunks_mut(self.tq * self.hd)
            .enumerate()
            .for_each_init(
                || attention::Scratch::new(self.tk),
                |scratch, (bh, o)| attention::forward_rows(self.head(bh, q, k, v), o, scratch),
            );
        Ok((CpuStorage::F32(o), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        o: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (qv, kv, vv, ov, gv) = (vec_of(q)?, vec_of(k)?, vec_of(v)?, vec_of(o)?, vec_of(g)?);
        let (qn, kn) = (self.tq * self.hd, self.tk * self.hd);
        let mut dq = vec![0f32; qv.len()];
        let mut dk = vec![0f32; kv.len()];
        let mut dv = vec![0f32; vv.len()];
        dq.par_chunks_mut(qn)
            .zip(dk.par_chunks_mut(kn))
            .zip(dv.par_chunks_mut(kn))
            .enumerate()
            .for_each_init(
                || attention::Scratch::new(self.tk),
                |scratch, (bh, ((dq, dk), dv))| {
                    let span = bh * qn..(bh + 1) * qn;
                    attention::backward(
                        self.head(bh, &qv, &kv, &vv),
                        &ov[span.clone()],
                        &gv[span],
                        (dq, dk, dv),
                        scratch,
                    )
                },
            );
        let grad = |d: Vec<f32>, like: &Tensor| Tensor::from_vec(d, like.shape(), like.device());
        Ok((Some(grad(dq, q)?), Some(grad(dk, k)?), Some(grad(dv, v)?)))
    }
}

/// (tq, tk) additive mask: query i sits at absolute position tk − tq + i.
pub fn causal_mask(tq: usize, tk: usize, device: &Device) -> Result<Tensor> {
    let offset = tk - tq;
    let data: Vec<f32> = (0..tq)
        .flat_map(|i| {
            (0..tk).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(data, (tq, tk), device)
}

// ---------------------------------------------------------------- GELU

const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_A: f32 = 0.044_715;

/// `row = gelu(row + bias)` for each row of `bias.len()` values of `rows` (no bias: empty,
/// and `rows` one row); compiled for the baseline and for AVX2, as
/// [`softmax_in_place`](super::row_math::softmax_in_place) is.
pub(crate) fn bias_gelu_rows(rows: &mut [f32], bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::row_math::has_avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { bias_gelu_avx2(rows, bias) };
    }
    bias_gelu_lanes(rows, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bias_gelu_avx2(rows: &mut [f32], bias: &[f32]) {
    bias_gelu_lanes(rows, bias)
}

#[inline(always)]
fn bias_gelu_lanes(rows: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return rows.iter_mut().for_each(|v| *v = gelu_value(*v));
    }
    for row in rows.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = gelu_value(*v + b);
        }
    }
}

/// The tanh-approximated GELU of one value (training's kernel and decoding both use it).
#[inline(always)]
pub(crate) fn gelu_value(v: f32) -> f32 {
    0.5 * v * (1.0 + fast_tanh(GELU_C * (v + GELU_A * v * v * v)))
}

/// The derivative of [`gelu_value`] at `v`.
#[inline(always)]
pub(crate) fn gelu_slope(v: f32) -> f32 {
    let t = fast_tanh(GELU_C * (v + GELU_A * v * v * v));
    let dt = (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * v * v);
    0.5 * (1.0 + t) + 0.5 * v * dt
}

/// GELU (tanh approximation, as candle's `gelu`) in one pass, with a one-pass backward.
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "continuo-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(4096)
            .zip(x.par_chunks(4096))
            .for_each(|(yc, xc)| {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = gelu_value(v);
                }
            });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (xv, gv) = (vec_of(x)?, vec_of(g)?);
        let mut dx = vec![0f32; xv.len()];
        dx.par_chunks_mut(4096)
            .zip(xv.par_chunks(4096))
            .zip(gv.par_chunks(4096))
            .for_each(|((dc, xc), gc)| {
                for ((o, &v), &gr) in dc.iter_mut().zip(xc).zip(gc) {
                    *o = gr * gelu_slope(v);
                }
            });
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// GELU, tanh approximation; differentiable.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if fused_on(x) {
        x.contiguous()?.apply_op1(Gelu)
    } else {
        x.gelu()
    }
}

// ---------------------------------------------------------------- linear

/// `x + bias` over the last dimension, whose backward sums the rows of the gradient in one
/// pass (candle's `broadcast_add` backward reduces over the leading dimensions with a strided
/// `sum_keepdim`, 5 % of a training step in perf).
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "continuo-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let d = b.len();
        let mut y = x.to_vec();
        y.par_chunks_mut(d.max(1) * 64).for_each(|rows| {
            for r in rows.chunks_mut(d) {
                for (o, &bi) in r.iter_mut().zip(b) {
                    *o += bi;
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = column_sums(&vec_of(g)?, bias.elem_count());
        Ok((
            Some(g.clone()),
            Some(Tensor::from_vec(db, bias.shape(), bias.device())?),
        ))
    }
}

/// `x · wᵀ + b` for `x` of any rank, as one 2-D matmul: candle's `Linear` broadcasts the
/// weight over the batch, so its backward computes one weight gradient per batch row and then
/// sums them; flattening the leading dimensions gives a single large gemm instead.
pub fn linear(x: &Tensor, layer: &candle_nn::Linear) -> Result<Tensor> {
    let dims = x.dims();
    let (rows, k) = (
        dims[..dims.len() - 1].iter().product::<usize>(),
        dims[dims.len() - 1],
    );
    let w = layer.weight();
    let y = x.reshape((rows, k))?.matmul(&w.t()?)?;
    let y = match layer.bias() {
        Some(b) if fused_on(x) => y.apply_op2(b, BiasAdd)?,
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims.to_vec();
    *out.last_mut().unwrap() = w.dim(0)?;
    y.reshape(out)
}

// ---------------------------------------------------------------- cross-entropy

/// Cross-entropy of (n, v) logits against (n,) u32 targets: the mean over rows, or, with
/// `weights`, each row's loss times its weight, over the weights' sum.
struct CrossEntropy {
    weights: Option<Vec<f32>>,
}

impl CrossEntropy {
    /// Each row's weight over the sum of all of them.
    fn row_scales(&self, rows: usize) -> Vec<f32> {
        match &self.weights {
            Some(w) => {
                let sum: f32 = w.iter().sum();
                w.iter().map(|x| x / sum.max(f32::MIN_POSITIVE)).collect()
            }
            None => vec![1.0 / rows as f32; rows],
        }
    }
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "continuo-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = f32_slice(s1, l1)?;
        let targets = match (s2, l2.contiguous_offsets()) {
            (CpuStorage::U32(t), Some((a, b))) => &t[a..b],
            _ => candle_core::bail!("cross-entropy: targets must be contiguous u32"),
        };
        let v = logits.len() / targets.len();
        let scales = self.row_scales(targets.len());
        // Each row's loss in parallel, added in row order: the same total on every run.
        let per_row: Vec<f64> = logits
            .par_chunks(v)
            .zip(targets.par_iter())
            .zip(scales.par_iter())
            .map(|((row, &t), &scale)| {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let lse = row.iter().map(|&x| fast_exp(x - max)).sum::<f32>().ln() + max;
                ((lse - row[t as usize]) * scale) as f64
            })
            .collect();
        let total: f64 = per_row.iter().sum();
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let lv = vec_of(logits)?;
        let tv = targets.contiguous()?.to_vec1::<u32>()?;
        let g = g.to_scalar::<f32>()?;
        let scales = self.row_scales(tv.len());
        let v = lv.len() / tv.len();
        let mut d = vec![0f32; lv.len()];
        d.par_chunks_mut(v)
            .zip(lv.par_chunks(v))
            .zip(tv.par_iter())
            .zip(scales.par_iter())
            .for_each(|(((dr, row), &t), &scale)| {
                let scale = g * scale;
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let mut sum = 0f32;
                for (o, x) in dr.iter_mut().zip(row) {
                    *o = fast_exp(x - max);
                    sum += *o;
                }
                for o in dr.iter_mut() {
                    *o *= scale / sum;
                }
                dr[t as usize] -= scale;
            });
        Ok((
            Some(Tensor::from_vec(d, logits.shape(), logits.device())?),
            None,
        ))
    }
}

/// Mean cross-entropy loss of (n, v) logits against (n,) u32 targets; differentiable.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if fused_on(logits) {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, CrossEntropy { weights: None })
    } else {
        candle_nn::loss::cross_entropy(logits, targets)
    }
}

/// Cross-entropy of (n, v) logits against (n,) u32 targets with a weight per row: the sum of
/// each row's loss times its weight, over the sum of the weights; differentiable in `logits`.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &[f32],
) -> Result<Tensor> {
    if weights.len() != targets.elem_count() {
        candle_core::bail!(
            "cross-entropy: {} weights for {} targets",
            weights.len(),
            targets.elem_count()
        );
    }
    if fused_on(logits) {
        logits.contiguous()?.apply_op2(
            &targets.contiguous()?,
            CrossEntropy {
                weights: Some(weights.to_vec()),
            },
        )
    } else {
        let log_p = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
        let picked = log_p.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
        let w = Tensor::from_slice(weights, weights.len(), logits.device())?;
        let sum: f32 = weights.iter().sum();
        (picked * w)?.sum_all()?.affine(-1.0 / sum as f64, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A row's moments as plain sums, one row at a time.
    fn plain_moments(xr: &[f32]) -> (f32, f32) {
        let d = xr.len() as f32;
        let mean = xr.iter().sum::<f32>() / d;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
        (mean, 1.0 / (var + LAYER_NORM_EPS).sqrt())
    }

    #[test]
    fn rows_normalised_together_are_bit_for_bit_rows_normalised_alone() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (rows, d) in [(1, 256), (3, 256), (4, 256), (7, 64), (9, 5)] {
            let x: Vec<f32> = (0..rows * d)
                .map(|_| rng.gen_range(-3.0f32..3.0) * 10f32.powi(rng.gen_range(-3..3)))
                .collect();
            let w: Vec<f32> = (0..d).map(|_| rng.gen_range(0.5f32..1.5)).collect();
            let b: Vec<f32> = (0..d).map(|_| rng.gen_range(-0.5f32..0.5)).collect();
            let mut out = vec![0f32; rows * d];
            layer_norm_rows(&x, (&w, &b), &mut out);
            for (xr, or) in x.chunks(d).zip(out.chunks(d)) {
                let (mean, rstd) = plain_moments(xr);
                assert_eq!(moments(xr), (mean, rstd));
                for (((&o, &v), &w), &b) in or.iter().zip(xr).zip(&w).zip(&b) {
                    assert_eq!(o.to_bits(), ((v - mean) * rstd * w + b).to_bits());
                }
            }
        }
    }
}
