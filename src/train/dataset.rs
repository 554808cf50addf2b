//! A training corpus: every `.mid` under a folder, parsed, tokenized and split by file, with
//! near-duplicate files kept on the same side of the split.

use crate::midi_file::read_midi;
use crate::music::{Phrase, TextureBins};
use crate::note_runs::note_runs;
use crate::note_runs::COPY_RUN;
use crate::tokens::{
    bar_pitches, repeat_after_only, InfillLayout, InfillSides, Token, Vocab, MAX_FILL_BARS,
    PREFIX_LEN,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Share of files held out for validation.
pub const VALIDATION_SHARE: f64 = 0.1;
/// The split's seed is fixed so that train and eval agree on the held-out files.
pub const SPLIT_SEED: u64 = 0x5EED_C0DE;
/// A file whose runs of 8 notes are at least this share of another file's is a version of the
/// same tune: the two go to the same side of the split.
pub const NEAR_DUPLICATE_SHARE: f64 = 0.5;
/// Share of training windows whose key prefix is `AnyKey`, so the model also continues music
/// without being told its key.
pub const ANY_KEY_SHARE: f64 = 0.2;
/// Share of training windows told "any" for each texture attribute (drawn independently),
/// so the model also continues without being told, and a user may leave one attribute free.
pub const ANY_TEXTURE_SHARE: f64 = 0.2;
/// Share of training windows rearranged as fill-in-the-middle (the bars before a gap, the
/// bars after it, then the gap's bars: [`InfillSides`]), so one model continues and infills.
/// Half, as code models are trained (Bavarian et al. 2022 found continuation unharmed at
/// 0.5); measured against a run without it in BENCHMARKS.md ("Infill").
pub const FILL_SHARE: f64 = 0.5;
/// Share of fill-in-the-middle windows that keep at most one bar before the gap, so only the
/// bars after it can tell the gap's tune. Without them the model never learned to read the
/// bars after: on held-out gaps whose pitches repeat a bar after the gap and no bar before
/// it, v4 gives those pitches 1.586 nats per note with the bars after and 1.591 without
/// (`eval --infill`, "gaps repeat a bar after them and no bar before"; BENCHMARKS.md
/// "Infill", session 16). A producer's *Regenerate bar* on a phrase's first bars is this
/// case too.
pub const FEW_BARS_BEFORE_SHARE: f64 = 0.25;
/// Share of fill-in-the-middle windows whose gap, where the window has one, is drawn among the
/// gaps that only the bars after can tell (a gap bar that a bar after it plays pitch for
/// pitch and no bar before it: [`repeat_after_only`]), with that bar after kept in the
/// window. Held-out music has them (600 of 7,481 bars with 4 bars each side, session 16), but
/// too few for the gradient to build a way of reading the bars after: in 343 steps of
/// [`FEW_BARS_BEFORE_SHARE`]'s windows an exact repeat after the gap was still not copied.
/// It shifts the model's prior towards repeating a bar after the gap; the eval's gaps stay
/// where they fall, so it cannot flatter the eval. Measured (BENCHMARKS.md "Infill", session
/// 17): 889 steps of it still left such repeats uncopied (1.425 nats per note with the bars
/// after, 1.422 without): the model hardly copies from the bars before either.
pub const REPEAT_AFTER_SHARE: f64 = 0.25;
/// Most whole bars after a training gap: generation hears the rest of a phrase (4–8 bars)
/// after the bars it regenerates, `eval --infill` up to 4.
pub const MAX_AFTER_BARS: usize = 8;
/// How many bars a training gap spans, with their shares: mostly the one bar a producer
/// regenerates, sometimes a dragged range.
pub const FILL_BARS: [(std::ops::RangeInclusive<u8>, f64); 4] = [
    (1..=1, 0.45),
    (2..=2, 0.25),
    (3..=4, 0.2),
    (5..=MAX_FILL_BARS, 0.1),
];
/// A part (one track and channel of a file) shorter than this is not a stream of its own.
pub const MIN_PART_NOTES: usize = 16;
/// Files with several parts are read twice per epoch, once as written and once at half speed
/// (every time doubled): they are the corpus's only block chords, bass lines and pads, a few
/// hundred files beside 3,000 fiddle tunes, and a chorale at half speed is a progression of
/// half-note chords, the harmonic rhythm of a pop or ballad primer that no file has.
pub const HALF_SPEED: f64 = 2.0;
/// Augmentation transposes by up to this many semitones either way.
pub const MAX_TRANSPOSE: i32 = 6;
/// Octave shifts added to that transposition, with their shares of the windows: a tune an
/// octave or two down is heard in a bass register, so every register bin of the prefix meets
/// every kind of stream (the corpus has few real bass lines below G2).
pub const OCTAVE_SHIFTS: [(i32, f64); 3] = [(-24, 0.1), (-12, 0.2), (12, 0.1)];
/// Transposition keeps pitches inside the piano's range (unless the piece already leaves it).
const PIANO_RANGE: (u8, u8) = (21, 108);

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("training folder {0} not found")]
    MissingFolder(PathBuf),
    #[error("no usable .mid files under {folder} ({skipped} skipped); put Standard MIDI Files with melodic notes there")]
    Empty { folder: PathBuf, skipped: usize },
}

