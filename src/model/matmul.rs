//! Packed matrix products on plain f32 buffers, through the `gemm` crate that candle's CPU
//! backend itself calls: for the kernels that multiply without tensors, the prefill
//! (`prefill.rs`) and the tiles of causal attention (`attention.rs`). Strides let a product
//! read a head's columns inside a wider row, or a matrix as its transpose, without copies.

use gemm::Parallelism;

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
