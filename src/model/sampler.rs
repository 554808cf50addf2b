//! Generation: primer → tokens → model → grammar-masked, seeded sampling → notes.

use super::candidates::{beats_written, Choice};
use super::copy_guard::CopyGuard;
use super::steering::{RowCounts, Steering};
use super::{DecodeCache, Model};
pub use crate::music::texture::Rhythm;
use crate::music::texture::TextureRequest;
pub use crate::music::variation::Variation;
use crate::music::{detect_key, Key, Note, Phrase};
use crate::tokens::{
    split_bars, Decoder, Grammar, InfillLayout, InfillSides, Token, Vocab, MAX_FILL_BARS,
    PREFIX_LEN, TICKS_PER_BEAT,
};
use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

/// Candidates per answer unless the user says otherwise, in the plugin and `continuo
/// generate` alike (the model card's in-kind table says what each count buys).
pub const DEFAULT_CANDIDATES: usize = 4;
/// Most candidates per answer (the plugin decodes them in one batch, so latency grows).
pub const MAX_CANDIDATES: usize = 8;

/// How to continue a primer.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Bars to generate after the primer.
    pub bars: u32,
    /// Softmax temperature; > 0.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    pub top_p: f32,
    pub seed: u64,
    /// Independent continuations, sampled in one batch.
    pub variations: usize,
    /// Candidates sampled for each variation, of which the one that passes most of the
    /// in-kind checks against the primer is kept (the first on a tie). 1 keeps every sample
    /// and streams notes as they are decoded; more decode in one batch and deliver at the end.
    pub candidates: usize,
    /// Lowest and highest pitch allowed (inclusive).
    pub pitch_range: (u8, u8),
    /// Only pitches of this key's scale.
    pub key: Option<Key>,
    /// The key the prompt's key prefix tells the model.
    pub key_prefix: KeyPrefix,
    /// The texture (polyphony, density, register) the prefix tells the model.
    pub texture: TextureRequest,
    /// Where onsets may fall within the bar.
    pub rhythm: Rhythm,
    /// Keep chord sizes and pitches near what `texture` asks for (see
    /// [`TextureRequest::targets_for`]) and lean toward the told key's scale
    /// ([`KEY_LEAN`](super::steering::KEY_LEAN)); off, the prefix alone tells the model.
    pub steer_texture: bool,
    /// Bar length to use when the primer is empty (beats).
    pub beats_per_bar: f64,
    /// The continuation's first note falls on its first downbeat (a live answer starts on
    /// the one rather than after a rest).
    pub start_on_downbeat: bool,
    /// Refuse notes that would complete a run of the training data (the model's copy guard).
    pub copy_guard: Option<Arc<CopyGuard>>,
    /// How much of the answer replays the primer's bars ([`super::variation`]). `New` here,
    /// the decoding loop alone; the plugin and `continuo generate` default to `Develop`.
    pub variation: Variation,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            bars: 4,
            temperature: 1.0,
            top_p: 0.95,
            seed: 0,
            variations: 1,
            candidates: 1,
            pitch_range: (0, 127),
            key: None,
            key_prefix: KeyPrefix::Detect,
            texture: TextureRequest::default(),
            rhythm: Rhythm::Free,
            steer_texture: true,
            beats_per_bar: 4.0,
            start_on_downbeat: false,
            copy_guard: None,
            variation: Variation::New,
        }
    }
}

impl GenerateOptions {
    /// The key the prompt's key prefix names for `primer` (`None`: `AnyKey`).
    pub fn told_key(&self, primer: &Phrase) -> Option<Key> {
        match self.key_prefix {
            KeyPrefix::Detect => self.key.or_else(|| detect_key(&primer.notes)),
            KeyPrefix::Told(k) => Some(k),
            KeyPrefix::Any => None,
        }
    }
}

/// Which key a generation tells the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyPrefix {
    /// [`GenerateOptions::key`] if set, else the primer's detected key, else `AnyKey`.
    Detect,
    /// This key, whether or not pitches are restricted to it.
    Told(Key),
    /// `AnyKey`: the model is told nothing.
    Any,
}

