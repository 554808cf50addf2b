//! The matrix products of a decoding step: each weight matrix in the steps' precision
//! ([`StepPrecision`]), and the kernels that multiply it with every row of a batch at once,
//! writing any run of its outputs (a chunk of a step's phase, `decode.rs`).
//!
//! Why our own: a step multiplies each matrix with one to eight rows, where a general
//! product (gemm) packs the matrix first, which costs more than the product itself. Here each
//! weight is read and widened once for every row, in blocks of four outputs, and a row's sums
//! are the same whichever rows it is taken with (a candidate decodes the same alone or beside
//! others, on either thread).

use super::decode::StepPrecision;
use super::matmul::Outputs;
use super::prefill_products::{linear_rows, Panels};
use half::f16;

/// The copy of a weight matrix the steps read, when it is not the f32 one.
enum Rounded {
    None,
    F16(Vec<f16>),
    /// Row j is `q[j·inp..] · scales[j]`.
    I8 {
        q: Vec<i8>,
        scales: Vec<f32>,
    },
}

/// A weight matrix (out, in) row-major as candle's `Linear` holds it, and its bias (empty
/// for none).
pub(crate) struct Dense {
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    /// `w` in the steps' precision, unless they read `w` itself.
    rounded: Rounded,
    /// `w` packed for the prefill's products, where this CPU has their kernel.
    pub panels: Option<Panels>,
}

impl Dense {
    pub fn new((w, bias): (Vec<f32>, Vec<f32>), inp: usize, precision: StepPrecision) -> Self {
        let rounded = match precision {
            StepPrecision::F32 => Rounded::None,
            StepPrecision::F16 => Rounded::F16(w.iter().map(|&v| f16::from_f32(v)).collect()),
            StepPrecision::I8 => {
                let (q, scales) = quantize_rows_i8(&w, inp);
                Rounded::I8 { q, scales }
            }
        };
        let panels = Panels::pack(&w, inp);
        Self {
            w,
            bias,
            rounded,
            panels,
        }
    }

    /// The layer over many rows (a prefill's): `dst (rows, out)` from `x (rows, inp)` as
    /// `into` says.
    pub fn prefill_rows(&self, x: &[f32], dst: &mut [f32], inp: usize, into: Outputs) {
        linear_rows(x, &self.w, self.panels.as_ref(), dst, inp, into)
    }

    /// `out[r] = W · x[r] + bias` for every row of `x`, in the steps' precision.
    #[cfg(test)]
    fn apply_rows(&self, x: &[f32], out: &mut [f32], inp: usize) {
        let outs = self.w.len() / inp;
        assert!(out.len() >= x.len() / inp * outs);
        // SAFETY: `out` holds every row's outputs (asserted) and is borrowed mutably here.
        unsafe { self.apply_columns(0..outs, x, Columns::of(out, outs), inp) }
    }

    /// [`Self::apply_rows`] for outputs `js` only, output j of row r written at `out`'s
    /// (r, j - js.start).
    ///
    /// # Safety
    /// `out` must address those values of every row of `x`, and no other thread may touch
    /// them during the call.
    pub(super) unsafe fn apply_columns(
        &self,
        js: std::ops::Range<usize>,
        x: &[f32],
        out: Columns,
        inp: usize,
    ) {
        let bias = if self.bias.is_empty() {
            &self.bias[..]
        } else {
            &self.bias[js.clone()]
        };
        let w = js.start * inp..js.end * inp;
        match &self.rounded {
            Rounded::None => matvec_columns(&self.w[w], None, bias, x, out, inp),
            Rounded::F16(w16) => matvec_columns(&w16[w], None, bias, x, out, inp),
            Rounded::I8 { q, scales } => {
                matvec_columns(&q[w], Some(&scales[js]), bias, x, out, inp)
            }
        }
    }
}

