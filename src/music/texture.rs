//! Texture: how many notes start together (polyphony), how many per beat (density) and how
//! high (register). Measured here, and only here, for three users that must agree: the
//! training windows' attribute prefix, the primer's prefix at generation, and the in-kind
//! checks of `continuo eval`.

use super::Note;

/// Onsets are compared on this grid (ticks per beat), the vocabulary's own.
pub const ONSET_GRID: f64 = 12.0;

/// Upper edges of the polyphony bins (mean notes per onset): a line, a line with some
/// doubled notes, dyads, triads, four or more.
pub const POLYPHONY_EDGES: [f64; 4] = [1.25, 1.75, 2.5, 3.5];
/// Upper edges of the density bins (notes per beat): half notes and slower, quarters, eighths,
/// busy, sixteenths, faster.
pub const DENSITY_EDGES: [f64; 5] = [0.5, 1.0, 2.0, 3.0, 5.0];
/// Upper edges of the register bins (median MIDI pitch), a fifth apart: low (below G2: a bass
/// line an octave under the chords), bass, tenor, middle, upper, high, top.
pub const REGISTER_EDGES: [f64; 6] = [43.0, 50.0, 57.0, 64.0, 71.0, 78.0];

pub const POLYPHONY_BINS: usize = POLYPHONY_EDGES.len() + 1;
pub const DENSITY_BINS: usize = DENSITY_EDGES.len() + 1;
pub const REGISTER_BINS: usize = REGISTER_EDGES.len() + 1;

/// Names of the bins, for the editor and the CLI.
pub const POLYPHONY_NAMES: [&str; POLYPHONY_BINS] = ["1", "1-2", "2", "3", "4+"];
pub const DENSITY_NAMES: [&str; DENSITY_BINS] =
    ["sparse", "quarters", "eighths", "busy", "16ths", "fast"];
pub const REGISTER_NAMES: [&str; REGISTER_BINS] =
    ["low", "bass", "tenor", "middle", "upper", "high", "top"];

/// The measured texture of some notes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Texture {
    /// Mean notes per onset.
    pub polyphony: f64,
    /// Notes per beat over the bars the notes touch.
    pub density: f64,
    /// Median pitch.
    pub register: f64,
}

/// The texture's bins; `None` is "any" (the model is told nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextureBins {
    pub polyphony: Option<u8>,
    pub density: Option<u8>,
    pub register: Option<u8>,
}

impl Texture {
    /// The texture of `notes` in bars of `beats_per_bar`; `None` without notes. Density
    /// counts over the whole bars the notes touch, so a two-bar primer and a window of a
    /// piece are measured alike.
    pub fn of_notes(notes: &[Note], beats_per_bar: f64) -> Option<Texture> {
        if notes.is_empty() {
            return None;
        }
        let bar = beats_per_bar.max(0.5);
        let first = notes.iter().map(|n| n.start).fold(f64::INFINITY, f64::min);
        let last = notes
            .iter()
            .map(|n| n.start)
            .fold(f64::NEG_INFINITY, f64::max);
        let bars = ((last / bar).floor() - (first / bar).floor() + 1.0).max(1.0);
        Some(Texture {
            polyphony: notes_per_onset(notes),
            density: notes.len() as f64 / (bars * bar),
            register: median_pitch(notes),
        })
    }

    pub fn bins(&self) -> TextureBins {
        TextureBins {
            polyphony: Some(bin(self.polyphony, &POLYPHONY_EDGES)),
            density: Some(bin(self.density, &DENSITY_EDGES)),
            register: Some(bin(self.register, &REGISTER_EDGES)),
        }
    }
}

/// Where a continuation's onsets may fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rhythm {
    /// Anywhere the grammar allows.
    #[default]
    Free,
    /// Only on positions within the bar where the primer has an onset ("preserve rhythm",
    /// for riffs and stabs).
    LikePrimer,
}

/// What the user asks of one texture attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Told {
    /// The primer's own bin (the model is told "any" when the primer has no notes).
    #[default]
    LikePrimer,
    /// This bin.
    Bin(u8),
    /// Tell the model nothing.
    Any,
}

impl Told {
    /// Reads "primer", "any", a bin's name from `names` or its index.
    pub fn parse(text: &str, names: &[&str]) -> Option<Told> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "primer" | "like-primer" | "like primer" => Some(Told::LikePrimer),
            "any" => Some(Told::Any),
            _ => names
                .iter()
                .position(|n| *n == t)
                .or_else(|| t.parse::<usize>().ok().filter(|&i| i < names.len()))
                .map(|i| Told::Bin(i as u8)),
        }
    }
}