/// What a generation produced.
#[derive(Debug, Clone)]
pub struct Generated {
    /// One continuation per variation, timed from the bar line after the primer.
    pub variations: Vec<Phrase>,
    /// Beat (in the primer's time) where the continuation starts.
    pub start_beat: f64,
    /// The prompt the model was given (primer tokens and the opening bar line).
    pub prompt: Vec<u32>,
    /// The sampled ids of each variation, after the prompt.
    pub ids: Vec<Vec<u32>>,
    /// Decoding steps taken (the longest variation's token count).
    pub tokens: usize,
    /// Time spent reading prompts: every model call's prefill, summed (a planned answer
    /// makes several: the bars after the replay, then each bar written anew).
    pub prefill_ms: f64,
    pub ms_per_token: f64,
}

/// A note as it is decoded, for streaming to the plugin.
#[derive(Debug, Clone, Copy)]
pub struct StreamedNote {
    pub variation: usize,
    /// Timed from the continuation start.
    pub note: Note,
    /// Bars completed so far in this variation.
    pub bars_done: u32,
}

/// Anything that scores the next token of a batch of sequences: the neural model, or the
/// n-gram baselines of `continuo eval`. Rows of the returned matrix are unnormalised
/// log-probabilities over the vocabulary.
pub trait Scorer {
    /// Reads the prompts (all the same length); scores of their next tokens.
    fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>>;
    /// Appends one token per sequence (everything fed so far is in `fed`); next scores.
    fn step(&mut self, next: &[u32], fed: &[Vec<u32>]) -> Result<Vec<Vec<f32>>>;
    /// Sequence `row` is finished (it is fed padding from now on): its scores are no longer
    /// read, so a scorer may stop computing them.
    fn finish(&mut self, _row: usize) {}
    /// Longest context the scorer can read (the prompt is cut to half of it).
    fn max_context(&self) -> Option<usize>;
    /// The order in which it reads a gap's sides, if it knows the fill-in-the-middle markers.
    fn infill_layout(&self) -> Option<InfillLayout> {
        Some(InfillLayout::current())
    }
}

/// The neural model as a [`Scorer`]: KV cache, batched variations, and a sliding window
/// past the position table.
pub struct ModelScorer<'a> {
    model: &'a Model,
    device: &'a Device,
    cache: DecodeCache,
    /// Sequences finished since the last prompt, left out again after a slide.
    finished: Vec<usize>,
}

impl<'a> ModelScorer<'a> {
    pub fn new(model: &'a Model, device: &'a Device) -> Self {
        Self {
            model,
            device,
            cache: model.new_cache(),
            finished: Vec::new(),
        }
    }
}

/// Rows as wide as the vocabulary: a model of an older vocabulary that this one extends
/// (v3) scores the ids it lacks at minus infinity, so they are never sampled.
fn vocab_wide(mut rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let size = Vocab.size();
    for r in &mut rows {
        r.resize(size.max(r.len()), f32::NEG_INFINITY);
    }
    rows
}

impl Scorer for ModelScorer<'_> {
    fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        self.cache = self.model.new_cache();
        self.finished.clear();
        let rows = prefill(self.model, self.device, prompts, &mut self.cache)?.to_vec2()?;
        Ok(vocab_wide(rows))
    }

    fn step(&mut self, next: &[u32], fed: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let max_ctx = self.model.max_context();
        let needs_window = match (max_ctx, self.cache.positions()) {
            (Some(ctx), Some(len)) => len + 1 > ctx,
            _ => false,
        };
        if needs_window {
            // Slide: re-read the key prefix and the last half context, so decoding can go past
            // the position table.
            let keep = max_ctx.unwrap_or(0) / 2;
            let windows: Vec<Vec<u32>> = fed.iter().map(|h| slid_window(h, keep)).collect();
            let finished = std::mem::take(&mut self.finished);
            let rows = self.start(&windows)?;
            finished.into_iter().for_each(|row| self.finish(row));
            return Ok(rows);
        }
        let ids = Tensor::from_vec(next.to_vec(), (next.len(), 1), self.device)?;
        Ok(vocab_wide(
            self.model.decode_step(&ids, &mut self.cache)?.to_vec2()?,
        ))
    }

    fn finish(&mut self, row: usize) {
        self.cache.finish(row);
        self.finished.push(row);
    }

    fn max_context(&self) -> Option<usize> {
        self.model.max_context()
    }

    fn infill_layout(&self) -> Option<InfillLayout> {
        Vocab.infill_layout(self.model.vocab_size())
    }
}

