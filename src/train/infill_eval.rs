//! `continuo eval` for infilling: how much better a model predicts a held-out gap of bars
//! when it hears the bars after the gap too, not only those before it.

use super::Piece;
use crate::model::Model;
use crate::tokens::{
    bar_pitches, repeat_after_only, split_bars, Grammar, InfillLayout, InfillSides, Token, Vocab,
    PREFIX_LEN,
};
use candle_core::{Device, Result, Tensor, D};
use serde::Serialize;
use std::collections::BTreeMap;

/// Bars heard on each side of a held-out gap by default (fewer where the piece or the
/// model's context ends): fiddle tunes repeat in 8-bar phrases, so a bar's tune comes back
/// within 8 bars after it far more often than within 4 ([`repeat_reach`]).
pub const CONTEXT_BARS: usize = 8;

/// One held-out gap, as the model reads it both ways. The gap's tokens and the one that
/// closes them (`FillEnd` with both sides, the next bar line with the prefix only) are the
/// last `scored` tokens of each sequence.
#[derive(Debug, Clone)]
pub struct GapCase {
    /// `any-prefix` and both sides in the model's [`InfillLayout`], then `gap FillEnd`.
    pub both_sides: Vec<u32>,
    /// `any-prefix before gap Bar`.
    pub prefix_only: Vec<u32>,
    /// The same with no bar after the gap (`Suffix(n)` followed at once by the next
    /// marker), which tells what the bars after add inside the form the model fills in.
    pub no_bars_after: Vec<u32>,
    pub scored: usize,
    /// The gap's first bar, counted from its piece's first.
    pub bar: usize,
    /// Notes that start in the gap.
    pub notes: usize,
    /// Whether a bar of the gap plays, pitch for pitch, a bar heard on one side of it only.
    pub repeat: RepeatSide,
}

/// Where a held-out gap's tune is heard again, bar for bar ([`repeat_after_only`] each way).
/// The gaps whose tune only one side plays measure how well a model copies from that side:
/// one that reads the bars after copies them, one that does not, cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatSide {
    /// A gap bar is played again by a bar after it and by no bar before it.
    AfterOnly,
    /// A gap bar is played by a bar before it and by no bar after it.
    BeforeOnly,
    /// On both sides, or on neither.
    Other,
}

/// The pitches of one class of gaps ([`RepeatSide`]): how many, and their nats per note
/// both sides, prefix only, and in the infill form with no bar after.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RepeatPitch {
    pub gaps: usize,
    pub pitch: (f64, f64, f64),
}

/// Gaps of `gap_bars` bars cut from `pieces` (their merged notes): in the `i`th piece the
/// first gap has `context_bars + i mod 2·context_bars` bars before it and at least one bar
/// after, then one every `2 × context_bars` bars, holding at least one note, until `max`.
/// The offset spreads the gaps evenly over the bars of a phrase: without it every gap would
/// sit the same distance from the piece's start, in tunes of 8-bar phrases at the same place
/// in a phrase (a phrase's first bar for 8 bars of context, where the bars after tell the
/// most), and the figure would measure that place, not gaps a producer picks. Bars far from the gap
/// are dropped until both sequences fit `max_len` tokens. The infill forms are in `layout`,
/// the model's own.
pub fn gap_cases(
    pieces: &[Piece],
    gap_bars: usize,
    context_bars: usize,
    layout: InfillLayout,
    max: usize,
    max_len: usize,
) -> Vec<GapCase> {
    let vocab = Vocab;
    let bar = vocab.id(Token::Bar);
    let any = vocab.any_prefix();
    let mut cases = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let ids = vocab.encode(&piece.phrase, false);
        let (head, bars) = split_bars(&ids);
        let pitches: Vec<Vec<u8>> = bars.iter().map(|b| bar_pitches(b)).collect();
        let mut start = context_bars + i % (2 * context_bars);
        while start + gap_bars < bars.len() && cases.len() < max {
            let after_end = start + gap_bars;
            let notes: usize = pitches[start..after_end].iter().map(Vec::len).sum();
            let (mut lo, mut hi) = (
                start - context_bars,
                (after_end + context_bars).min(bars.len()),
            );
            let join = |r: std::ops::Range<usize>| -> Vec<u32> {
                bars[r].iter().flat_map(|b| b.iter().copied()).collect()
            };
            let middle = join(start..after_end);
            loop {
                let before = join(lo..start);
                let sides = InfillSides {
                    head,
                    before: &before,
                    after: &join(after_end..hi),
                    bars: gap_bars as u8,
                };
                let both: Vec<u32> = any
                    .iter()
                    .copied()
                    .chain(sides.with_middle(layout, &middle))
                    .collect();
                if both.len() <= max_len {
                    if notes > 0 {
                        let prefix_only = [&any[..], head, &before, &middle, &[bar]].concat();
                        let no_bars_after = InfillSides {
                            after: &[],
                            ..sides
                        };
                        let no_bars_after =
                            [&any[..], &no_bars_after.with_middle(layout, &middle)].concat();
                        let (before, gap, after) = (lo..start, start..after_end, after_end..hi);
                        let repeat = if repeat_after_only(
                            &pitches,
                            before.clone(),
                            gap.clone(),
                            after.clone(),
                        )
                        .is_some()
                        {
                            RepeatSide::AfterOnly
                        } else if repeat_after_only(&pitches, after, gap, before).is_some() {
                            RepeatSide::BeforeOnly
                        } else {
                            RepeatSide::Other
                        };
                        cases.push(GapCase {
                            both_sides: both,
                            prefix_only,
                            no_bars_after,
                            scored: middle.len() + 1,
                            bar: start,
                            notes,
                            repeat,
                        });
                    }
                    break;
                }
                // Drop the farthest bar (before the gap on a tie), keeping one bar after it.
                if start - lo >= hi - after_end && lo < start {
                    lo += 1;
                } else if hi > after_end + 1 {
                    hi -= 1;
                } else if lo < start {
                    lo += 1;
                } else {
                    break;
                }
            }
            start += 2 * context_bars;
        }
        if cases.len() >= max {
            break;
        }
    }
    cases
}

