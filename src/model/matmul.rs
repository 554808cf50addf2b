//! Packed matrix products on plain f32 buffers, through the `gemm` crate that candle's CPU
//! backend itself calls: for the kernels that multiply without tensors, the prefill
//! (`prefill.rs`) and the tiles of causal attention (`attention.rs`). Strides let a product
//! read a head's columns inside a wider row, or a matrix as its transpose, without copies.

use gemm::Parallelism;
use rayon::prelude::*;

/// A pointer parallel tasks write through, each into columns of the buffer no other task
/// writes (the prefill's attention per (sequence, head), a linear layer's share of outputs,
/// training's attention backward).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);
// SAFETY: every user hands each task its own columns of a buffer that outlives the tasks
// (they end inside the call that made the pointer), so no two tasks touch the same value.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    /// A method, so that closures capture the whole (Sync) struct, not its pointer field.
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// A matrix read in place: element (r, c) at `ptr + r·rs + c·cs`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

impl View {
    /// `rows` × `cols` at the start of `data`, row-major with rows `stride` apart.
    pub fn rows(data: &[f32], rows: usize, cols: usize, stride: usize) -> View {
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * stride + cols <= data.len(),
            "a {rows} × {cols} view with stride {stride} overruns {} values",
            data.len()
        );
        View {
            ptr: data.as_ptr(),
            rs: stride,
            cs: 1,
        }
    }

    /// The same values read as the transpose.
    pub fn t(self) -> View {
        View {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// Every thread of the current rayon pool for one product (candle's choice too), or none.
pub(crate) fn all_threads() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `dst (m × n) = [dst +] scale · a (m × k) · b (k × n)`, `dst` row-major with rows
/// `dst_stride` apart.
///
/// # Safety
/// `a` and `b` must address m × k and k × n values of live buffers, `dst` m rows of n values
/// `dst_stride` apart that nothing else reads or writes during the call. (Views made by
/// [`View::rows`] are bounds-checked; a view's transpose addresses the same values.)
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_stride: usize,
    accumulate: bool,
    a: View,
    b: View,
    scale: f32,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_stride as isize,
        accumulate,
        a.ptr,
        a.cs as isize,
        a.rs as isize,
        b.ptr,
        b.cs as isize,
        b.rs as isize,
        1.0,
        scale,
        false,
        false,
        false,
        par,
    )
}

/// `dst (rows, out) += x (rows, inp) · Wᵀ`, with `W` (out, inp) row-major as candle's
/// `Linear` holds it.
pub(crate) fn add_x_wt(x: &[f32], w: &[f32], dst: &mut [f32], inp: usize, par: Parallelism) {
    let (rows, out) = (x.len() / inp, w.len() / inp);
    assert!(x.len() == rows * inp && w.len() == out * inp && dst.len() == rows * out);
    // SAFETY: the views are bounds-checked, `dst` holds rows × out values and is borrowed
    // mutably, so nothing else touches it.
    unsafe {
        product(
            (rows, out, inp),
            dst.as_mut_ptr(),
            out,
            true,
            View::rows(x, rows, inp, inp),
            View::rows(w, out, inp, inp).t(),
            1.0,
            par,
        )
    }
}

