//! How much of an answer replays the primer: the *Variation* control, and the plan of which
//! answer bars replay which primer bar and which the model writes.
//!
//! Real parts continue a two-bar primer by replaying its bars in most of the next four (62 %
//! of bars in issue 31's real continuations: bass 80 %, leads 38 %), varied, transposed with
//! the harmony, or not at all; the model alone replays 15 %. The plan puts the primer's bars
//! where a real part would most surely replay them (the bars right after it), the model's own
//! bars after them, and asks the model to vary one replayed bar of a riff hearing both sides.

use super::coherence::repeats_itself;
use super::key::Key;
use super::texture::notes_per_onset;
use super::Note;
use serde::{Deserialize, Serialize};

/// How an answer treats the primer's bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Variation {
    /// The primer's bars again, the last bar of every four written anew by the model.
    Loop,
    /// The primer's bars for the first quarter of the answer after a line, three quarters
    /// after a riff or chords ([`Part`]; a riff's last replayed bar written anew by the model
    /// hearing both sides), then the model's continuation of all that; one answer in
    /// [`DEPARTS_ONE_IN`] to a line is the model's own from the first bar.
    #[default]
    Develop,
    /// The model's own continuation in the primer's texture, from the first bar.
    New,
}

impl Variation {
    pub const ALL: [Variation; 3] = [Variation::Loop, Variation::Develop, Variation::New];
    pub const NAMES: [&'static str; 3] = ["loop", "develop", "new"];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Option<Variation> {
        let text = text.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|v| v.name() == text)
    }
}

/// Where one bar of an answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarSource {
    /// Primer bar `i`, counted from the first bar of the primer's loop.
    Primer(usize),
    /// The model's continuation.
    Model,
}

/// Which answer bars replay the primer, which the model continues, and which replayed bars
/// the model then writes anew hearing the bars on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub bars: Vec<BarSource>,
    /// Answer bars (0-based) refilled by the model; each is a `Primer` bar.
    pub refill: Vec<usize>,
}

impl Plan {
    /// How many bars at the start replay the primer (the model continues after them).
    pub fn replayed(&self) -> usize {
        self.bars
            .iter()
            .take_while(|b| matches!(b, BarSource::Primer(_)))
            .count()
    }
}

/// Notes per onset from which a primer is a chord part ([`Part::Chords`]).
pub const PATTERN_NOTES_PER_ONSET: f64 = 1.5;

/// Most primer bars an answer loops: a longer primer loops its last four.
pub const MAX_LOOP_BARS: usize = 4;

/// What kind of part a primer's loop is, which decides how much of an answer replays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A melody or bass line that does not repeat within the primer.
    Line,
    /// One bar, or a loop whose last bar replays an earlier one
    /// ([`super::coherence::repeats_itself`]): a riff.
    Pattern,
    /// Chords ([`PATTERN_NOTES_PER_ONSET`] or more notes per onset).
    Chords,
}

impl Part {
    /// The kind of the primer loop `loop_notes` (timed from its first bar line, `loop_bars`
    /// bars of `beats_per_bar`).
    pub fn of(loop_notes: &[Note], loop_bars: usize, beats_per_bar: f64) -> Part {
        if notes_per_onset(loop_notes) >= PATTERN_NOTES_PER_ONSET {
            Part::Chords
        } else if loop_bars == 1 || repeats_itself(loop_notes, 0, loop_bars, beats_per_bar) {
            Part::Pattern
        } else {
            Part::Line
        }
    }
}