/// How far away a held-out bar's tune is played again, one reach of bars on each side.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RepeatReach {
    pub bars_each_side: usize,
    /// Share of the bars that a bar within the reach after them plays pitch for pitch and
    /// none within it before ([`repeat_after_only`], as training draws and the eval scores).
    pub after_only: f64,
    /// Share that a bar within the reach before them plays.
    pub before: f64,
}

/// [`RepeatReach`] for each of `reaches`, over the same bars: those of `pieces` with a note
/// and the longest reach on each side. What a model that hears that many bars each side could
/// copy; returns the number of bars too.
pub fn repeat_reach(pieces: &[Piece], reaches: &[usize]) -> (usize, Vec<RepeatReach>) {
    let far = reaches.iter().copied().max().unwrap_or(0);
    let mut counts = vec![(0usize, 0usize); reaches.len()];
    let mut bars_seen = 0;
    for piece in pieces {
        let ids = Vocab.encode(&piece.phrase, false);
        let pitches: Vec<Vec<u8>> = split_bars(&ids).1.iter().map(|b| bar_pitches(b)).collect();
        for g in far..pitches.len().saturating_sub(far) {
            if pitches[g].is_empty() {
                continue;
            }
            bars_seen += 1;
            for (&k, c) in reaches.iter().zip(&mut counts) {
                let after = g + 1..g + 1 + k;
                c.0 +=
                    usize::from(repeat_after_only(&pitches, g - k..g, g..g + 1, after).is_some());
                c.1 += usize::from(pitches[g - k..g].contains(&pitches[g]));
            }
        }
    }
    let share = |n: usize| n as f64 / bars_seen.max(1) as f64;
    let reach = reaches
        .iter()
        .zip(counts)
        .map(|(&k, (after, before))| RepeatReach {
            bars_each_side: k,
            after_only: share(after),
            before: share(before),
        })
        .collect();
    (bars_seen, reach)
}