/// One parsed file.
#[derive(Debug, Clone)]
pub struct Piece {
    pub path: PathBuf,
    /// Every melodic note of the file, merged.
    pub phrase: Phrase,
    /// `BOS … EOS` of the merged notes.
    pub tokens: Vec<u32>,
    /// Each part of a file with several (a bass line, a chord part, a voice), as a plugin on
    /// one track would hear it: more training streams. Empty for a single-part file.
    pub parts: Vec<Phrase>,
}

impl Piece {
    /// Reads the parts worth a stream of their own from a file's parts.
    pub fn new(path: PathBuf, phrase: Phrase, parts: Vec<Phrase>) -> Piece {
        let tokens = Vocab.encode(&phrase, true);
        let mut parts: Vec<Phrase> = parts
            .into_iter()
            .filter(|p| p.notes.len() >= MIN_PART_NOTES)
            .collect();
        if parts.len() < 2 {
            parts.clear();
        }
        Piece {
            path,
            phrase,
            tokens,
            parts,
        }
    }

    /// Every phrase training reads from this file: the merged notes, then each part.
    pub fn streams(&self) -> impl Iterator<Item = &Phrase> {
        std::iter::once(&self.phrase).chain(&self.parts)
    }
}

/// A file that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Corpus {
    pub folder: PathBuf,
    pub train: Vec<Piece>,
    pub validation: Vec<Piece>,
    pub skipped: Vec<Skipped>,
    /// Files that share a near-duplicate group with at least one other file.
    pub near_duplicate_files: usize,
    /// A held-out file has versions in the training split (every file of the folder is a
    /// version of another): the validation loss is optimistic.
    pub validation_overlaps: bool,
}

impl Corpus {
    pub fn note_count(pieces: &[Piece]) -> usize {
        pieces.iter().map(|p| p.phrase.notes.len()).sum()
    }

    pub fn token_count(pieces: &[Piece]) -> usize {
        pieces.iter().map(|p| p.tokens.len()).sum()
    }
}

/// Every file under `folder` (recursively) whose extension is .mid, .midi or .kar, sorted.
pub fn midi_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(folder)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "mid" | "midi" | "kar"))
        })
        .collect();
    files.sort();
    files
}

/// Parses every MIDI file under `folder`; files that fail are listed in `skipped`, never fatal.
pub fn load_corpus(folder: &Path) -> Result<Corpus, DataError> {
    if !folder.is_dir() {
        return Err(DataError::MissingFolder(folder.to_owned()));
    }
    let mut pieces = Vec::new();
    let mut skipped = Vec::new();
    for path in midi_files(folder) {
        match read_midi(&path) {
            Ok(song) if song.melodic.notes.is_empty() => skipped.push(Skipped {
                path,
                reason: "only drums (channel 10), no melodic notes".into(),
            }),
            Ok(song) => pieces.push(Piece::new(path, song.melodic, song.parts)),
            Err(e) => skipped.push(Skipped {
                path,
                reason: e.to_string(),
            }),
        }
    }
    if pieces.is_empty() {
        return Err(DataError::Empty {
            folder: folder.to_owned(),
            skipped: skipped.len(),
        });
    }
    let groups = near_duplicate_groups(&pieces);
    let near_duplicate_files = groups.iter().filter(|g| g.len() > 1).map(Vec::len).sum();
    let (train, validation, validation_overlaps) = split(pieces, groups);
    Ok(Corpus {
        folder: folder.to_owned(),
        train,
        validation,
        skipped,
        near_duplicate_files,
        validation_overlaps,
    })
}

/// Splits by groups of near-duplicate files with a fixed seed: the same folder always gives
/// the same split, and no held-out tune has a version in the training split (collections
/// overlap: the same reel is in O'Neill's and in Ryan's).
fn split(pieces: Vec<Piece>, mut groups: Vec<Vec<usize>>) -> (Vec<Piece>, Vec<Piece>, bool) {
    if pieces.len() < 2 {
        return (pieces.clone(), pieces, true);
    }
    let n_val =
        ((pieces.len() as f64 * VALIDATION_SHARE).round() as usize).clamp(1, pieces.len() - 1);
    groups.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
    let mut to_validation = vec![false; pieces.len()];
    let mut taken = 0;
    for g in &groups {
        // Whole groups only; one too big for the remaining budget stays in training.
        if taken + g.len() <= n_val {
            g.iter().for_each(|&i| to_validation[i] = true);
            taken += g.len();
        }
    }
    let overlaps = taken == 0;
    if overlaps {
        // Every group is too big to hold out (a small folder of versions of one loop): one
        // file of the smallest group is held out anyway, so validation is never empty; its
        // versions in training make that loss optimistic, and the trainer says so.
        let smallest = groups.iter().min_by_key(|g| g.len()).expect("pieces ≥ 2");
        to_validation[smallest[0]] = true;
    }
    let (validation, train): (Vec<_>, Vec<_>) =
        pieces.into_iter().zip(to_validation).partition(|(_, v)| *v);
    // Shuffled, so that evaluating the first files of either side samples every collection.
    let mut rng = ChaCha8Rng::seed_from_u64(SPLIT_SEED);
    let mut strip = |v: Vec<(Piece, bool)>| {
        let mut pieces: Vec<Piece> = v.into_iter().map(|(p, _)| p).collect();
        pieces.shuffle(&mut rng);
        pieces
    };
    (strip(train), strip(validation), overlaps)
}

