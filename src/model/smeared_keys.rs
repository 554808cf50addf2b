//! Smeared keys: each attention key mixed, channel by channel, with the key of the position
//! before it, `k'ᵢ = kᵢ + s ⊙ kᵢ₋₁`, where `s` is learned (one value per key channel) and
//! starts at zero, so a run warm-started from a model without it begins as that model.
//!
//! Why: copying a bar that was played before (an exact repeat, the commonest thing in the
//! corpus) takes an induction head, an attention that finds where the current token occurred
//! before and reads what followed it. Its key must know the token before it. With learned
//! absolute positions a layer first has to learn a "previous token" head for every one of
//! the 256 positions; session 17 measured that v4 hardly copies an exact repeat even from the
//! bar right before a gap (BENCHMARKS.md). A smeared key hands every layer that information
//! (Olsson et al. 2022, "In-context Learning and Induction Heads", the smeared-key model).
//!
//! Training's fused block, the prefill, the decoding step and the candle composition all
//! smear with the functions here, so the four cannot drift apart.

use candle_core::{Result, Tensor};

/// Smears the keys of one sequence's q/k/v rows (`3d` values each, positions in order, the
/// keys in the middle third) in place. `previous` holds the unsmeared key of the position
/// before the first row (zeros at position 0) and is left holding the last row's, for the
/// next decoding step.
pub(crate) fn smear_rows(rows: &mut [f32], smear: &[f32], previous: &mut [f32]) {
    let d = smear.len();
    assert!(previous.len() == d && rows.len().is_multiple_of(3 * d));
    for row in rows.chunks_exact_mut(3 * d) {
        smear_key(&mut row[d..2 * d], smear, previous);
    }
}

/// Smears one position's key (or some of its channels, `smear` and `previous` the same
/// channels') in place; `previous` is left holding the unsmeared key.
pub(crate) fn smear_key(key: &mut [f32], smear: &[f32], previous: &mut [f32]) {
    for ((k, p), s) in key.iter_mut().zip(previous).zip(smear) {
        let raw = *k;
        *k += s * *p;
        *p = raw;
    }
}

/// The backward of [`smear_rows`] over one sequence whose first row had no position before
/// it: the keys' gradients in `d_rows` (the middle third of rows of `3d`), those of the
/// smeared keys on entry, become those of the unsmeared keys; the smear's gradient is added
/// to `d_smear`. `raw` holds the unsmeared keys, one row of `d` per position.
pub(crate) fn smear_rows_backward(
    d_rows: &mut [f32],
    raw: &[f32],
    smear: &[f32],
    d_smear: &mut [f32],
) {
    let d = smear.len();
    let t = d_rows.len() / (3 * d);
    assert!(raw.len() == t * d && d_smear.len() == d);
    for i in 0..t {
        // Row i's incoming gradient is still the smeared key's: use it before it changes.
        if i > 0 {
            let (before, row) = (&raw[(i - 1) * d..i * d], &d_rows[i * 3 * d + d..][..d]);
            for ((g, &r), &b) in d_smear.iter_mut().zip(row).zip(before) {
                *g += r * b;
            }
        }
        // kᵢ reaches k'ᵢ directly and k'ᵢ₊₁ through s; row i + 1 is not rewritten yet.
        if i + 1 < t {
            let (head, tail) = d_rows.split_at_mut((i + 1) * 3 * d);
            let (row, next) = (&mut head[i * 3 * d + d..][..d], &tail[d..2 * d]);
            for ((g, &n), &s) in row.iter_mut().zip(next).zip(smear) {
                *g += s * n;
            }
        }
    }
}

/// The candle composition of [`smear_rows`] on keys laid out (batch, heads, t, head_dim);
/// `smear` has heads · head_dim values in the channel order of the q/k/v projection, and
/// `previous` (batch, heads, 1, head_dim) is the unsmeared key before the first position
/// (zeros when there is none).
pub fn smear(k: &Tensor, smear: &Tensor, previous: Option<&Tensor>) -> Result<Tensor> {
    let (b, h, t, hd) = k.dims4()?;
    let s = smear.reshape((1, h, 1, hd))?;
    let first = match previous {
        Some(p) => p.clone(),
        None => Tensor::zeros((b, h, 1, hd), k.dtype(), k.device())?,
    };
    let shifted = if t > 1 {
        Tensor::cat(&[&first, &k.narrow(2, 0, t - 1)?], 2)?
    } else {
        first
    };
    k + shifted.broadcast_mul(&s)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backward against central differences of a scalar loss, Σ w ⊙ smeared keys.
    #[test]
    fn the_backward_agrees_with_finite_differences() {
        let (t, d) = (5, 4);
        let value = |i: usize| ((i * 37 % 11) as f32 - 5.0) / 4.0;
        let rows: Vec<f32> = (0..t * 3 * d).map(value).collect();
        let smear: Vec<f32> = (0..d).map(|c| 0.3 - 0.2 * c as f32).collect();
        let weights: Vec<f32> = (0..t * 3 * d).map(|i| value(i + 3)).collect();
        let loss = |rows: &[f32], smear: &[f32]| -> f64 {
            let mut r = rows.to_vec();
            smear_rows(&mut r, smear, &mut vec![0.0; d]);
            r.iter().zip(&weights).map(|(a, b)| (a * b) as f64).sum()
        };
        let raw: Vec<f32> = rows
            .chunks(3 * d)
            .flat_map(|r| r[d..2 * d].to_vec())
            .collect();
        let mut d_rows = weights.clone();
        let mut d_smear = vec![0f32; d];
        smear_rows_backward(&mut d_rows, &raw, &smear, &mut d_smear);
        let eps = 1e-2;
        for i in (0..t).map(|i| i * 3 * d + d + 1) {
            let (mut up, mut down) = (rows.clone(), rows.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (loss(&up, &smear) - loss(&down, &smear)) / (2.0 * eps as f64);
            assert!((numeric - d_rows[i] as f64).abs() < 1e-3, "key {i}");
        }
        for c in 0..d {
            let (mut up, mut down) = (smear.clone(), smear.clone());
            up[c] += eps;
            down[c] -= eps;
            let numeric = (loss(&rows, &up) - loss(&rows, &down)) / (2.0 * eps as f64);
            assert!((numeric - d_smear[c] as f64).abs() < 1e-3, "smear {c}");
        }
    }

    /// Smearing in two parts, the second after the first's last key, equals smearing at once.
    #[test]
    fn a_sequence_smeared_in_parts_equals_it_smeared_whole() {
        let d = 3;
        let rows: Vec<f32> = (0..4 * 3 * d).map(|i| i as f32 * 0.5 - 3.0).collect();
        let smear = [0.5, -1.0, 2.0];
        let mut whole = rows.clone();
        smear_rows(&mut whole, &smear, &mut vec![0.0; d]);
        let mut parts = rows.clone();
        let mut previous = vec![0.0; d];
        let (a, b) = parts.split_at_mut(3 * d);
        smear_rows(a, &smear, &mut previous);
        smear_rows(b, &smear, &mut previous);
        assert_eq!(whole, parts);
        assert_ne!(whole, rows, "a nonzero smear changes the keys");
    }
}
