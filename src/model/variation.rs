//! The *Variation* policy above the decoding loop: an answer built by a [`Plan`] from the
//! primer's own bars, the model's continuation after them, and bars the model writes anew
//! hearing both sides (the infill machinery as a variation engine).
//!
//! *New* never comes here: it is the decoding loop alone ([`super::sampler::continue_freely`]).

use super::sampler::{
    continue_freely, infill_with, GenerateOptions, Generated, Scorer, StreamedNote,
};
use crate::music::coherence::repeats_itself;
use crate::music::texture::notes_per_onset;
use crate::music::variation::{plan, BarSource, MAX_LOOP_BARS, PATTERN_NOTES_PER_ONSET};
use crate::music::{Note, Phrase};
use candle_core::Result;

/// Answers `primer` by the plan of `opts.variation`, each variation seeded `opts.seed + v`.
/// Notes are delivered through `on_note` when the whole answer is ready (the replayed bars
/// are only final once the model has refilled what the plan asks).
pub fn answer_by_plan(
    scorer: &mut dyn Scorer,
    primer: &Phrase,
    opts: &GenerateOptions,
    mut on_note: impl FnMut(StreamedNote) -> bool,
) -> Result<Generated> {
    let bpb = crate::tokens::quantize(primer).beats_per_bar;
    let start_bar = primer.bar_count();
    let loop_bars = start_bar.min(MAX_LOOP_BARS);
    let first_loop_bar = start_bar - loop_bars;
    let loop_notes = primer
        .slice(first_loop_bar as f64 * bpb, f64::INFINITY)
        .notes;
    // One bar played and left to answer is a riff to build on.
    let pattern_part = loop_bars == 1
        || repeats_itself(&loop_notes, 0, loop_bars, bpb)
        || notes_per_onset(&loop_notes) >= PATTERN_NOTES_PER_ONSET;
    let p = plan(opts.variation, loop_bars, opts.bars as usize, pattern_part);
    let free = GenerateOptions {
        variation: crate::music::variation::Variation::New,
        ..opts.clone()
    };
    if p.replayed() == 0 {
        return continue_freely(scorer, primer, &free, on_note);
    }
    let start_beat = start_bar as f64 * bpb;
    let replayed: Vec<Note> = p
        .bars
        .iter()
        .enumerate()
        .filter_map(|(j, s)| match s {
            BarSource::Primer(i) => Some((j, first_loop_bar + i)),
            BarSource::Model => None,
        })
        .flat_map(|(j, src)| {
            let loop_end = start_beat;
            primer
                .notes
                .iter()
                .filter(move |n| (n.start / bpb).floor() as usize == src)
                .map(move |n| Note {
                    start: n.start - src as f64 * bpb + j as f64 * bpb,
                    duration: n.duration.min(loop_end - n.start),
                    ..*n
                })
        })
        .collect();
    let heard_with = |answer: &[Note]| {
        Phrase::new(
            primer
                .notes
                .iter()
                .copied()
                .chain(answer.iter().map(|n| Note {
                    start: n.start + start_beat,
                    ..*n
                }))
                .collect(),
            primer.beats_per_bar,
        )
    };
    let model_bars = p.bars.len() - p.replayed();
    if model_bars > 0 && heard_with(&replayed).bar_count() != start_bar + p.replayed() {
        // The replayed bars end in a silent bar: the model could not tell where they end.
        return continue_freely(scorer, primer, &free, on_note);
    }
    let mut variations = Vec::new();
    let (mut tokens, mut prefill_ms, mut ms_per_token, mut prompt) = (0, 0.0, 0.0, Vec::new());
    for v in 0..opts.variations.max(1) {
        let o = GenerateOptions {
            seed: opts.seed.wrapping_add(v as u64),
            variations: 1,
            ..free.clone()
        };
        let mut answer = replayed.clone();
        if model_bars > 0 {
            let g = continue_freely(
                scorer,
                &heard_with(&answer),
                &GenerateOptions {
                    bars: model_bars as u32,
                    // The bars before already opened the answer on its downbeat.
                    start_on_downbeat: false,
                    ..o.clone()
                },
                |_| true,
            )?;
            let offset = g.start_beat - start_beat;
            answer.extend(g.variations[0].notes.iter().map(|n| Note {
                start: n.start + offset,
                ..*n
            }));
            tokens += g.tokens;
            prefill_ms += g.prefill_ms;
            ms_per_token = g.ms_per_token;
            prompt = g.prompt;
        }
        for &j in &p.refill {
            let gap = (start_bar + j) as u32;
            let g = infill_with(scorer, &heard_with(&answer), gap..gap + 1, &o, |_| true)?;
            tokens += g.tokens;
            prefill_ms += g.prefill_ms;
            // A silent refill would leave a hole where the primer's bar was: keep the bar.
            if g.variations[0].notes.is_empty() {
                continue;
            }
            let (from, to) = (j as f64 * bpb, (j + 1) as f64 * bpb);
            answer.retain(|n| n.start < from || n.start >= to);
            answer.extend(g.variations[0].notes.iter().map(|n| Note {
                start: n.start + from,
                ..*n
            }));
        }
        let end = opts.bars as f64 * bpb;
        answer.retain(|n| n.start < end);
        for n in &mut answer {
            n.duration = n.duration.min(end - n.start);
        }
        // The copy guard keeps what the model writes from completing a run of a training tune,
        // but replayed bars are the primer's: when the primer quotes a training tune, the
        // answer would quote it too. Then the model's own answer is played instead.
        if opts.copy_guard.as_ref().is_some_and(|g| g.copies(&answer)) {
            let g = continue_freely(scorer, primer, &o, |_| true)?;
            tokens += g.tokens;
            variations.push(
                g.variations
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Phrase::new(vec![], bpb)),
            );
            continue;
        }
        variations.push(Phrase::new(answer, bpb));
    }
    'deliver: for (variation, phrase) in variations.iter().enumerate() {
        for &note in &phrase.notes {
            let bar = (note.start / bpb.max(0.5)).floor().max(0.0) as u32;
            if !on_note(StreamedNote {
                variation,
                note,
                bars_done: (bar + 1).min(opts.bars),
            }) {
                break 'deliver;
            }
        }
    }
    Ok(Generated {
        ids: vec![Vec::new(); variations.len()],
        variations,
        start_beat,
        prompt,
        tokens,
        prefill_ms,
        ms_per_token,
    })
}
