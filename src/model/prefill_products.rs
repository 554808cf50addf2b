//! The prefill's linear layers over many rows, on weights packed once into panels of 16
//! outputs: what the `gemm` crate's product does for them, without its work per call.
//!
//! Why our own: a prefill of 256 tokens spent about a third of its time outside gemm's
//! multiply-add kernel, which itself ran near the FMA units' peak (`perf` on the 2-core AVX2
//! machine): packing both operands on every call (the weights never change), its bookkeeping,
//! and a separate pass over every row for the bias. Here the weights are packed when the model
//! loads, the rows are read where they lie (six rows broadcast against two vectors of a panel,
//! gemm's own 6 × 16 block turned around), and the bias, residual or GELU are applied as the
//! block's outputs are written.
//!
//! Each output is summed exactly as gemm sums it (one chain of FMAs over the inputs, in depth
//! blocks of [`DEPTH_BLOCK`] added into the destination one after another), so the prefill's
//! keys, values and logits, and the notes, are bit for bit those of gemm's product (tested
//! against it). Without AVX2 and FMA (and off x86-64) the layers run on gemm itself.

use super::matmul::{linear_by_outputs, Outputs, SharedOut};
use rayon::prelude::*;

/// Outputs per panel: two AVX2 vectors.
const PANEL: usize = 16;
/// Rows per block: six rows of two accumulators each, twelve of the sixteen registers.
const TILE_ROWS: usize = 6;
/// gemm's depth block for f32 products of this size (`gemm_common::cache::kernel_params`:
/// never under 512, split evenly): a layer of up to 512 inputs sums each output in one chain,
/// the MLP's down projection (1024) in two chains of 512, the second added to the first.
const DEPTH_BLOCK: usize = 512;
/// Panels per task: enough tasks for both cores to share every layer evenly.
const PANELS_PER_TASK: usize = 2;

/// A weight matrix (out, inp) as panels of [`PANEL`] outputs: panel p holds, input by input,
/// the weights of outputs 16p .. 16p + 16 (zeros past the last output).
pub(crate) struct Panels {
    data: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Panels {
    /// Packs `w` (out, inp) row-major, where this CPU runs the panels' kernel; `None` where
    /// the layers run on gemm.
    pub fn pack(w: &[f32], inp: usize) -> Option<Self> {
        if !has_kernel() || inp == 0 {
            return None;
        }
        let out = w.len() / inp;
        let mut data = vec![0f32; out.div_ceil(PANEL) * PANEL * inp];
        for (j, row) in w.chunks_exact(inp).enumerate() {
            let panel = &mut data[j / PANEL * PANEL * inp..][..PANEL * inp];
            for (k, &v) in row.iter().enumerate() {
                panel[k * PANEL + j % PANEL] = v;
            }
        }
        Some(Self { data, inp, out })
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * PANEL * self.inp..][..PANEL * self.inp]
    }
}

fn has_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A linear layer over rows, `x (rows, inp)` through `W (out, inp)` into `dst (rows, out)`
/// as `into` says: on `panels` (`W` packed) where there are, else on gemm
/// ([`linear_by_outputs`]). The same values either way.
pub(crate) fn linear_rows(
    x: &[f32],
    w: &[f32],
    panels: Option<&Panels>,
    dst: &mut [f32],
    inp: usize,
    into: Outputs,
) {
    match panels {
        Some(p) if gemm_blocks(x.len() / inp.max(1), p.out) => linear_by_panels(x, p, dst, into),
        _ => linear_by_outputs(x, w, dst, inp, into),
    }
}

/// Whether gemm sums a layer of `rows` × `out` in its blocks as the panels do: one row, or
/// at most 256 outputs in all on a thread, it takes as dot products, summed otherwise (the
/// last block of a prefill runs on one row per sequence). Those stay gemm's, for the same
/// values.
fn gemm_blocks(rows: usize, out: usize) -> bool {
    let share = out
        .div_ceil(rayon::current_num_threads().max(1))
        .next_multiple_of(PANEL);
    rows > 1 && rows * share > PANEL * PANEL
}

