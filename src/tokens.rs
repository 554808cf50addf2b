//! The event vocabulary: a phrase in beats ⇄ a sequence of token ids.
//!
//! REMI-style and beat-relative, so the model never sees the tempo:
//! `BOS Meter(bar length) Bar Position Pitch Velocity Duration [Pitch Velocity Duration]… Position … Bar … EOS`.
//! Chords are several notes at one position, pitches rising. Positions sit on a grid of
//! [`TICKS_PER_BEAT`] per beat, which holds 16ths (3 ticks) and 8th/16th triplets (4, 2 ticks).
//! The [`Vocab`] owns every token id; nothing else computes ids by hand. The [`Grammar`] is the
//! state machine of well-formed sequences, used both to check and to mask sampling.
//!
//! A sequence fed to a model starts with a *prefix* of [`PREFIX_LEN`] tokens that tells it
//! what to play: `Key(k)` names the key the music is in (as [`detect_key`] hears it), then
//! `Polyphony(b)`, `Density(b)` and `Register(b)` name the bins of its [`Texture`]; each has
//! an "any" value (`AnyKey`, `AnyPolyphony`…) that says nothing. Training draws the prefix
//! from each window's own notes, generation from the primer (or the user's choice), so a
//! model learns to answer in the key and texture it is given. The prefix is conditioning,
//! not music: the grammar accepts it, in that order, before `BOS`, and the decoder skips it.
//!
//! Version 3 appends the texture tokens after version 2's ids, which keep their meaning, so
//! a v2 model's weights can start a v3 training run (`continuo train --from`).
//!
//! Version 4 appends fill-in-the-middle markers, so one model both continues and infills:
//! `prefix BOS Meter Bar … (bars before) Suffix(n) Bar … (bars after) Middle Bar … (the n
//! bars between) FillEnd`. The suffix's bars are numbered after the gap of `n` bars, the
//! middle's from the gap's first bar, so every note decodes to its place on one timeline.
//! A v3 model reads every v4 sequence without markers: it loads and continues as before,
//! and only infilling is refused ([`Vocab::infill_layout`]).
//!
//! Version 5 appends one marker, `Before`, for the suffix-first layout ([`InfillLayout`]):
//! `prefix BOS Meter Suffix(n) Bar … (bars after) Before Bar … (bars before) Middle Bar …
//! (the gap) FillEnd`, so the gap follows the bar before it, as a continuation does. In the
//! prefix-first order of v4 the bars after stood between the last note before the gap and its
//! first note, and that note cost 0.6 nats more than with the bars before alone (BENCHMARKS.md,
//! session 18). A v4 model still loads and fills in its own order.

use crate::music::key::key_from_histogram;
use crate::music::texture::{DENSITY_BINS, POLYPHONY_BINS, REGISTER_BINS};
use crate::music::{Key, Note, Phrase, Texture, TextureBins};
use sha2::{Digest, Sha256};

/// Grid resolution in ticks per beat (quarter note).
pub const TICKS_PER_BEAT: u32 = 12;
/// Longest bar: 8 beats (16 eighths).
pub const MAX_BAR_EIGHTHS: u32 = 16;
/// Positions a bar may hold.
pub const MAX_BAR_TICKS: u32 = MAX_BAR_EIGHTHS * TICKS_PER_BEAT / 2;
/// Velocity bins and the velocity each bin decodes to.
pub const VELOCITY_LEVELS: [u8; 8] = [16, 32, 48, 64, 80, 96, 112, 127];
/// Durations in ticks: exact up to a beat, coarser for long notes.
pub const DURATION_TICKS: [u32; 27] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 18, 21, 24, 30, 36, 42, 48, 60, 72, 84, 96, 120,
    144, 192,
];
/// Bump when the meaning of any id changes; models record it and are refused on mismatch.
pub const VOCAB_VERSION: u32 = 5;
/// Tokens before `BOS`: key, polyphony, density, register.
pub const PREFIX_LEN: usize = 4;
/// The vocabulary size of version 2, whose ids are the first ids of version 3.
pub const V2_VOCAB_SIZE: usize = ANY_KEY as usize + 1;
/// The vocabulary size of version 3, whose ids are the first ids of version 4.
pub const V3_VOCAB_SIZE: usize = ANY_REGISTER as usize + 1;
/// The vocabulary size of version 4, whose ids are the first ids of version 5.
pub const V4_VOCAB_SIZE: usize = FILL_END as usize + 1;
/// Most bars one infill fills (the `Suffix(n)` tokens).
pub const MAX_FILL_BARS: u8 = 8;

/// One event of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    Pad,
    Bos,
    Eos,
    Bar,
    /// Bar length in eighth notes, 1..=16.
    Meter(u8),
    /// Onset within the bar, in grid ticks.
    Position(u8),
    Pitch(u8),
    /// Index into [`VELOCITY_LEVELS`].
    Velocity(u8),
    /// Index into [`DURATION_TICKS`].
    Duration(u8),
    /// Key prefix: [`Key::index`], 0..24.
    Key(u8),
    /// Key prefix that names no key.
    AnyKey,
    /// Texture prefix: polyphony bin, 0..[`POLYPHONY_BINS`].
    Polyphony(u8),
    AnyPolyphony,
    /// Texture prefix: density bin, 0..[`DENSITY_BINS`].
    Density(u8),
    AnyDensity,
    /// Texture prefix: register bin, 0..[`REGISTER_BINS`].
    Register(u8),
    AnyRegister,
    /// Fill-in-the-middle: the bars after a gap of this many bars follow (1..=[`MAX_FILL_BARS`]).
    Suffix(u8),
    /// Fill-in-the-middle: the gap's bars follow.
    Middle,
    /// Fill-in-the-middle: the gap is filled.
    FillEnd,
    /// Fill-in-the-middle, suffix first: the bars before the gap follow (then `Middle`).
    Before,
}

