//! When to ask for a continuation: silence after playing (auto), a button or automatable
//! parameter (manual), or a dedicated key (key).

use nice_plug::prelude::Enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum TriggerMode {
    /// All keys released and some beats of silence.
    #[name = "Auto (silence)"]
    Auto,
    /// The editor's Generate button or the Generate parameter.
    #[name = "Manual"]
    Manual,
    /// A trigger note, which is not passed through.
    #[name = "Trigger key"]
    Key,
}

/// Edge detection for the automatable Generate parameter and the silence rule.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trigger {
    generate_was_on: bool,
}

impl Trigger {
    /// True once per off→on change of the Generate parameter.
    pub fn generate_pressed(&mut self, generate_on: bool) -> bool {
        let pressed = generate_on && !self.generate_was_on;
        self.generate_was_on = generate_on;
        pressed
    }

    /// The auto rule: something was played, nothing is held, and `silence` beats passed.
    pub fn silence_elapsed(has_take: bool, held: u32, silence: f64, needed: f64) -> bool {
        has_take && held == 0 && silence >= needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generate_parameter_fires_once_per_press() {
        let mut t = Trigger::default();
        assert!(!t.generate_pressed(false));
        assert!(t.generate_pressed(true));
        assert!(!t.generate_pressed(true));
        assert!(!t.generate_pressed(false));
        assert!(t.generate_pressed(true));
    }

    #[test]
    fn silence_fires_only_after_release_and_enough_beats() {
        assert!(!Trigger::silence_elapsed(true, 1, 4.0, 1.0));
        assert!(!Trigger::silence_elapsed(true, 0, 0.5, 1.0));
        assert!(!Trigger::silence_elapsed(false, 0, 4.0, 1.0));
        assert!(Trigger::silence_elapsed(true, 0, 1.0, 1.0));
    }
}
