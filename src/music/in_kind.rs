//! Whether a continuation answers its primer in kind: the six checks of `continuo eval
//! --primers` (texture, density, register, scale, alive, new), shared with candidate choice
//! and the tests.
//!
//! Calibrated on real music: `continuo eval --continuations` prints how often the real next
//! bars of real parts pass each check. An earlier "same detected key" check failed 64 % of
//! real continuations (over four bars of one part the detected key is often the dominant or
//! the relative), and "at most 2 of 4 bars repeat a primer bar" failed real parts that
//! replay their riff; candidate choice by those checks chose away from real music.

use super::key::pitch_class_histogram;
use super::texture::{median_pitch, notes_per_onset, onset_tick};
use super::{detect_key, Note};
use serde::Serialize;

/// Continuation notes per onset within this factor range of the primer's.
pub const TEXTURE_RATIO: (f64, f64) = (0.67, 1.5);
/// Continuation notes per beat within this factor range of the primer's.
pub const DENSITY_RATIO: (f64, f64) = (0.5, 2.0);
/// Median pitches at most this many semitones apart.
pub const REGISTER_SEMITONES: f64 = 7.0;
/// At most this many bars of the continuation without an onset.
pub const MAX_SILENT_BARS: usize = 1;
/// At least this share of the continuation's note time in the primer's scale (major, or
/// minor with its raised 7th).
pub const MIN_IN_SCALE: f64 = 0.75;
/// At most this share of the continuation's bars (rounded up: 3 of 4) repeat a primer bar
/// exactly: real parts replay their riff, but an answer that only replays is no answer.
pub const MAX_REPEATED_SHARE: f64 = 0.75;

/// The six checks of one continuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct InKind {
    pub texture: bool,
    pub density: bool,
    pub register: bool,
    pub scale: bool,
    pub alive: bool,
    pub new: bool,
}

