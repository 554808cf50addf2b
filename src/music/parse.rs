//! Reading keys and note names the way musicians write them.

use super::{Key, Mode};

const LETTERS: [(char, u8); 7] = [
    ('C', 0),
    ('D', 2),
    ('E', 4),
    ('F', 5),
    ('G', 7),
    ('A', 9),
    ('B', 11),
];

/// Parses "C", "C major", "Am", "F# minor", "Bb", "eb minor".
pub fn parse_key(text: &str) -> Option<Key> {
    let t = text.trim();
    let mut chars = t.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let mut tonic = LETTERS.iter().find(|(l, _)| *l == letter)?.1 as i32;
    let rest: String = chars.collect();
    let mut rest = rest.as_str();
    if let Some(r) = rest.strip_prefix('#') {
        tonic += 1;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('b') {
        tonic -= 1;
        rest = r;
    }
    let mode = match rest.trim().to_ascii_lowercase().as_str() {
        "" | "maj" | "major" => Mode::Major,
        "m" | "min" | "minor" => Mode::Minor,
        _ => return None,
    };
    Some(Key {
        tonic: tonic.rem_euclid(12) as u8,
        mode,
    })
}

/// A MIDI note number's name with octave, as [`parse_pitch`] reads it (60 = "C4", 66 = "F#4").
pub fn pitch_name(pitch: u8) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
    ];
    format!("{}{}", NAMES[(pitch % 12) as usize], pitch as i32 / 12 - 1)
}

/// Parses a MIDI note number ("60") or a note name with octave ("C4" = 60, "F#3", "Bb5").
pub fn parse_pitch(text: &str) -> Option<u8> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u8>() {
        return (n <= 127).then_some(n);
    }
    let mut chars = t.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let mut pc = LETTERS.iter().find(|(l, _)| *l == letter)?.1 as i32;
    let rest: String = chars.collect();
    let mut rest = rest.as_str();
    if let Some(r) = rest.strip_prefix('#') {
        pc += 1;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('b') {
        pc -= 1;
        rest = r;
    }
    let octave: i32 = rest.parse().ok()?;
    let n = (octave + 1) * 12 + pc;
    (0..=127).contains(&n).then_some(n as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pitch_name_reads_back_as_its_pitch() {
        for p in 0..=127u8 {
            assert_eq!(parse_pitch(&pitch_name(p)), Some(p), "{}", pitch_name(p));
        }
        assert_eq!(pitch_name(60), "C4");
        assert_eq!(pitch_name(70), "Bb4");
    }

    #[test]
    fn keys_parse_as_musicians_write_them() {
        assert_eq!(
            parse_key("Am"),
            Some(Key {
                tonic: 9,
                mode: Mode::Minor
            })
        );
        assert_eq!(
            parse_key("F# minor"),
            Some(Key {
                tonic: 6,
                mode: Mode::Minor
            })
        );
        assert_eq!(
            parse_key("Bb"),
            Some(Key {
                tonic: 10,
                mode: Mode::Major
            })
        );
        assert_eq!(parse_key("H"), None);
    }

    #[test]
    fn pitches_parse_as_numbers_or_names() {
        assert_eq!(parse_pitch("C4"), Some(60));
        assert_eq!(parse_pitch("A0"), Some(21));
        assert_eq!(parse_pitch("Bb3"), Some(58));
        assert_eq!(parse_pitch("128"), None);
    }
}