/// The plan of an answer of `bars` bars after a primer whose loop is `loop_bars` bars
/// (1..=[`MAX_LOOP_BARS`]; 0 means an empty primer, which only the model can answer).
/// `part`: the kind of the primer's loop; riffs and chord parts go on replaying.
pub fn plan(variation: Variation, loop_bars: usize, bars: usize, part: Part) -> Plan {
    let primer = |j: usize| BarSource::Primer(j % loop_bars.max(1));
    if loop_bars == 0 {
        return Plan {
            bars: vec![BarSource::Model; bars],
            refill: vec![],
        };
    }
    match variation {
        Variation::New => Plan {
            bars: vec![BarSource::Model; bars],
            refill: vec![],
        },
        Variation::Loop => Plan {
            bars: (0..bars).map(primer).collect(),
            // The last bar of every four, where a loop-built part takes its turnaround; an
            // answer of one bar is the primer's bar unchanged.
            refill: (0..bars)
                .filter(|&j| bars > 1 && (j % 4 == 3 || j + 1 == bars))
                .collect(),
        },
        Variation::Develop => {
            // A quarter of the answer after a line's primer (a 2-bar primer answered in 4
            // bars replays its first bar), three quarters after a riff's or chords' (module
            // doc).
            let replayed = match part {
                Part::Line => bars.div_ceil(4),
                Part::Pattern | Part::Chords => (3 * bars).div_ceil(4),
            };
            // Chord parts come round unchanged: real ones replay the primer in 91 % of their
            // bars (`continuo eval --continuations`), and a progression written anew by the
            // model in the middle of the replay leaves it (0.68 of bars replayed, against
            // 0.78 without that refill).
            let last_refilled = match part {
                Part::Chords => replayed.saturating_sub(1),
                Part::Line | Part::Pattern => replayed,
            };
            Plan {
                bars: (0..bars)
                    .map(|j| {
                        if j < replayed {
                            primer(j)
                        } else {
                            BarSource::Model
                        }
                    })
                    .collect(),
                // The last replayed bar (not a chord part's), and the last of every four
                // before it.
                refill: (0..last_refilled)
                    .filter(|&j| replayed >= 2 && (j % 4 == 3 || j + 1 == replayed))
                    .collect(),
            }
        }
    }
}

/// Under *Develop*, one answer in this many to a line ([`Part::Line`])
/// is the model's own from the first bar. Real lines do not always come back to their first
/// bar: in the development set 21 % of the real continuations of such primers replay none of
/// the primer's bars, and nothing in the primer tells which (`continuo eval
/// --continuations`); an answer that always replays would never sound like those.
pub const DEPARTS_ONE_IN: u64 = 4;