impl InKind {
    pub const NAMES: [&'static str; 6] =
        ["texture", "density", "register", "scale", "alive", "new"];

    /// All six hold.
    pub fn all(&self) -> bool {
        self.as_array().iter().all(|&b| b)
    }

    /// How many of the six hold (how candidates are ranked).
    pub fn passed(&self) -> usize {
        self.as_array().iter().filter(|&&ok| ok).count()
    }

    pub fn as_array(&self) -> [bool; 6] {
        [
            self.texture,
            self.density,
            self.register,
            self.scale,
            self.alive,
            self.new,
        ]
    }
}

/// Checks `continuation` (timed from its first bar line, `bars` bars long) against `primer`
/// (timed from its first bar line, `primer_bars` long), both in bars of `beats_per_bar`.
pub fn check_in_kind(
    primer: &[Note],
    primer_bars: usize,
    continuation: &[Note],
    bars: usize,
    beats_per_bar: f64,
) -> InKind {
    let beats = bars.max(1) as f64 * beats_per_bar.max(0.5);
    in_kind(
        primer,
        primer_bars,
        continuation,
        (bars, beats),
        beats_per_bar,
    )
}

/// [`check_in_kind`] of a continuation written so far: its notes that start in its first
/// `beats` beats. Density counts those beats; the bar checks (alive, new) its whole bars
/// among them. Candidates are compared by it before they are finished (`model::candidates`).
pub fn check_in_kind_so_far(
    primer: &[Note],
    primer_bars: usize,
    continuation: &[Note],
    beats: f64,
    beats_per_bar: f64,
) -> InKind {
    let heard: Vec<Note> = continuation
        .iter()
        .filter(|n| n.start < beats)
        .copied()
        .collect();
    let whole_bars = (beats / beats_per_bar.max(0.5)).floor() as usize;
    in_kind(
        primer,
        primer_bars,
        &heard,
        (whole_bars, beats.max(1e-9)),
        beats_per_bar,
    )
}

/// The six checks of `continuation`, whose `bars` whole bars the bar checks read and whose
/// `beats` the density divides by.
fn in_kind(
    primer: &[Note],
    primer_bars: usize,
    continuation: &[Note],
    (bars, beats): (usize, f64),
    beats_per_bar: f64,
) -> InKind {
    if primer.is_empty() || continuation.is_empty() {
        return InKind::default();
    }
    let ratio_within = |a: f64, b: f64, (lo, hi): (f64, f64)| b > 0.0 && a / b >= lo && a / b <= hi;
    let per_beat = |notes: &[Note], bars: usize| {
        notes.len() as f64 / (bars.max(1) as f64 * beats_per_bar.max(0.5))
    };
    let primer_bar_sets: Vec<Vec<(i64, u8)>> = (0..primer_bars)
        .map(|b| bar_content(primer, b, beats_per_bar))
        .collect();
    let cont_bars: Vec<Vec<(i64, u8)>> = (0..bars)
        .map(|b| bar_content(continuation, b, beats_per_bar))
        .collect();
    let silent = cont_bars.iter().filter(|b| b.is_empty()).count();
    let repeated = cont_bars
        .iter()
        .filter(|b| !b.is_empty() && primer_bar_sets.contains(b))
        .count();
    InKind {
        texture: ratio_within(
            notes_per_onset(continuation),
            notes_per_onset(primer),
            TEXTURE_RATIO,
        ),
        density: ratio_within(
            continuation.len() as f64 / beats,
            per_beat(primer, primer_bars),
            DENSITY_RATIO,
        ),
        register: (median_pitch(continuation) - median_pitch(primer)).abs() <= REGISTER_SEMITONES,
        scale: share_in_scale(primer, continuation).is_some_and(|s| s >= MIN_IN_SCALE),
        alive: silent <= MAX_SILENT_BARS,
        new: repeated <= max_repeated_bars(bars),
    }
}

/// Most bars of a `bars`-bar continuation that may repeat a primer bar exactly.
pub fn max_repeated_bars(bars: usize) -> usize {
    (bars as f64 * MAX_REPEATED_SHARE).ceil() as usize
}

/// Share of `continuation`'s note time whose pitch lies in the scale of `primer`'s detected
/// key; `None` without notes on either side.
pub fn share_in_scale(primer: &[Note], continuation: &[Note]) -> Option<f64> {
    let key = detect_key(primer)?;
    let h = pitch_class_histogram(continuation);
    let total: f64 = h.iter().sum();
    (total > 0.0).then(|| {
        (0..12u8)
            .filter(|&pc| key.contains(pc))
            .map(|pc| h[pc as usize])
            .sum::<f64>()
            / total
    })
}

/// The onsets (in ticks from the bar line) and pitches of the notes starting in bar `b`.
pub fn bar_content(notes: &[Note], b: usize, beats_per_bar: f64) -> Vec<(i64, u8)> {
    let bar_ticks = (beats_per_bar * super::texture::ONSET_GRID).round() as i64;
    let mut v: Vec<(i64, u8)> = notes
        .iter()
        .map(|n| (onset_tick(n), n.pitch))
        .filter(|(t, _)| t.div_euclid(bar_ticks.max(1)) == b as i64)
        .map(|(t, p)| (t.rem_euclid(bar_ticks.max(1)), p))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(start: f64, pitch: u8) -> Note {
        Note {
            start,
            duration: 0.5,
            pitch,
            velocity: 80,
        }
    }

    fn bass(bars: usize, offset: u8) -> Vec<Note> {
        (0..bars * 4)
            .map(|i| n(i as f64, [36, 43, 40, 43][i % 4] + offset))
            .collect()
    }

    #[test]
    fn a_bass_line_answered_by_a_new_bass_line_is_in_kind() {
        let primer = bass(2, 0);
        let answer: Vec<Note> = (0..16)
            .map(|i| n(i as f64, [36, 38, 40, 43, 45][i % 5]))
            .collect();
        assert!(check_in_kind(&primer, 2, &answer, 4, 4.0).all());
    }

    #[test]
    fn chords_an_octave_up_are_not_a_bass_line() {
        let primer = bass(2, 0);
        let chords: Vec<Note> = (0..8)
            .flat_map(|i| {
                [
                    n(i as f64 * 2.0, 60),
                    n(i as f64 * 2.0, 64),
                    n(i as f64 * 2.0, 67),
                ]
            })
            .collect();
        let k = check_in_kind(&primer, 2, &chords, 4, 4.0);
        assert!(!k.texture && !k.register && !k.all());
    }

    #[test]
    fn a_loop_of_the_primer_is_not_new_and_silence_is_not_alive() {
        let primer = bass(2, 0);
        let looped = bass(4, 0);
        let k = check_in_kind(&primer, 2, &looped, 4, 4.0);
        assert!(!k.new);
        assert!(k.texture && k.density && k.register && k.scale && k.alive);
        let sparse = vec![n(0.0, 36), n(0.5, 43)];
        assert!(!check_in_kind(&primer, 2, &sparse, 4, 4.0).alive);
    }

    #[test]
    fn three_replayed_bars_and_a_fourth_are_new_enough() {
        let primer = bass(2, 0);
        let mut answer = bass(3, 0);
        answer.extend((12..16).map(|i| n(i as f64, [36, 38, 40, 41][i % 4])));
        assert!(check_in_kind(&primer, 2, &answer, 4, 4.0).new);
        assert_eq!(max_repeated_bars(4), 3);
        assert_eq!(max_repeated_bars(1), 1);
    }

    #[test]
    fn a_move_to_the_dominant_stays_in_scale_but_a_chromatic_answer_does_not() {
        // C major primer; an answer on G major's notes keeps to C major's scale but for F#.
        let primer: Vec<Note> = [60, 64, 67, 72, 65, 69, 67, 64]
            .iter()
            .enumerate()
            .map(|(i, &p)| n(i as f64, p))
            .collect();
        let dominant: Vec<Note> = [67, 71, 74, 67, 72, 71, 69, 66]
            .iter()
            .enumerate()
            .map(|(i, &p)| n(i as f64, p))
            .collect();
        assert!(check_in_kind(&primer, 2, &dominant, 2, 4.0).scale);
        let chromatic: Vec<Note> = [61, 63, 66, 68, 70, 61, 63, 66]
            .iter()
            .enumerate()
            .map(|(i, &p)| n(i as f64, p))
            .collect();
        assert!(!check_in_kind(&primer, 2, &chromatic, 2, 4.0).scale);
    }
}