/// Negative log-likelihood of held-out gaps, per note and per token, both ways.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GapNll {
    pub gaps: usize,
    pub gap_bars: usize,
    pub notes: usize,
    /// Nats per note of the gap's tokens, hearing both sides.
    pub both_sides_per_note: f64,
    /// The same, hearing only the bars before the gap.
    pub prefix_only_per_note: f64,
    pub both_sides_per_token: f64,
    pub prefix_only_per_token: f64,
    /// 1 − both / prefix only: how much the bars after the gap help.
    pub reduction: f64,
    /// The same three over the tokens the grammar allows at each step (as generation
    /// samples): the model's mass on tokens that cannot come there (a bar line after the
    /// gap's last bar, where only its end may) left out, both ways.
    pub both_sides_per_note_in_grammar: f64,
    pub prefix_only_per_note_in_grammar: f64,
    pub reduction_in_grammar: f64,
    /// Nats per note of the gap in the infill form with no bar after it ([`GapCase::
    /// no_bars_after`]), over the whole vocabulary and over the grammar's tokens.
    pub no_bars_after_per_note: f64,
    pub no_bars_after_per_note_in_grammar: f64,
    /// 1 − both sides / no bars after: what the bars after the gap add, the form held fixed.
    pub reduction_by_bars_after: f64,
    pub reduction_by_bars_after_in_grammar: f64,
    /// Where the nats go: per kind of token predicted (`Token::kind`; the token that closes
    /// the gap counts as "gap end" every way), nats per note of the gap: both sides, prefix
    /// only, the infill form with no bar after.
    pub by_kind: BTreeMap<&'static str, (f64, f64, f64)>,
    /// Gaps only the bars after can tell ([`RepeatSide::AfterOnly`]).
    pub repeats_after_only: RepeatPitch,
    /// Gaps only the bars before can tell ([`RepeatSide::BeforeOnly`]): how well the model
    /// copies at all, from where continuation taught it to.
    pub repeats_before_only: RepeatPitch,
    /// Nats of the gap's first pitch, per gap, three ways: where the infill form is furthest
    /// from the bars before it (`Middle` comes after the bars after), so what the layout
    /// costs shows here first.
    pub first_pitch: (f64, f64, f64),
}

/// The negative log-likelihood of each of the last `scored` tokens of `seq`: as the model
/// scores it over the whole vocabulary, and over the tokens the grammar allows there (what
/// generation samples from, before temperature and steering).
fn tail_nll(
    model: &Model,
    device: &Device,
    seq: &[u32],
    scored: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let ids = Tensor::from_vec(seq.to_vec(), (1, seq.len()), device)?;
    let t = seq.len() - 1;
    let logits = model.forward(&ids.narrow(1, 0, t)?)?.squeeze(0)?;
    let logits = logits.narrow(0, t - scored, scored)?;
    let target = Tensor::from_vec(seq[seq.len() - scored..].to_vec(), (scored, 1), device)?;
    let nll = |logits: &Tensor| -> Result<Vec<f64>> {
        let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let picked = log_p.gather(&target, 1)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(picked.into_iter().map(|lp| -(lp as f64)).collect())
    };
    // The grammar's state before each scored token.
    let vocab = logits.dim(1)?;
    let mut grammar = Grammar::new();
    seq[..t + 1 - scored]
        .iter()
        .for_each(|&id| grammar.advance(id));
    let mut mask = Vec::with_capacity(scored * vocab);
    for &id in &seq[t + 1 - scored..] {
        mask.extend((0..vocab as u32).map(|v| {
            if grammar.allows(v) {
                0f32
            } else {
                f32::NEG_INFINITY
            }
        }));
        grammar.advance(id);
    }
    let mask = Tensor::from_vec(mask, (scored, vocab), device)?;
    Ok((nll(&logits)?, nll(&(logits + mask)?)?))
}

/// The kind of each scored token of a case (its last one closes the gap).
fn scored_kinds(seq: &[u32], scored: usize) -> impl Iterator<Item = &'static str> + '_ {
    let tail = &seq[seq.len() - scored..];
    tail.iter().enumerate().map(move |(i, &id)| {
        if i + 1 == tail.len() {
            "gap end"
        } else {
            Vocab.token(id).map_or("?", |t| t.kind())
        }
    })
}

/// 1 − both / prefix only.
fn reduction(both: f64, prefix: f64) -> f64 {
    if prefix > 0.0 {
        1.0 - both / prefix
    } else {
        0.0
    }
}

