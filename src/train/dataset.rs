//! A training corpus: every `.mid` under a folder, parsed, tokenized and split by file.

use crate::midi_file::read_midi;
use crate::music::Phrase;
use crate::tokens::Vocab;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Share of files held out for validation.
pub const VALIDATION_SHARE: f64 = 0.1;
/// The split's seed is fixed so that train and eval agree on the held-out files.
pub const SPLIT_SEED: u64 = 0x5EED_C0DE;
/// Augmentation transposes by up to this many semitones either way.
pub const MAX_TRANSPOSE: i32 = 6;
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
    pub phrase: Phrase,
    /// `BOS … EOS`.
    pub tokens: Vec<u32>,
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
    let vocab = Vocab;
    let mut pieces = Vec::new();
    let mut skipped = Vec::new();
    for path in midi_files(folder) {
        match read_midi(&path) {
            Ok(song) if song.melodic.notes.is_empty() => skipped.push(Skipped {
                path,
                reason: "only drums (channel 10), no melodic notes".into(),
            }),
            Ok(song) => {
                let tokens = vocab.encode(&song.melodic, true);
                pieces.push(Piece {
                    path,
                    phrase: song.melodic,
                    tokens,
                });
            }
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
    let (train, validation) = split(pieces);
    Ok(Corpus {
        folder: folder.to_owned(),
        train,
        validation,
        skipped,
    })
}

/// Splits by file with a fixed seed: the same folder always gives the same split.
fn split(mut pieces: Vec<Piece>) -> (Vec<Piece>, Vec<Piece>) {
    pieces.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
    if pieces.len() < 2 {
        return (pieces.clone(), pieces);
    }
    let n_val =
        ((pieces.len() as f64 * VALIDATION_SHARE).round() as usize).clamp(1, pieces.len() - 1);
    let train = pieces.split_off(n_val);
    (train, pieces)
}

/// All pieces' tokens back to back: training windows are cut from it, so no compute goes
/// to padding.
pub fn packed_stream(pieces: &[Piece]) -> Vec<u32> {
    pieces
        .iter()
        .flat_map(|p| p.tokens.iter().copied())
        .collect()
}

/// Draws random training windows of `len + 1` tokens (input and shifted target) from a
/// packed stream, each transposed at random.
pub struct WindowSampler {
    stream: Vec<u32>,
    len: usize,
    rng: ChaCha8Rng,
    transpose: bool,
}

impl WindowSampler {
    pub fn new(stream: Vec<u32>, len: usize, seed: u64, transpose: bool) -> Self {
        Self {
            stream,
            len,
            rng: ChaCha8Rng::seed_from_u64(seed),
            transpose,
        }
    }

    /// `batch` windows, flattened row-major: (batch, len + 1).
    pub fn batch(&mut self, batch: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(batch * (self.len + 1));
        for _ in 0..batch {
            let max_start = self.stream.len().saturating_sub(self.len + 1);
            let start = if max_start == 0 {
                0
            } else {
                self.rng.gen_range(0..=max_start)
            };
            let mut w: Vec<u32> = self.stream[start..]
                .iter()
                .copied()
                .cycle()
                .take(self.len + 1)
                .collect();
            if self.transpose {
                let shift = self.rng.gen_range(-MAX_TRANSPOSE..=MAX_TRANSPOSE);
                transpose_tokens(&mut w, shift);
            }
            out.extend(w);
        }
        out
    }
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
    use crate::tokens::Token;

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
    fn windows_have_the_requested_shape() {
        let mut s = WindowSampler::new((0..50).collect(), 8, 1, false);
        let b = s.batch(3);
        assert_eq!(b.len(), 27);
        for w in b.chunks(9) {
            assert!(w.windows(2).all(|p| p[1] == p[0] + 1 || p[1] == 0));
        }
    }
}