impl Token {
    /// What the token says, for reports: "pitch", "duration", "position", …
    pub fn kind(&self) -> &'static str {
        match self {
            Token::Pad | Token::Bos | Token::Eos => "sequence",
            Token::Bar => "bar",
            Token::Meter(_) => "meter",
            Token::Position(_) => "position",
            Token::Pitch(_) => "pitch",
            Token::Velocity(_) => "velocity",
            Token::Duration(_) => "duration",
            Token::Key(_) | Token::AnyKey => "key prefix",
            Token::Polyphony(_)
            | Token::AnyPolyphony
            | Token::Density(_)
            | Token::AnyDensity
            | Token::Register(_)
            | Token::AnyRegister => "texture prefix",
            Token::Suffix(_) | Token::Middle | Token::FillEnd | Token::Before => "infill marker",
        }
    }
}

const PAD: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;
const BAR: u32 = 3;
const METER0: u32 = 4;
const POSITION0: u32 = METER0 + MAX_BAR_EIGHTHS;
const PITCH0: u32 = POSITION0 + MAX_BAR_TICKS;
const VELOCITY0: u32 = PITCH0 + 128;
const DURATION0: u32 = VELOCITY0 + VELOCITY_LEVELS.len() as u32;
const KEY0: u32 = DURATION0 + DURATION_TICKS.len() as u32;
const ANY_KEY: u32 = KEY0 + 24;
const POLYPHONY0: u32 = ANY_KEY + 1;
const ANY_POLYPHONY: u32 = POLYPHONY0 + POLYPHONY_BINS as u32;
const DENSITY0: u32 = ANY_POLYPHONY + 1;
const ANY_DENSITY: u32 = DENSITY0 + DENSITY_BINS as u32;
const REGISTER0: u32 = ANY_DENSITY + 1;
const ANY_REGISTER: u32 = REGISTER0 + REGISTER_BINS as u32;
const SUFFIX1: u32 = ANY_REGISTER + 1;
const MIDDLE: u32 = SUFFIX1 + MAX_FILL_BARS as u32;
const FILL_END: u32 = MIDDLE + 1;
const BEFORE: u32 = FILL_END + 1;
const VOCAB_SIZE: u32 = BEFORE + 1;

/// The vocabulary: token ⇄ id, its size, version and a hash of its layout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vocab;

impl Vocab {
    pub fn size(&self) -> usize {
        VOCAB_SIZE as usize
    }

    pub fn version(&self) -> u32 {
        VOCAB_VERSION
    }

    /// SHA-256 of every token's name in id order: changes whenever the layout does.
    pub fn hash(&self) -> String {
        Self::hash_of_first(VOCAB_SIZE as usize)
    }

    /// The hash of version 3's layout: the first [`V3_VOCAB_SIZE`] ids, which v4 keeps.
    pub fn v3_hash(&self) -> String {
        Self::hash_of_first(V3_VOCAB_SIZE)
    }

    /// The hash of version 4's layout: the first [`V4_VOCAB_SIZE`] ids, which v5 keeps.
    pub fn v4_hash(&self) -> String {
        Self::hash_of_first(V4_VOCAB_SIZE)
    }

    /// The order in which a model whose output has `model_vocab_size` rows reads a gap's
    /// sides: suffix first if it knows `Before` (v5), prefix first if it knows only the
    /// v4 markers, none for a v3 model (it continues with this vocabulary but cannot fill).
    pub fn infill_layout(&self, model_vocab_size: usize) -> Option<InfillLayout> {
        if model_vocab_size > BEFORE as usize {
            Some(InfillLayout::SuffixFirst)
        } else if model_vocab_size > FILL_END as usize {
            Some(InfillLayout::PrefixFirst)
        } else {
            None
        }
    }

