//! How much of an answer replays the primer: the *Variation* control, and the plan of which
//! answer bars replay which primer bar and which the model writes.
//!
//! Real parts continue a two-bar primer by replaying its bars in most of the next four (62 %
//! of bars in issue 31's real continuations: bass 80 %, leads 38 %), varied, transposed with
//! the harmony, or not at all; the model alone replays 15 %. The plan puts the primer's bars
//! where a real part would most surely replay them (the bars right after it), the model's own
//! bars after them, and asks the model to vary one replayed bar hearing both sides.

use serde::{Deserialize, Serialize};

/// How an answer treats the primer's bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Variation {
    /// The primer's bars again, the last bar of every four written anew by the model.
    Loop,
    /// The primer's bars for the first quarter of the answer, three quarters after a primer
    /// built as a pattern (a loop, chords, one bar; the last replayed bar written anew by the
    /// model hearing both sides), then the model's continuation of all that.
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

/// Notes per onset from which a primer is a chord part or a riff: a pattern part.
pub const PATTERN_NOTES_PER_ONSET: f64 = 1.5;

/// Most primer bars an answer loops: a longer primer loops its last four.
pub const MAX_LOOP_BARS: usize = 4;

/// The plan of an answer of `bars` bars after a primer whose loop is `loop_bars` bars
/// (1..=[`MAX_LOOP_BARS`]; 0 means an empty primer, which only the model can answer).
/// `pattern_part`: the primer is one bar, or its last bar replays an earlier one
/// ([`super::coherence::repeats_itself`]), or it plays chords ([`PATTERN_NOTES_PER_ONSET`]);
/// real parts of these kinds go on replaying.
pub fn plan(variation: Variation, loop_bars: usize, bars: usize, pattern_part: bool) -> Plan {
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
            // bars replays its first bar), three quarters after a pattern part's (module doc).
            let replayed = if pattern_part {
                (3 * bars).div_ceil(4)
            } else {
                bars.div_ceil(4)
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
                // The last replayed bar, and the last of every four before it.
                refill: (0..replayed)
                    .filter(|&j| replayed >= 2 && (j % 4 == 3 || j + 1 == replayed))
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BarSource::*;

    #[test]
    fn develop_replays_a_lines_first_bar_and_lets_the_model_go_on() {
        let p = plan(Variation::Develop, 2, 4, false);
        assert_eq!(p.bars, vec![Primer(0), Model, Model, Model]);
        assert!(p.refill.is_empty());
        assert_eq!(p.replayed(), 1);
        let eight = plan(Variation::Develop, 2, 8, false);
        assert_eq!(eight.bars[..3], [Primer(0), Primer(1), Model]);
        assert_eq!(eight.refill, vec![1]);
        assert_eq!(plan(Variation::Develop, 2, 1, false).bars, vec![Primer(0)]);
        assert!(plan(Variation::Develop, 2, 1, false).refill.is_empty());
    }

    #[test]
    fn develop_replays_three_quarters_after_a_pattern_parts_primer() {
        let p = plan(Variation::Develop, 2, 4, true);
        assert_eq!(p.bars, vec![Primer(0), Primer(1), Primer(0), Model]);
        assert_eq!(p.refill, vec![2]);
        assert_eq!(plan(Variation::Develop, 2, 8, true).refill, vec![3, 5]);
    }

    #[test]
    fn loop_replays_every_bar_and_refills_each_fourth() {
        let p = plan(Variation::Loop, 2, 8, false);
        assert!(p.bars.iter().all(|b| matches!(b, Primer(_))));
        assert_eq!(p.refill, vec![3, 7]);
        assert_eq!(plan(Variation::Loop, 3, 2, false).refill, vec![1]);
    }

    #[test]
    fn new_and_an_empty_primer_leave_every_bar_to_the_model() {
        assert_eq!(plan(Variation::New, 2, 4, true).replayed(), 0);
        assert_eq!(plan(Variation::Loop, 0, 4, true).replayed(), 0);
        assert_eq!(Variation::parse("Develop"), Some(Variation::Develop));
        assert_eq!(Variation::parse("x"), None);
    }
}
