//! Held-out evaluation: negative log-likelihood, and musical statistics of continuations
//! compared with the real ones.

use super::copy::CopyIndex;
use super::Piece;
use crate::model::generate_with;
use crate::model::sampler::Scorer;
use crate::model::{GenerateOptions, Model};
use crate::music::{detect_key, metrics, Phrase};
use crate::tokens::{Vocab, PREFIX_LEN};
use candle_core::{Device, Result, Tensor, D};
use serde::Serialize;
use std::collections::BTreeMap;

/// Cuts a packed token stream into windows of `len + 1` tokens (a model reads `len`): the
/// prefix that tells nothing (any key, any texture), then the stream, so each token is
/// predicted exactly once and the model is told nothing about the music.
pub fn windows(stream: &[u32], len: usize, max_windows: usize) -> Vec<Vec<u32>> {
    let any = Vocab.any_prefix();
    stream
        .chunks((len + 1).saturating_sub(PREFIX_LEN).max(1))
        .take(max_windows)
        .map(|c| any.iter().chain(c).copied().collect())
        .collect()
}

/// Logits and targets of the stream tokens of windows that start with a prefix: the prefix
/// is given, never predicted, in training and evaluation alike. `ids` is (batch, len + 1).
pub fn stream_predictions(model: &Model, ids: &Tensor) -> Result<(Tensor, Tensor)> {
    let (batch, total) = ids.dims2()?;
    let skip = PREFIX_LEN - 1;
    let n = total - 1 - skip;
    let logits = model.forward(&ids.narrow(1, 0, total - 1)?)?;
    let v = logits.dim(D::Minus1)?;
    let logits = logits
        .narrow(1, skip, n)?
        .contiguous()?
        .reshape((batch * n, v))?;
    let target = ids.narrow(1, 1 + skip, n)?.contiguous()?.flatten_all()?;
    Ok((logits, target))
}

/// Batches of at most `batch` consecutive windows of one length (the last window is usually
/// shorter), skipping windows with nothing to predict after the prefix.
fn equal_length_groups(windows: &[Vec<u32>], batch: usize) -> Vec<Vec<&Vec<u32>>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < windows.len() {
        let len = windows[i].len();
        let group: Vec<&Vec<u32>> = windows[i..]
            .iter()
            .take(batch.max(1))
            .take_while(|w| w.len() == len)
            .collect();
        i += group.len();
        if len > PREFIX_LEN {
            groups.push(group);
        }
    }
    groups
}

/// Calls `f` with the logits (n, vocab) and next-token targets (n) of each batch of
/// equal-length windows.
fn predicted_batches(
    model: &Model,
    device: &Device,
    windows: &[Vec<u32>],
    batch: usize,
    mut f: impl FnMut(&Tensor, &Tensor) -> Result<()>,
) -> Result<()> {
    for group in equal_length_groups(windows, batch) {
        let len = group[0].len();
        let flat: Vec<u32> = group.iter().flat_map(|w| w.iter().copied()).collect();
        let ids = Tensor::from_vec(flat, (group.len(), len), device)?;
        let (logits, target) = stream_predictions(model, &ids)?;
        f(&logits, &target)?;
    }
    Ok(())
}

/// Sum of negative log-likelihoods (nats) and number of predicted tokens over `windows`.
pub fn nll(
    model: &Model,
    device: &Device,
    windows: &[Vec<u32>],
    batch: usize,
) -> Result<(f64, usize)> {
    let mut total = 0f64;
    let mut count = 0usize;
    predicted_batches(model, device, windows, batch, |logits, target| {
        let loss = crate::model::ops::cross_entropy(logits, target)?.to_scalar::<f32>()? as f64;
        let n = target.dim(0)?;
        total += loss * n as f64;
        count += n;
        Ok(())
    })?;
    Ok((total, count))
}

/// [`nll`] computed as generation computes its logits: each group of equal-length windows
/// through cached decoding (a prefill of the prefix, then one step per token), so what the
/// steps change (their weights' precision, [`crate::model::StepPrecision`]) shows in the
/// nats. Predicts the same tokens as [`nll`].
pub fn nll_through_steps(
    model: &Model,
    device: &Device,
    windows: &[Vec<u32>],
    batch: usize,
) -> Result<(f64, usize)> {
    let (mut total, mut count) = (0f64, 0usize);
    for group in equal_length_groups(windows, batch) {
        let (len, b) = (group[0].len(), group.len());
        let column = |pos: usize| -> Result<Tensor> {
            Tensor::from_vec(group.iter().map(|w| w[pos]).collect(), (b, 1), device)
        };
        let prefix: Vec<u32> = group
            .iter()
            .flat_map(|w| w[..PREFIX_LEN].to_vec())
            .collect();
        let mut cache = model.new_cache();
        let mut logits = model.forward_cached(
            &Tensor::from_vec(prefix, (b, PREFIX_LEN), device)?,
            &mut cache,
        )?;
        for pos in PREFIX_LEN..len {
            for (row, w) in logits.to_vec2::<f32>()?.iter().zip(&group) {
                total -= log_softmax_at(row, w[pos] as usize);
                count += 1;
            }
            if pos + 1 < len {
                logits = model.decode_step(&column(pos)?, &mut cache)?;
            }
        }
    }
    Ok((total, count))
}