/// Whether the answer seeded `seed` to a primer of `primer_notes` notes departs from the
/// primer ([`DEPARTS_ONE_IN`]): only under *Develop*, only after a line's primer. The primer's
/// size is mixed in so that a fixed seed does not make every primer's answer depart.
pub fn departs(variation: Variation, part: Part, seed: u64, primer_notes: usize) -> bool {
    let mixed = (seed ^ (primer_notes as u64).rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    variation == Variation::Develop
        && part == Part::Line
        && (mixed >> 40).is_multiple_of(DEPARTS_ONE_IN)
}

/// Intervals (semitones) a replayed bar may be moved by, in the order tried: down to the
/// dominant and up to the subdominant (a riff moved with the harmony, as real parts move it:
/// issue 31's funk riff in E goes up to A), then down to the subdominant and up to the
/// dominant, then by a step or a third. Down first: real parts of the development set end
/// their four bars a little lower than the primer more often than higher (`continuo eval
/// --continuations`: register offset −0.38 on average), chord parts never higher.
pub const HARMONIC_SHIFTS: [i32; 8] = [-5, 5, -7, 7, -2, 2, -3, 3];

/// The interval of [`HARMONIC_SHIFTS`] to move `bar` by: of those `allowed` (and keeping every
/// pitch on the keyboard), the one that keeps the most of its note time in `key` (the first
/// in order among equals). `None` when none is allowed.
pub fn harmonic_shift(
    bar: &[Note],
    key: Option<Key>,
    mut allowed: impl FnMut(i32) -> bool,
) -> Option<i32> {
    let in_key = |shift: i32| -> f64 {
        let Some(key) = key else { return 0.0 };
        bar.iter()
            .filter(|n| key.contains((n.pitch as i32 + shift) as u8))
            .map(|n| n.duration)
            .sum()
    };
    let playable = |shift: i32| {
        bar.iter()
            .all(|n| (0..=127).contains(&(n.pitch as i32 + shift)))
    };
    let mut best: Option<(i32, f64)> = None;
    // Off the keyboard first: a pitch below 0 would wrap as a u8 in `Key::contains`.
    for shift in HARMONIC_SHIFTS.into_iter().filter(|&s| playable(s)) {
        let score = in_key(shift);
        // Checked only when it would win: `allowed` may cost a copy-guard query.
        if best.is_none_or(|(_, b)| score > b + 1e-9) && allowed(shift) {
            best = Some((shift, score));
        }
    }
    best.map(|(shift, _)| shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BarSource::*;

    #[test]
    fn develop_replays_a_lines_first_bar_and_lets_the_model_go_on() {
        let p = plan(Variation::Develop, 2, 4, Part::Line);
        assert_eq!(p.bars, vec![Primer(0), Model, Model, Model]);
        assert!(p.refill.is_empty());
        assert_eq!(p.replayed(), 1);
        let eight = plan(Variation::Develop, 2, 8, Part::Line);
        assert_eq!(eight.bars[..3], [Primer(0), Primer(1), Model]);
        assert_eq!(eight.refill, vec![1]);
        assert_eq!(
            plan(Variation::Develop, 2, 1, Part::Line).bars,
            vec![Primer(0)]
        );
        assert!(plan(Variation::Develop, 2, 1, Part::Line).refill.is_empty());
    }

    #[test]
    fn develop_replays_three_quarters_after_a_pattern_parts_primer() {
        let p = plan(Variation::Develop, 2, 4, Part::Pattern);
        assert_eq!(p.bars, vec![Primer(0), Primer(1), Primer(0), Model]);
        assert_eq!(p.refill, vec![2]);
        assert_eq!(
            plan(Variation::Develop, 2, 8, Part::Pattern).refill,
            vec![3, 5]
        );
        // A chord part's replayed bars come round unchanged but for the last of every four.
        let chords = plan(Variation::Develop, 2, 4, Part::Chords);
        assert_eq!(chords.bars, vec![Primer(0), Primer(1), Primer(0), Model]);
        assert!(chords.refill.is_empty());
        assert_eq!(plan(Variation::Develop, 2, 8, Part::Chords).refill, vec![3]);
    }

    #[test]
    fn loop_replays_every_bar_and_refills_each_fourth() {
        let p = plan(Variation::Loop, 2, 8, Part::Line);
        assert!(p.bars.iter().all(|b| matches!(b, Primer(_))));
        assert_eq!(p.refill, vec![3, 7]);
        assert_eq!(plan(Variation::Loop, 3, 2, Part::Line).refill, vec![1]);
    }

    #[test]
    fn a_bar_moves_to_the_shift_that_stays_most_in_key() {
        use crate::music::key::Mode;
        let note = |pitch| Note {
            start: 0.0,
            duration: 1.0,
            pitch,
            velocity: 80,
        };
        let c_major = Some(Key {
            tonic: 0,
            mode: Mode::Major,
        });
        // C E G down a fourth is G B D, all in C major.
        let triad = [note(60), note(64), note(67)];
        assert_eq!(harmonic_shift(&triad, c_major, |_| true), Some(-5));
        // B D G down a fourth is F# A D, with F# out of key; up a fourth (E G C) is all in.
        let b_d_g = [note(59), note(62), note(67)];
        assert_eq!(harmonic_shift(&b_d_g, c_major, |_| true), Some(5));
        // Refused that, down a fifth (E G C again) wins over up a fifth (F# A D).
        assert_eq!(harmonic_shift(&b_d_g, c_major, |s| s != 5), Some(-7));
        // A bar whose every move is refused, or off the keyboard, stays where it is.
        assert_eq!(harmonic_shift(&triad, c_major, |_| false), None);
        assert_eq!(harmonic_shift(&[note(125)], c_major, |s| s < 0), Some(-5));
        assert_eq!(harmonic_shift(&[note(125)], None, |s| s > 2), None);
        assert_eq!(harmonic_shift(&[note(2)], None, |_| true), Some(5));
        assert_eq!(harmonic_shift(&[note(2)], c_major, |_| true), Some(5));
    }

    #[test]
    fn about_one_develop_answer_to_a_line_in_four_departs() {
        let departed = (0..4000u64)
            .filter(|&seed| departs(Variation::Develop, Part::Line, seed, 12))
            .count();
        assert!((800..1200).contains(&departed), "{departed} of 4000");
        // Seed 0 departs for some primers, not all.
        let primers = (1..200)
            .filter(|&n| departs(Variation::Develop, Part::Line, 0, n))
            .count();
        assert!((20..80).contains(&primers), "{primers} of 199");
        assert!((0..100).all(|seed| !departs(Variation::Develop, Part::Pattern, seed, 12)));
        assert!((0..100).all(|seed| !departs(Variation::Loop, Part::Line, seed, 12)));
    }

    #[test]
    fn new_and_an_empty_primer_leave_every_bar_to_the_model() {
        assert_eq!(plan(Variation::New, 2, 4, Part::Pattern).replayed(), 0);
        assert_eq!(plan(Variation::Loop, 0, 4, Part::Pattern).replayed(), 0);
        assert_eq!(Variation::parse("Develop"), Some(Variation::Develop));
        assert_eq!(Variation::parse("x"), None);
    }
}