/// The prefix of `history`, if it has one, and its last `keep` tokens.
fn slid_window(history: &[u32], keep: usize) -> Vec<u32> {
    let prefix = history
        .iter()
        .take(PREFIX_LEN)
        .take_while(|&&id| Vocab.is_prefix(id))
        .count();
    let tail_start = history.len().saturating_sub(keep).max(prefix);
    history[..prefix]
        .iter()
        .chain(&history[tail_start..])
        .copied()
        .collect()
}

/// Fills bars `gap` of `phrase` with the model; see [`infill_with`].
pub fn infill(
    model: &Model,
    device: &Device,
    phrase: &Phrase,
    gap: std::ops::Range<u32>,
    opts: &GenerateOptions,
) -> Result<Generated> {
    infill_with(
        &mut ModelScorer::new(model, device),
        phrase,
        gap,
        opts,
        |_| true,
    )
}

/// The sampling loop over any [`Scorer`], continuing `primer` by `opts.bars` bars with the
/// model's own bars (whatever `opts.variation` says).
pub fn continue_freely(
    scorer: &mut dyn Scorer,
    primer: &Phrase,
    opts: &GenerateOptions,
    on_note: impl FnMut(StreamedNote) -> bool,
) -> Result<Generated> {
    let prompt = prompt_tokens(primer, opts, scorer.max_context());
    sample_after(scorer, primer, prompt, opts, on_note)
}

/// Why a gap cannot be filled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InfillError {
    #[error("bars {first}..{last} are not a range of bars to fill: give 1 to {max} bars, counted from 1")]
    BadRange { first: u32, last: u32, max: u8 },
    #[error("this model was trained before infilling (vocabulary v3): it continues, but regenerating bars needs a model trained with fill-in-the-middle (`continuo train --from <it>`)")]
    ModelCannotInfill,
}

/// Fills bars `gap` (0-based, end exclusive) of `phrase` anew, hearing the bars on both
/// sides: the phrase's notes that start in the gap are left out of the prompt, the model is
/// told the gap's length, and it samples `gap.len()` bars (`opts.bars` is ignored). Notes
/// come back timed from the gap's first bar line and end by its last; the notes around
/// the gap are the reference of the in-kind choice, the texture and the key.
pub fn infill_with(
    scorer: &mut dyn Scorer,
    phrase: &Phrase,
    gap: std::ops::Range<u32>,
    opts: &GenerateOptions,
    mut on_note: impl FnMut(StreamedNote) -> bool,
) -> Result<Generated> {
    let bars = gap.end.saturating_sub(gap.start);
    if bars == 0 || bars > MAX_FILL_BARS as u32 {
        return Err(candle_core::Error::Msg(
            InfillError::BadRange {
                first: gap.start + 1,
                last: gap.end,
                max: MAX_FILL_BARS,
            }
            .to_string(),
        ));
    }
    let Some(layout) = scorer.infill_layout() else {
        return Err(candle_core::Error::Msg(
            InfillError::ModelCannotInfill.to_string(),
        ));
    };
    let bpb = crate::tokens::quantize(phrase).beats_per_bar;
    let (from, to) = (gap.start as f64 * bpb, gap.end as f64 * bpb);
    let around = Phrase::new(
        phrase
            .notes
            .iter()
            .filter(|n| n.start < from || n.start >= to)
            .copied()
            .collect(),
        phrase.beats_per_bar,
    );
    let prompt = infill_prompt(&around, gap.clone(), layout, opts, scorer.max_context());
    let opts = GenerateOptions {
        bars,
        start_on_downbeat: false,
        ..opts.clone()
    };
    let gap_beats = to - from;
    let clip = |n: Note| Note {
        duration: n
            .duration
            .min(gap_beats - n.start)
            .max(1.0 / TICKS_PER_BEAT as f64),
        ..n
    };
    let mut g = sample_after(scorer, &around, prompt, &opts, |s| {
        on_note(StreamedNote {
            note: clip(s.note),
            ..s
        })
    })?;
    for v in &mut g.variations {
        v.notes.iter_mut().for_each(|n| *n = clip(*n));
    }
    Ok(g)
}