    fn hash_of_first(n: usize) -> String {
        let mut h = Sha256::new();
        for id in 0..n as u32 {
            h.update(format!("{:?};", Vocab.token(id)));
        }
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn id(&self, t: Token) -> u32 {
        match t {
            Token::Pad => PAD,
            Token::Bos => BOS,
            Token::Eos => EOS,
            Token::Bar => BAR,
            Token::Meter(e) => METER0 + (e as u32 - 1),
            Token::Position(p) => POSITION0 + p as u32,
            Token::Pitch(p) => PITCH0 + p as u32,
            Token::Velocity(v) => VELOCITY0 + v as u32,
            Token::Duration(d) => DURATION0 + d as u32,
            Token::Key(k) => KEY0 + k as u32,
            Token::AnyKey => ANY_KEY,
            Token::Polyphony(b) => POLYPHONY0 + b as u32,
            Token::AnyPolyphony => ANY_POLYPHONY,
            Token::Density(b) => DENSITY0 + b as u32,
            Token::AnyDensity => ANY_DENSITY,
            Token::Register(b) => REGISTER0 + b as u32,
            Token::AnyRegister => ANY_REGISTER,
            Token::Suffix(n) => SUFFIX1 + (n.clamp(1, MAX_FILL_BARS) as u32 - 1),
            Token::Middle => MIDDLE,
            Token::FillEnd => FILL_END,
            Token::Before => BEFORE,
        }
    }

    pub fn token(&self, id: u32) -> Option<Token> {
        Some(match id {
            PAD => Token::Pad,
            BOS => Token::Bos,
            EOS => Token::Eos,
            BAR => Token::Bar,
            i if i < POSITION0 => Token::Meter((i - METER0 + 1) as u8),
            i if i < PITCH0 => Token::Position((i - POSITION0) as u8),
            i if i < VELOCITY0 => Token::Pitch((i - PITCH0) as u8),
            i if i < DURATION0 => Token::Velocity((i - VELOCITY0) as u8),
            i if i < KEY0 => Token::Duration((i - DURATION0) as u8),
            i if i < ANY_KEY => Token::Key((i - KEY0) as u8),
            ANY_KEY => Token::AnyKey,
            i if i < ANY_POLYPHONY => Token::Polyphony((i - POLYPHONY0) as u8),
            ANY_POLYPHONY => Token::AnyPolyphony,
            i if i < ANY_DENSITY => Token::Density((i - DENSITY0) as u8),
            ANY_DENSITY => Token::AnyDensity,
            i if i < ANY_REGISTER => Token::Register((i - REGISTER0) as u8),
            ANY_REGISTER => Token::AnyRegister,
            i if i < MIDDLE => Token::Suffix((i - SUFFIX1 + 1) as u8),
            MIDDLE => Token::Middle,
            FILL_END => Token::FillEnd,
            BEFORE => Token::Before,
            _ => return None,
        })
    }

    /// Id range of the pitch tokens (for transposition and pitch masks).
    pub fn pitch_id(&self, pitch: u8) -> u32 {
        PITCH0 + pitch as u32
    }

    /// The pitch a token id stands for, if it is a pitch token.
    pub fn pitch_of(&self, id: u32) -> Option<u8> {
        (PITCH0..VELOCITY0)
            .contains(&id)
            .then(|| (id - PITCH0) as u8)
    }

    /// The key prefix for `key` (`AnyKey` for none).
    pub fn key_prefix(&self, key: Option<Key>) -> u32 {
        key.map_or(ANY_KEY, |k| KEY0 + k.index() as u32)
    }

    /// The whole prefix: key, then the texture's bins ("any" where a bin is `None`).
    pub fn prefix(&self, key: Option<Key>, texture: TextureBins) -> [u32; PREFIX_LEN] {
        let bin = |b: Option<u8>, first: u32, any: u32, bins: usize| {
            b.map_or(any, |b| first + (b as u32).min(bins as u32 - 1))
        };
        [
            self.key_prefix(key),
            bin(texture.polyphony, POLYPHONY0, ANY_POLYPHONY, POLYPHONY_BINS),
            bin(texture.density, DENSITY0, ANY_DENSITY, DENSITY_BINS),
            bin(texture.register, REGISTER0, ANY_REGISTER, REGISTER_BINS),
        ]
    }

    /// The prefix that tells the model nothing.
    pub fn any_prefix(&self) -> [u32; PREFIX_LEN] {
        self.prefix(None, TextureBins::default())
    }

    pub fn is_key_prefix(&self, id: u32) -> bool {
        (KEY0..=ANY_KEY).contains(&id)
    }

    /// Whether `id` is one of the prefix's tokens (key or texture).
    pub fn is_prefix(&self, id: u32) -> bool {
        (KEY0..=ANY_REGISTER).contains(&id)
    }

    /// The notes of a token slice that may start and end anywhere inside pieces, in bars of
    /// `beats_per_bar` (used where no `Meter` token says otherwise), timed from the slice's
    /// first bar. Notes before the slice's first `Bar` count as bar 0.
    pub fn notes_of_tokens(&self, ids: &[u32], beats_per_bar: f64) -> Vec<Note> {
        let tpb = TICKS_PER_BEAT as f64;
        let mut bar_beats = beats_per_bar;
        let mut bar = 0i64;
        let mut seen_bar = false;
        let mut position = 0u32;
        let mut pitch = None;
        let mut velocity = 64;
        let mut notes = Vec::new();
        for &id in ids {
            match self.token(id) {
                Some(Token::Meter(e)) => bar_beats = e as f64 / 2.0,
                Some(Token::Bar) => {
                    // The first bar line of a slice that starts on it opens bar 0.
                    if seen_bar || !notes.is_empty() {
                        bar += 1;
                    }
                    seen_bar = true;
                    position = 0;
                }
                Some(Token::Position(p)) => position = p as u32,
                Some(Token::Pitch(p)) => pitch = Some(p),
                Some(Token::Velocity(v)) => velocity = VELOCITY_LEVELS[v as usize],
                Some(Token::Duration(d)) => {
                    if let Some(p) = pitch.take() {
                        notes.push(Note {
                            start: bar as f64 * bar_beats + position as f64 / tpb,
                            duration: DURATION_TICKS[d as usize] as f64 / tpb,
                            pitch: p,
                            velocity,
                        });
                    }
                }
                _ => {}
            }
        }
        notes
    }

    /// The texture bins of a token slice's notes (see [`Vocab::notes_of_tokens`]).
    pub fn texture_of_tokens(&self, ids: &[u32], beats_per_bar: f64) -> TextureBins {
        Texture::of_notes(&self.notes_of_tokens(ids, beats_per_bar), beats_per_bar)
            .map(|t| t.bins())
            .unwrap_or_default()
    }

    /// The key [`detect_key`](crate::music::detect_key) hears in the notes of a token slice,
    /// which may start and end anywhere inside pieces: each `Pitch` counts for the
    /// `Duration` that follows it.
    pub fn key_of_tokens(&self, ids: &[u32]) -> Option<Key> {
        let mut histogram = [0.0; 12];
        let mut pitch = None;
        let mut any = false;
        for &id in ids {
            if let Some(p) = self.pitch_of(id) {
                pitch = Some(p);
            } else if (DURATION0..KEY0).contains(&id) {
                if let Some(p) = pitch.take() {
                    let beats =
                        DURATION_TICKS[(id - DURATION0) as usize] as f64 / TICKS_PER_BEAT as f64;
                    histogram[(p % 12) as usize] += beats.max(0.05);
                    any = true;
                }
            } else if !(VELOCITY0..DURATION0).contains(&id) {
                pitch = None;
            }
        }
        any.then(|| key_from_histogram(&histogram))
    }

    /// Encodes a phrase, quantized to the grid. With `close`, ends with EOS.
    pub fn encode(&self, phrase: &Phrase, close: bool) -> Vec<u32> {
        let eighths = meter_eighths(phrase.beats_per_bar);
        let bar_ticks = eighths as u32 * TICKS_PER_BEAT / 2;
        let mut ids = vec![BOS, self.id(Token::Meter(eighths))];
        let grid = quantize_to_grid(&phrase.notes);
        let mut bar = 0u32;
        ids.push(BAR);
        let mut position: Option<u32> = None;
        for g in &grid {
            let note_bar = g.start_tick / bar_ticks;
            while bar < note_bar {
                ids.push(BAR);
                bar += 1;
                position = None;
            }
            let pos = g.start_tick % bar_ticks;
            if position != Some(pos) {
                ids.push(self.id(Token::Position(pos as u8)));
                position = Some(pos);
            }
            ids.push(self.id(Token::Pitch(g.pitch)));
            ids.push(self.id(Token::Velocity(g.velocity_bin)));
            ids.push(self.id(Token::Duration(g.duration_index)));
        }
        if close {
            ids.push(EOS);
        }
        ids
    }

    /// Decodes ids into a phrase; tokens that break the grammar are skipped, so any id
    /// sequence decodes to something playable.
    pub fn decode(&self, ids: &[u32]) -> Phrase {
        let mut decoder = Decoder::new();
        let notes = ids.iter().filter_map(|&id| decoder.push(id)).collect();
        Phrase::new(
            notes,
            decoder.grammar().bar_ticks() as f64 / TICKS_PER_BEAT as f64,
        )
    }
}

/// A token sequence cut at its bar lines: what comes before the first `Bar` (`BOS Meter`,
/// or the tail of a bar when a window starts inside one), then each bar from its `Bar`.
pub fn split_bars(ids: &[u32]) -> (&[u32], Vec<&[u32]>) {
    let lines: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == BAR).collect();
    let head = &ids[..lines.first().copied().unwrap_or(ids.len())];
    let bars = lines
        .iter()
        .enumerate()
        .map(|(k, &start)| &ids[start..lines.get(k + 1).copied().unwrap_or(ids.len())])
        .collect();
    (head, bars)
}