/// Rows of `inp` values as 8-bit integers and one scale per row: the row's largest
/// magnitude maps to ±127 (a row of zeros has scale 0).
fn quantize_rows_i8(w: &[f32], inp: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(w.len());
    let scales = w
        .chunks_exact(inp)
        .map(|row| {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = max / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            q.extend(
                row.iter()
                    .map(|&v| (v * inv).round().clamp(-127.0, 127.0) as i8),
            );
            scale
        })
        .collect();
    (q, scales)
}

/// A weight narrower than f32 that the steps widen as they read it.
trait Narrow: Copy {
    fn widen(self) -> f32;

    /// Eight consecutive weights from `p`, widened.
    ///
    /// # Safety
    /// `p` must address eight values; the CPU must support AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Narrow for f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // f16 is a 16-bit value: eight of them load as one 128-bit lane.
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

/// f32 weights read as they are, so that the f32 steps share the narrow kernels' blocking.
impl Narrow for f32 {
    fn widen(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl Narrow for i8 {
    fn widen(self) -> f32 {
        self as f32
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // Sign-extended to eight i32, then converted.
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)))
    }
}

/// The dot product of a narrow row and an f32 row, summed in f32.
fn dot_narrow<W: Narrow>(w: &[W], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(&w, v)| w.widen() * v).sum()
}

/// [`matvec_rows`] with `W` in f16.
#[cfg(test)]
fn matvec_rows_f16(w: &[f16], bias: &[f32], x: &[f32], out: &mut [f32], inp: usize) {
    matvec_rows_narrow(w, None, bias, x, out, inp)
}

/// [`matvec_rows`] with row j of `W` read as `q[j] · scales[j]`.
#[cfg(test)]
fn matvec_rows_i8(q: &[i8], scales: &[f32], bias: &[f32], x: &[f32], out: &mut [f32], inp: usize) {
    matvec_rows_narrow(q, Some(scales), bias, x, out, inp)
}

/// [`matvec_rows`] with `W` narrow, row j times `scales[j]` if given.
#[cfg(test)]
fn matvec_rows_narrow<W: Narrow>(
    w: &[W],
    scales: Option<&[f32]>,
    bias: &[f32],
    x: &[f32],
    out: &mut [f32],
    inp: usize,
) {
    let outs = w.len() / inp;
    assert!(out.len() >= x.len() / inp * outs);
    // SAFETY: `out` holds every row's outputs (asserted) and is borrowed mutably here.
    unsafe { matvec_columns(w, scales, bias, x, Columns::of(out, outs), inp) }
}

/// Where a product writes its outputs: output j of row r at `ptr + r·stride + j`. A chunk
/// of a step writes its own outputs of every row, which lie apart in each row.
#[derive(Clone, Copy)]
pub(super) struct Columns {
    pub ptr: *mut f32,
    pub stride: usize,
}

impl Columns {
    /// All of `out`, rows of `width`.
    #[cfg(test)]
    fn of(out: &mut [f32], width: usize) -> Self {
        Columns {
            ptr: out.as_mut_ptr(),
            stride: width,
        }
    }

    /// # Safety
    /// (r, j) must lie in the buffer, and no other thread may touch it meanwhile.
    #[inline]
    unsafe fn put(self, r: usize, j: usize, v: f32) {
        *self.ptr.add(r * self.stride + j) = v;
    }
}