/// What the prefix tells the model about texture: per attribute, the primer's, a chosen
/// bin, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextureRequest {
    pub polyphony: Told,
    pub density: Told,
    pub register: Told,
}

impl TextureRequest {
    /// Every attribute "any".
    pub const ANY: TextureRequest = TextureRequest {
        polyphony: Told::Any,
        density: Told::Any,
        register: Told::Any,
    };

    /// The bins to tell the model for a primer in bars of `beats_per_bar`.
    pub fn bins_for(&self, primer: &[Note], beats_per_bar: f64) -> TextureBins {
        let own = Texture::of_notes(primer, beats_per_bar)
            .map(|t| t.bins())
            .unwrap_or_default();
        let pick = |told: Told, own: Option<u8>| match told {
            Told::LikePrimer => own,
            Told::Bin(b) => Some(b),
            Told::Any => None,
        };
        TextureBins {
            polyphony: pick(self.polyphony, own.polyphony),
            density: pick(self.density, own.density),
            register: pick(self.register, own.register),
        }
    }
}

/// Index of the bin `x` falls in, given the bins' upper edges.
pub fn bin(x: f64, edges: &[f64]) -> u8 {
    edges.iter().take_while(|&&e| x >= e).count() as u8
}

/// Mean number of notes starting at each distinct onset of the 12-per-beat grid.
pub fn notes_per_onset(notes: &[Note]) -> f64 {
    let mut onsets: Vec<i64> = notes.iter().map(onset_tick).collect();
    onsets.sort_unstable();
    onsets.dedup();
    notes.len() as f64 / onsets.len().max(1) as f64
}

/// A note's onset on the 12-per-beat grid.
pub fn onset_tick(n: &Note) -> i64 {
    (n.start * ONSET_GRID).round() as i64
}

/// Median MIDI pitch (the mean of the middle two for an even count); 0 without notes.
pub fn median_pitch(notes: &[Note]) -> f64 {
    let mut p: Vec<u8> = notes.iter().map(|n| n.pitch).collect();
    if p.is_empty() {
        return 0.0;
    }
    p.sort_unstable();
    let m = p.len() / 2;
    if p.len() % 2 == 1 {
        p[m] as f64
    } else {
        (p[m - 1] as f64 + p[m] as f64) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value inside each bin.
    const POLYPHONY_VALUES: [f64; POLYPHONY_BINS] = [1.0, 1.5, 2.0, 3.0, 4.0];
    const DENSITY_VALUES: [f64; DENSITY_BINS] = [0.35, 0.75, 1.5, 2.5, 4.0, 6.0];
    const REGISTER_VALUES: [f64; REGISTER_BINS] = [38.0, 47.0, 54.0, 60.0, 67.0, 74.0, 82.0];

    fn n(start: f64, pitch: u8) -> Note {
        Note {
            start,
            duration: 0.5,
            pitch,
            velocity: 80,
        }
    }

    #[test]
    fn a_triad_a_beat_is_three_notes_per_onset_and_three_per_beat() {
        let notes: Vec<Note> = (0..8)
            .flat_map(|b| [n(b as f64, 60), n(b as f64, 64), n(b as f64, 67)])
            .collect();
        let t = Texture::of_notes(&notes, 4.0).unwrap();
        assert_eq!(t.polyphony, 3.0);
        assert_eq!(t.density, 3.0);
        assert_eq!(t.register, 64.0);
        assert_eq!(t.bins().polyphony, Some(3));
        assert_eq!(t.bins().register, Some(4));
    }

    #[test]
    fn density_counts_the_whole_bars_touched() {
        // Two notes, on beat 1 of bar 1 and beat 1 of bar 2: 2 notes over 8 beats.
        let t = Texture::of_notes(&[n(0.0, 36), n(4.0, 38)], 4.0).unwrap();
        assert_eq!(t.density, 0.25);
        assert_eq!(t.bins().density, Some(0));
        assert_eq!(t.bins().register, Some(0));
    }

    #[test]
    fn bins_are_closed_below() {
        assert_eq!(bin(1.0, &POLYPHONY_EDGES), 0);
        assert_eq!(bin(1.25, &POLYPHONY_EDGES), 1);
        assert_eq!(bin(9.0, &POLYPHONY_EDGES), 4);
        for (i, v) in REGISTER_VALUES.iter().enumerate() {
            assert_eq!(bin(*v, &REGISTER_EDGES) as usize, i);
        }
        for (i, v) in DENSITY_VALUES.iter().enumerate() {
            assert_eq!(bin(*v, &DENSITY_EDGES) as usize, i);
        }
        for (i, v) in POLYPHONY_VALUES.iter().enumerate() {
            assert_eq!(bin(*v, &POLYPHONY_EDGES) as usize, i);
        }
    }
}
