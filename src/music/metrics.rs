//! Musical statistics of a continuation, used by `continuo eval` and the model card.

use super::{detect_key, Key, Note};

/// Whether the continuation's detected key is the primer's.
pub fn key_agreement(primer: &[Note], continuation: &[Note]) -> Option<bool> {
    Some(detect_key(primer)? == detect_key(continuation)?)
}

/// Share of notes whose pitch lies in `key`'s scale.
pub fn pitch_in_scale(key: Key, notes: &[Note]) -> Option<f64> {
    if notes.is_empty() {
        return None;
    }
    Some(notes.iter().filter(|n| key.contains(n.pitch)).count() as f64 / notes.len() as f64)
}

/// Shannon entropy (bits) of the pitch-class histogram by note count.
pub fn pitch_class_entropy(notes: &[Note]) -> Option<f64> {
    if notes.is_empty() {
        return None;
    }
    let mut h = [0usize; 12];
    for n in notes {
        h[(n.pitch % 12) as usize] += 1;
    }
    let total = notes.len() as f64;
    Some(
        h.iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total;
                -p * p.log2()
            })
            .sum(),
    )
}

/// Onsets per beat over `beats`.
pub fn notes_per_beat(notes: &[Note], beats: f64) -> f64 {
    notes.len() as f64 / beats.max(1e-9)
}

/// Mean number of notes sounding at each distinct onset.
pub fn polyphony(notes: &[Note]) -> Option<f64> {
    let mut onsets: Vec<f64> = notes.iter().map(|n| n.start).collect();
    onsets.sort_by(f64::total_cmp);
    onsets.dedup();
    if onsets.is_empty() {
        return None;
    }
    let sounding: usize = onsets
        .iter()
        .map(|&t| notes.iter().filter(|n| n.start <= t && t < n.end()).count())
        .sum();
    Some(sounding as f64 / onsets.len() as f64)
}

/// Share of the whole beats in `[0, beats)` during which no note sounds at all.
pub fn empty_beat_rate(notes: &[Note], beats: f64) -> f64 {
    let n = beats.floor().max(1.0) as usize;
    let empty = (0..n)
        .filter(|&b| {
            let (lo, hi) = (b as f64, b as f64 + 1.0);
            !notes.iter().any(|x| x.start < hi && x.end() > lo)
        })
        .count();
    empty as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::music::phrase::test_note as n;

    #[test]
    fn a_held_triad_has_polyphony_three() {
        let notes = [n(0.0, 2.0, 60), n(0.0, 2.0, 64), n(0.0, 2.0, 67)];
        assert_eq!(polyphony(&notes), Some(3.0));
    }

    #[test]
    fn empty_beats_are_beats_with_nothing_sounding() {
        let notes = [n(0.0, 1.0, 60), n(2.5, 0.25, 62)];
        assert_eq!(empty_beat_rate(&notes, 4.0), 0.5);
    }

    #[test]
    fn one_pitch_class_has_zero_entropy_and_twelve_have_log2_12() {
        assert_eq!(
            pitch_class_entropy(&[n(0.0, 1.0, 60), n(1.0, 1.0, 72)]),
            Some(0.0)
        );
        let all: Vec<Note> = (0..12).map(|p| n(p as f64, 1.0, 60 + p)).collect();
        assert!((pitch_class_entropy(&all).unwrap() - 12f64.log2()).abs() < 1e-12);
    }

    #[test]
    fn c_major_melody_is_in_scale() {
        let c = Key {
            tonic: 0,
            mode: super::super::Mode::Major,
        };
        assert_eq!(
            pitch_in_scale(c, &[n(0.0, 1.0, 60), n(1.0, 1.0, 61)]),
            Some(0.5)
        );
    }
}
