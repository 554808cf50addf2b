//! The plugin's answer, timed as a producer waits for it: the shipped model continues 2-bar
//! primers of several kinds with the plugin's default settings (Develop, the copy guard, the
//! default candidates), for 1, 4 and 8 candidates at 4 and 8 bars. One candidate streams, so
//! its first note is timed too; with several nothing plays until the choice is made. The
//! prefills' share says where the time goes: candidates share them, and pay per step.

use crate::audio::messages::GenerationSettings;
use crate::model::answer::generate_streaming;
use crate::model::copy_guard::CopyGuard;
use crate::model::Model;
use crate::music::variation::Variation;
use crate::music::Phrase;
use crate::worker::generate_options;
use candle_core::{Device, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// One configuration: medians over the primers of each primer's median over the repeats.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerTiming {
    pub bars: u32,
    pub candidates: usize,
    /// Trigger to the whole answer chosen.
    pub complete_ms: f64,
    /// Trigger to the first note handed over.
    pub first_note_ms: f64,
    /// Of `complete_ms`, the prefills of the answer's model calls (the same for any number
    /// of candidates: they share the prompt); the rest is decoding steps and sampling.
    pub prefill_ms: f64,
    /// Tokens decoded per row.
    pub tokens: usize,
    /// `complete_ms` over one candidate's, run by run: each primer's median over the repeats
    /// of this run's time over the one-candidate run of the same repeat, then the median over
    /// the primers. A ratio of two runs seconds apart does not take in the machine's drift
    /// between repeats, as the ratio of the medians can. NaN without 1 among the candidates.
    pub paired_ratio: f64,
}

/// Times the answer to each primer for every (bars, candidates); `repeats` runs each. Each
/// repeat runs every number of candidates in turn, so that the ratios compare runs made at
/// the same moment of a machine whose speed drifts (a shared VM's does, by a third within
/// minutes).
pub fn answer_timings(
    model: &Model,
    device: &Device,
    guard: Option<Arc<CopyGuard>>,
    primers: &[Phrase],
    bars: &[u32],
    candidates: &[usize],
    repeats: usize,
) -> Result<Vec<AnswerTiming>> {
    let mut rows = Vec::new();
    for &b in bars {
        // Per number of candidates: each primer's median of complete, first note, prefill.
        let mut per_primer = vec![[Vec::new(), Vec::new(), Vec::new()]; candidates.len()];
        let mut tokens = vec![Vec::new(); candidates.len()];
        let mut paired = vec![Vec::new(); candidates.len()];
        let one = candidates.iter().position(|&c| c == 1);
        for primer in primers {
            let opts: Vec<_> = candidates
                .iter()
                .map(|&c| {
                    let settings = GenerationSettings {
                        bars: b,
                        candidates: c as u8,
                        variation: Variation::Develop,
                        ..GenerationSettings::default()
                    };
                    generate_options(&settings, primer, guard.clone())
                })
                .collect();
            let mut runs = vec![[Vec::new(), Vec::new(), Vec::new()]; candidates.len()];
            for _ in 0..repeats.max(1) {
                for (i, opts) in opts.iter().enumerate() {
                    let t = Instant::now();
                    let mut first_note = None;
                    let g = generate_streaming(model, device, primer, opts, |_| {
                        first_note.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
                        true
                    })?;
                    let [complete, first, prefill] = &mut runs[i];
                    complete.push(t.elapsed().as_secs_f64() * 1e3);
                    first.push(first_note.unwrap_or(f64::NAN));
                    prefill.push(g.prefill_ms);
                    tokens[i].push(g.tokens);
                }
            }
            for (ratios, [complete, ..]) in paired.iter_mut().zip(&runs) {
                let mut of_runs: Vec<f64> = match one {
                    Some(one) => complete
                        .iter()
                        .zip(&runs[one][0])
                        .map(|(c, o)| c / o)
                        .collect(),
                    None => vec![f64::NAN],
                };
                ratios.push(median(&mut of_runs));
            }
            for (medians, mut runs) in per_primer.iter_mut().zip(runs) {
                for (m, r) in medians.iter_mut().zip(&mut runs) {
                    m.push(median(r));
                }
            }
        }
        for (((&c, [mut complete, mut first, mut prefill]), tokens), mut paired) in
            candidates.iter().zip(per_primer).zip(tokens).zip(paired)
        {
            rows.push(AnswerTiming {
                bars: b,
                candidates: c,
                complete_ms: median(&mut complete),
                first_note_ms: median(&mut first),
                prefill_ms: median(&mut prefill),
                tokens: tokens.iter().sum::<usize>() / tokens.len().max(1),
                paired_ratio: median(&mut paired),
            });
        }
    }
    Ok(rows)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
