//! Candidate choice: an answer samples several candidates of each variation side by side and
//! keeps the one most in kind with the music it answers ([`crate::music::in_kind`]).
//!
//! The choice is made once every candidate has written the first [`HEARD_SHARE`] of its
//! beats; the others stop there, and the chosen one writes the rest alone (and streams from
//! then on). A step over four rows costs about 2.5 times one row's on AVX2 (their products
//! at the FMA bound, their attention four times one row's, `BENCHMARKS.md`), so candidates
//! written to the end made the default answer about twice one candidate's time. Each row's
//! random stream and numbers do not depend on the rows beside it, so the answer is the chosen
//! candidate exactly as it would have gone on (`tests/candidate_choice.rs`).

use crate::music::in_kind::{check_in_kind, check_in_kind_so_far, InKind};
use crate::music::{Note, Phrase};
use crate::tokens::Decoder;

/// Share of an answer's beats that its candidates write before they are compared: the first
/// two bars of four, the first half of a one-bar refill. `continuo eval --continuations
/// data/continuations --seeds 4` gives the answers' in-kind share 0.92 compared so, 0.93
/// compared at the end and 0.91 with one candidate, reuse and groove unchanged; a quarter
/// and a third gave 0.92 too, but change `tests/same_notes.rs`'s recorded answers, which a
/// half keeps.
pub const HEARD_SHARE: f64 = 0.5;

/// The candidates of an answer's variations and when to compare them. Row `i` is
/// candidate `i / variations` of variation `i % variations`.
pub(super) struct Choice {
    candidates: usize,
    variations: usize,
    beats_per_bar: f64,
    /// The beat from the answer's first bar line by which candidates are compared, until
    /// they are.
    compare_at: Option<f64>,
    /// The row kept for each variation, once compared.
    chosen: Option<Vec<usize>>,
}

impl Choice {
    /// For an answer of `bars` bars of `beats_per_bar`.
    pub(super) fn new(candidates: usize, variations: usize, bars: u32, beats_per_bar: f64) -> Self {
        Choice {
            candidates: candidates.max(1),
            variations: variations.max(1),
            beats_per_bar,
            compare_at: (candidates > 1).then_some(HEARD_SHARE * bars as f64 * beats_per_bar),
            chosen: None,
        }
    }

    /// The beat that every row still being written must reach before the candidates are
    /// compared; `None` once they are (or with one candidate).
    pub(super) fn compare_at(&self) -> Option<f64> {
        self.compare_at.filter(|_| self.chosen.is_none())
    }

    /// Compares the candidates on what they wrote before [`Self::compare_at`]; the rows
    /// that lost, which stop.
    pub(super) fn compare_now(&mut self, reference: &Phrase, out: &[Vec<Note>]) -> Vec<usize> {
        let Some(beats) = self.compare_at() else {
            return Vec::new();
        };
        let bpb = self.beats_per_bar;
        let chosen = self.best(
            |notes| {
                check_in_kind_so_far(&reference.notes, reference.bar_count(), notes, beats, bpb)
            },
            out,
        );
        let losers = (0..out.len()).filter(|r| !chosen.contains(r)).collect();
        self.chosen = Some(chosen);
        losers
    }

    /// The row of each variation that the answer keeps: the one compared best, or with no
    /// comparison yet (every candidate ended before [`Self::compare_at`]), the one most in
    /// kind over its `bars` bars.
    pub(super) fn chosen(&self, reference: &Phrase, out: &[Vec<Note>], bars: u32) -> Vec<usize> {
        if let Some(chosen) = &self.chosen {
            return chosen.clone();
        }
        let bpb = self.beats_per_bar;
        self.best(
            |notes| {
                check_in_kind(
                    &reference.notes,
                    reference.bar_count(),
                    notes,
                    bars as usize,
                    bpb,
                )
            },
            out,
        )
    }

    /// Per variation, the candidate passing most checks; the first on a tie.
    fn best(&self, check: impl Fn(&[Note]) -> InKind, out: &[Vec<Note>]) -> Vec<usize> {
        (0..self.variations)
            .map(|i| {
                let score = |c: usize| check(&out[i + c * self.variations]).passed();
                let best = (0..self.candidates)
                    .rev()
                    .max_by_key(|&c| score(c))
                    .unwrap_or(0);
                i + best * self.variations
            })
            .collect()
    }
}

/// Beats a row has decoded from the answer's first bar line: its bars since `first_bar`
/// (bars opened when the answer began) and its position in the current one.
pub(super) fn beats_written(decoder: &Decoder, first_bar: u32, beats_per_bar: f64) -> f64 {
    let g = decoder.grammar();
    let bars = g.bars_opened().saturating_sub(first_bar) as f64;
    (bars + g.position() as f64 / g.bar_ticks().max(1) as f64) * beats_per_bar
}
