//! How a continuation carries on its primer's song, measured bar by bar as issue 31 defines
//! it, so that a generated answer, the real next bars and a loop of the primer are compared
//! by the same numbers: reuse of primer bars, groove, pitch-class similarity, density,
//! notes per onset, register, harmonic motion, and histograms of note length,
//! inter-onset interval and onset position.
//!
//! Pure: `continuo eval --continuations` and the variation policy's tests both use it.

use super::in_kind::share_in_scale;
use super::key::pitch_class_histogram;
use super::texture::{median_pitch, notes_per_onset, onset_tick, ONSET_GRID};
use super::Note;
use serde::Serialize;
use std::collections::BTreeSet;

/// A continuation bar replays a primer bar when their (onset, pitch) sets have at least this
/// Jaccard similarity, the primer bar transposed by up to [`REUSE_TRANSPOSE`] semitones.
pub const REUSE_JACCARD: f64 = 0.5;
pub const REUSE_TRANSPOSE: i32 = 12;
/// Upper edges (beats) of the note-length and inter-onset-interval bins; a last bin above.
pub const LENGTH_EDGES: [f64; 9] = [0.125, 0.25, 1.0 / 3.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0];
pub const LENGTH_BINS: usize = LENGTH_EDGES.len() + 1;

/// The measures of one continuation against its primer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coherence {
    /// Share of the continuation's bars that replay a primer bar ([`replays_primer_bar`]).
    pub reuse: f64,
    /// Mean over the continuation's bars of the grooving-pattern similarity (Wu & Yang) with
    /// the closest primer bar: 1 − Hamming distance / length of the bars' 0/1 onset vectors
    /// on the 12-per-beat grid.
    pub groove: f64,
    /// Cosine of the duration-weighted pitch-class histograms of primer and continuation.
    pub pitch_class_similarity: f64,
    /// log2 of the continuation's notes per beat over the primer's.
    pub density_ratio: f64,
    /// log2 of the continuation's notes per onset over the primer's.
    pub notes_per_onset_ratio: f64,
    /// Median pitch of the continuation minus the primer's (semitones).
    pub register_offset: f64,
    /// Distinct pitch-class sets among the continuation's bars (harmonic motion).
    pub pitch_class_sets: f64,
    /// Share of the continuation's note time in the primer's scale.
    pub in_scale: f64,
    /// Note lengths, inter-onset intervals (both over [`LENGTH_EDGES`]) and onsets by quarter
    /// of the bar, as counts.
    pub note_lengths: [f64; LENGTH_BINS],
    pub inter_onset: [f64; LENGTH_BINS],
    pub onset_quarters: [f64; 4],
}