/// The sampling loop after a prompt: grammar, key and range masks, the copy guard,
/// temperature, top-p, a seeded RNG per variation, the bar budget. `reference` is the music
/// the answer is in kind with (the primer; the bars around a gap).
fn sample_after(
    scorer: &mut dyn Scorer,
    primer: &Phrase,
    prompt: Prompt,
    opts: &GenerateOptions,
    mut on_note: impl FnMut(StreamedNote) -> bool,
) -> Result<Generated> {
    let vocab = Vocab;
    let variations = opts.variations.max(1);
    let candidates = opts.candidates.max(1);
    // Row i is candidate i / variations of variation i % variations; with one candidate the
    // rows (and their random streams) are the variations themselves.
    let v = variations * candidates;
    // Notes go to `on_note` as they are decoded: from the start with one candidate, from the
    // candidates' comparison with several (the chosen ones' notes so far first).
    let mut streaming = candidates == 1;
    let Prompt {
        ids: prompt,
        first_bar,
        start_bar,
        beats_per_bar,
    } = prompt;
    let start_beat = start_bar as f64 * beats_per_bar;
    // The decoder counts bars from the prompt's first bar line.
    let decoded_offset = first_bar as f64 * beats_per_bar - start_beat;

    let mut grammar = Grammar::new();
    for &id in &prompt {
        grammar.advance(id);
    }
    // The prompt already opened the first continuation bar.
    let end_bars = grammar.bars_opened() + opts.bars - 1;
    let mut decoders: Vec<Decoder> = (0..v).map(|_| decoder_after(&prompt)).collect();
    let steering = Steering::new(primer, opts, &grammar, start_beat);
    let mut counts = vec![RowCounts::default(); v];
    // What each variation sampled, and what was fed to the scorer (padding once it is done),
    // which keeps every row the same length for the sliding window.
    let mut history: Vec<Vec<u32>> = vec![prompt.clone(); v];
    let mut fed: Vec<Vec<u32>> = vec![prompt.clone(); v];
    let mut done = vec![false; v];
    let mut rngs: Vec<ChaCha8Rng> = (0..v)
        .map(|i| {
            let mut r = ChaCha8Rng::seed_from_u64(opts.seed);
            r.set_stream(i as u64);
            r
        })
        .collect();
    let mut out: Vec<Vec<Note>> = vec![Vec::new(); v];
    let mut choice = Choice::new(candidates, variations, opts.bars, beats_per_bar);

    let t0 = Instant::now();
    let mut rows = scorer.start(&history)?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t1 = Instant::now();
    let mut steps = 0usize;
    let max_steps = (opts.bars as usize + 1) * 400;
    let mut mask = vec![false; vocab.size()];
    let pad = vocab.id(Token::Pad);
    let bar = vocab.id(Token::Bar);
    let fill_end = vocab.id(Token::FillEnd);
    let mut cancelled = false;
    while !done.iter().all(|&d| d) && steps < max_steps && !cancelled {
        let mut next = Vec::with_capacity(v);
        for i in 0..v {
            if done[i] {
                next.push(pad);
                continue;
            }
            steering.mask(&mut mask, &decoders[i], &out[i], &counts[i]);
            steering.lean(&mut rows[i], decoders[i].grammar());
            let id = sample(&rows[i], &mask, opts.temperature, opts.top_p, &mut rngs[i]);
            if (id == bar && decoders[i].grammar().bars_opened() >= end_bars) || id == fill_end {
                done[i] = true;
                scorer.finish(i);
                next.push(pad);
                continue;
            }
            counts[i].after(id);
            if let Some(n) = decoders[i].push(id) {
                let note = Note {
                    start: n.start + decoded_offset,
                    ..n
                };
                out[i].push(note);
                let bars_done = decoders[i]
                    .grammar()
                    .bars_opened()
                    .saturating_sub(grammar.bars_opened());
                if streaming
                    && !on_note(StreamedNote {
                        variation: i % variations,
                        note,
                        bars_done,
                    })
                {
                    cancelled = true;
                }
            }
            history[i].push(id);
            next.push(id);
        }
        steps += 1;
        for (f, &id) in fed.iter_mut().zip(&next) {
            f.push(id);
        }
        if let Some(at) = choice.compare_at() {
            let first_bar = grammar.bars_opened();
            let heard =
                |i: usize| done[i] || beats_written(&decoders[i], first_bar, beats_per_bar) >= at;
            if (0..v).all(heard) {
                for row in choice.compare_now(primer, &out) {
                    if !done[row] {
                        done[row] = true;
                        scorer.finish(row);
                    }
                }
                let chosen = choice.chosen(primer, &out, opts.bars);
                streaming = true;
                cancelled = !deliver(&chosen, &out, (beats_per_bar, opts.bars), &mut on_note);
            }
        }
        if done.iter().all(|&d| d) || cancelled {
            break;
        }
        rows = scorer.step(&next, &fed)?;
    }
    let ms_per_token = t1.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64;
    let chosen = choice.chosen(primer, &out, opts.bars);
    if !streaming && !cancelled {
        deliver(&chosen, &out, (beats_per_bar, opts.bars), &mut on_note);
    }
    Ok(Generated {
        variations: chosen
            .iter()
            .map(|&row| Phrase::new(out[row].clone(), beats_per_bar))
            .collect(),
        start_beat,
        ids: chosen
            .iter()
            .map(|&row| history[row][prompt.len()..].to_vec())
            .collect(),
        prompt,
        tokens: steps,
        prefill_ms,
        ms_per_token,
    })
}

