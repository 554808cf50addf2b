//! Key detection (Krumhansl–Schmuckler) and scale membership.

use super::Note;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    Major,
    Minor,
}

/// A key: tonic pitch class (0 = C) and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub tonic: u8,
    pub mode: Mode,
}

const NAMES: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];
const MAJOR_STEPS: [u8; 7] = [0, 2, 4, 5, 7, 9, 11];
// Harmonic minor's raised 7th is common in the corpus (chorales, folk), so it counts as in scale.
const MINOR_STEPS: [u8; 8] = [0, 2, 3, 5, 7, 8, 10, 11];

// Krumhansl–Kessler probe-tone profiles.
const MAJOR_PROFILE: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
const MINOR_PROFILE: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

impl Key {
    /// Whether a pitch class belongs to this key's scale.
    pub fn contains(&self, pitch: u8) -> bool {
        let step = (pitch + 12 - self.tonic) % 12;
        match self.mode {
            Mode::Major => MAJOR_STEPS.contains(&step),
            Mode::Minor => MINOR_STEPS.contains(&step),
        }
    }

    /// How strongly `pitch` belongs to this key: its Krumhansl–Kessler probe-tone rating over
    /// the tonic's (1 for the tonic, about 0.35 for chromatic notes). The profile key detection
    /// correlates with, so generation can lean toward the key it was told.
    pub fn profile_weight(&self, pitch: u8) -> f64 {
        let step = ((pitch % 12) + 12 - self.tonic) as usize % 12;
        let profile = match self.mode {
            Mode::Major => &MAJOR_PROFILE,
            Mode::Minor => &MINOR_PROFILE,
        };
        profile[step] / profile[0]
    }

    /// Index 0..24: majors then minors; used by the editor and parameters.
    pub fn index(&self) -> usize {
        self.tonic as usize
            + match self.mode {
                Mode::Major => 0,
                Mode::Minor => 12,
            }
    }

    pub fn from_index(i: usize) -> Key {
        Key {
            tonic: (i % 12) as u8,
            mode: if i < 12 { Mode::Major } else { Mode::Minor },
        }
    }

    pub fn name(&self) -> String {
        let mode = match self.mode {
            Mode::Major => "major",
            Mode::Minor => "minor",
        };
        format!("{} {}", NAMES[self.tonic as usize], mode)
    }
}

/// Duration-weighted pitch-class histogram of some notes.
pub fn pitch_class_histogram(notes: &[Note]) -> [f64; 12] {
    let mut h = [0.0; 12];
    for n in notes {
        h[(n.pitch % 12) as usize] += n.duration.max(0.05);
    }
    h
}

fn correlation(a: &[f64; 12], b: &[f64; 12]) -> f64 {
    let ma = a.iter().sum::<f64>() / 12.0;
    let mb = b.iter().sum::<f64>() / 12.0;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for i in 0..12 {
        num += (a[i] - ma) * (b[i] - mb);
        da += (a[i] - ma).powi(2);
        db += (b[i] - mb).powi(2);
    }
    if da == 0.0 || db == 0.0 {
        0.0
    } else {
        num / (da * db).sqrt()
    }
}

/// The best-correlating of the 24 major/minor keys, or `None` for no notes.
pub fn detect_key(notes: &[Note]) -> Option<Key> {
    if notes.is_empty() {
        return None;
    }
    Some(key_from_histogram(&pitch_class_histogram(notes)))
}

/// The key whose Krumhansl–Kessler profile correlates best with a pitch-class histogram.
pub fn key_from_histogram(h: &[f64; 12]) -> Key {
    let mut best = (f64::NEG_INFINITY, Key::from_index(0));
    for i in 0..24 {
        let key = Key::from_index(i);
        let profile = if key.mode == Mode::Major {
            &MAJOR_PROFILE
        } else {
            &MINOR_PROFILE
        };
        let mut rotated = [0.0; 12];
        for (pc, r) in rotated.iter_mut().enumerate() {
            *r = profile[(pc + 12 - key.tonic as usize) % 12];
        }
        let c = correlation(h, &rotated);
        if c > best.0 {
            best = (c, key);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(pitches: &[u8]) -> Vec<Note> {
        pitches
            .iter()
            .enumerate()
            .map(|(i, &p)| Note {
                start: i as f64,
                duration: 1.0,
                pitch: p,
                velocity: 80,
            })
            .collect()
    }

    #[test]
    fn c_major_scale_is_detected_as_c_major() {
        let k = detect_key(&notes(&[60, 62, 64, 65, 67, 69, 71, 72, 67, 60])).unwrap();
        assert_eq!(
            k,
            Key {
                tonic: 0,
                mode: Mode::Major
            }
        );
    }

    #[test]
    fn a_minor_triad_with_leading_tone_is_a_minor() {
        let k = detect_key(&notes(&[57, 60, 64, 57, 68, 69, 64, 57])).unwrap();
        assert_eq!(
            k,
            Key {
                tonic: 9,
                mode: Mode::Minor
            }
        );
    }

    #[test]
    fn scale_membership_follows_the_tonic() {
        let g = Key {
            tonic: 7,
            mode: Mode::Major,
        };
        assert!(g.contains(66)); // F#
        assert!(!g.contains(65)); // F
        assert_eq!(g.name(), "G major");
    }
}