/// [`linear_rows`] on panels: the pool's threads take a few panels at a time, each panel
/// block by block of rows.
fn linear_by_panels(x: &[f32], w: &Panels, dst: &mut [f32], into: Outputs) {
    let (inp, out) = (w.inp, w.out);
    let rows = x.len() / inp;
    assert!(x.len() == rows * inp && dst.len() == rows * out);
    let bias = match into {
        Outputs::Bias(b) | Outputs::AddBias(b) | Outputs::BiasGelu(b) => b,
    };
    assert!(bias.is_empty() || bias.len() == out);
    let depth_blocks = inp.div_ceil(DEPTH_BLOCK);
    let depth = inp.div_ceil(depth_blocks);
    let dst = SharedOut(dst.as_mut_ptr());
    let panels = out.div_ceil(PANEL);
    (0..panels.div_ceil(PANELS_PER_TASK))
        .into_par_iter()
        .for_each(|task| {
            let first = task * PANELS_PER_TASK;
            for p in first..(first + PANELS_PER_TASK).min(panels) {
                let cols = p * PANEL..(p * PANEL + PANEL).min(out);
                let bias = if bias.is_empty() {
                    bias
                } else {
                    &bias[cols.clone()]
                };
                for row in (0..rows).step_by(TILE_ROWS) {
                    let n = TILE_ROWS.min(rows - row);
                    let mut sums = [[0f32; PANEL]; TILE_ROWS];
                    // SAFETY: this task alone writes columns `cols` of every dst row, all
                    // inside `dst` (asserted above), which stays borrowed mutably until the
                    // tasks end.
                    let dst_row = |r: usize| unsafe {
                        std::slice::from_raw_parts_mut(
                            dst.get().add((row + r) * out + cols.start),
                            cols.len(),
                        )
                    };
                    for (b, k0) in (0..inp).step_by(depth).enumerate() {
                        let k1 = (k0 + depth).min(inp);
                        // SAFETY: rows row .. row + n of `x` hold inputs k0 .. k1; the panel
                        // holds 16 weights for each of them; the CPU has AVX2 and FMA
                        // (`Panels::pack`).
                        unsafe {
                            block_sums(
                                &x[row * inp..],
                                inp,
                                &w.panel(p)[k0 * PANEL..k1 * PANEL],
                                k0,
                                k1 - k0,
                                n,
                                &mut sums,
                            )
                        };
                        for (r, s) in sums[..n].iter().enumerate() {
                            let d = dst_row(r);
                            let s = &s[..d.len()];
                            match into {
                                _ if b > 0 => d.iter_mut().zip(s).for_each(|(o, s)| *o += s),
                                Outputs::Bias(_) if bias.is_empty() => d.copy_from_slice(s),
                                Outputs::Bias(_) => {
                                    // gemm adds its sums to a destination that holds the bias.
                                    for ((o, s), b) in d.iter_mut().zip(s).zip(bias) {
                                        *o = b + s;
                                    }
                                }
                                Outputs::AddBias(_) if bias.is_empty() => {
                                    d.iter_mut().zip(s).for_each(|(o, s)| *o += s)
                                }
                                Outputs::AddBias(_) => {
                                    for ((o, s), b) in d.iter_mut().zip(s).zip(bias) {
                                        *o = (*o + b) + s;
                                    }
                                }
                                Outputs::BiasGelu(_) => d.copy_from_slice(s),
                            }
                        }
                    }
                    if let Outputs::BiasGelu(_) = into {
                        (0..n).for_each(|r| super::ops::bias_gelu_rows(dst_row(r), bias));
                    }
                }
            }
        });
}

/// Writes into `sums[r]` the 16 sums of row r (r < `n`) of `x` (rows `stride` apart) at
/// inputs k0 .. k0 + depth with the panel's 16 weights per input (`panel` starts at input
/// k0): one FMA chain per sum, input by input, as gemm's kernel runs.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `x` must hold n rows of at least k0 + depth values and
/// `panel` 16 · depth.
#[cfg(target_arch = "x86_64")]
unsafe fn block_sums(
    x: &[f32],
    stride: usize,
    panel: &[f32],
    k0: usize,
    depth: usize,
    n: usize,
    sums: &mut [[f32; PANEL]; TILE_ROWS],
) {
    assert!((1..=TILE_ROWS).contains(&n) && x.len() >= (n - 1) * stride + k0 + depth);
    assert!(panel.len() == depth * PANEL);
    let x = x.as_ptr().add(k0);
    let panel = panel.as_ptr();
    match n {
        1 => block_sums_avx2::<1>(x, stride, panel, depth, sums),
        2 => block_sums_avx2::<2>(x, stride, panel, depth, sums),
        3 => block_sums_avx2::<3>(x, stride, panel, depth, sums),
        4 => block_sums_avx2::<4>(x, stride, panel, depth, sums),
        5 => block_sums_avx2::<5>(x, stride, panel, depth, sums),
        _ => block_sums_avx2::<6>(x, stride, panel, depth, sums),
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block_sums(
    _: &[f32],
    _: usize,
    _: &[f32],
    _: usize,
    _: usize,
    _: usize,
    _: &mut [[f32; PANEL]; TILE_ROWS],
) {
    unreachable!("panels are only packed on x86-64")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_sums_avx2<const R: usize>(
    x: *const f32,
    stride: usize,
    panel: *const f32,
    depth: usize,
    sums: &mut [[f32; PANEL]; TILE_ROWS],
) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    for k in 0..depth {
        let w_lo = _mm256_loadu_ps(panel.add(k * PANEL));
        let w_hi = _mm256_loadu_ps(panel.add(k * PANEL + 8));
        for r in 0..R {
            let v = _mm256_broadcast_ss(&*x.add(r * stride + k));
            lo[r] = _mm256_fmadd_ps(v, w_lo, lo[r]);
            hi[r] = _mm256_fmadd_ps(v, w_hi, hi[r]);
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(sums[r].as_mut_ptr(), lo[r]);
        _mm256_storeu_ps(sums[r].as_mut_ptr().add(8), hi[r]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn values(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn panels_sum_as_gemm_does_bit_for_bit() {
        if !has_kernel() {
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // Rows past one block and ragged; the depths of the model's layers; outputs in
        // whole panels and not.
        for (rows, inp, out) in [
            (257, 256, 768),
            (7, 1024, 256),
            (64, 256, 1024),
            (13, 40, 344),
        ] {
            let x = values(&mut rng, rows * inp);
            let w = values(&mut rng, out * inp);
            let bias = values(&mut rng, out);
            let residual = values(&mut rng, rows * out);
            let panels = Panels::pack(&w, inp).unwrap();
            for into in [
                Outputs::Bias(&bias),
                Outputs::Bias(&[]),
                Outputs::AddBias(&bias),
                Outputs::AddBias(&[]),
                Outputs::BiasGelu(&bias),
            ] {
                let (mut by_gemm, mut by_panels) = (residual.clone(), residual.clone());
                pool.install(|| {
                    linear_by_outputs(&x, &w, &mut by_gemm, inp, into);
                    linear_rows(&x, &w, Some(&panels), &mut by_panels, inp, into);
                });
                let same = by_gemm
                    .iter()
                    .zip(&by_panels)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{rows} × {inp} → {out}");
            }
        }
    }
}
