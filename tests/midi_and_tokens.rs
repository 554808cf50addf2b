//! MIDI files and the token encoding, on every real fixture file.

mod common;

use continuo::midi_file::{midi_bytes, parse_midi, read_midi, TrackToWrite};
use continuo::music::phrase::without_overlaps;
use continuo::music::{Note, Phrase};
use continuo::tokens::{quantize, Grammar, Vocab};
use proptest::prelude::*;

#[test]
fn fixtures_cover_the_tick_resolutions_seen_in_real_files() {
    let mut resolutions: Vec<u16> = common::fixture_files()
        .iter()
        .map(|p| read_midi(p).unwrap().ticks_per_beat)
        .collect();
    resolutions.sort();
    resolutions.dedup();
    for tpb in [480, 10080] {
        assert!(
            resolutions.contains(&tpb),
            "no fixture at {tpb} ticks per beat: {resolutions:?}"
        );
    }
    assert!(resolutions.len() >= 4, "{resolutions:?}");
}

#[test]
fn every_fixture_survives_a_write_and_read_round_trip() {
    for path in common::fixture_files() {
        let song = read_midi(&path).unwrap();
        let bytes = midi_bytes(
            &[
                TrackToWrite {
                    name: "melodic",
                    channel: 0,
                    notes: &song.melodic.notes,
                },
                TrackToWrite {
                    name: "drums",
                    channel: 9,
                    notes: &song.drums,
                },
            ],
            song.melodic.beats_per_bar,
            120.0,
        );
        let back = parse_midi(&bytes, &path).unwrap();
        // Voices merged into one track play same-pitch overlaps as one channel does.
        let expected = Phrase::new(
            without_overlaps(&song.melodic.notes),
            song.melodic.beats_per_bar,
        );
        assert_eq!(
            back.melodic.notes.len(),
            expected.notes.len(),
            "{}",
            path.display()
        );
        assert_eq!(back.drums.len(), song.drums.len(), "{}", path.display());
        assert_eq!(
            back.melodic.beats_per_bar,
            song.melodic.beats_per_bar,
            "{}",
            path.display()
        );
        // Written at 480 ticks per beat: times agree to half a tick.
        for (a, b) in back.melodic.notes.iter().zip(&expected.notes) {
            assert_eq!(
                (a.pitch, a.velocity),
                (b.pitch, b.velocity),
                "{}",
                path.display()
            );
            assert!(
                (a.start - b.start).abs() <= 0.5 / 480.0 + 1e-9,
                "{}: {a:?} vs {b:?}",
                path.display()
            );
            assert!(
                (a.duration - b.duration).abs() <= 1.0 / 480.0 + 1e-9,
                "{}: {a:?} vs {b:?}",
                path.display()
            );
        }
    }
}

#[test]
fn voices_in_separate_tracks_on_one_channel_are_all_kept() {
    // music21 writes each chorale voice as its own track, all on channel 1.
    let song = read_midi(&common::fixtures().join("bach_bwv1.6.mid")).unwrap();
    let starts_at_zero = song.melodic.notes.iter().filter(|n| n.start == 0.0).count();
    assert!(
        starts_at_zero >= 4,
        "expected four voices at the downbeat, got {starts_at_zero}"
    );
}

#[test]
fn drum_tracks_are_kept_apart_from_melodic_notes() {
    let with_drums = common::fixture_files()
        .iter()
        .map(|p| read_midi(p).unwrap())
        .filter(|s| !s.drums.is_empty())
        .count();
    assert!(with_drums >= 1, "the Freedoom fixtures have drum tracks");
}

#[test]
fn decode_of_encode_is_the_quantized_phrase_for_every_fixture() {
    let vocab = Vocab;
    for path in common::fixture_files() {
        let phrase = read_midi(&path).unwrap().melodic;
        let ids = vocab.encode(&phrase, true);
        assert!(
            Grammar::accepts(&ids),
            "{} encodes to a malformed sequence",
            path.display()
        );
        assert_eq!(vocab.decode(&ids), quantize(&phrase), "{}", path.display());
    }
}

fn arb_note() -> impl Strategy<Value = Note> {
    (0u32..2000, 1u32..400, 0u8..=127, 1u8..=127).prop_map(|(s, d, pitch, velocity)| Note {
        start: s as f64 / 48.0,
        duration: d as f64 / 48.0,
        pitch,
        velocity,
    })
}

proptest! {
    #[test]
    fn decode_of_encode_is_quantize_for_random_phrases(
        notes in prop::collection::vec(arb_note(), 0..60),
        eighths in 2u32..=16,
    ) {
        let phrase = Phrase::new(notes, eighths as f64 / 2.0);
        let ids = Vocab.encode(&phrase, true);
        prop_assert!(Grammar::accepts(&ids));
        prop_assert_eq!(Vocab.decode(&ids), quantize(&phrase));
        // Quantizing twice changes nothing.
        prop_assert_eq!(quantize(&quantize(&phrase)), quantize(&phrase));
    }
}