/// The pitches a bar plays, in order: what "the same bar again" compares.
pub fn bar_pitches(bar: &[u32]) -> Vec<u8> {
    bar.iter().filter_map(|&id| Vocab.pitch_of(id)).collect()
}

/// The first bar of `after` that plays, pitch for pitch, a bar of `gap` that no bar of
/// `before` plays: a gap that only the bars after it can tell. `pitches` holds each bar's
/// [`bar_pitches`]; bars without notes never count. Training draws such gaps on purpose
/// (`dataset::REPEAT_AFTER_SHARE`) and `eval --infill` scores them apart, with this one test.
pub fn repeat_after_only(
    pitches: &[Vec<u8>],
    before: std::ops::Range<usize>,
    gap: std::ops::Range<usize>,
    after: std::ops::Range<usize>,
) -> Option<usize> {
    after.into_iter().find(|&a| {
        let p = &pitches[a];
        !p.is_empty() && pitches[gap.clone()].contains(p) && !pitches[before.clone()].contains(p)
    })
}

/// The order in which a model reads the two sides of a gap before it fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfillLayout {
    /// Vocabulary v4: `head before Suffix(n) after Middle`.
    PrefixFirst,
    /// Vocabulary v5: `head Suffix(n) after Before before Middle`; the gap then follows
    /// the bar before it, as a continuation does. What training writes now.
    SuffixFirst,
}

impl InfillLayout {
    /// The layout this vocabulary trains.
    pub fn current() -> Self {
        Vocab
            .infill_layout(Vocab.size())
            .expect("this vocabulary has the infill markers")
    }

    /// Markers an infill sequence holds: `Suffix(n)`, `Middle`, `FillEnd`, and suffix
    /// first `Before`.
    pub fn markers(self) -> usize {
        match self {
            InfillLayout::PrefixFirst => 3,
            InfillLayout::SuffixFirst => 4,
        }
    }
}

/// The two sides of a gap of whole bars, as the model reads them before it fills the gap
/// ([`InfillLayout`]). Training appends the gap's own bars and `FillEnd`; generation samples
/// them. `head` is what comes before the first bar the sides keep (`BOS Meter`, or the end
/// of another piece in a training window); `before` and `after` hold whole bars (each starts
/// on a `Bar`) or nothing.
#[derive(Debug, Clone, Copy)]
pub struct InfillSides<'a> {
    pub head: &'a [u32],
    pub before: &'a [u32],
    pub after: &'a [u32],
    /// Bars in the gap, 1..=[`MAX_FILL_BARS`].
    pub bars: u8,
}

impl InfillSides<'_> {
    /// Everything up to and including `Middle`, in `layout`'s order.
    pub fn prompt(&self, layout: InfillLayout) -> Vec<u32> {
        let suffix = Vocab.id(Token::Suffix(self.bars));
        let mut ids =
            Vec::with_capacity(self.head.len() + self.before.len() + self.after.len() + 3);
        ids.extend_from_slice(self.head);
        match layout {
            InfillLayout::PrefixFirst => {
                ids.extend_from_slice(self.before);
                ids.push(suffix);
                ids.extend_from_slice(self.after);
            }
            InfillLayout::SuffixFirst => {
                ids.push(suffix);
                ids.extend_from_slice(self.after);
                ids.push(BEFORE);
                ids.extend_from_slice(self.before);
            }
        }
        ids.push(MIDDLE);
        ids
    }

    /// The whole infill sequence: the prompt, the gap's bars, `FillEnd`.
    pub fn with_middle(&self, layout: InfillLayout, middle: &[u32]) -> Vec<u32> {
        let mut ids = self.prompt(layout);
        ids.extend_from_slice(middle);
        ids.push(FILL_END);
        ids
    }
}

/// Turns ids into notes one at a time, as a model produces them.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    grammar: Grammar,
    pitch: Option<u8>,
    velocity: Option<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn grammar(&self) -> &Grammar {
        &self.grammar
    }

    /// Feeds one id; returns the note it completes, if any. Ids the grammar refuses are ignored.
    pub fn push(&mut self, id: u32) -> Option<Note> {
        if !self.grammar.allows(id) {
            return None;
        }
        self.grammar.advance(id);
        match Vocab.token(id)? {
            Token::Pitch(p) => {
                self.pitch = Some(p);
                self.velocity = None;
                None
            }
            Token::Velocity(v) => {
                self.velocity = Some(v);
                None
            }
            // The bars after a gap are given, not made, and in the suffix-first order their
            // place is told only later (by how many bars come before): no notes from them.
            Token::Duration(_) if self.grammar.in_suffix() => None,
            Token::Duration(d) => {
                let (pitch, v) = (self.pitch?, self.velocity?);
                let g = &self.grammar;
                let start = g.bar_index() as u64 * g.bar_ticks() as u64 + g.position() as u64;
                Some(Note {
                    start: start as f64 / TICKS_PER_BEAT as f64,
                    duration: DURATION_TICKS[d as usize] as f64 / TICKS_PER_BEAT as f64,
                    pitch,
                    velocity: VELOCITY_LEVELS[v as usize],
                })
            }
            _ => None,
        }
    }
}

/// Bar length in eighths, clamped to what the vocabulary holds.
pub fn meter_eighths(beats_per_bar: f64) -> u8 {
    (beats_per_bar * 2.0)
        .round()
        .clamp(1.0, MAX_BAR_EIGHTHS as f64) as u8
}