/// What a linear layer split by outputs ([`linear_by_outputs`]) writes into its rows.
#[derive(Clone, Copy)]
pub(crate) enum Outputs<'a> {
    /// `dst = bias + x · Wᵀ`.
    Bias(&'a [f32]),
    /// `dst += bias + x · Wᵀ` (a residual stream; the bias is added first).
    AddBias(&'a [f32]),
    /// `dst = gelu(x · Wᵀ + bias)`.
    BiasGelu(&'a [f32]),
}

/// A linear layer over rows, `x (rows, inp)` through `W (out, inp)` into `dst (rows, out)`,
/// with the outputs split between the pool's threads: each thread sets up its own columns,
/// runs a single-threaded product over its share of `W`, and finishes them.
///
/// Why not gemm's own threading for the prefill's layers: it packs all of `W` on the calling
/// thread before its threads start, the other core idle, then hands out blocks as jobs; and a
/// bias or a GELU pass over all rows is one more hand-off between the cores each. Split by
/// outputs there is one hand-off per layer, and each thread packs only its share (a prefill
/// of 256 tokens 7 % faster for the split alone, alternated in one process on this 2-core
/// AVX2 machine). Each output is summed as before: gemm's depth blocks depend on `inp` alone.
/// An empty bias is none.
pub(crate) fn linear_by_outputs(x: &[f32], w: &[f32], dst: &mut [f32], inp: usize, into: Outputs) {
    let (rows, out) = (x.len() / inp, w.len() / inp);
    assert!(x.len() == rows * inp && w.len() == out * inp && dst.len() == rows * out);
    let bias = match into {
        Outputs::Bias(b) | Outputs::AddBias(b) | Outputs::BiasGelu(b) => b,
    };
    assert!(bias.is_empty() || bias.len() == out);
    // Shares of whole 16-output panels (gemm's f32 AVX2 block), so none straddles two.
    let share = out
        .div_ceil(rayon::current_num_threads().max(1))
        .next_multiple_of(16);
    let dst = SharedOut(dst.as_mut_ptr());
    w.par_chunks(share * inp)
        .enumerate()
        .for_each(|(i, w_share)| {
            let (first, n) = (i * share, w_share.len() / inp);
            let bias = if bias.is_empty() {
                bias
            } else {
                &bias[first..first + n]
            };
            // SAFETY: this task alone reads and writes columns first .. first + n of every
            // dst row, all inside `dst` (asserted above), which stays borrowed mutably until
            // the tasks end.
            let columns = |r: usize| unsafe {
                std::slice::from_raw_parts_mut(dst.get().add(r * out + first), n)
            };
            match into {
                Outputs::Bias(_) if bias.is_empty() => (0..rows).for_each(|r| columns(r).fill(0.0)),
                Outputs::Bias(_) => (0..rows).for_each(|r| columns(r).copy_from_slice(bias)),
                Outputs::AddBias(_) if !bias.is_empty() => (0..rows)
                    .for_each(|r| columns(r).iter_mut().zip(bias).for_each(|(o, b)| *o += b)),
                Outputs::AddBias(_) | Outputs::BiasGelu(_) => {}
            }
            // SAFETY: the views are bounds-checked; the destination is this task's columns,
            // as above.
            unsafe {
                product(
                    (rows, n, inp),
                    dst.get().add(first),
                    out,
                    !matches!(into, Outputs::BiasGelu(_)),
                    View::rows(x, rows, inp, inp),
                    View::rows(w_share, n, inp, inp).t(),
                    1.0,
                    Parallelism::None,
                )
            }
            if let Outputs::BiasGelu(_) = into {
                // The bias after the product, in the GELU's pass: one pass over the rows
                // fewer. For inputs up to gemm's depth block (512) the product is summed
                // before the bias either way, so the values are the same.
                (0..rows).for_each(|r| super::ops::bias_gelu_rows(columns(r), bias));
            }
        });
}

/// `dst (rows, inp) = g (rows, out) · W`, `W` (out, inp) row-major: a linear layer's input
/// gradient.
pub(crate) fn g_w(g: &[f32], w: &[f32], dst: &mut [f32], inp: usize, par: Parallelism) {
    let (rows, out) = (dst.len() / inp, w.len() / inp);
    assert!(dst.len() == rows * inp && w.len() == out * inp && g.len() == rows * out);
    // SAFETY: bounds-checked views; `dst` is borrowed mutably.
    unsafe {
        product(
            (rows, inp, out),
            dst.as_mut_ptr(),
            inp,
            false,
            View::rows(g, rows, out, out),
            View::rows(w, out, inp, inp),
            1.0,
            par,
        )
    }
}

/// `dst (out, inp) = gᵀ · x`, `g` (rows, out), `x` (rows, inp): a linear layer's weight
/// gradient summed over the rows.
pub(crate) fn gt_x(g: &[f32], x: &[f32], dst: &mut [f32], inp: usize, par: Parallelism) {
    let (rows, out) = (x.len() / inp, dst.len() / inp);
    assert!(x.len() == rows * inp && dst.len() == out * inp && g.len() == rows * out);
    // SAFETY: bounds-checked views; `dst` is borrowed mutably.
    unsafe {
        product(
            (out, inp, rows),
            dst.as_mut_ptr(),
            inp,
            false,
            View::rows(g, rows, out, out).t(),
            View::rows(x, rows, inp, inp),
            1.0,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_read_strides_and_transposes_as_plain_loops_do() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * 4).map(|i| (i % 9) as f32 - 4.0).collect(); // m × k in rows of 4
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.5).collect(); // (n, k) row-major
        let x: Vec<f32> = a.chunks(4).flat_map(|r| r[..k].iter().copied()).collect();
        let mut dst = vec![1.0f32; m * n];
        add_x_wt(&x, &w, &mut dst, k, Parallelism::None);
        let mut strided = vec![0.0f32; m * n];
        // SAFETY: bounds-checked views, `strided` owned here.
        unsafe {
            product(
                (m, n, k),
                strided.as_mut_ptr(),
                n,
                false,
                View::rows(&a, m, k, 4),
                View::rows(&w, n, k, k).t(),
                2.0,
                Parallelism::None,
            )
        }
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|j| a[r * 4 + j] * w[c * k + j]).sum();
                assert!((dst[r * n + c] - (1.0 + want)).abs() < 1e-5);
                assert!((strided[r * n + c] - 2.0 * want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn layers_split_by_outputs_are_bit_for_bit_gemms_own_threading() {
        // 40 outputs on two threads: shares of 32 and 8, the second not a whole panel.
        let (rows, inp, out) = (37, 24, 40);
        let x: Vec<f32> = (0..rows * inp)
            .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6)
            .collect();
        let w: Vec<f32> = (0..out * inp)
            .map(|i| ((i * 5) % 11) as f32 * 0.07 - 0.3)
            .collect();
        let bias: Vec<f32> = (0..out).map(|i| i as f32 * 0.01 - 0.2).collect();
        let residual: Vec<f32> = (0..rows * out).map(|i| (i % 9) as f32 * 0.5).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let gemms_own = |start: &[f32]| {
                let mut dst = start.to_vec();
                add_x_wt(&x, &w, &mut dst, inp, all_threads());
                dst
            };
            let with_bias = super::super::prefill::rows_of;
            let mut biased = vec![0f32; rows * out];
            with_bias(&mut biased, &bias);
            let mut dst = vec![f32::NAN; rows * out];
            linear_by_outputs(&x, &w, &mut dst, inp, Outputs::Bias(&bias));
            assert_eq!(dst, gemms_own(&biased));

            let mut dst = residual.clone();
            linear_by_outputs(&x, &w, &mut dst, inp, Outputs::AddBias(&bias));
            let mut start = residual.clone();
            super::super::prefill::add_rows(&mut start, &bias);
            assert_eq!(dst, gemms_own(&start));

            let mut dst = vec![f32::NAN; rows * out];
            linear_by_outputs(&x, &w, &mut dst, inp, Outputs::BiasGelu(&bias));
            let mut want = gemms_own(&vec![0f32; rows * out]);
            crate::model::ops::bias_gelu_rows(&mut want, &bias);
            assert_eq!(dst, want);

            // No bias: zeros, then the product alone.
            let mut dst = vec![f32::NAN; rows * out];
            linear_by_outputs(&x, &w, &mut dst, inp, Outputs::Bias(&[]));
            assert_eq!(dst, gemms_own(&vec![0f32; rows * out]));
        });
    }

    #[test]
    fn gradient_products_read_as_plain_loops_do() {
        let (rows, out, inp) = (6, 5, 3);
        let g: Vec<f32> = (0..rows * out).map(|i| (i % 7) as f32 - 3.0).collect();
        let w: Vec<f32> = (0..out * inp).map(|i| (i % 4) as f32 * 0.5 - 0.7).collect();
        let x: Vec<f32> = (0..rows * inp).map(|i| (i % 5) as f32 * 0.3).collect();
        let mut dx = vec![9.0f32; rows * inp];
        g_w(&g, &w, &mut dx, inp, Parallelism::None);
        let mut dw = vec![9.0f32; out * inp];
        gt_x(&g, &x, &mut dw, inp, Parallelism::None);
        for r in 0..rows {
            for c in 0..inp {
                let want: f32 = (0..out).map(|j| g[r * out + j] * w[j * inp + c]).sum();
                assert!((dx[r * inp + c] - want).abs() < 1e-5);
            }
        }
        for j in 0..out {
            for c in 0..inp {
                let want: f32 = (0..rows).map(|r| g[r * out + j] * x[r * inp + c]).sum();
                assert!((dw[j * inp + c] - want).abs() < 1e-5);
            }
        }
    }
}
