//! The *Variation* policy above the decoding loop: an answer built by a [`Plan`] from the
//! primer's own bars, the model's continuation after them, and bars the model writes anew
//! hearing both sides (the infill machinery as a variation engine).
//!
//! *New* never comes here: it is the decoding loop alone ([`super::sampler::continue_freely`]).

use super::copy_guard::CopyGuard;
use super::sampler::{
    continue_freely, infill_with, GenerateOptions, Generated, Scorer, StreamedNote,
};
use crate::music::variation::{departs, harmonic_shift, plan, BarSource, Part, MAX_LOOP_BARS};
use crate::music::{detect_key, Key, Note, Phrase};
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
    let part = Part::of(&loop_notes, loop_bars, bpb);
    let p = plan(opts.variation, loop_bars, opts.bars as usize, part);
    let free = GenerateOptions {
        variation: crate::music::variation::Variation::New,
        ..opts.clone()
    };
    if p.replayed() == 0 {
        return continue_freely(scorer, primer, &free, on_note);
    }
    let start_beat = start_bar as f64 * bpb;
    let key = detect_key(&primer.notes);
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
        if departs(opts.variation, part, o.seed, primer.notes.len()) {
            let (phrase, g) = own_answer(scorer, primer, &o, bpb)?;
            tokens += g.tokens;
            prefill_ms += g.prefill_ms;
            ms_per_token = g.ms_per_token;
            prompt = g.prompt;
            variations.push(phrase);
            continue;
        }
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
            let (t, ms) = refill_bar(scorer, &heard_with, &mut answer, (start_bar, j), bpb, &o)?;
            tokens += t;
            prefill_ms += ms;
        }
        let end = opts.bars as f64 * bpb;
        answer.retain(|n| n.start < end);
        for n in &mut answer {
            n.duration = n.duration.min(end - n.start);
        }
        // The copy guard keeps what the model writes from completing a run of a training tune,
        // but replayed bars are the primer's: when the primer quotes a training tune (chord
        // parts of two or three stock chords often do), the answer would quote it too. A
        // replayed bar where a quoted run ends then moves with the harmony (transposed, as real
        // parts move a riff to the next chord), and a bar of the model's is written anew
        // hearing both sides; if the answer still quotes after that, the model's own answer is
        // played instead.
        if let Some(guard) = opts.copy_guard.as_ref() {
            let mut moved = Vec::new();
            for round in 0..COPY_MEND_ROUNDS {
                let bars = guard.copied_bars(&answer, bpb);
                if bars.is_empty() {
                    break;
                }
                let again = GenerateOptions {
                    seed: o.seed.wrapping_add(1000 * (round as u64 + 1)),
                    ..o.clone()
                };
                for j in bars {
                    if matches!(p.bars.get(j), Some(BarSource::Primer(_))) && !moved.contains(&j) {
                        moved.push(j);
                        if move_bar_with_harmony(guard, &mut answer, j, bpb, key) {
                            continue;
                        }
                    }
                    let (t, ms) = refill_bar(
                        scorer,
                        &heard_with,
                        &mut answer,
                        (start_bar, j),
                        bpb,
                        &again,
                    )?;
                    tokens += t;
                    prefill_ms += ms;
                }
            }
            if guard.copies(&answer) {
                let (phrase, g) = own_answer(scorer, primer, &o, bpb)?;
                tokens += g.tokens;
                prefill_ms += g.prefill_ms;
                variations.push(phrase);
                continue;
            }
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

/// The model's own answer to `primer` (the decoding loop alone, one variation), and what it
/// cost: for an answer that departs from the primer, or one that could not stop quoting.
fn own_answer(
    scorer: &mut dyn Scorer,
    primer: &Phrase,
    opts: &GenerateOptions,
    bpb: f64,
) -> Result<(Phrase, Generated)> {
    let mut g = continue_freely(scorer, primer, opts, |_| true)?;
    let phrase = std::mem::take(&mut g.variations)
        .into_iter()
        .next()
        .unwrap_or_else(|| Phrase::new(vec![], bpb));
    Ok((phrase, g))
}

/// Rounds of bars moved or written anew where the answer quotes a training tune, before the
/// model's own answer replaces it.
const COPY_MEND_ROUNDS: usize = 2;

/// Transposes answer bar `bar` by the [`harmonic_shift`] under which no guarded run ends in
/// it. False (the bar unchanged) when no shift is allowed.
fn move_bar_with_harmony(
    guard: &CopyGuard,
    answer: &mut [Note],
    bar: usize,
    bpb: f64,
    key: Option<Key>,
) -> bool {
    let (from, to) = (bar as f64 * bpb, (bar + 1) as f64 * bpb);
    let in_bar = |n: &Note| n.start >= from && n.start < to;
    let notes: Vec<Note> = answer.iter().copied().filter(in_bar).collect();
    let moved_by = |shift: i32| -> Vec<Note> {
        answer
            .iter()
            .map(|n| Note {
                pitch: if in_bar(n) {
                    (n.pitch as i32 + shift) as u8
                } else {
                    n.pitch
                },
                ..*n
            })
            .collect()
    };
    let Some(shift) = harmonic_shift(&notes, key, |s| {
        !guard.copied_bars(&moved_by(s), bpb).contains(&bar)
    }) else {
        return false;
    };
    answer.copy_from_slice(&moved_by(shift));
    true
}

/// Writes answer bar `bar` anew: the model fills that bar of the primer and answer heard
/// together (`heard_with`; the answer starts after the primer's `start_bar` bars), hearing the
/// bars on both sides. A silent refill would leave a hole where the primer's bar was: the bar
/// is kept as it was. Returns the tokens sampled and the prefill time.
fn refill_bar(
    scorer: &mut dyn Scorer,
    heard_with: &dyn Fn(&[Note]) -> Phrase,
    answer: &mut Vec<Note>,
    (start_bar, bar): (usize, usize),
    bpb: f64,
    opts: &GenerateOptions,
) -> Result<(usize, f64)> {
    let gap = (start_bar + bar) as u32;
    let g = infill_with(scorer, &heard_with(answer), gap..gap + 1, opts, |_| true)?;
    if !g.variations[0].notes.is_empty() {
        let (from, to) = (bar as f64 * bpb, (bar + 1) as f64 * bpb);
        answer.retain(|n| n.start < from || n.start >= to);
        answer.extend(g.variations[0].notes.iter().map(|n| Note {
            start: n.start + from,
            ..*n
        }));
    }
    Ok((g.tokens, g.prefill_ms))
}