struct GridNote {
    start_tick: u32,
    pitch: u8,
    velocity_bin: u8,
    duration_index: u8,
}

fn velocity_bin(v: u8) -> u8 {
    let mut best = 0;
    for (i, &level) in VELOCITY_LEVELS.iter().enumerate() {
        if (level as i32 - v as i32).abs() < (VELOCITY_LEVELS[best] as i32 - v as i32).abs() {
            best = i;
        }
    }
    best as u8
}

fn duration_index(ticks: f64) -> u8 {
    let mut best = 0;
    for (i, &d) in DURATION_TICKS.iter().enumerate() {
        if (d as f64 - ticks).abs() < (DURATION_TICKS[best] as f64 - ticks).abs() {
            best = i;
        }
    }
    best as u8
}

fn quantize_to_grid(notes: &[Note]) -> Vec<GridNote> {
    let tpb = TICKS_PER_BEAT as f64;
    let mut grid: Vec<GridNote> = notes
        .iter()
        .map(|n| GridNote {
            start_tick: (n.start * tpb).round().max(0.0) as u32,
            pitch: n.pitch.min(127),
            velocity_bin: velocity_bin(n.velocity),
            duration_index: duration_index(n.duration * tpb),
        })
        .collect();
    grid.sort_by_key(|g| (g.start_tick, g.pitch, std::cmp::Reverse(g.duration_index)));
    // One note per pitch and onset: the longest survives.
    grid.dedup_by_key(|g| (g.start_tick, g.pitch));
    grid
}

/// A phrase as the vocabulary can hold it: what `decode(encode(p))` returns.
pub fn quantize(phrase: &Phrase) -> Phrase {
    let tpb = TICKS_PER_BEAT as f64;
    let notes = quantize_to_grid(&phrase.notes)
        .into_iter()
        .map(|g| Note {
            start: g.start_tick as f64 / tpb,
            duration: DURATION_TICKS[g.duration_index as usize] as f64 / tpb,
            pitch: g.pitch,
            velocity: VELOCITY_LEVELS[g.velocity_bin as usize],
        })
        .collect();
    let eighths = meter_eighths(phrase.beats_per_bar);
    Phrase::new(notes, eighths as f64 / 2.0)
}

/// Where a sequence is in the grammar; decides which token ids may come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    /// Inside the prefix: after the key, after polyphony, after density.
    AfterKey,
    AfterPolyphony,
    AfterDensity,
    AfterRegister,
    AfterBos,
    /// After Meter: the first bar line.
    AfterMeter,
    /// After Bar: a position, another bar or the end.
    BarOpen,
    AfterPosition,
    AfterPitch,
    AfterVelocity,
    AfterDuration,
    /// After `Suffix(n)`: the suffix's first bar line, or `Middle` at once (nothing after the gap).
    AfterSuffix,
    /// After `Middle`: the gap's first bar line.
    AfterMiddle,
    /// After `Before`: the first bar line before the gap, or `Middle` at once (a gap at the start).
    AfterBefore,
    Ended,
}

/// Where a sequence is relative to an infill's gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Plain continuation, or the bars before a gap.
    Before,
    /// The bars after a gap of `bars` bars that starts at bar `gap_start` (in the suffix-first
    /// order, where nothing comes before them, a place to be told by the bars before).
    Suffix { bars: u8, gap_start: i64 },
    /// Suffix first: the bars before a gap of `bars` bars, numbered from 0.
    BeforeGap { bars: u8 },
    /// Filling that gap: `opened` of its `bars` bars so far.
    Middle { bars: u8, opened: u8 },
}

/// The state machine of well-formed token sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grammar {
    stage: Stage,
    bar_ticks: u32,
    /// Bars opened so far minus one (the bar the next note falls in).
    bars: i64,
    position: u32,
    last_pitch: Option<u8>,
    section: Section,
}

impl Default for Grammar {
    fn default() -> Self {
        Self::new()
    }
}

impl Grammar {
    pub fn new() -> Self {
        Self {
            stage: Stage::Start,
            bar_ticks: 4 * TICKS_PER_BEAT,
            bars: -1,
            position: 0,
            last_pitch: None,
            section: Section::Before,
        }
    }

    /// Index of the current bar (0 for the first).
    pub fn bar_index(&self) -> u32 {
        self.bars.max(0) as u32
    }

    /// Bars opened so far.
    pub fn bars_opened(&self) -> u32 {
        (self.bars + 1).max(0) as u32
    }

    pub fn bar_ticks(&self) -> u32 {
        self.bar_ticks
    }

    pub fn position(&self) -> u32 {
        self.position
    }

    pub fn ended(&self) -> bool {
        self.stage == Stage::Ended
    }

    /// Whether the sequence is filling a gap (after `Middle`, before `FillEnd`).
    pub fn in_middle(&self) -> bool {
        matches!(self.section, Section::Middle { .. }) && self.stage != Stage::Ended
    }

    /// Whether the sequence is reading the bars after a gap (after `Suffix(n)`).
    pub fn in_suffix(&self) -> bool {
        matches!(self.section, Section::Suffix { .. })
    }

    /// Where a bar line may come: it may close the music (`EOS`), open a gap's suffix
    /// (`Suffix(n)`, once), end the suffix (`Middle` in the prefix-first order, `Before` in
    /// the suffix-first one), or start the middle after the bars before.
    fn allows_at_bar_line(&self, id: u32) -> bool {
        match self.section {
            Section::Before => id == BAR || id == EOS || (SUFFIX1..MIDDLE).contains(&id),
            Section::Suffix { .. } => id == BAR || id == MIDDLE || id == BEFORE,
            Section::BeforeGap { .. } => id == BAR || id == MIDDLE,
            Section::Middle { bars, opened } => {
                (id == BAR && opened < bars) || (id == FILL_END && opened == bars)
            }
        }
    }

    /// Whether a pitch token may come next at all (the sampler's pitch masks apply then).
    pub fn expects_pitch(&self) -> bool {
        matches!(self.stage, Stage::AfterPosition | Stage::AfterDuration)
    }