/// Indices of the pieces grouped by near-duplication (transitively): two pieces are linked
/// when at least [`NEAR_DUPLICATE_SHARE`] of either one's 8-note runs occur in the other.
/// Groups are in order of their first piece.
pub fn near_duplicate_groups(pieces: &[Piece]) -> Vec<Vec<usize>> {
    let runs: Vec<Vec<u64>> = pieces
        .iter()
        .map(|p| {
            let mut r = note_runs(&p.phrase.notes, COPY_RUN);
            r.sort_unstable();
            r.dedup();
            r
        })
        .collect();
    let mut owners: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, r) in runs.iter().enumerate() {
        for &h in r {
            owners.entry(h).or_default().push(i);
        }
    }
    let mut parent: Vec<usize> = (0..pieces.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, r) in runs.iter().enumerate() {
        let mut shared: HashMap<usize, usize> = HashMap::new();
        for h in r {
            for &j in &owners[h] {
                if j != i {
                    *shared.entry(j).or_default() += 1;
                }
            }
        }
        for (j, n) in shared {
            if n as f64 >= NEAR_DUPLICATE_SHARE * r.len() as f64 {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for i in 0..pieces.len() {
        let r = root(&mut parent, i);
        let g = *group_of.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// All pieces' merged tokens back to back (what validation and `continuo eval` score).
pub fn packed_stream(pieces: &[Piece]) -> Vec<u32> {
    pieces
        .iter()
        .flat_map(|p| p.tokens.iter().copied())
        .collect()
}

/// Token sequences back to back, with the bar length each one is in: training windows are
/// cut from it, so no compute goes to padding, and each window's texture is measured in its
/// own bars.
#[derive(Debug, Clone, Default)]
pub struct TokenStream {
    pub ids: Vec<u32>,
    /// (first id, beats per bar) of each sequence, in order.
    meters: Vec<(usize, f64)>,
}

impl TokenStream {
    /// One sequence in bars of `beats_per_bar`.
    pub fn from_ids(ids: Vec<u32>, beats_per_bar: f64) -> Self {
        Self {
            ids,
            meters: vec![(0, beats_per_bar)],
        }
    }

    fn push(&mut self, phrase: &Phrase) {
        let q = crate::tokens::quantize(phrase);
        self.meters.push((self.ids.len(), q.beats_per_bar));
        self.ids.extend(Vocab.encode(phrase, true));
    }

    /// The bar length of the sequence holding id `i`.
    pub fn beats_per_bar_at(&self, i: usize) -> f64 {
        let k = self.meters.partition_point(|&(start, _)| start <= i);
        self.meters.get(k.saturating_sub(1)).map_or(4.0, |m| m.1)
    }
}

/// Every stream of every piece (merged notes and parts), and those of multi-part files again
/// at half speed ([`HALF_SPEED`]): what training reads.
pub fn training_stream(pieces: &[Piece]) -> TokenStream {
    let mut s = TokenStream::default();
    for p in pieces {
        p.streams().for_each(|phrase| s.push(phrase));
        if !p.parts.is_empty() {
            p.streams()
                .for_each(|phrase| s.push(&stretched(phrase, HALF_SPEED)));
        }
    }
    s
}

/// `phrase` with every onset and duration multiplied by `factor`, in the same meter.
pub fn stretched(phrase: &Phrase, factor: f64) -> Phrase {
    let notes = phrase
        .notes
        .iter()
        .map(|n| crate::music::Note {
            start: n.start * factor,
            duration: n.duration * factor,
            ..*n
        })
        .collect();
    Phrase::new(notes, phrase.beats_per_bar)
}

/// Draws random training windows of `len + 1` tokens (input and shifted target) from a
/// token stream: a prefix, then `len + 1 - PREFIX_LEN` tokens transposed at random. The
/// prefix is the key and texture of the window's own notes, each "any" for a share of the
/// windows ([`ANY_KEY_SHARE`], [`ANY_TEXTURE_SHARE`]).
pub struct WindowSampler {
    stream: TokenStream,
    len: usize,
    rng: ChaCha8Rng,
    transpose: bool,
    fill_share: f64,
    windows: u64,
    filled: u64,
}

impl WindowSampler {
    pub fn new(stream: TokenStream, len: usize, seed: u64, transpose: bool) -> Self {
        Self {
            stream,
            len,
            rng: ChaCha8Rng::seed_from_u64(seed),
            transpose,
            fill_share: 0.0,
            windows: 0,
            filled: 0,
        }
    }

    /// Rearranges this share of the windows as fill-in-the-middle ([`fill_in_the_middle`]).
    pub fn with_fill_share(mut self, share: f64) -> Self {
        self.fill_share = share.clamp(0.0, 1.0);
        self
    }

    /// Share of the windows drawn so far that were rearranged as fill-in-the-middle: below
    /// the requested share by the windows that hold no whole bar to take out.
    pub fn filled_share(&self) -> f64 {
        self.filled as f64 / self.windows.max(1) as f64
    }

    /// `batch` windows, flattened row-major: (batch, len + 1).
    pub fn batch(&mut self, batch: usize) -> Vec<u32> {
        let body = self.len + 1 - PREFIX_LEN;
        let ids = &self.stream.ids;
        let mut out = Vec::with_capacity(batch * (self.len + 1));
        for _ in 0..batch {
            let fill = self.fill_share > 0.0 && self.rng.gen_bool(self.fill_share);
            let max_start = ids.len().saturating_sub(body);
            let start = if max_start == 0 {
                0
            } else {
                self.rng.gen_range(0..=max_start)
            };
            let mut w: Vec<u32> = ids[start..].iter().copied().cycle().take(body).collect();
            // What follows a filled gap: the start of another piece, as in a packed stream.
            let mut next = if fill {
                let from = self.rng.gen_range(0..ids.len());
                let bos = Vocab.id(Token::Bos);
                let b = (from..ids.len()).chain(0..from).find(|&i| ids[i] == bos);
                let b = b.unwrap_or(from);
                ids[b..].iter().copied().cycle().take(body).collect()
            } else {
                Vec::new()
            };
            if self.transpose {
                let mut shift = self.rng.gen_range(-MAX_TRANSPOSE..=MAX_TRANSPOSE);
                let mut draw = self.rng.gen::<f64>();
                for (octaves, share) in OCTAVE_SHIFTS {
                    if draw < share {
                        shift += octaves;
                        break;
                    }
                    draw -= share;
                }
                transpose_tokens(&mut w, shift);
                transpose_tokens(&mut next, shift);
            }
            let vocab = Vocab;
            let mut told = |p: f64| !self.rng.gen_bool(p);
            let key = if told(ANY_KEY_SHARE) {
                vocab.key_of_tokens(&w)
            } else {
                None
            };
            let own = vocab.texture_of_tokens(&w, self.stream.beats_per_bar_at(start));
            let texture = TextureBins {
                polyphony: own.polyphony.filter(|_| told(ANY_TEXTURE_SHARE)),
                density: own.density.filter(|_| told(ANY_TEXTURE_SHARE)),
                register: own.register.filter(|_| told(ANY_TEXTURE_SHARE)),
            };
            out.extend(vocab.prefix(key, texture));
            self.windows += 1;
            match fill
                .then(|| fill_in_the_middle(&w, &next, &mut self.rng))
                .flatten()
            {
                Some(filled) => {
                    self.filled += 1;
                    out.extend(filled);
                }
                None => out.extend(w),
            }
        }
        out
    }
}

/// Bars in a training gap, drawn from [`FILL_BARS`].
fn draw_fill_bars(rng: &mut impl Rng) -> u8 {
    let mut draw = rng.gen::<f64>();
    for (range, share) in FILL_BARS {
        if draw < share {
            return rng.gen_range(range);
        }
        draw -= share;
    }
    1
}

/// A window rearranged around a gap of whole bars, as long as `w`, in this vocabulary's
/// [`InfillLayout`] (suffix first: what precedes the piece's first whole bar, `Suffix(n)`, up
/// to [`MAX_AFTER_BARS`] whole bars after the gap (as many as generation gives: from none, a
/// gap at the end, to all it has), `Before`, the bars before the gap, `Middle`, the gap's
/// bars, `FillEnd`), then `next` (the start of another piece, as in a packed stream) to fill
/// the window. The gap and
/// the bars after it are whole bars of one piece (a window may hold the end of one and the
/// start of the next; the last bar of a piece counts as whole only when its `EOS` is in the
/// window). A share of the windows ([`FEW_BARS_BEFORE_SHARE`]) keep at most one bar before
/// the gap. Drawing how many bars follow the gap puts `FillEnd` anywhere in the window: when
/// it always came last, the model learned to end a gap at the window's last position (its
/// position embedding) instead of counting the gap's bars, and at generation, where the gap
/// ends anywhere, it wanted another bar line (68 % of its mass, measured). `None` when the
/// window, less room for the markers, holds no whole bar to take out.
pub fn fill_in_the_middle(w: &[u32], next: &[u32], rng: &mut impl Rng) -> Option<Vec<u32>> {
    let vocab = Vocab;
    let len = w.len();
    let (bar, eos) = (vocab.id(Token::Bar), vocab.id(Token::Eos));
    let layout = InfillLayout::current();
    let markers = layout.markers();
    // Pieces of the window, split at EOS: (start, end), end = the EOS or the window's end.
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, &id) in w.iter().enumerate() {
        if id == eos {
            pieces.push((start, i));
            start = i + 1;
        }
    }
    pieces.push((start, w.len()));
    // Bar lines of each piece; bars that end inside it (the last one only if its EOS is here).
    let whole_bars = |&(s, e): &(usize, usize)| -> Vec<(usize, usize)> {
        let lines: Vec<usize> = (s..e).filter(|&i| w[i] == bar).collect();
        let mut bars: Vec<(usize, usize)> = lines.windows(2).map(|p| (p[0], p[1])).collect();
        if let (Some(&last), true) = (lines.last(), e < w.len()) {
            bars.push((last, e));
        }
        bars
    };
    // Bars that fit in `len` tokens with the markers.
    let bars: Vec<(usize, usize)> = pieces
        .iter()
        .map(|p| {
            let mut b = whole_bars(p);
            b.retain(|&(_, end)| end + markers <= len);
            b
        })
        .max_by_key(|b| b.len())
        .filter(|b| !b.is_empty())?;
    let n = (draw_fill_bars(rng) as usize).min(bars.len());
    // Gaps only the bars after can tell: (first gap bar, bars after needed to hear the repeat).
    let repeat_gap = rng.gen_bool(REPEAT_AFTER_SHARE).then(|| {
        let pitches: Vec<Vec<u8>> = bars.iter().map(|&(s, e)| bar_pitches(&w[s..e])).collect();
        let found: Vec<(usize, usize)> = (0..=bars.len() - n)
            .filter_map(|k| {
                let after = k + n..(k + n + MAX_AFTER_BARS).min(bars.len());
                repeat_after_only(&pitches, 0..k, k..k + n, after).map(|a| (k, a + 1 - (k + n)))
            })
            .collect();
        (!found.is_empty()).then(|| found[rng.gen_range(0..found.len())])
    });
    let (k, min_after) = repeat_gap
        .flatten()
        .unwrap_or_else(|| (rng.gen_range(0..=bars.len() - n), 0));
    let (gap_start, gap_end) = (bars[k].0, bars[k + n - 1].1);
    // What comes before the piece's first whole bar (`BOS Meter`, another piece's end, the
    // tail of a bar) is the head; none where only a bar or none is kept before the gap.
    let (head_end, before_start) = if rng.gen_bool(FEW_BARS_BEFORE_SHARE) {
        (0, bars[k.saturating_sub(rng.gen_range(0..=1))].0)
    } else {
        (bars[0].0, bars[0].0)
    };
    let following = (bars.len() - k - n).min(MAX_AFTER_BARS);
    let m = rng.gen_range(min_after..=following);
    let after_end = if m == 0 {
        gap_end
    } else {
        bars[k + n + m - 1].1
    };
    // Before, after and the gap, the markers, then `next`.
    if after_end + markers + next.len() < len {
        return None;
    }
    let sides = InfillSides {
        head: &w[..head_end],
        before: &w[before_start..gap_start],
        after: &w[gap_end..after_end],
        bars: n as u8,
    };
    let mut out = sides.with_middle(layout, &w[gap_start..gap_end]);
    out.extend_from_slice(&next[..len - out.len()]);
    debug_assert_eq!(out.len(), len);
    Some(out)
}

/// The weight of each next-token target of windows of `window` tokens (flattened `ids`), in
/// the order `eval::stream_predictions` lays them out (from the token after the prefix):
/// `gap_weight` for a filled gap's tokens and the `FillEnd` that closes it, 1 for the rest.
/// Weighting the gap is how training spends more of its gradient on what only
/// fill-in-the-middle can teach, using the bars after a gap, without drawing more fill
/// windows (each one less for plain continuation).
pub fn target_weights(ids: &[u32], window: usize, gap_weight: f32) -> Vec<f32> {
    let (middle, fill_end) = (Vocab.id(Token::Middle), Vocab.id(Token::FillEnd));
    let mut weights = Vec::with_capacity(ids.len() / window * (window - PREFIX_LEN));
    for w in ids.chunks(window) {
        let mut in_gap = false;
        for (i, &id) in w.iter().enumerate() {
            let gap_token = in_gap;
            if id == middle {
                in_gap = true;
            } else if id == fill_end {
                in_gap = false;
            }
            if i >= PREFIX_LEN {
                weights.push(if gap_token { gap_weight } else { 1.0 });
            }
        }
    }
    weights
}

/// Shifts every pitch token by `shift` semitones, or by less (towards 0) if that would leave
/// the piano's range; returns the shift applied.
pub fn transpose_tokens(ids: &mut [u32], shift: i32) -> i32 {
    let vocab = Vocab;
    let pitches: Vec<u8> = ids.iter().filter_map(|&i| vocab.pitch_of(i)).collect();
    let (Some(&lo), Some(&hi)) = (pitches.iter().min(), pitches.iter().max()) else {
        return 0;
    };
    let floor = lo.min(PIANO_RANGE.0) as i32;
    let ceil = hi.max(PIANO_RANGE.1) as i32;
    let shift = shift.clamp(floor - lo as i32, ceil - hi as i32);
    for id in ids.iter_mut() {
        if let Some(p) = vocab.pitch_of(*id) {
            *id = vocab.pitch_id((p as i32 + shift) as u8);
        }
    }
    shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::Texture;
    use crate::tokens::Token;

    fn piece(name: &str, pitches: &[u8]) -> Piece {
        let notes = pitches
            .iter()
            .enumerate()
            .map(|(i, &pitch)| crate::music::Note {
                start: i as f64 * 0.5,
                duration: 0.5,
                pitch,
                velocity: 80,
            })
            .collect();
        Piece::new(name.into(), Phrase::new(notes, 4.0), vec![])
    }

    #[test]
    fn versions_of_one_tune_are_grouped_and_split_together() {
        let tune: Vec<u8> = (0..40).map(|i| 60 + (i * 7 % 12) as u8).collect();
        let mut variant = tune.clone();
        variant[30..].iter_mut().for_each(|p| *p += 1);
        let other: Vec<u8> = (0..40).map(|i| 50 + (i * 5 % 9) as u8).collect();
        let mut pieces = vec![
            piece("tune", &tune),
            piece("other", &other),
            piece("variant", &variant),
        ];
        assert_eq!(near_duplicate_groups(&pieces), vec![vec![0, 2], vec![1]]);
        for i in 0..17 {
            let distinct: Vec<u8> = (0..40).map(|j| 40 + ((j * (i + 2)) % 23) as u8).collect();
            pieces.push(piece(&format!("p{i}"), &distinct));
        }
        let groups = near_duplicate_groups(&pieces);
        let (train, validation, overlaps) = split(pieces, groups);
        assert!(!overlaps);
        assert_eq!(train.len() + validation.len(), 20);
        let side = |name: &str| validation.iter().any(|p| p.path == Path::new(name));
        assert_eq!(side("tune"), side("variant"));
    }

    #[test]
    fn transposition_stays_in_the_piano_range() {
        let v = Vocab;
        let mut ids = vec![
            v.id(Token::Pitch(105)),
            v.id(Token::Bar),
            v.id(Token::Pitch(60)),
        ];
        assert_eq!(transpose_tokens(&mut ids, 6), 3);
        assert_eq!(
            ids,
            vec![
                v.id(Token::Pitch(108)),
                v.id(Token::Bar),
                v.id(Token::Pitch(63))
            ]
        );
        assert_eq!(transpose_tokens(&mut ids, -4), -4);
        assert_eq!(v.pitch_of(ids[0]), Some(104));
    }

    #[test]
    fn a_gaps_tokens_and_its_end_are_weighted() {
        let v = Vocab;
        let bar = v.id(Token::Bar);
        let pos = v.id(Token::Position(0));
        let (middle, fill_end) = (v.id(Token::Middle), v.id(Token::FillEnd));
        // prefix(4) | Bar Suffix(1) Bar Middle Bar Pos FillEnd Bar
        let prefix = v.any_prefix();
        let body = [
            bar,
            v.id(Token::Suffix(1)),
            bar,
            middle,
            bar,
            pos,
            fill_end,
            bar,
        ];
        let window: Vec<u32> = prefix.iter().copied().chain(body).collect();
        let ids = [window.clone(), window].concat();
        let w = target_weights(&ids, body.len() + PREFIX_LEN, 3.0);
        let one = [1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 1.0];
        assert_eq!(w, [one, one].concat());
    }

    #[test]
    fn windows_have_the_requested_shape() {
        let mut s = WindowSampler::new(TokenStream::from_ids((0..50).collect(), 4.0), 8, 1, false);
        let b = s.batch(3);
        assert_eq!(b.len(), 27);
        for w in b.chunks(9) {
            assert!(w[..PREFIX_LEN].iter().all(|&id| Vocab.is_prefix(id)));
            let body = &w[PREFIX_LEN..];
            assert!(body.windows(2).all(|p| p[1] == p[0] + 1 || p[1] == 0));
        }
    }

    #[test]
    fn the_key_prefix_is_the_key_of_the_window() {
        let v = Vocab;
        // C major scale, one beat each: every window is heard in C major unless it drew AnyKey.
        let scale = [60, 62, 64, 65, 67, 69, 71, 72];
        let piece: Vec<u32> = scale
            .iter()
            .flat_map(|&p| {
                [
                    v.id(Token::Position(0)),
                    v.id(Token::Pitch(p)),
                    v.id(Token::Velocity(4)),
                    v.id(Token::Duration(11)),
                ]
            })
            .collect();
        let c_major = v.key_prefix(crate::music::detect_key(&[crate::music::Note {
            start: 0.0,
            duration: 1.0,
            pitch: 60,
            velocity: 64,
        }]));
        let mut s = WindowSampler::new(
            TokenStream::from_ids(piece.clone(), 4.0),
            piece.len() + PREFIX_LEN - 1,
            3,
            false,
        );
        let prefixes: Vec<u32> = (0..200).map(|_| s.batch(1)[0]).collect();
        let any = prefixes
            .iter()
            .filter(|&&p| p == v.key_prefix(None))
            .count();
        assert!(prefixes
            .iter()
            .all(|&p| p == c_major || p == v.key_prefix(None)));
        assert!((20..=60).contains(&any), "{any} of 200 windows drew AnyKey");
    }

    #[test]
    fn a_files_parts_are_streams_of_their_own_and_a_window_hears_its_texture() {
        let v = Vocab;
        let line = |pitch: u8, step: f64| -> Phrase {
            let notes = (0..32)
                .map(|i| crate::music::Note {
                    start: i as f64 * step,
                    duration: step,
                    pitch: pitch + (i % 3) as u8,
                    velocity: 80,
                })
                .collect();
            Phrase::new(notes, 4.0)
        };
        let (bass, melody) = (line(36, 1.0), line(72, 0.5));
        let merged = Phrase::new([bass.notes.clone(), melody.notes.clone()].concat(), 4.0);
        let piece = Piece::new("duo.mid".into(), merged, vec![bass.clone(), melody]);
        assert_eq!(piece.streams().count(), 3);
        let stream = training_stream(std::slice::from_ref(&piece));
        // The bass part alone, as a window: one note an onset, a note a beat, low register.
        let bass_ids = v.encode(&bass, true);
        let mut s = WindowSampler::new(
            TokenStream::from_ids(bass_ids.clone(), 4.0),
            bass_ids.len() + PREFIX_LEN - 1,
            5,
            false,
        );
        let bins = Texture::of_notes(&bass.notes, 4.0).unwrap().bins();
        let told = vocab_prefix_texture(&s.batch(1));
        assert!(told.polyphony.is_none_or(|b| Some(b) == bins.polyphony));
        assert!(told.register.is_none_or(|b| Some(b) == bins.register));
        assert_eq!(bins.register, Some(0));
        let once: usize = piece.streams().map(|p| Vocab.encode(p, true).len()).sum();
        let slow: usize = piece
            .streams()
            .map(|p| Vocab.encode(&stretched(p, HALF_SPEED), true).len())
            .sum();
        assert_eq!(stream.ids.len(), once + slow);
        // At half speed the bass line has one note every two beats.
        let slow_bass = Texture::of_notes(&stretched(&bass, HALF_SPEED).notes, 4.0).unwrap();
        assert_eq!(slow_bass.density, 0.5);
        // A single-part file is one stream.
        assert_eq!(
            Piece::new("solo.mid".into(), bass.clone(), vec![bass])
                .streams()
                .count(),
            1
        );
    }

    #[test]
    fn a_fill_in_the_middle_window_holds_the_same_notes_in_the_same_bars() {
        let v = Vocab;
        let notes: Vec<crate::music::Note> = (0..64)
            .map(|i| crate::music::Note {
                start: i as f64 * 0.5,
                duration: 0.5,
                pitch: 55 + (i * 5 % 17) as u8,
                velocity: 80,
            })
            .collect();
        let ids = v.encode(&Phrase::new(notes, 4.0), true);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut sizes = std::collections::BTreeSet::new();
        let mut ends = std::collections::BTreeSet::new();
        let (mut made, mut ending_last, mut few_before) = (0, 0, 0);
        for _ in 0..200 {
            // Whole pieces, and windows that start and end inside one.
            let cut = rng.gen_range(0..20);
            let w = &ids[cut..ids.len() - rng.gen_range(0..20)];
            let len = w.len();
            let Some(f) = fill_in_the_middle(w, &ids, &mut rng) else {
                continue;
            };
            made += 1;
            assert_eq!(f.len(), len);
            let n = f
                .iter()
                .find_map(|&id| match v.token(id) {
                    Some(Token::Suffix(n)) => Some(n),
                    _ => None,
                })
                .expect("a Suffix marker");
            sizes.insert(n);
            let (suffix, before, middle, end) = markers(&f);
            let bars_before = f[before..middle]
                .iter()
                .filter(|&&id| id == v.id(Token::Bar))
                .count();
            few_before += usize::from(bars_before <= 1 && suffix == 0);
            ends.insert(end);
            ending_last += usize::from(end + 1 == len);
            // Another piece follows the filled gap.
            assert!(end + 1 == len || f[end + 1] == v.id(Token::Bos));
            let gap_bars = f[middle..end]
                .iter()
                .filter(|&&id| id == v.id(Token::Bar))
                .count();
            assert_eq!(gap_bars, n as usize);
            // The bars after the gap are whole: they end where the next bar line of the
            // window stands, or at the piece's end. The bar before the gap comes just before it.
            let after = &f[suffix + 1..before];
            let played = [&f[before + 1..middle], &f[middle + 1..end]].concat();
            assert!(w.windows(played.len()).any(|s| s == played));
            let at = w
                .windows(after.len() + 1)
                .position(|s| s[..after.len()] == *after && s[after.len()] == v.id(Token::Bar))
                .or_else(|| (w.ends_with(&[v.id(Token::Eos)])).then_some(0));
            assert!(after.is_empty() || at.is_some(), "bars after the gap cut");
            let plain: Vec<_> = v.decode(w).notes;
            if f[0] == v.id(Token::Bos) {
                assert!(crate::tokens::Grammar::accepts(&f[..=end]));
                let filled = v.decode(&f[..=end]).notes;
                assert!(filled.iter().all(|n| plain.contains(n)));
            }
        }
        assert!(sizes.len() >= 3, "gap sizes drawn: {sizes:?}");
        assert!(made >= 150, "{made} of 200 windows rearranged");
        // The gap ends anywhere in the window, not at its last position.
        assert!(ends.len() >= 50, "{} places", ends.len());
        assert!(ending_last * 5 < made, "{ending_last} of {made} end last");
        // Some windows keep at most one bar before the gap: the bars after must tell it.
        assert!(
            few_before * 8 > made,
            "{few_before} of {made} with few bars before"
        );
    }

    #[test]
    fn some_fill_windows_take_out_a_bar_that_only_the_bars_after_repeat() {
        // Ten bars of eight notes: bars 2 and 5 are played again by bars 8 and 9, no other
        // bar twice. A gap drawn anywhere holds one of them, with its repeat kept after it,
        // in few windows; [`REPEAT_AFTER_SHARE`] of the windows are drawn for it.
        let v = Vocab;
        let bar_of = [0u8, 1, 2, 3, 4, 5, 6, 7, 2, 5];
        let notes: Vec<crate::music::Note> = (0..80)
            .map(|i| crate::music::Note {
                start: i as f64 * 0.5,
                duration: 0.5,
                pitch: 48 + bar_of[i / 8] * 3 + (i % 8) as u8,
                velocity: 80,
            })
            .collect();
        let ids = v.encode(&Phrase::new(notes, 4.0), true);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut made, mut told_after_only) = (0, 0);
        for _ in 0..400 {
            let Some(f) = fill_in_the_middle(&ids, &ids, &mut rng) else {
                continue;
            };
            made += 1;
            let (suffix, before, middle, end) = markers(&f);
            let bars = |s: &[u32]| -> Vec<Vec<u8>> {
                crate::tokens::split_bars(s)
                    .1
                    .into_iter()
                    .map(bar_pitches)
                    .collect()
            };
            let (before, gap, after) = (
                bars(&f[before + 1..middle]),
                bars(&f[middle + 1..end]),
                bars(&f[suffix + 1..before]),
            );
            let (b, g) = (before.len(), gap.len());
            let all = [before, gap, after].concat();
            told_after_only +=
                usize::from(repeat_after_only(&all, 0..b, b..b + g, b + g..all.len()).is_some());
        }
        assert!(made > 350, "{made} windows rearranged");
        // 28 of 400 when no window is drawn for it (measured with the share set to 0).
        let share = told_after_only as f64 / made as f64;
        assert!(share > 0.2 && share < 0.5, "{told_after_only} of {made}");
    }

    #[test]
    fn the_share_of_fill_windows_is_the_share_asked_for() {
        // Eight tunes of 64 notes, windows of 128 tokens: nearly every window holds whole bars.
        let ids: Vec<u32> = (0..8u8)
            .flat_map(|t| {
                let notes = (0..64)
                    .map(|i| crate::music::Note {
                        start: i as f64 * 0.5,
                        duration: 0.5,
                        pitch: 50 + t + (i * 5 % 17) as u8,
                        velocity: 80,
                    })
                    .collect();
                Vocab.encode(&Phrase::new(notes, 4.0), true)
            })
            .collect();
        let mut s =
            WindowSampler::new(TokenStream::from_ids(ids, 4.0), 128, 7, true).with_fill_share(0.5);
        let middle = Vocab.id(Token::Middle);
        let rows = s.batch(400);
        let filled = rows.chunks(129).filter(|w| w.contains(&middle)).count();
        assert!(
            (170..=230).contains(&filled),
            "{filled} of 400 windows filled"
        );
        assert_eq!(s.filled_share(), filled as f64 / 400.0);
    }

    /// Where a suffix-first fill window's markers stand: `Suffix(n)`, `Before`, `Middle`,
    /// `FillEnd`, each the first of its kind.
    fn markers(f: &[u32]) -> (usize, usize, usize, usize) {
        let v = Vocab;
        let at = |t: Token| f.iter().position(|&id| id == v.id(t)).unwrap();
        let suffix = f
            .iter()
            .position(|&id| matches!(v.token(id), Some(Token::Suffix(_))))
            .expect("a Suffix marker");
        let (before, middle, end) = (at(Token::Before), at(Token::Middle), at(Token::FillEnd));
        assert!(suffix < before && before < middle && middle < end);
        (suffix, before, middle, end)
    }

    /// The texture bins a window's prefix tells.
    fn vocab_prefix_texture(w: &[u32]) -> TextureBins {
        let bin = |id: u32| match Vocab.token(id) {
            Some(Token::Polyphony(b) | Token::Density(b) | Token::Register(b)) => Some(b),
            _ => None,
        };
        TextureBins {
            polyphony: bin(w[1]),
            density: bin(w[2]),
            register: bin(w[3]),
        }
    }
}