/// `out`'s (r, j) = (`W` row j · `x` row r) · `scales[j]` (if given) + `bias[j]` (if not
/// empty), for every row of `x` and every row j of the narrow `W` (rows of `inp`).
///
/// # Safety
/// As [`Columns::put`] for every such (r, j).
unsafe fn matvec_columns<W: Narrow>(
    w: &[W],
    scales: Option<&[f32]>,
    bias: &[f32],
    x: &[f32],
    out: Columns,
    inp: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above; the check is cached);
        // `out` as the caller promised.
        return simd::matvec_columns_avx2(w, scales, bias, x, out, inp);
    }
    let rows = x.len() / inp;
    for (j, wr) in w.chunks_exact(inp).enumerate() {
        let b = bias.get(j).copied().unwrap_or(0.0);
        let scale = scales.map_or(1.0, |s| s[j]);
        for r in 0..rows {
            out.put(r, j, dot_narrow(wr, &x[r * inp..(r + 1) * inp]) * scale + b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! Compiled for AVX2 + FMA + F16C and chosen at run time: the release build targets
    //! baseline x86-64.
    use super::Narrow;
    use std::arch::x86_64::*;

    /// `matvec_columns` four weight rows at a time (twelve for x rows in fours): each load of
    /// `x` serves four rows, and the four sums come out of one horizontal reduction instead
    /// of four; each row's sum is scaled once at the end.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `out` as for `matvec_columns`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matvec_columns_avx2<W: Narrow>(
        w: &[W],
        scales: Option<&[f32]>,
        bias: &[f32],
        x: &[f32],
        out: super::Columns,
        inp: usize,
    ) {
        let outs = w.len() / inp;
        let rows = x.len() / inp;
        assert!(scales.is_none_or(|s| s.len() >= outs));
        let bias_of = |j: usize| bias.get(j).copied().unwrap_or(0.0);
        let scale_of = |j: usize| scales.map_or(1.0, |s| s[j]);
        let put = |r: usize, j: usize, sums: &[f32]| {
            for (k, &s) in sums.iter().enumerate() {
                out.put(r, j + k, s * scale_of(j + k) + bias_of(j + k));
            }
        };
        // Rows `from..` of the four outputs at `j`: x rows four, then two at a time, then
        // alone. Each widened weight serves every row taken with it (candidates and
        // variations decode together), and each row's sums are exactly `dot4`'s.
        let block_of_four = |j: usize, from: usize| {
            let block = &w[j * inp..(j + 4) * inp];
            let mut r = from;
            while r + 4 <= rows {
                let sums = dot4x4(block, &x[r * inp..(r + 4) * inp]);
                for (i, s) in sums.iter().enumerate() {
                    put(r + i, j, s);
                }
                r += 4;
            }
            while r + 2 <= rows {
                let [a, b] = dot4x2(
                    block,
                    &x[r * inp..(r + 1) * inp],
                    &x[(r + 1) * inp..][..inp],
                );
                put(r, j, &a);
                put(r + 1, j, &b);
                r += 2;
            }
            if r < rows {
                put(r, j, &dot4(block, &x[r * inp..(r + 1) * inp]));
            }
        };
        let mut j = 0;
        // Twelve outputs at a time for x rows in fours, or a last three (candidates decoding
        // together), then the rows left over four outputs at a time.
        while rows >= 3 && j + 12 <= outs {
            let block = &w[j * inp..(j + 12) * inp];
            let mut r = 0;
            let put_rows = |r: usize, sums: &[[f32; 12]]| {
                for (i, s) in sums.iter().enumerate() {
                    put(r + i, j, s);
                }
            };
            while r + 4 <= rows {
                put_rows(r, &dot12::<W, 4>(block, &x[r * inp..(r + 4) * inp]));
                r += 4;
            }
            if rows - r == 3 {
                put_rows(r, &dot12::<W, 3>(block, &x[r * inp..(r + 3) * inp]));
                r += 3;
            }
            for k in 0..3 {
                block_of_four(j + 4 * k, r);
            }
            j += 12;
        }
        while j + 4 <= outs {
            block_of_four(j, 0);
            j += 4;
        }
        for j in j..outs {
            for r in 0..rows {
                let sum = super::dot_narrow(&w[j * inp..(j + 1) * inp], &x[r * inp..(r + 1) * inp]);
                out.put(r, j, sum * scale_of(j) + bias_of(j));
            }
        }
    }

    /// The dot products of the four rows of `block` (4 × x.len()) with `x`, unscaled.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot4<W: Narrow>(block: &[W], x: &[f32]) -> [f32; 4] {
        let n = x.len();
        assert!(block.len() >= 4 * n);
        let (pw, px) = (block.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= n {
            let xv = _mm256_loadu_ps(px.add(i));
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(W::load8(pw.add(k * n + i)), xv, *a);
            }
            i += 8;
        }
        let mut out = reduce4(acc);
        for (k, o) in out.iter_mut().enumerate() {
            for t in i..n {
                *o += block[k * n + t].widen() * x[t];
            }
        }
        out
    }

    /// [`dot4`] for two rows of x at once: each weight vector is loaded and widened once for
    /// both. Each row's sums are bit for bit `dot4`'s (the same FMAs in the same order), so a
    /// row decodes the same whether it decodes alone or beside others.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot4x2<W: Narrow>(block: &[W], x0: &[f32], x1: &[f32]) -> [[f32; 4]; 2] {
        let n = x0.len();
        assert!(block.len() >= 4 * n && x1.len() == n);
        let (pw, p0, p1) = (block.as_ptr(), x0.as_ptr(), x1.as_ptr());
        let mut a0 = [_mm256_setzero_ps(); 4];
        let mut a1 = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= n {
            let (x0v, x1v) = (_mm256_loadu_ps(p0.add(i)), _mm256_loadu_ps(p1.add(i)));
            for k in 0..4 {
                let wv = W::load8(pw.add(k * n + i));
                a0[k] = _mm256_fmadd_ps(wv, x0v, a0[k]);
                a1[k] = _mm256_fmadd_ps(wv, x1v, a1[k]);
            }
            i += 8;
        }
        let mut out = [reduce4(a0), reduce4(a1)];
        for (o, x) in out.iter_mut().zip([x0, x1]) {
            for (k, ok) in o.iter_mut().enumerate() {
                for t in i..n {
                    *ok += block[k * n + t].widen() * x[t];
                }
            }
        }
        out
    }

    /// [`dot4`] for four rows of x at once (`x`: 4 × n). AVX2's sixteen registers do not
    /// hold the sixteen sums of four weight rows by four x rows beside the loads, so the
    /// block runs as two halves of two weight rows (eight sums, four x loads, two widened
    /// weights in registers): each widened weight serves four rows instead of two, and each
    /// row's sums are bit for bit `dot4`'s (the same FMAs in the same order, the same
    /// reduction).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot4x4<W: Narrow>(block: &[W], x: &[f32]) -> [[f32; 4]; 4] {
        let n = x.len() / 4;
        assert!(block.len() >= 4 * n && x.len() == 4 * n);
        let (pw, px) = (block.as_ptr(), x.as_ptr());
        let mut sums = [[_mm256_setzero_ps(); 4]; 4];
        for k0 in [0, 2] {
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            let mut i = 0;
            while i + 8 <= n {
                let w0 = W::load8(pw.add(k0 * n + i));
                let w1 = W::load8(pw.add((k0 + 1) * n + i));
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_loadu_ps(px.add(r * n + i));
                    a[0] = _mm256_fmadd_ps(w0, xv, a[0]);
                    a[1] = _mm256_fmadd_ps(w1, xv, a[1]);
                }
                i += 8;
            }
            for (s, a) in sums.iter_mut().zip(acc) {
                s[k0] = a[0];
                s[k0 + 1] = a[1];
            }
        }
        let mut out = [
            reduce4(sums[0]),
            reduce4(sums[1]),
            reduce4(sums[2]),
            reduce4(sums[3]),
        ];
        let tail = n - n % 8;
        for (r, o) in out.iter_mut().enumerate() {
            for (k, ok) in o.iter_mut().enumerate() {
                for t in tail..n {
                    *ok += block[k * n + t].widen() * x[r * n + t];
                }
            }
        }
        out
    }

    /// [`dot4x4`] for twelve weight rows (three blocks of four) and `R` rows of x (`x`:
    /// R × n), four or three: each pass keeps three weight rows by `R` x rows, twelve or nine
    /// sums, in registers, where `dot4x4`'s eight leave the FMAs' latency exposed (about 7%
    /// faster on Zen 3), and three rows (the step after a candidate finished) widen each
    /// weight once instead of twice (a pair, then one row alone). Each row's sums are bit for
    /// bit `dot4`'s: each sum is the same FMAs in the same order, and the same reduction
    /// ([`reduce4`] reduces each accumulator on its own).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot12<W: Narrow, const R: usize>(block: &[W], x: &[f32]) -> [[f32; 12]; R] {
        let n = x.len() / R;
        assert!(block.len() >= 12 * n && x.len() == R * n);
        let (pw, px) = (block.as_ptr(), x.as_ptr());
        let mut sums = [[_mm256_setzero_ps(); 12]; R];
        for k0 in [0, 3, 6, 9] {
            let mut acc = [[_mm256_setzero_ps(); 3]; R];
            let mut i = 0;
            while i + 8 <= n {
                let w0 = W::load8(pw.add(k0 * n + i));
                let w1 = W::load8(pw.add((k0 + 1) * n + i));
                let w2 = W::load8(pw.add((k0 + 2) * n + i));
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_loadu_ps(px.add(r * n + i));
                    a[0] = _mm256_fmadd_ps(w0, xv, a[0]);
                    a[1] = _mm256_fmadd_ps(w1, xv, a[1]);
                    a[2] = _mm256_fmadd_ps(w2, xv, a[2]);
                }
                i += 8;
            }
            for (s, a) in sums.iter_mut().zip(acc) {
                s[k0..k0 + 3].copy_from_slice(&a);
            }
        }
        let mut out = [[0f32; 12]; R];
        let tail = n - n % 8;
        for (r, (o, s)) in out.iter_mut().zip(&sums).enumerate() {
            for g in 0..3 {
                let four = [s[4 * g], s[4 * g + 1], s[4 * g + 2], s[4 * g + 3]];
                o[4 * g..4 * g + 4].copy_from_slice(&reduce4(four));
            }
            for (k, ok) in o.iter_mut().enumerate() {
                for t in tail..n {
                    *ok += block[k * n + t].widen() * x[r * n + t];
                }
            }
        }
        out
    }

    /// The sums of the lanes of each of four accumulators.
    #[target_feature(enable = "avx2")]
    unsafe fn reduce4(acc: [__m256; 4]) -> [f32; 4] {
        // [a01 a23 b01 b23 | a45 a67 b45 b67] and the same for c, d; then per 128-bit lane
        // [a b c d] partial sums, and the two lanes added.
        let ab = _mm256_hadd_ps(acc[0], acc[1]);
        let cd = _mm256_hadd_ps(acc[2], acc[3]);
        let abcd = _mm256_hadd_ps(ab, cd);
        let sums = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), sums);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (outputs, inputs, rows) the kernels are checked on: outputs not a multiple of 4 and
    /// inputs not a multiple of 8 take the tails; 28 outputs by 5 rows take twelve-output
    /// blocks for four rows, then four-output blocks for the fifth, by 3 rows twelve-output
    /// blocks of three rows.
    const SHAPES: [(usize, usize, usize); 7] = [
        (1, 1, 1),
        (4, 8, 1),
        (7, 13, 2),
        (9, 32, 3),
        (12, 256, 2),
        (28, 21, 5),
        (28, 21, 3),
    ];

    #[test]
    fn the_f16_matrix_vector_product_agrees_with_plain_sums_on_every_shape() {
        for (outs, inp, rows) in SHAPES {
            let w: Vec<f16> = (0..outs * inp)
                .map(|i| f16::from_f32(((i * 7) % 13) as f32 * 0.1 - 0.6))
                .collect();
            let bias: Vec<f32> = (0..outs).map(|j| j as f32 * 0.01).collect();
            let x: Vec<f32> = (0..rows * inp)
                .map(|i| ((i * 5) % 11) as f32 * 0.2 - 1.0)
                .collect();
            let mut out = vec![0f32; rows * outs];
            matvec_rows_f16(&w, &bias, &x, &mut out, inp);
            for r in 0..rows {
                for j in 0..outs {
                    let want: f32 = (0..inp)
                        .map(|i| w[j * inp + i].to_f32() * x[r * inp + i])
                        .sum::<f32>()
                        + bias[j];
                    let got = out[r * outs + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "({outs}, {inp}, {rows}) row {r} out {j}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_i8_matrix_vector_product_agrees_with_plain_sums_on_every_shape() {
        for (outs, inp, rows) in SHAPES {
            let w: Vec<f32> = (0..outs * inp)
                .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6)
                .collect();
            let (q, scales) = quantize_rows_i8(&w, inp);
            let bias: Vec<f32> = (0..outs).map(|j| j as f32 * 0.01).collect();
            let x: Vec<f32> = (0..rows * inp)
                .map(|i| ((i * 5) % 11) as f32 * 0.2 - 1.0)
                .collect();
            let mut out = vec![0f32; rows * outs];
            matvec_rows_i8(&q, &scales, &bias, &x, &mut out, inp);
            for r in 0..rows {
                for j in 0..outs {
                    let row = |k: usize| w[j * inp + k];
                    let rounded: f32 = (0..inp)
                        .map(|k| q[j * inp + k] as f32 * scales[j] * x[r * inp + k])
                        .sum::<f32>()
                        + bias[j];
                    let exact: f32 =
                        (0..inp).map(|k| row(k) * x[r * inp + k]).sum::<f32>() + bias[j];
                    let got = out[r * outs + j];
                    assert!(
                        (got - rounded).abs() <= 1e-4 * (1.0 + rounded.abs()),
                        "({outs}, {inp}, {rows}) row {r} out {j}: {got} vs {rounded}"
                    );
                    // Each weight within half a step (largest / 254) of its own value.
                    let bound: f32 =
                        (0..inp).map(|k| x[r * inp + k].abs()).sum::<f32>() * scales[j] / 2.0;
                    assert!(
                        (got - exact).abs() <= bound + 1e-4,
                        "rounding ({outs}, {inp})"
                    );
                }
            }
        }
        // A row of zeros keeps scale 0 and gives the bias.
        let (q, scales) = quantize_rows_i8(&[0.0; 8], 8);
        assert_eq!((q, scales), (vec![0i8; 8], vec![0.0]));
    }

    #[test]
    fn rows_decoded_together_are_bit_for_bit_rows_decoded_alone() {
        for precision in StepPrecision::ALL {
            // Twelve-output blocks (for rows in fours or a last three) twice, then a four-output block, with
            // and without an input tail.
            for (outs, inp) in [(4, 8), (7, 13), (12, 256), (9, 1024), (28, 24), (30, 13)] {
                let w: Vec<f32> = (0..outs * inp)
                    .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6 + (i % 3) as f32 * 1e-3)
                    .collect();
                let bias: Vec<f32> = (0..outs).map(|j| j as f32 * 0.01).collect();
                let dense = Dense::new((w, bias), inp, precision);
                for rows in 1..=9 {
                    let x: Vec<f32> = (0..rows * inp)
                        .map(|i| ((i * 5) % 11) as f32 * 0.2 - 1.0 + (i % 7) as f32 * 1e-3)
                        .collect();
                    let mut together = vec![0f32; rows * outs];
                    dense.apply_rows(&x, &mut together, inp);
                    for (r, row) in x.chunks_exact(inp).enumerate() {
                        let mut alone = vec![0f32; outs];
                        dense.apply_rows(row, &mut alone, inp);
                        assert_eq!(
                            alone,
                            together[r * outs..][..outs],
                            "{precision:?} ({outs}, {inp}) row {r} of {rows}"
                        );
                    }
                }
            }
        }
    }
}
