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

/// A value inside each polyphony bin, what an explicit bin asks generation to steer toward.
pub const POLYPHONY_CENTRES: [f64; POLYPHONY_BINS] = [1.0, 1.5, 2.0, 3.0, 4.0];
/// A pitch inside each register bin, likewise.
pub const REGISTER_CENTRES: [f64; REGISTER_BINS] = [38.0, 47.0, 54.0, 60.0, 67.0, 74.0, 82.0];
/// Generation keeps pitches within this many semitones of the register it steers toward
/// (and within the primer's own range when it is like the primer's): a bass line told "low"
/// stays below C3, a lead stays in its octave.
pub const REGISTER_REACH: f64 = 9.0;
/// Reach below and above a primer's median (its own range, a little wider, counts too). Not
/// tight: a narrow window crams chords into clusters.
pub const PRIMER_REGISTER_REACH: (f64, f64) = (12.0, 12.0);
/// Semitones beyond the primer's lowest and highest note that stay open.
pub const PRIMER_RANGE_MARGIN: u8 = 4;
/// A value inside each density bin (notes per beat), what an explicit bin steers toward.
pub const DENSITY_CENTRES: [f64; DENSITY_BINS] = [0.35, 0.75, 1.5, 2.5, 4.0, 6.0];
/// Onsets per bar generation allows, as factors of the rate it steers toward (the in-kind
/// density check allows ×0.5–×2 in notes).
pub const ONSET_RATE_FACTORS: (f64, f64) = (0.6, 1.5);
/// Notes per onset generation allows, as factors of the polyphony it steers toward.
pub const CHORD_SIZE_FACTORS: (f64, f64) = (0.9, 1.25);

/// What generation steers toward beyond what the prefix tells the model: the model answers
/// mostly in kind when told, but a chord it has started thin or a bass line it has let drift
/// up is what a producer hears as "not what I played". `None`: not steered.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TextureTargets {
    /// Fewest and most notes starting together.
    pub chord_size: Option<(usize, usize)>,
    /// Fewest and most onsets in a bar.
    pub onsets_per_bar: Option<(usize, usize)>,
    /// Lowest and highest pitch (inclusive).
    pub pitches: Option<(u8, u8)>,
    /// The median pitch to pull toward: a chosen register's centre (chords are built upward
    /// from their lowest note, so without a pull the median climbs out of the bin). Not the
    /// primer's own median: within the primer's range real parts move their median freely
    /// (by 1–5 semitones in half of the development set's real continuations), and the pull
    /// held answers to the primer's (register offset overlap 0.78 with the pull, 0.84
    /// without, `continuo eval --continuations data/continuations --seeds 4`).
    pub register_centre: Option<f64>,
}

impl TextureRequest {
    /// What generation steers toward for a primer in bars of `beats_per_bar`: chord sizes
    /// around the primer's (or the chosen bin's) notes per onset, pitches around its median
    /// (or the chosen register). Density is left to the model and the prefix.
    pub fn targets_for(&self, primer: &[Note], beats_per_bar: f64) -> TextureTargets {
        let own = Texture::of_notes(primer, beats_per_bar);
        let polyphony = match self.polyphony {
            Told::LikePrimer => own.map(|t| t.polyphony),
            Told::Bin(b) => POLYPHONY_CENTRES.get(b as usize).copied(),
            Told::Any => None,
        };
        let chord_size = polyphony.map(|p| {
            let lo = (p * CHORD_SIZE_FACTORS.0).round().max(1.0) as usize;
            let hi = (p * CHORD_SIZE_FACTORS.1).round().max(1.0) as usize;
            (lo, hi.max(lo))
        });
        let density = match self.density {
            Told::LikePrimer => own.map(|t| t.density),
            Told::Bin(b) => DENSITY_CENTRES.get(b as usize).copied(),
            Told::Any => None,
        };
        // Notes per beat over notes per onset: onsets per beat.
        let onsets_per_bar = density.map(|d| {
            let per_onset = polyphony
                .or(own.map(|t| t.polyphony))
                .unwrap_or(1.0)
                .max(1.0);
            let rate = d / per_onset * beats_per_bar.max(0.5);
            let lo = (rate * ONSET_RATE_FACTORS.0).floor() as usize;
            let hi = ((rate * ONSET_RATE_FACTORS.1).ceil() as usize).max(1);
            (lo, hi.max(lo))
        });
        let around = |centre: f64, (below, above): (f64, f64)| {
            let lo = (centre - below).ceil().clamp(0.0, 127.0) as u8;
            let hi = (centre + above).floor().clamp(0.0, 127.0) as u8;
            (lo, hi)
        };
        let pitches = match self.register {
            Told::LikePrimer => own.map(|t| {
                let (lo, hi) = around(t.register, PRIMER_REGISTER_REACH);
                let lowest = primer.iter().map(|n| n.pitch).min().unwrap_or(lo);
                let highest = primer.iter().map(|n| n.pitch).max().unwrap_or(hi);
                (
                    lo.min(lowest.saturating_sub(PRIMER_RANGE_MARGIN)),
                    hi.max(highest.saturating_add(PRIMER_RANGE_MARGIN).min(127)),
                )
            }),
            Told::Bin(b) => REGISTER_CENTRES
                .get(b as usize)
                .map(|&c| around(c, (REGISTER_REACH, REGISTER_REACH))),
            Told::Any => None,
        };
        let register_centre = match self.register {
            Told::Bin(b) => REGISTER_CENTRES.get(b as usize).copied(),
            Told::LikePrimer | Told::Any => None,
        };
        TextureTargets {
            chord_size,
            onsets_per_bar,
            pitches,
            register_centre,
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
    const POLYPHONY_VALUES: [f64; POLYPHONY_BINS] = POLYPHONY_CENTRES;
    const DENSITY_VALUES: [f64; DENSITY_BINS] = DENSITY_CENTRES;
    const REGISTER_VALUES: [f64; REGISTER_BINS] = REGISTER_CENTRES;

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

    #[test]
    fn targets_follow_the_primer_or_the_chosen_bin() {
        let triads: Vec<Note> = (0..8)
            .flat_map(|b| [n(b as f64, 60), n(b as f64, 64), n(b as f64, 67)])
            .collect();
        let like = TextureRequest::default().targets_for(&triads, 4.0);
        assert_eq!(like.chord_size, Some((3, 4)));
        // Median 64 ± 12, which holds the primer's own range (60–67) four semitones wider.
        assert_eq!(like.pitches, Some((52, 76)));
        assert_eq!(like.register_centre, None);
        // A triad a beat: 4 onsets a bar, steered to 2–6.
        assert_eq!(like.onsets_per_bar, Some((2, 6)));
        let bass = TextureRequest {
            polyphony: Told::Bin(0),
            register: Told::Bin(0),
            ..Default::default()
        }
        .targets_for(&triads, 4.0);
        assert_eq!(bass.chord_size, Some((1, 1)));
        let (_, top) = bass.pitches.unwrap();
        assert!(top < 48, "a low register stays below C3, got {top}");
        assert_eq!(
            TextureRequest::ANY.targets_for(&triads, 4.0),
            TextureTargets::default()
        );
        assert_eq!(
            TextureRequest::default().targets_for(&[], 4.0),
            TextureTargets::default()
        );
    }
}
