//! The copy guard: a model must not play back its training data. It holds a fingerprint of
//! every run of [`GUARD_RUN`] consecutive notes of the training files, and the sampler refuses
//! any note that would complete such a run in a continuation. Real music of one style shares
//! stock phrases (a scale run, a cadence), and a model that learns the style reproduces them;
//! the guard makes the model vary the last note of such a phrase instead of quoting a tune.
//!
//! Stored as `copy_guard.safetensors` beside the weights, written by `continuo train` (or
//! `continuo copy-guard` for a model trained before it existed).

use crate::music::{Note, Phrase};
use crate::note_runs::{grid_note_keys, note_runs, run_hash};
use crate::tokens::{quantize, Decoder, Token, Vocab, DURATION_TICKS};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub const GUARD_FILE: &str = "copy_guard.safetensors";
/// Notes in a guarded run: the copy metric's run length.
pub const GUARD_RUN: usize = crate::note_runs::COPY_RUN;
/// Bumped if the run hash or the fingerprint changes; a guard of another version is refused.
const GUARD_VERSION: u32 = 1;

/// Sorted, deduplicated 32-bit fingerprints (the high half of each run's hash). A fingerprint
/// can match a run that was not in training (the shipped guard holds 368,495 runs: about one
/// query in 12,000), which only means a note is refused that need not be.
#[derive(Clone, PartialEq)]
pub struct CopyGuard {
    fingerprints: Vec<u32>,
}

impl std::fmt::Debug for CopyGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CopyGuard({} runs)", self.fingerprints.len())
    }
}