    pub fn allows(&self, id: u32) -> bool {
        match self.stage {
            Stage::Start => id == BOS || (KEY0..=ANY_KEY).contains(&id),
            Stage::AfterRegister => id == BOS,
            Stage::AfterKey => (POLYPHONY0..=ANY_POLYPHONY).contains(&id),
            Stage::AfterPolyphony => (DENSITY0..=ANY_DENSITY).contains(&id),
            Stage::AfterDensity => (REGISTER0..=ANY_REGISTER).contains(&id),
            Stage::AfterBos => (METER0..POSITION0).contains(&id),
            Stage::AfterMeter => {
                id == BAR || (self.section == Section::Before && (SUFFIX1..MIDDLE).contains(&id))
            }
            Stage::AfterSuffix => id == BAR || id == MIDDLE || id == BEFORE,
            Stage::AfterBefore => id == BAR || id == MIDDLE,
            Stage::AfterMiddle => id == BAR,
            Stage::BarOpen => {
                self.allows_at_bar_line(id) || (POSITION0..POSITION0 + self.bar_ticks).contains(&id)
            }
            Stage::AfterPosition => (PITCH0..VELOCITY0).contains(&id),
            Stage::AfterPitch => (VELOCITY0..DURATION0).contains(&id),
            Stage::AfterVelocity => (DURATION0..KEY0).contains(&id),
            Stage::AfterDuration => {
                self.allows_at_bar_line(id)
                    || (POSITION0 + self.position + 1..POSITION0 + self.bar_ticks).contains(&id)
                    || (PITCH0 + self.last_pitch.map_or(0, |p| p as u32 + 1)..VELOCITY0)
                        .contains(&id)
            }
            Stage::Ended => id == EOS || id == PAD,
        }
    }

    /// Sets `mask[id]` to whether `id` may come next.
    pub fn fill_mask(&self, mask: &mut [bool]) {
        for (id, m) in mask.iter_mut().enumerate() {
            *m = self.allows(id as u32);
        }
    }

    /// Moves past `id`, which must be allowed.
    pub fn advance(&mut self, id: u32) {
        debug_assert!(self.allows(id), "token {id} not allowed in {self:?}");
        match id {
            BOS => self.stage = Stage::AfterBos,
            // The prefix conditions what follows; the sequence still starts at BOS.
            KEY0..=ANY_KEY => self.stage = Stage::AfterKey,
            POLYPHONY0..=ANY_POLYPHONY => self.stage = Stage::AfterPolyphony,
            DENSITY0..=ANY_DENSITY => self.stage = Stage::AfterDensity,
            REGISTER0..=ANY_REGISTER => self.stage = Stage::AfterRegister,
            EOS | PAD | FILL_END => self.stage = Stage::Ended,
            BAR => {
                self.bars += 1;
                self.stage = Stage::BarOpen;
                self.position = 0;
                self.last_pitch = None;
                if let Section::Middle { opened, .. } = &mut self.section {
                    *opened += 1;
                }
            }
            SUFFIX1..MIDDLE => {
                let bars = (id - SUFFIX1 + 1) as u8;
                let gap_start = self.bars + 1;
                self.section = Section::Suffix { bars, gap_start };
                // The suffix's first bar line opens the bar after the gap.
                self.bars = gap_start + bars as i64 - 1;
                self.stage = Stage::AfterSuffix;
            }
            MIDDLE => {
                match self.section {
                    Section::Suffix { bars, gap_start } => {
                        self.section = Section::Middle { bars, opened: 0 };
                        self.bars = gap_start - 1;
                    }
                    // The gap's bars follow the bars before it.
                    Section::BeforeGap { bars } => {
                        self.section = Section::Middle { bars, opened: 0 }
                    }
                    _ => {}
                }
                self.stage = Stage::AfterMiddle;
            }
            BEFORE => {
                if let Section::Suffix { bars, .. } = self.section {
                    self.section = Section::BeforeGap { bars };
                    self.bars = -1;
                }
                self.stage = Stage::AfterBefore;
            }
            i if i < POSITION0 => {
                self.bar_ticks = (i - METER0 + 1) * TICKS_PER_BEAT / 2;
                self.stage = Stage::AfterMeter;
            }
            i if i < PITCH0 => {
                self.position = i - POSITION0;
                self.last_pitch = None;
                self.stage = Stage::AfterPosition;
            }
            i if i < VELOCITY0 => {
                self.last_pitch = Some((i - PITCH0) as u8);
                self.stage = Stage::AfterPitch;
            }
            i if i < DURATION0 => self.stage = Stage::AfterVelocity,
            _ => self.stage = Stage::AfterDuration,
        }
    }