/// Hands the notes decoded so far of each variation's `chosen` row to `on_note`, each with
/// the bars it completes (of `bars` bars of `beats_per_bar`); false if `on_note` stopped it.
fn deliver(
    chosen: &[usize],
    out: &[Vec<Note>],
    (beats_per_bar, bars): (f64, u32),
    on_note: &mut impl FnMut(StreamedNote) -> bool,
) -> bool {
    for (variation, &row) in chosen.iter().enumerate() {
        for &note in &out[row] {
            let bar = (note.start / beats_per_bar.max(0.5)).floor().max(0.0) as u32;
            let delivered = on_note(StreamedNote {
                variation,
                note,
                bars_done: (bar + 1).min(bars),
            });
            if !delivered {
                return false;
            }
        }
    }
    true
}

fn decoder_after(prompt: &[u32]) -> Decoder {
    let mut d = Decoder::new();
    for &id in prompt {
        d.push(id);
    }
    d
}

fn prefill(
    model: &Model,
    device: &Device,
    seqs: &[Vec<u32>],
    cache: &mut DecodeCache,
) -> Result<Tensor> {
    let t = seqs[0].len();
    let flat: Vec<u32> = seqs.iter().flatten().copied().collect();
    let ids = Tensor::from_vec(flat, (seqs.len(), t), device)?;
    model.forward_cached(&ids, cache)
}

/// What the sampling loop reads before it samples, and where what it samples goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// The phrase's bar that the prompt's first bar line opens (earlier bars were cut to fit
    /// the model's context).
    pub first_bar: u32,
    /// The phrase's bar the sampled notes start in.
    pub start_bar: u32,
    pub beats_per_bar: f64,
}

/// The key and texture prefix a generation tells the model about `reference`.
fn told_prefix(reference: &Phrase, opts: &GenerateOptions) -> [u32; PREFIX_LEN] {
    let bpb = crate::tokens::quantize(reference).beats_per_bar;
    Vocab.prefix(
        opts.told_key(reference),
        opts.texture.bins_for(&reference.notes, bpb),
    )
}

