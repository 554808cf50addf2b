//! Arithmetic on rows of floats shared by the attention tiles, the candle ops and the decoding
//! step: the causal rule, a fast exp, softmax, sums and dot products. Hand-written because the
//! compiler vectorises these loops (eight running sums, a branch-free exp) where `f32::exp`
//! and in-order sums stay scalar; a row here is short (one query's keys, one head's
//! channels), so a BLAS call would cost more than it saves.

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

/// A numerically stable softmax of `row`, in place.
pub(crate) fn softmax_in_place(row: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_two_ulps_of_exp() {
        let mut worst = 0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (fast_exp(x), x.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "max rel error {worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(-1e4) >= 0.0 && fast_exp(-1e4) < 1e-37);
        assert!(fast_exp(1e4).is_finite());
    }
}