fn fingerprint(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl CopyGuard {
    /// Every run of the given pieces' notes.
    pub fn new<'a>(pieces: impl IntoIterator<Item = &'a [Note]>) -> Self {
        let mut fingerprints: Vec<u32> = pieces
            .into_iter()
            .flat_map(|notes| note_runs(notes, GUARD_RUN))
            .map(fingerprint)
            .collect();
        fingerprints.sort_unstable();
        fingerprints.dedup();
        Self { fingerprints }
    }

    /// This guard's runs and `other`'s together: a model trained from another model's weights
    /// (`continuo train --from`) must not quote its base's training tunes either.
    pub fn union(mut self, other: &CopyGuard) -> CopyGuard {
        self.fingerprints.extend_from_slice(&other.fingerprints);
        self.fingerprints.sort_unstable();
        self.fingerprints.dedup();
        self
    }

    /// Distinct fingerprints: the distinct runs guarded, less the few that share one (about 16
    /// pairs among 368,495 runs).
    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    fn contains(&self, hash: u64) -> bool {
        self.fingerprints.binary_search(&fingerprint(hash)).is_ok()
    }

    /// Whether any run of `notes` (any timing; quantized first) is guarded.
    pub fn copies(&self, notes: &[Note]) -> bool {
        note_runs(notes, GUARD_RUN)
            .into_iter()
            .any(|h| self.contains(h))
    }

    /// The bars (0-based, of `beats_per_bar` beats) in which a guarded run of `notes` ends,
    /// in order: the bars to write anew so that `notes` quote no training tune.
    pub fn copied_bars(&self, notes: &[Note], beats_per_bar: f64) -> Vec<usize> {
        let grid = quantize(&Phrase::new(notes.to_vec(), beats_per_bar)).notes;
        let keys = grid_note_keys(&grid);
        let mut bars: Vec<usize> = keys
            .windows(GUARD_RUN)
            .zip(grid.iter().skip(GUARD_RUN - 1))
            .filter(|(run, _)| self.contains(run_hash(run)))
            .map(|(_, last)| (last.start / beats_per_bar).floor().max(0.0) as usize)
            .collect();
        bars.dedup();
        bars
    }

    /// Clears in `mask` every duration that would finish the note `decoder` is decoding into
    /// the last note of a guarded run of `continuation`. If every allowed duration would, the
    /// mask is left as it was: the grammar needs a duration here, so the copy goes through
    /// (`continuo eval` counts such copies like any other).
    pub fn mask_copying_durations(
        &self,
        mask: &mut [bool],
        decoder: &Decoder,
        continuation: &[Note],
        start_beat: f64,
    ) {
        let allowed: Vec<u32> = (0..DURATION_TICKS.len() as u8)
            .map(|d| Vocab.id(Token::Duration(d)))
            .filter(|&id| mask[id as usize])
            .collect();
        if allowed.is_empty() || continuation.len() + 1 < GUARD_RUN {
            return;
        }
        let tail = &continuation[continuation.len() + 1 - GUARD_RUN..];
        let mut run = Vec::with_capacity(GUARD_RUN);
        let mut refused = Vec::new();
        for &id in &allowed {
            let Some(note) = decoder.clone().push(id) else {
                continue;
            };
            run.clear();
            run.extend_from_slice(tail);
            run.push(Note {
                start: note.start - start_beat,
                ..note
            });
            // `run` is on the token grid and in token order, as the decoder made it.
            if self.contains(run_hash(&grid_note_keys(&run))) {
                refused.push(id);
            }
        }
        if refused.len() < allowed.len() {
            for id in refused {
                mask[id as usize] = false;
            }
        }
    }

    /// Writes the guard to `dir/copy_guard.safetensors`.
    pub fn save(&self, dir: &Path) -> candle_core::Result<()> {
        let device = Device::Cpu;
        let tensors = HashMap::from([
            (
                "fingerprints".to_string(),
                Tensor::from_slice(&self.fingerprints, self.fingerprints.len(), &device)?,
            ),
            (
                "version_and_run".to_string(),
                Tensor::from_slice(&[GUARD_VERSION, GUARD_RUN as u32], 2, &device)?,
            ),
        ]);
        let tmp = dir.join(format!("{GUARD_FILE}.tmp"));
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, dir.join(GUARD_FILE))?;
        Ok(())
    }

    /// Reads a guard from the bytes of a `copy_guard.safetensors`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| e.to_string())?;
        let get = |name: &str| -> Result<Vec<u32>, String> {
            let t = tensors.get(name).ok_or(format!("no tensor {name:?}"))?;
            if t.dtype() != DType::U32 || t.rank() != 1 {
                return Err(format!("tensor {name:?} is not a u32 vector"));
            }
            t.to_vec1::<u32>().map_err(|e| e.to_string())
        };
        let header = get("version_and_run")?;
        if header != [GUARD_VERSION, GUARD_RUN as u32] {
            return Err(format!(
                "guard version {:?} of runs of {:?} notes; this Continuo reads version {GUARD_VERSION} of runs of {GUARD_RUN}",
                header.first(),
                header.get(1)
            ));
        }
        let fingerprints = get("fingerprints")?;
        if !fingerprints.windows(2).all(|w| w[0] < w[1]) {
            return Err("fingerprints are not sorted".into());
        }
        Ok(Self { fingerprints })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(pitches: &[u8]) -> Vec<Note> {
        pitches
            .iter()
            .enumerate()
            .map(|(i, &p)| Note {
                start: i as f64 * 0.5,
                duration: 0.5,
                pitch: p,
                velocity: 80,
            })
            .collect()
    }

    #[test]
    fn the_eighth_note_of_a_training_run_is_refused_only_with_its_rhythm() {
        let tune = scale(&[60, 62, 64, 65, 67, 69, 71, 72]);
        let guard = CopyGuard::new([tune.as_slice()]);
        assert_eq!(guard.len(), 1);
        // Decode the first seven notes, then pitch and velocity of the eighth.
        let phrase = crate::music::Phrase::new(tune.clone(), 4.0);
        let ids = Vocab.encode(&phrase, false);
        let last_duration = ids
            .iter()
            .rposition(|&id| matches!(Vocab.token(id), Some(Token::Duration(_))))
            .unwrap();
        let mut decoder = Decoder::new();
        let mut notes = Vec::new();
        for &id in &ids[..last_duration] {
            notes.extend(decoder.push(id));
        }
        assert_eq!(notes.len(), 7);
        let mut mask = vec![false; Vocab.size()];
        decoder.grammar().fill_mask(&mut mask);
        let before = mask.clone();
        guard.mask_copying_durations(&mut mask, &decoder, &notes, 0.0);
        let copied = ids[last_duration] as usize;
        assert!(
            before[copied] && !mask[copied],
            "the copying duration stays allowed"
        );
        let changed = (0..mask.len()).filter(|&i| mask[i] != before[i]).count();
        assert_eq!(changed, 1, "only the copying duration is refused");
        // With six notes before it, the eighth note cannot complete a run.
        let mut mask = before.clone();
        guard.mask_copying_durations(&mut mask, &decoder, &notes[1..], 0.0);
        assert_eq!(mask, before);
    }

    #[test]
    fn the_bars_to_write_anew_are_those_where_a_copied_run_ends() {
        let tune = scale(&[60, 62, 64, 65, 67, 69, 71, 72]);
        let guard = CopyGuard::new([tune.as_slice()]);
        // The run from beat 6 on: its eighth note starts at 9.5, in the third 4-beat bar.
        let mut answer = scale(&[50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50]);
        answer.extend(tune.iter().map(|n| Note {
            start: n.start + 6.0,
            ..*n
        }));
        answer.retain(|n| n.start < 6.0 || n.pitch != 50);
        assert_eq!(guard.copied_bars(&answer, 4.0), vec![2]);
        assert!(guard.copies(&answer));
        // In 3/4 the same note is in the fourth bar; a seven-note fragment copies nothing.
        assert_eq!(guard.copied_bars(&answer, 3.0), vec![3]);
        assert!(guard
            .copied_bars(&answer[..answer.len() - 1], 4.0)
            .is_empty());
    }

    #[test]
    fn a_guard_survives_its_file_and_a_wrong_file_is_refused() {
        let guard = CopyGuard::new([scale(&[60, 62, 64, 65, 67, 69, 71, 72, 74, 76]).as_slice()]);
        assert_eq!(guard.len(), 3);
        let dir = tempfile::tempdir().unwrap();
        guard.save(dir.path()).unwrap();
        let bytes = std::fs::read(dir.path().join(GUARD_FILE)).unwrap();
        assert_eq!(CopyGuard::from_bytes(&bytes).unwrap(), guard);
        assert!(CopyGuard::from_bytes(b"not a safetensors file").is_err());
    }
}