/// The key prefix, then the primer's tokens with a bar line appended, cut to its last bars if
/// it would fill more than half the model's context.
pub fn prompt_tokens(primer: &Phrase, opts: &GenerateOptions, max_ctx: Option<usize>) -> Prompt {
    let vocab = Vocab;
    let prefix = told_prefix(primer, opts);
    let with_prefix = |ids: Vec<u32>| -> Vec<u32> { prefix.iter().copied().chain(ids).collect() };
    if primer.notes.is_empty() {
        let empty = Phrase::new(vec![], opts.beats_per_bar);
        let ids = vocab.encode(&empty, false);
        let bpb = vocab.decode(&ids).beats_per_bar;
        return Prompt {
            ids: with_prefix(ids),
            first_bar: 0,
            start_bar: 0,
            beats_per_bar: bpb,
        };
    }
    let bpb = crate::tokens::quantize(primer).beats_per_bar;
    let bars = primer.bar_count() as u32;
    let budget = max_ctx.map_or(usize::MAX, |c| c / 2);
    let mut first_bar = 0;
    loop {
        let window = primer.slice(first_bar as f64 * bpb, f64::INFINITY);
        let mut ids = vocab.encode(&window, false);
        // The encoding ends in the primer's last bar; the continuation opens the next one.
        ids.push(vocab.id(Token::Bar));
        if ids.len() < budget || first_bar + 1 >= bars {
            return Prompt {
                ids: with_prefix(ids),
                first_bar,
                start_bar: bars,
                beats_per_bar: bpb,
            };
        }
        first_bar += 1;
    }
}

/// Tokens the model is expected to spend per bar it fills: room kept in the context.
const FILL_TOKENS_PER_BAR: usize = 48;

/// The prefix, then `BOS Meter`, the bars before `gap` and after it with their markers in
/// `layout`'s order, and the gap's first bar line ([`InfillSides`]). `around` holds no note
/// in the gap. Bars far from the gap are left out, nearest kept first and alternately on
/// either side, until the prompt and the room for the gap's bars fit the model's context.
pub fn infill_prompt(
    around: &Phrase,
    gap: std::ops::Range<u32>,
    layout: InfillLayout,
    opts: &GenerateOptions,
    max_ctx: Option<usize>,
) -> Prompt {
    let vocab = Vocab;
    let bpb = crate::tokens::quantize(around).beats_per_bar;
    let n = gap.end - gap.start;
    let ids = vocab.encode(around, false);
    let (head, bars) = split_bars(&ids);
    // A bar past the last note is a bare bar line: the bars before the gap are all there.
    let bar_line = [vocab.id(Token::Bar)];
    let bar = |i: u32| bars.get(i as usize).copied();
    let bar_before = |i: u32| bar(i).unwrap_or(&bar_line);
    let ctx = max_ctx.unwrap_or(usize::MAX / 2);
    let room = ctx.saturating_sub(
        PREFIX_LEN + head.len() + layout.markers() + FILL_TOKENS_PER_BAR * n as usize,
    );
    // Nearest bars first: before the gap, after it, then one further on each side…
    let (mut lo, mut hi, mut used) = (gap.start, gap.end, 0usize);
    let (mut before_open, mut after_open) = (true, true);
    while before_open || after_open {
        if before_open {
            match lo.checked_sub(1).map(|i| (i, bar_before(i))) {
                Some((i, b)) if used + b.len() <= room => {
                    used += b.len();
                    lo = i;
                }
                _ => before_open = false,
            }
        }
        if after_open {
            match bar(hi) {
                Some(b) if used + b.len() <= room => {
                    used += b.len();
                    hi += 1;
                }
                _ => after_open = false,
            }
        }
    }
    // Bars that lie in the gap (empty: `around` has no notes there) are the gap's own.
    let mut before: Vec<u32> = Vec::new();
    (lo..gap.start).for_each(|i| before.extend_from_slice(bar_before(i)));
    let after: Vec<u32> = (gap.end..hi)
        .filter_map(bar)
        .flat_map(|b| b.iter().copied())
        .collect();
    let sides = InfillSides {
        head,
        before: &before,
        after: &after,
        bars: n as u8,
    };
    let mut prompt: Vec<u32> = told_prefix(around, opts).to_vec();
    prompt.extend(sides.prompt(layout));
    prompt.push(vocab.id(Token::Bar));
    Prompt {
        ids: prompt,
        first_bar: lo,
        start_bar: gap.start,
        beats_per_bar: bpb,
    }
}