/// `log softmax(row)[i]`, in f64.
fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    row[i] as f64 - max - sum.ln()
}

/// [`nll`] split by the kind of token predicted (pitch, duration, position…): where a model
/// is uncertain. Values are (sum of nats, tokens, tokens that were the model's first choice).
pub fn nll_by_kind(
    model: &Model,
    device: &Device,
    windows: &[Vec<u32>],
    batch: usize,
) -> Result<BTreeMap<&'static str, (f64, usize, usize)>> {
    let mut kinds: BTreeMap<&'static str, (f64, usize, usize)> = BTreeMap::new();
    predicted_batches(model, device, windows, batch, |logits, target| {
        let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let picked = log_p
            .gather(&target.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .to_vec1::<f32>()?;
        let first_choice = log_p.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for ((id, lp), best) in target
            .to_vec1::<u32>()?
            .into_iter()
            .zip(picked)
            .zip(first_choice)
        {
            let kind = Vocab.token(id).map_or("other", |t| t.kind());
            let e = kinds.entry(kind).or_default();
            e.0 -= lp as f64;
            e.1 += 1;
            e.2 += usize::from(best == id);
        }
        Ok(())
    })?;
    Ok(kinds)
}

/// Musical statistics of a set of continuations, averaged over primers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MusicStats {
    pub key_agreement: f64,
    pub pitch_in_scale: f64,
    pub pitch_class_entropy: f64,
    pub notes_per_beat: f64,
    pub polyphony: f64,
    pub empty_beat_rate: f64,
    /// Share of continuations that repeat a run of 8 notes of a training file.
    pub copy_rate: f64,
    /// The same for runs of 16 notes.
    pub long_copy_rate: f64,
}

#[derive(Default)]
struct Accumulator {
    copies: Vec<f64>,
    long_copies: Vec<f64>,
    key: Vec<f64>,
    scale: Vec<f64>,
    entropy: Vec<f64>,
    density: Vec<f64>,
    poly: Vec<f64>,
    empty: Vec<f64>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

impl Accumulator {
    fn add(
        &mut self,
        primer: &Phrase,
        continuation: &Phrase,
        beats: f64,
        copies: Option<&CopyIndex>,
    ) {
        let notes = &continuation.notes;
        let share = |copied: bool| if copied { 1.0 } else { 0.0 };
        if let Some(index) = copies {
            self.copies.push(share(index.copies(notes)));
            self.long_copies.push(share(index.copies_long(notes)));
        }
        let agree = metrics::key_agreement(&primer.notes, notes).unwrap_or(false);
        self.key.push(share(agree));
        if let Some(k) = detect_key(&primer.notes) {
            if let Some(s) = metrics::pitch_in_scale(k, notes) {
                self.scale.push(s);
            }
        }
        if let Some(e) = metrics::pitch_class_entropy(notes) {
            self.entropy.push(e);
        }
        self.density.push(metrics::notes_per_beat(notes, beats));
        if let Some(p) = metrics::polyphony(notes) {
            self.poly.push(p);
        }
        self.empty.push(metrics::empty_beat_rate(notes, beats));
    }

