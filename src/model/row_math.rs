//! Arithmetic on rows of floats shared by the attention tiles, the candle ops and the decoding
//! step: the causal rule, a fast exp and tanh, softmax, sums and dot products. Hand-written
//! because the compiler vectorises these loops (eight running sums, branch-free exp and tanh)
//! where `f32::exp`, `f32::tanh` and in-order sums stay scalar; a row here is short (one
//! query's keys, one head's channels), so a BLAS call would cost more than it saves.

/// Keys visible to query row `i` of `tq` queries that are the last of `tk` positions: its own
/// position and every earlier one (the causal rule of the softmax and the attention kernels).
pub(crate) fn visible_keys(tq: usize, tk: usize, i: usize) -> usize {
    tk - tq + i + 1
}

/// e^x within 2 float ulps for x in [−87, 88] (clamped outside it), as Cephes' `expf`
/// computes it: x = n·ln 2 + r, e^r by a degree-6 polynomial, 2^n written into the exponent
/// bits. Branch-free, so loops over rows vectorise: glibc's `expf` is a call per element,
/// and the softmax of every attention row (forward, and again in the backward) spent most of
/// its time there (the prefill's attention ran at 10 GFLOP/s).
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 · 2^23 rounds to an integer in the low mantissa bits (no round instruction
    // in baseline x86-64).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_54, 88.376_26);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    er * f32::from_bits(((n + 127) << 23) as u32)
}

/// Whether this CPU runs AVX2: loops compiled for it are eight lanes wide instead of SSE's
/// four. std caches the answer, so a check per row costs a load. (x86-64 only: elsewhere the
/// callers have no AVX2 copy to choose.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// A numerically stable softmax of `row`, in place.
///
/// Compiled twice, for the baseline and for AVX2, chosen at run time: the same scalar code,
/// so the same values lane by lane (Rust never contracts a product and a sum into an FMA),
/// at twice the width (the plugin's build targets every x86-64, which lacks AVX2).
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { softmax_avx2(row) };
    }
    softmax_lanes(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_lanes(row)
}

#[inline(always)]
fn softmax_lanes(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for v in row.iter_mut() {
        *v = fast_exp(*v - max);
    }
    let sum = sum_of(row);
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// The sum of a row in eight running sums, which the compiler can keep in vector lanes.
#[inline(always)]
fn sum_of(row: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Dot product with eight running sums, so that the compiler vectorises it (a single sum
/// would have to stay in order).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// tanh as a clamped rational function (the 13/6 approximation Eigen and XNNPACK use),
/// within a few float ulps of `f32::tanh` on the whole line. glibc's `tanhf` goes through
/// `expm1f` one element at a time (16 % of a training step in perf); this compiles to a
/// branch-free loop the compiler vectorises.
#[inline(always)]
pub(crate) fn fast_tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    // Plain multiply-adds, not `mul_add`: without the FMA target feature that is a libm call.
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = ((((((A[6] * x2 + A[5]) * x2 + A[4]) * x2 + A[3]) * x2 + A[2]) * x2 + A[1]) * x2
        + A[0])
        * x;
    let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest error of `fast` against `exact` at `x = i · 1e-4` for i in `range`, relative
    /// to |exact| when `relative`.
    fn worst_error(
        range: std::ops::RangeInclusive<i32>,
        fast: fn(f32) -> f32,
        exact: fn(f32) -> f32,
        relative: bool,
    ) -> f32 {
        range
            .map(|i| {
                let x = i as f32 * 1e-4;
                let (got, want) = (fast(x), exact(x));
                let scale = if relative { want.abs() } else { 1.0 };
                (got - want).abs() / scale
            })
            .fold(0f32, f32::max)
    }

    #[test]
    fn fast_exp_is_within_two_ulps_of_exp() {
        let worst = worst_error(-870_000..=880_000, fast_exp, f32::exp, true);
        assert!(worst < 2.5e-7, "max rel error {worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(-1e4) >= 0.0 && fast_exp(-1e4) < 1e-37);
        assert!(fast_exp(1e4).is_finite());
    }

    #[test]
    fn fast_tanh_is_within_a_millionth_of_tanh() {
        let worst = worst_error(-200_000..=200_000, fast_tanh, f32::tanh, false);
        assert!(worst < 1e-6, "max abs error {worst}");
        assert_eq!(fast_tanh(0.0), 0.0);
        assert!(fast_tanh(1e3) <= 1.0 && fast_tanh(-1e3) >= -1.0);
    }
}