/// Scores every case both ways with `model`.
pub fn gap_nll(
    model: &Model,
    device: &Device,
    cases: &[GapCase],
    gap_bars: usize,
) -> Result<GapNll> {
    let (mut both, mut prefix, mut notes, mut tokens) = (0.0, 0.0, 0usize, 0usize);
    let (mut both_in, mut prefix_in) = (0.0, 0.0);
    let (mut alone, mut alone_in) = (0.0, 0.0);
    let mut by_kind: BTreeMap<&'static str, (f64, f64, f64)> = BTreeMap::new();
    // Per side a tune is repeated on: gaps, notes, pitch nats three ways.
    let mut repeats = [(0, 0, (0.0, 0.0, 0.0)); 2];
    let mut first_pitch = (0.0, 0.0, 0.0);
    let side = |r: RepeatSide| match r {
        RepeatSide::AfterOnly => Some(0),
        RepeatSide::BeforeOnly => Some(1),
        RepeatSide::Other => None,
    };
    for c in cases {
        debug_assert!(c.prefix_only.len() > PREFIX_LEN + c.scored);
        let (b, b_in) = tail_nll(model, device, &c.both_sides, c.scored)?;
        let (p, p_in) = tail_nll(model, device, &c.prefix_only, c.scored)?;
        let (a, a_in) = tail_nll(model, device, &c.no_bars_after, c.scored)?;
        both_in += b_in.iter().sum::<f64>();
        prefix_in += p_in.iter().sum::<f64>();
        alone_in += a_in.iter().sum::<f64>();
        let kinds = scored_kinds(&c.both_sides, c.scored);
        if let Some(i) = scored_kinds(&c.both_sides, c.scored).position(|k| k == "pitch") {
            first_pitch.0 += b[i];
            first_pitch.1 += p[i];
            first_pitch.2 += a[i];
        }
        for (((kind, b), p), a) in kinds.zip(&b).zip(&p).zip(&a) {
            let e = by_kind.entry(kind).or_default();
            e.0 += b;
            e.1 += p;
            e.2 += a;
            if let (Some(i), "pitch") = (side(c.repeat), kind) {
                let nats = &mut repeats[i].2;
                nats.0 += b;
                nats.1 += p;
                nats.2 += a;
            }
        }
        if let Some(i) = side(c.repeat) {
            repeats[i].0 += 1;
            repeats[i].1 += c.notes;
        }
        both += b.iter().sum::<f64>();
        prefix += p.iter().sum::<f64>();
        alone += a.iter().sum::<f64>();
        notes += c.notes;
        tokens += c.scored;
    }
    let per = |x: f64, n: usize| x / n.max(1) as f64;
    let repeat_pitch = |(gaps, notes, (b, p, a)): (usize, usize, (f64, f64, f64))| RepeatPitch {
        gaps,
        pitch: (per(b, notes), per(p, notes), per(a, notes)),
    };
    for e in by_kind.values_mut() {
        *e = (per(e.0, notes), per(e.1, notes), per(e.2, notes));
    }
    Ok(GapNll {
        gaps: cases.len(),
        gap_bars,
        notes,
        both_sides_per_note: per(both, notes),
        prefix_only_per_note: per(prefix, notes),
        both_sides_per_token: per(both, tokens),
        prefix_only_per_token: per(prefix, tokens),
        reduction: reduction(both, prefix),
        both_sides_per_note_in_grammar: per(both_in, notes),
        prefix_only_per_note_in_grammar: per(prefix_in, notes),
        reduction_in_grammar: reduction(both_in, prefix_in),
        no_bars_after_per_note: per(alone, notes),
        no_bars_after_per_note_in_grammar: per(alone_in, notes),
        reduction_by_bars_after: reduction(both, alone),
        reduction_by_bars_after_in_grammar: reduction(both_in, alone_in),
        by_kind,
        repeats_after_only: repeat_pitch(repeats[0]),
        repeats_before_only: repeat_pitch(repeats[1]),
        first_pitch: (
            per(first_pitch.0, cases.len()),
            per(first_pitch.1, cases.len()),
            per(first_pitch.2, cases.len()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::{Note, Phrase};

    /// A 4/4 piece of `n` notes, one every `step` beats and each as long, the i-th at
    /// `pitch(i)`.
    fn even_piece(n: usize, step: f64, pitch: impl Fn(usize) -> u8) -> Piece {
        let notes = (0..n)
            .map(|i| Note {
                start: i as f64 * step,
                duration: step,
                pitch: pitch(i),
                velocity: 80,
            })
            .collect();
        Piece::new("p.mid".into(), Phrase::new(notes, 4.0), vec![])
    }

    #[test]
    fn a_gap_case_reads_both_ways_and_scores_the_same_gap() {
        let piece = even_piece(48, 0.5, |i| 60 + (i % 7) as u8);
        for layout in [InfillLayout::PrefixFirst, InfillLayout::SuffixFirst] {
            a_gap_case_reads_both_ways(&piece, layout);
        }
    }

    fn a_gap_case_reads_both_ways(piece: &Piece, layout: InfillLayout) {
        let cases = gap_cases(std::slice::from_ref(piece), 1, 4, layout, 10, 256);
        // 6 bars: one gap at bar 4 (4 bars before, 1 after).
        assert_eq!(cases.len(), 1);
        let c = &cases[0];
        assert_eq!(c.notes, 8);
        // Each bar starts the 7-note cycle one note later: no bar repeats another's pitches.
        assert_eq!(c.repeat, RepeatSide::Other);
        assert!(Grammar::accepts(&c.both_sides));
        assert!(Grammar::accepts(&c.prefix_only));
        assert!(Grammar::accepts(&c.no_bars_after));
        let tail = |s: &[u32]| s[s.len() - c.scored..s.len() - 1].to_vec();
        assert_eq!(tail(&c.both_sides), tail(&c.prefix_only));
        assert_eq!(tail(&c.both_sides), tail(&c.no_bars_after));
        assert_eq!(c.no_bars_after.last(), c.both_sides.last());
        assert!(c.no_bars_after.len() < c.both_sides.len());
        assert_eq!(*c.both_sides.last().unwrap(), Vocab.id(Token::FillEnd));
        // Decoding the infill sequence puts every note of the bars before and of the gap back
        // in its bar (the bar after is given, not decoded).
        let decoded = Vocab.decode(&c.both_sides);
        assert_eq!(decoded.notes.len(), 40);
        assert_eq!(
            decoded,
            crate::tokens::quantize(&piece.phrase.slice(0.0, 20.0))
        );
        // Too small a context: no case rather than a cut gap.
        assert!(gap_cases(std::slice::from_ref(piece), 1, 4, layout, 10, 20).is_empty());
    }

    #[test]
    fn gaps_fall_at_every_place_in_a_phrase_across_pieces() {
        // Twenty bars of a two-note-per-bar scale; three copies of the piece.
        let pieces = vec![even_piece(40, 2.0, |i| 50 + (i % 12) as u8); 3];
        // Not one place for all: the gaps of piece i start i bars later, one every 8 bars.
        let cases = gap_cases(&pieces, 1, 4, InfillLayout::current(), 10, 512);
        let bars: Vec<usize> = cases.iter().map(|c| c.bar).collect();
        assert_eq!(bars, vec![4, 12, 5, 13, 6, 14]);
    }

    #[test]
    fn the_reach_of_a_repeat_counts_the_bars_a_context_would_hold() {
        // Twenty bars of four notes: bar k plays tune k % 8, so every bar is played again
        // 8 bars later and 8 bars earlier, never nearer.
        let piece = even_piece(80, 1.0, |i| 50 + ((i / 4) % 8) as u8 * 2 + (i % 4) as u8);
        let (bars, reach) = repeat_reach(std::slice::from_ref(&piece), &[4, 8]);
        // Bars 8..12 have 8 bars on each side: each is heard 8 before and 8 after.
        assert_eq!(bars, 4);
        assert_eq!((reach[0].after_only, reach[0].before), (0.0, 0.0));
        assert_eq!((reach[1].after_only, reach[1].before), (0.0, 1.0));
        // With a reach of 4 alone, bars 4..16 count, and no tune comes back within 4 bars.
        let (bars, reach) = repeat_reach(std::slice::from_ref(&piece), &[4]);
        assert_eq!((bars, reach[0].after_only), (12, 0.0));
    }

    #[test]
    fn a_gap_repeated_on_one_side_only_is_told_apart() {
        // Six bars of eight notes; bar 4 (the gap) plays what bar 5 plays, and each of bars
        // 0–3 something else. Then the same with bar 1 playing it too, then with bar 1 only.
        let tune = |bars: [u8; 6]| -> Piece {
            even_piece(48, 0.5, |i| 48 + bars[i / 8] * 2 + (i % 8) as u8)
        };
        let after_only = gap_cases(
            &[tune([0, 1, 2, 3, 7, 7])],
            1,
            4,
            InfillLayout::current(),
            10,
            256,
        );
        assert_eq!(after_only.len(), 1);
        assert_eq!(after_only[0].repeat, RepeatSide::AfterOnly);
        let both = gap_cases(
            &[tune([0, 7, 2, 3, 7, 7])],
            1,
            4,
            InfillLayout::current(),
            10,
            256,
        );
        assert_eq!(both[0].repeat, RepeatSide::Other);
        let before_only = gap_cases(
            &[tune([0, 7, 2, 3, 7, 5])],
            1,
            4,
            InfillLayout::current(),
            10,
            256,
        );
        assert_eq!(before_only[0].repeat, RepeatSide::BeforeOnly);
    }
}
