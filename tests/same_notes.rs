//! The plugin's default answer is the same for the same seed whatever the decoding does to
//! go faster (one prefill shared by the candidates, rows decoded together): the shipped
//! model answers three two-bar primers with the plugin's settings (Develop, 4 candidates,
//! 8 bars, seed 1), and the notes are those in `tests/data/answers-seed1.txt`. The decoding
//! that shares work between rows was checked against the file written by the build that
//! decoded every candidate's prompt on its own; a change of speed must leave the file as it is.
//! Comparing the candidates halfway (`model::candidates`) left it as it is too: in each of
//! these answers the candidate ahead at half is the one that was ahead at the end.
//!
//! After retraining the shipped model or changing how an answer is planned
//! (`music::variation`, `model::variation`), rewrite the file with
//! `CONTINUO_WRITE_ANSWERS=1 cargo test --release --test same_notes`.

use continuo::audio::messages::GenerationSettings;
use continuo::device::best_device;
use continuo::midi_file::read_midi;
use continuo::model::answer::generate;
use continuo::model::load_model;
use continuo::music::variation::Variation;
use continuo::worker::generate_options;
use std::fmt::Write;
use std::path::Path;

const PRIMERS: [&str; 3] = [
    "examples/dev-primers/chords--pop-I-V-vi-IV.mid",
    "examples/dev-primers/bass--funk-16ths-E.mid",
    "examples/dev-primers/lead--bebop-Bb.mid",
];
const ANSWERS: &str = "tests/data/answers-seed1.txt";

#[test]
fn the_default_answer_keeps_its_notes_for_a_seed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let device = best_device();
    let loaded = load_model(&root.join("models/default"), &device).expect("the shipped model");
    let mut text = String::new();
    for primer in PRIMERS {
        let phrase = read_midi(&root.join(primer)).expect("primer").melodic;
        let phrase = phrase.slice(0.0, 2.0 * phrase.beats_per_bar);
        let settings = GenerationSettings {
            bars: 8,
            candidates: 4,
            variation: Variation::Develop,
            seed: 1,
            ..GenerationSettings::default()
        };
        let opts = generate_options(&settings, &phrase, loaded.copy_guard.clone());
        let g = generate(&loaded.model, &device, &phrase, &opts).expect("an answer");
        writeln!(text, "{primer}").unwrap();
        for n in &g.variations[0].notes {
            writeln!(
                text,
                "{:.6} {:.6} {} {}",
                n.start, n.duration, n.pitch, n.velocity
            )
            .unwrap();
        }
    }
    if std::env::var_os("CONTINUO_WRITE_ANSWERS").is_some() {
        std::fs::write(root.join(ANSWERS), &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(root.join(ANSWERS)).expect("the recorded answers");
    assert!(
        text == expected,
        "the answers changed:\n{text}\nrecorded:\n{expected}"
    );
}