    /// Whether a whole sequence is well formed.
    pub fn accepts(ids: &[u32]) -> bool {
        let mut g = Grammar::new();
        for &id in ids {
            if !g.allows(id) {
                return false;
            }
            g.advance(id);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_only_the_bars_after_can_tell_repeats_one_of_them_and_none_before() {
        let bars = [
            vec![60, 62],
            vec![64],
            vec![],
            vec![67, 65],
            vec![],
            vec![67, 65],
            vec![64],
        ];
        // Gap bar 3 is played again by bar 5 and by no bar before it.
        assert_eq!(repeat_after_only(&bars, 0..3, 3..4, 4..7), Some(5));
        // Bar 6 repeats bar 1: heard before, so the bars before tell it too.
        assert_eq!(repeat_after_only(&bars, 0..3, 6..7, 4..6), None);
        assert_eq!(repeat_after_only(&bars, 2..3, 6..7, 4..6), None);
        // Nothing after, or only an empty bar repeating an empty gap bar.
        assert_eq!(repeat_after_only(&bars, 0..3, 3..4, 4..4), None);
        assert_eq!(repeat_after_only(&bars, 0..1, 2..3, 4..5), None);
        // A two-bar gap counts when either of its bars is repeated after.
        assert_eq!(repeat_after_only(&bars, 0..1, 2..4, 4..7), Some(5));
    }

    fn note(start: f64, duration: f64, pitch: u8, velocity: u8) -> Note {
        Note {
            start,
            duration,
            pitch,
            velocity,
        }
    }

    #[test]
    fn ids_and_tokens_are_inverse() {
        let v = Vocab;
        for id in 0..v.size() as u32 {
            assert_eq!(v.id(v.token(id).unwrap()), id);
        }
        assert!(v.token(v.size() as u32).is_none());
    }

    #[test]
    fn a_chord_is_one_position_with_rising_pitches() {
        let v = Vocab;
        let p = Phrase::new(
            vec![
                note(0.0, 1.0, 67, 80),
                note(0.0, 1.0, 60, 80),
                note(0.0, 1.0, 64, 80),
            ],
            4.0,
        );
        let toks: Vec<Token> = v
            .encode(&p, true)
            .iter()
            .map(|&i| v.token(i).unwrap())
            .collect();
        assert_eq!(
            toks,
            vec![
                Token::Bos,
                Token::Meter(8),
                Token::Bar,
                Token::Position(0),
                Token::Pitch(60),
                Token::Velocity(4),
                Token::Duration(11),
                Token::Pitch(64),
                Token::Velocity(4),
                Token::Duration(11),
                Token::Pitch(67),
                Token::Velocity(4),
                Token::Duration(11),
                Token::Eos
            ]
        );
    }

    #[test]
    fn waltz_bars_and_triplets_survive_the_round_trip() {
        let v = Vocab;
        let p = Phrase::new(
            vec![
                note(0.0, 1.0 / 3.0, 60, 70),
                note(1.0 / 3.0, 1.0 / 3.0, 62, 70),
                note(2.0 / 3.0, 1.0 / 3.0, 64, 70),
                note(3.0, 3.0, 65, 100),
                note(9.75, 0.25, 72, 50),
            ],
            3.0,
        );
        let ids = v.encode(&p, true);
        assert!(Grammar::accepts(&ids));
        let back = v.decode(&ids);
        assert_eq!(back, quantize(&p));
        assert_eq!(back.beats_per_bar, 3.0);
        assert_eq!(back.notes[4].start, 9.75);
    }

    #[test]
    fn grammar_refuses_a_duration_before_a_pitch() {
        let v = Vocab;
        let ids = [
            BOS,
            v.id(Token::Meter(8)),
            BAR,
            v.id(Token::Position(0)),
            v.id(Token::Duration(3)),
        ];
        assert!(!Grammar::accepts(&ids));
    }

    #[test]
    fn grammar_refuses_positions_past_the_bar_end() {
        let v = Vocab;
        let ids = [BOS, v.id(Token::Meter(6)), BAR, v.id(Token::Position(36))];
        assert!(!Grammar::accepts(&ids));
    }

    #[test]
    fn the_prefix_comes_before_bos_only_and_in_order() {
        let v = Vocab;
        let a_minor = v.id(Token::Key(21));
        let texture = TextureBins {
            polyphony: Some(0),
            density: Some(2),
            register: None,
        };
        let prefix = v.prefix(Some(Key::from_index(21)), texture);
        assert_eq!(
            prefix,
            [
                a_minor,
                v.id(Token::Polyphony(0)),
                v.id(Token::Density(2)),
                v.id(Token::AnyRegister)
            ]
        );
        let ids: Vec<u32> = prefix
            .iter()
            .copied()
            .chain([BOS, v.id(Token::Meter(8)), BAR])
            .collect();
        assert!(Grammar::accepts(&ids));
        assert!(Grammar::accepts(&[BOS]));
        // Half a prefix, a prefix out of order, or after BOS: refused.
        assert!(!Grammar::accepts(&[a_minor, BOS]));
        assert!(!Grammar::accepts(&[
            a_minor,
            v.id(Token::Density(2)),
            v.id(Token::Polyphony(0))
        ]));
        assert!(!Grammar::accepts(&[BOS, a_minor]));
        assert!(v.decode(&ids).notes.is_empty());
        assert!(prefix.iter().all(|&id| v.is_prefix(id)));
        assert_eq!(v.key_prefix(None), v.id(Token::AnyKey));
    }

    #[test]
    fn version_2_ids_keep_their_meaning() {
        let v = Vocab;
        assert_eq!(V2_VOCAB_SIZE, 304);
        assert_eq!(v.id(Token::AnyKey) as usize, V2_VOCAB_SIZE - 1);
        assert!(v.size() > V2_VOCAB_SIZE);
        assert_eq!(v.id(Token::Polyphony(0)) as usize, V2_VOCAB_SIZE);
    }

    #[test]
    fn the_texture_of_tokens_is_the_texture_of_their_notes() {
        let v = Vocab;
        // A bass line in 3/4, one note a beat, and a slice that starts mid-bar.
        let notes: Vec<Note> = (0..12)
            .map(|i| note(i as f64, 0.5, [36, 40, 43][i % 3], 90))
            .collect();
        let phrase = Phrase::new(notes.clone(), 3.0);
        let ids = v.encode(&phrase, true);
        let bins = v.texture_of_tokens(&ids, 3.0);
        assert_eq!(bins, Texture::of_notes(&notes, 3.0).unwrap().bins());
        assert_eq!(bins.polyphony, Some(0));
        assert_eq!(bins.register, Some(0));
        assert_eq!(v.notes_of_tokens(&ids, 4.0), quantize(&phrase).notes);
        let tail = v.notes_of_tokens(&ids[7..], 3.0);
        assert_eq!(tail.len(), 11);
        assert_eq!(tail[0].start, 1.0);
    }

    #[test]
    fn the_key_of_tokens_is_the_key_of_their_notes() {
        let v = Vocab;
        // D minor arpeggios with a C# leading tone, and an E major bar.
        let pitches = [62, 65, 69, 61, 62, 74, 57, 64, 68, 71, 64, 76];
        let notes: Vec<Note> = pitches
            .iter()
            .enumerate()
            .map(|(i, &p)| note(i as f64 * 0.5, 0.25 + (i % 3) as f64 * 0.5, p, 80))
            .collect();
        let phrase = Phrase::new(notes, 4.0);
        let ids = v.encode(&phrase, true);
        let expected = crate::music::detect_key(&quantize(&phrase).notes);
        assert!(expected.is_some());
        assert_eq!(v.key_of_tokens(&ids), expected);
        // A slice starting inside the piece still counts its notes (the first is cut short
        // of its pitch, so it is left out).
        let tail = &ids[5..];
        let tail_notes: Vec<Note> = quantize(&phrase).notes[1..].to_vec();
        assert_eq!(v.key_of_tokens(tail), crate::music::detect_key(&tail_notes));
        assert_eq!(v.key_of_tokens(&[BOS, BAR]), None);
    }

    #[test]
    fn version_3_ids_keep_their_meaning_and_its_hash() {
        let v = Vocab;
        assert_eq!(V3_VOCAB_SIZE, 325);
        assert_eq!(v.id(Token::AnyRegister) as usize, V3_VOCAB_SIZE - 1);
        assert_eq!(v.id(Token::Suffix(1)) as usize, V3_VOCAB_SIZE);
        assert_eq!(V4_VOCAB_SIZE, V3_VOCAB_SIZE + MAX_FILL_BARS as usize + 2);
        assert_eq!(v.id(Token::Before) as usize, V4_VOCAB_SIZE);
        assert_eq!(v.size(), V4_VOCAB_SIZE + 1);
        // The hashes the shipped v3 and v4 models' config.json record.
        assert_eq!(v.v3_hash(), "0ad7d660bd9215ec");
        assert_eq!(v.v4_hash(), "008224b6a4794da2");
        assert_ne!(v.hash(), v.v4_hash());
        assert_eq!(v.infill_layout(V3_VOCAB_SIZE), None);
        assert_eq!(
            v.infill_layout(V4_VOCAB_SIZE),
            Some(InfillLayout::PrefixFirst)
        );
        assert_eq!(v.infill_layout(v.size()), Some(InfillLayout::SuffixFirst));
        assert_eq!(InfillLayout::current(), InfillLayout::SuffixFirst);
    }

    const LAYOUTS: [InfillLayout; 2] = [InfillLayout::PrefixFirst, InfillLayout::SuffixFirst];

    /// `BOS 4/4`, then bars of one quarter note each at `pitches`.
    fn bars_of(pitches: &[u8]) -> (Vec<u32>, Vec<Vec<u32>>) {
        let v = Vocab;
        let head = vec![BOS, v.id(Token::Meter(8))];
        let bars = pitches
            .iter()
            .map(|&p| {
                vec![
                    BAR,
                    v.id(Token::Position(12)),
                    v.id(Token::Pitch(p)),
                    v.id(Token::Velocity(4)),
                    v.id(Token::Duration(11)),
                ]
            })
            .collect();
        (head, bars)
    }

    #[test]
    fn an_infill_sequence_decodes_every_note_to_its_own_bar() {
        let (head, bars) = bars_of(&[60, 62, 64, 65, 67]);
        let before = [bars[0].clone(), bars[1].clone()].concat();
        let after = [bars[4].clone()].concat();
        let middle = [bars[2].clone(), bars[3].clone()].concat();
        let sides = InfillSides {
            head: &head,
            before: &before,
            after: &after,
            bars: 2,
        };
        // The bars after the gap are given, not decoded: the rest lands where it plays.
        let plain = [head.clone(), bars[..4].concat()].concat();
        for layout in LAYOUTS {
            let ids = sides.with_middle(layout, &middle);
            assert!(Grammar::accepts(&ids), "{layout:?}");
            assert_eq!(Vocab.decode(&ids), Vocab.decode(&plain), "{layout:?}");
            let starts: Vec<f64> = Vocab.decode(&ids).notes.iter().map(|n| n.start).collect();
            assert_eq!(starts, vec![1.0, 5.0, 9.0, 13.0], "{layout:?}");
        }
        // Suffix first, the gap follows the bar before it.
        let ids = sides.with_middle(InfillLayout::SuffixFirst, &middle);
        let at = |id: u32| ids.iter().position(|&x| x == id).unwrap();
        assert!(at(Vocab.id(Token::Suffix(2))) < at(BEFORE));
        assert_eq!(&ids[at(MIDDLE) - bars[1].len()..at(MIDDLE)], &bars[1][..]);
        let plain = [head, bars.concat()].concat();
        // split_bars takes it apart again.
        let (h, b) = split_bars(&plain);
        assert_eq!(h.len(), 2);
        assert_eq!(b.len(), 5);
        assert_eq!(b[3], &bars[3][..]);
    }

    #[test]
    fn the_middle_holds_exactly_the_gaps_bars_and_no_end() {
        let v = Vocab;
        let (head, bars) = bars_of(&[60, 62, 64]);
        for layout in LAYOUTS {
            let sides = InfillSides {
                head: &head,
                before: &bars[0],
                after: &bars[2],
                bars: 1,
            };
            let mut g = Grammar::new();
            sides.prompt(layout).iter().for_each(|&id| g.advance(id));
            assert!(g.allows(BAR) && !g.allows(FILL_END) && !g.allows(EOS));
            g.advance(BAR);
            assert!(g.in_middle());
            assert_eq!(g.bar_index(), 1);
            // Inside the gap's one bar: no second bar line, no EOS; FillEnd closes it.
            assert!(!g.allows(BAR) && !g.allows(EOS) && g.allows(FILL_END));
            for &id in &bars[1][1..] {
                g.advance(id);
            }
            assert!(!g.allows(BAR) && !g.allows(EOS) && g.allows(FILL_END));
            assert!(!g.allows(v.id(Token::Suffix(1))) && !g.allows(BEFORE));
            g.advance(FILL_END);
            assert!(g.ended());
            // A gap at the very start (nothing before it) and one at the end (nothing after).
            let at_start = InfillSides {
                before: &[],
                after: &bars[1],
                ..sides
            };
            assert!(Grammar::accepts(&at_start.with_middle(layout, &bars[0])));
            let at_end = InfillSides {
                before: &[bars[0].clone(), bars[1].clone()].concat(),
                after: &[],
                ..sides
            };
            assert!(Grammar::accepts(&at_end.with_middle(layout, &bars[2])));
        }
        // Markers out of place are refused.
        assert!(!Grammar::accepts(&[BOS, MIDDLE]));
        assert!(!Grammar::accepts(&[BOS, v.id(Token::Meter(8)), BEFORE]));
        assert!(!Grammar::accepts(&[
            BOS,
            v.id(Token::Meter(8)),
            BAR,
            FILL_END
        ]));
    }

    #[test]
    fn hash_is_stable_within_a_version() {
        assert_eq!(Vocab.hash(), Vocab.hash());
        assert_eq!(Vocab.hash().len(), 16);
    }
}