/// Samples an id from masked logits with temperature and nucleus (top-p) filtering.
pub fn sample(
    logits: &[f32],
    mask: &[bool],
    temperature: f32,
    top_p: f32,
    rng: &mut impl Rng,
) -> u32 {
    let t = temperature.max(1e-3);
    let max = logits
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(&l, _)| l)
        .fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .zip(mask)
        .enumerate()
        .filter(|(_, (_, &m))| m)
        .map(|(i, (&l, _))| (i as u32, ((l - max) / t).exp()))
        .collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0.0;
    let mut n = 0;
    for p in &probs {
        kept += p.1 / total;
        n += 1;
        if kept >= top_p {
            break;
        }
    }
    let probs = &probs[..n.max(1)];
    let sum: f32 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.gen::<f32>() * sum;
    for p in probs {
        r -= p.1;
        if r <= 0.0 {
            return p.0;
        }
    }
    probs[probs.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_never_picks_a_masked_token() {
        let logits = vec![10.0, 0.0, 5.0, -1.0];
        let mask = vec![false, true, false, true];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let id = sample(&logits, &mask, 1.5, 1.0, &mut rng);
            assert!(id == 1 || id == 3);
        }
    }

    #[test]
    fn low_top_p_keeps_only_the_likeliest() {
        let logits = vec![3.0, 0.0, 2.9, -1.0];
        let mask = vec![true; 4];
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..100 {
            assert_eq!(sample(&logits, &mask, 1.0, 0.01, &mut rng), 0);
        }
    }

    #[test]
    fn the_sliding_window_keeps_the_prefix() {
        let v = Vocab;
        let prefix = v.prefix(Some(Key::from_index(3)), Default::default());
        let history: Vec<u32> = prefix.iter().copied().chain(10..20).collect();
        let mut expected = prefix.to_vec();
        expected.extend([16, 17, 18, 19]);
        assert_eq!(slid_window(&history, 4), expected);
        assert_eq!(slid_window(&history, 20), history);
        assert_eq!(slid_window(&[10, 11, 12], 2), vec![11, 12]);
    }

    #[test]
    fn prompt_ends_with_the_bar_line_after_the_primer() {
        let primer = Phrase::new(
            vec![Note {
                start: 0.0,
                duration: 4.0,
                pitch: 60,
                velocity: 90,
            }],
            4.0,
        );
        let Prompt {
            ids,
            start_bar,
            beats_per_bar: bpb,
            first_bar,
        } = prompt_tokens(&primer, &GenerateOptions::default(), Some(256));
        assert_eq!(first_bar, 0);
        assert_eq!(ids[0], Vocab.key_prefix(detect_key(&primer.notes)));
        assert_eq!(start_bar, 1);
        assert_eq!(bpb, 4.0);
        assert_eq!(*ids.last().unwrap(), Vocab.id(Token::Bar));
        let mut g = Grammar::new();
        ids.iter().for_each(|&i| g.advance(i));
        assert_eq!(g.bars_opened(), 2);
    }

    #[test]
    fn an_infill_prompt_opens_the_gap_in_its_own_bar_in_either_layout() {
        // Six bars, one note each; bar 3 (index 2) taken out.
        let notes = (0..6u8)
            .filter(|&b| b != 2)
            .map(|b| Note {
                start: b as f64 * 4.0,
                duration: 1.0,
                pitch: 60 + b,
                velocity: 90,
            })
            .collect();
        let around = Phrase::new(notes, 4.0);
        let opts = GenerateOptions::default();
        let (middle, before) = (Vocab.id(Token::Middle), Vocab.id(Token::Before));
        for layout in [InfillLayout::PrefixFirst, InfillLayout::SuffixFirst] {
            let p = infill_prompt(&around, 2..3, layout, &opts, Some(256));
            assert_eq!((p.first_bar, p.start_bar), (0, 2));
            let mut g = Grammar::new();
            for &id in &p.ids {
                assert!(g.allows(id), "{layout:?}: {id} refused");
                g.advance(id);
            }
            assert!(g.in_middle());
            assert_eq!(g.bar_index(), 2, "{layout:?}");
            // The prompt's notes are those before the gap; the bars after are context.
            let at = |id: u32| p.ids.iter().position(|&x| x == id);
            match layout {
                InfillLayout::PrefixFirst => assert_eq!(at(before), None),
                InfillLayout::SuffixFirst => {
                    // The bar before the gap (pitch 61) stands right before `Middle`.
                    let m = at(middle).unwrap();
                    assert!(at(before).unwrap() < m);
                    assert_eq!(Vocab.pitch_of(p.ids[m - 3]), Some(61));
                }
            }
        }
    }
}