/// A bar's notes as (onset tick from the bar line, pitch), sorted, without duplicates.
fn bar_set(notes: &[Note], bar: usize, bar_ticks: i64) -> Vec<(i64, i32)> {
    let mut v: Vec<(i64, i32)> = notes
        .iter()
        .map(|n| (onset_tick(n), n.pitch as i32))
        .filter(|(t, _)| t.div_euclid(bar_ticks) == bar as i64)
        .map(|(t, p)| (t.rem_euclid(bar_ticks), p))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn bar_ticks(beats_per_bar: f64) -> i64 {
    ((beats_per_bar * ONSET_GRID).round() as i64).max(1)
}

fn jaccard(a: &[(i64, i32)], b: &BTreeSet<(i64, i32)>) -> f64 {
    let inter = a.iter().filter(|x| b.contains(x)).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// Whether `bar` (a bar's (onset, pitch) set) replays one of `primer_bars`, transposed by
/// −12..12 semitones. An empty bar replays nothing.
pub fn replays_primer_bar(bar: &[(i64, i32)], primer_bars: &[Vec<(i64, i32)>]) -> bool {
    !bar.is_empty()
        && primer_bars.iter().any(|p| {
            (-REUSE_TRANSPOSE..=REUSE_TRANSPOSE).any(|t| {
                let moved: BTreeSet<(i64, i32)> = p.iter().map(|&(o, q)| (o, q + t)).collect();
                jaccard(bar, &moved) >= REUSE_JACCARD
            })
        })
}

/// Whether the last of the `bars` bars from `first_bar` replays an earlier one of them
/// ([`replays_primer_bar`]): a primer built as a loop. Real parts whose primer does this
/// replay it in 78 % of their next bars, other parts in 52 % (the 246 cuts of
/// `scripts/continuation_set.sh`).
pub fn repeats_itself(notes: &[Note], first_bar: usize, bars: usize, beats_per_bar: f64) -> bool {
    let ticks = bar_ticks(beats_per_bar);
    let sets: Vec<Vec<(i64, i32)>> = (first_bar..first_bar + bars)
        .map(|b| bar_set(notes, b, ticks))
        .collect();
    match sets.split_last() {
        Some((last, earlier)) => replays_primer_bar(last, earlier),
        None => false,
    }
}

fn onset_vector(set: &[(i64, i32)], ticks: i64) -> Vec<bool> {
    let mut v = vec![false; ticks as usize];
    for &(o, _) in set {
        v[o as usize] = true;
    }
    v
}

fn cosine(a: &[f64; 12], b: &[f64; 12]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn length_bin(beats: f64) -> usize {
    // A value on an edge belongs to the bin above it, with a little room for rounding.
    LENGTH_EDGES
        .iter()
        .take_while(|&&e| beats >= e - 1e-6)
        .count()
}

/// Measures `continuation` (timed from its first bar line, `bars` bars) against `primer`
/// (timed from its first bar line, `primer_bars` bars), in bars of `beats_per_bar`.
pub fn coherence(
    primer: &[Note],
    primer_bars: usize,
    continuation: &[Note],
    bars: usize,
    beats_per_bar: f64,
) -> Coherence {
    let ticks = bar_ticks(beats_per_bar);
    let primer_sets: Vec<Vec<(i64, i32)>> = (0..primer_bars)
        .map(|b| bar_set(primer, b, ticks))
        .filter(|s| !s.is_empty())
        .collect();
    let cont_sets: Vec<Vec<(i64, i32)>> =
        (0..bars).map(|b| bar_set(continuation, b, ticks)).collect();
    let bars_f = bars.max(1) as f64;
    let reuse = cont_sets
        .iter()
        .filter(|s| replays_primer_bar(s, &primer_sets))
        .count() as f64
        / bars_f;
    let primer_onsets: Vec<Vec<bool>> =
        primer_sets.iter().map(|s| onset_vector(s, ticks)).collect();
    let groove = cont_sets
        .iter()
        .map(|s| {
            let v = onset_vector(s, ticks);
            primer_onsets
                .iter()
                .map(|p| {
                    1.0 - p.iter().zip(&v).filter(|(a, b)| a != b).count() as f64 / ticks as f64
                })
                .fold(0.0, f64::max)
        })
        .sum::<f64>()
        / bars_f;
    let per_beat =
        |notes: &[Note], bars: usize| notes.len() as f64 / (bars.max(1) as f64 * beats_per_bar);
    let log2_ratio = |a: f64, b: f64| {
        if a > 0.0 && b > 0.0 {
            (a / b).log2()
        } else {
            // Silence against music (or the reverse): as far as the bins reach.
            if a > 0.0 {
                4.0
            } else {
                -4.0
            }
        }
    };
    let pc_sets: BTreeSet<u16> = cont_sets
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.iter().fold(0u16, |m, &(_, p)| m | 1 << p.rem_euclid(12)))
        .collect();
    let mut note_lengths = [0.0; LENGTH_BINS];
    let mut onset_quarters = [0.0; 4];
    for n in continuation {
        note_lengths[length_bin(n.duration)] += 1.0;
        let in_bar = (onset_tick(n).rem_euclid(ticks)) as f64 / ticks as f64;
        onset_quarters[((in_bar * 4.0) as usize).min(3)] += 1.0;
    }
    let mut onsets: Vec<i64> = continuation.iter().map(onset_tick).collect();
    onsets.sort_unstable();
    onsets.dedup();
    let mut inter_onset = [0.0; LENGTH_BINS];
    for w in onsets.windows(2) {
        inter_onset[length_bin((w[1] - w[0]) as f64 / ONSET_GRID)] += 1.0;
    }
    let (median_c, median_p) = (median_pitch(continuation), median_pitch(primer));
    Coherence {
        reuse,
        groove,
        pitch_class_similarity: cosine(
            &pitch_class_histogram(primer),
            &pitch_class_histogram(continuation),
        ),
        density_ratio: log2_ratio(per_beat(continuation, bars), per_beat(primer, primer_bars)),
        notes_per_onset_ratio: log2_ratio(notes_per_onset(continuation), notes_per_onset(primer)),
        register_offset: if continuation.is_empty() || primer.is_empty() {
            0.0
        } else {
            median_c - median_p
        },
        pitch_class_sets: pc_sets.len() as f64,
        in_scale: share_in_scale(primer, continuation).unwrap_or(0.0),
        note_lengths,
        inter_onset,
        onset_quarters,
    }
}

/// The primer's bars played again and again for `bars` bars: the trivial baseline every
/// continuation is compared with. Notes are clipped to their bar's copy.
pub fn loop_of(primer: &[Note], primer_bars: usize, bars: usize, beats_per_bar: f64) -> Vec<Note> {
    let span = primer_bars.max(1) as f64 * beats_per_bar;
    let mut out = Vec::new();
    let mut offset = 0.0;
    while offset < bars as f64 * beats_per_bar - 1e-9 {
        for n in primer.iter().filter(|n| n.start < span) {
            let start = n.start + offset;
            if start < bars as f64 * beats_per_bar - 1e-9 {
                out.push(Note {
                    start,
                    duration: n.duration.min(span - n.start),
                    ..*n
                });
            }
        }
        offset += span;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::music::phrase::test_note as n;

    /// E–F#–A–B, a one-bar funk riff in eighths and quarters.
    fn riff(bar: usize, transpose: u8) -> Vec<Note> {
        let o = bar as f64 * 4.0;
        vec![
            n(o, 0.5, 40 + transpose),
            n(o + 0.5, 0.5, 42 + transpose),
            n(o + 1.0, 1.0, 45 + transpose),
            n(o + 2.5, 0.5, 47 + transpose),
            n(o + 3.0, 1.0, 45 + transpose),
        ]
    }

    #[test]
    fn a_riff_replayed_and_moved_to_the_fourth_is_reuse_with_the_same_groove() {
        let primer: Vec<Note> = riff(0, 0).into_iter().chain(riff(1, 0)).collect();
        let answer: Vec<Note> = [riff(0, 0), riff(1, 5), riff(2, 0), riff(3, 5)].concat();
        let c = coherence(&primer, 2, &answer, 4, 4.0);
        assert_eq!(c.reuse, 1.0);
        assert_eq!(c.groove, 1.0);
        assert_eq!(c.pitch_class_sets, 2.0);
        assert_eq!(c.density_ratio, 0.0);
        assert!(c.register_offset > 0.0);
    }

    #[test]
    fn the_riffs_pitches_as_quarter_notes_are_neither_reuse_nor_its_groove() {
        let primer: Vec<Note> = riff(0, 0).into_iter().chain(riff(1, 0)).collect();
        let quarters: Vec<Note> = (0..16)
            .map(|i| n(i as f64, 1.0, [40, 42, 45, 47][i % 4]))
            .collect();
        let c = coherence(&primer, 2, &quarters, 4, 4.0);
        assert_eq!(c.reuse, 0.0);
        // Onsets 0, 1, 2, 3 against 0, 0.5, 1, 2.5, 3 on a 48-tick bar: 3 of 48 differ.
        assert!((c.groove - (1.0 - 3.0 / 48.0)).abs() < 1e-9, "{}", c.groove);
        assert!(c.pitch_class_similarity > 0.8);
        assert_eq!(c.note_lengths[length_bin(1.0)], 16.0);
        assert_eq!(c.inter_onset[length_bin(1.0)], 15.0);
        assert_eq!(c.onset_quarters, [4.0; 4]);
    }

    #[test]
    fn the_loop_baseline_replays_every_bar_and_clips_held_notes() {
        let primer = vec![n(0.0, 12.0, 48), n(4.0, 2.0, 55)];
        let l = loop_of(&primer, 2, 4, 4.0);
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].duration, 8.0);
        assert_eq!(l[2].start, 8.0);
        let c = coherence(&primer, 2, &l, 4, 4.0);
        assert_eq!(c.reuse, 1.0);
        assert_eq!(c.groove, 1.0);
    }

    #[test]
    fn a_primer_whose_second_bar_replays_its_first_repeats_itself() {
        let twice: Vec<Note> = riff(0, 0).into_iter().chain(riff(1, 2)).collect();
        assert!(repeats_itself(&twice, 0, 2, 4.0));
        let quarters: Vec<Note> = (4..8).map(|i| n(i as f64, 1.0, 40)).collect();
        let different: Vec<Note> = riff(0, 0).into_iter().chain(quarters).collect();
        assert!(!repeats_itself(&different, 0, 2, 4.0));
        assert!(!repeats_itself(&riff(0, 0), 0, 1, 4.0));
    }

    #[test]
    fn silence_replays_nothing() {
        let primer = riff(0, 0);
        let c = coherence(&primer, 1, &[], 4, 4.0);
        assert_eq!(c.reuse, 0.0);
        assert_eq!(c.density_ratio, -4.0);
        assert_eq!(c.pitch_class_sets, 0.0);
    }
}