    fn stats(&self) -> MusicStats {
        MusicStats {
            key_agreement: mean(&self.key),
            pitch_in_scale: mean(&self.scale),
            pitch_class_entropy: mean(&self.entropy),
            notes_per_beat: mean(&self.density),
            polyphony: mean(&self.poly),
            empty_beat_rate: mean(&self.empty),
            copy_rate: mean(&self.copies),
            long_copy_rate: mean(&self.long_copies),
        }
    }
}

/// A primer cut from a held-out piece and what really followed it.
pub struct PrimerCase {
    pub primer: Phrase,
    pub real: Phrase,
}

/// The first `primer_bars` bars of each piece long enough, with the next `continuation_bars`.
pub fn primer_cases(
    pieces: &[Piece],
    primer_bars: u32,
    continuation_bars: u32,
    max: usize,
) -> Vec<PrimerCase> {
    let mut cases = Vec::new();
    for p in pieces {
        if cases.len() >= max {
            break;
        }
        let q = crate::tokens::quantize(&p.phrase);
        let bpb = q.beats_per_bar;
        let split = primer_bars as f64 * bpb;
        let end = split + continuation_bars as f64 * bpb;
        let primer = q.slice(0.0, split);
        let real = q.slice(split, end);
        // Both sides need notes, and the primer must reach into its last bar.
        if primer.notes.len() >= 2 && !real.notes.is_empty() && q.end_beat() >= end {
            cases.push(PrimerCase { primer, real });
        }
    }
    cases
}

/// Statistics of a scorer's continuations and of the real ones, over the same primers;
/// with `copies`, also how often a continuation repeats 8 notes of a training file. With
/// `key_from_primer`, pitches are restricted to each primer's detected key, as the plugin's
/// "Key lock: From primer" does.
pub fn continuation_stats(
    scorer: &mut dyn Scorer,
    cases: &[PrimerCase],
    opts: &GenerateOptions,
    copies: Option<&CopyIndex>,
    key_from_primer: bool,
) -> Result<(MusicStats, MusicStats)> {
    let mut generated = Accumulator::default();
    let mut real = Accumulator::default();
    for (i, case) in cases.iter().enumerate() {
        let bpb = case.real.beats_per_bar;
        let beats = opts.bars as f64 * bpb;
        let o = GenerateOptions {
            seed: opts.seed.wrapping_add(i as u64),
            variations: 1,
            key: if key_from_primer {
                detect_key(&case.primer.notes)
            } else {
                opts.key
            },
            ..opts.clone()
        };
        let g = generate_with(scorer, &case.primer, &o, |_| true)?;
        generated.add(&case.primer, &g.variations[0], beats, copies);
        real.add(&case.primer, &case.real, beats, copies);
    }
    Ok((generated.stats(), real.stats()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{lstm, Architecture};
    use crate::music::Note;
    use candle_core::DType;
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn nll_through_steps_is_nll_and_f16_steps_stay_close() {
        let dev = Device::Cpu;
        let arch = Architecture::Transformer(crate::model::transformer::Config {
            vocab_size: Vocab.size(),
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            d_ff: 64,
            max_seq_len: 64,
            smeared_keys: false,
        });
        let vm = VarMap::new();
        let mut model = Model::new(&arch, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        // 5 windows of 41 tokens and a shorter last one: groups of 2, 2, 1 and 1.
        let stream: Vec<u32> = (0..200).map(|i| 4 + (i * 7 % 97)).collect();
        let ws = windows(&stream, 40, 100);
        let (want, n) = nll(&model, &dev, &ws, 2).unwrap();
        model.set_step_precision(crate::model::StepPrecision::F32);
        let (got, m) = nll_through_steps(&model, &dev, &ws, 2).unwrap();
        assert_eq!(n, m);
        assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
        for p in [
            crate::model::StepPrecision::F16,
            crate::model::StepPrecision::I8,
        ] {
            model.set_step_precision(p);
            let (rounded, _) = nll_through_steps(&model, &dev, &ws, 2).unwrap();
            assert_ne!(rounded, got, "the {} steps read other weights", p.name());
            assert!(
                (rounded - got).abs() / (n as f64) < 1e-2,
                "{rounded} vs {got}"
            );
        }
    }

    #[test]
    fn nll_by_kind_adds_up_to_nll() {
        let dev = Device::Cpu;
        let arch = Architecture::Lstm(lstm::Config {
            vocab_size: Vocab.size(),
            d_embed: 8,
            hidden: 16,
            n_layers: 1,
        });
        let vm = VarMap::new();
        let model = Model::new(&arch, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let notes = (0..12u8)
            .map(|i| Note {
                start: i as f64 * 0.5,
                duration: 0.5,
                pitch: 60 + i,
                velocity: 80,
            })
            .collect();
        let stream = Vocab.encode(&Phrase::new(notes, 4.0), true);
        let ws = windows(&stream, 16, 100);
        let (total, count) = nll(&model, &dev, &ws, 2).unwrap();
        let kinds = nll_by_kind(&model, &dev, &ws, 2).unwrap();
        assert_eq!(kinds.values().map(|k| k.1).sum::<usize>(), count);
        let sum: f64 = kinds.values().map(|k| k.0).sum();
        assert!((sum - total).abs() < 1e-4 * total, "{sum} vs {total}");
        assert_eq!(kinds["pitch"].1, 12);
        assert_eq!(kinds["duration"].1, 12);
    }

    #[test]
    fn every_token_is_predicted_once_after_the_any_prefix() {
        let s: Vec<u32> = (0..10).collect();
        let w = windows(&s, 7, 100);
        let a = Vocab.any_prefix().to_vec();
        let with = |c: &[u32]| [a.clone(), c.to_vec()].concat();
        assert_eq!(
            w,
            vec![with(&[0, 1, 2, 3]), with(&[4, 5, 6, 7]), with(&[8, 9])]
        );
        let predicted: usize = w.iter().map(|w| w.len() - PREFIX_LEN).sum();
        assert_eq!(predicted, 10);
    }
}
