//! Whether a continuation answers its primer in kind: the six checks of `continuo eval
//! --primers` (texture, density, register, key, alive, new), shared with the tests.

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
/// At most this many bars of the continuation that repeat a primer bar exactly.
pub const MAX_REPEATED_BARS: usize = 2;

/// The six checks of one continuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct InKind {
    pub texture: bool,
    pub density: bool,
    pub register: bool,
    pub key: bool,
    pub alive: bool,
    pub new: bool,
}

impl InKind {
    pub const NAMES: [&'static str; 6] = ["texture", "density", "register", "key", "alive", "new"];

    /// All six hold.
    pub fn all(&self) -> bool {
        self.as_array().iter().all(|&b| b)
    }

    pub fn as_array(&self) -> [bool; 6] {
        [
            self.texture,
            self.density,
            self.register,
            self.key,
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
            per_beat(continuation, bars),
            per_beat(primer, primer_bars),
            DENSITY_RATIO,
        ),
        register: (median_pitch(continuation) - median_pitch(primer)).abs() <= REGISTER_SEMITONES,
        key: matches!((detect_key(primer), detect_key(continuation)), (Some(a), Some(b)) if a == b),
        alive: silent <= MAX_SILENT_BARS,
        new: repeated <= MAX_REPEATED_BARS,
    }
}

/// The onsets (in ticks from the bar line) and pitches of the notes starting in bar `b`.
fn bar_content(notes: &[Note], b: usize, beats_per_bar: f64) -> Vec<(i64, u8)> {
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
        assert!(k.texture && k.density && k.register && k.key && k.alive);
        let sparse = vec![n(0.0, 36), n(0.5, 43)];
        assert!(!check_in_kind(&primer, 2, &sparse, 4, 4.0).alive);
    }
}
