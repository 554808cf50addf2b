//! The shipped model: its card matches this build's vocabulary, and it continues a bundled
//! primer the same way every time.

use candle_core::Device;
use continuo::midi_file::read_midi;
use continuo::model::files::{read_card, VocabStamp};
use continuo::model::{generate, load_model, GenerateOptions};
use std::path::Path;

fn default_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default"))
}

#[test]
fn the_default_model_card_matches_this_vocabulary_and_records_its_training() {
    let card = read_card(default_dir()).unwrap();
    assert_eq!(card.vocab, VocabStamp::current());
    assert!(card.architecture.parameter_count() > 100_000);
    let training = &card.training;
    assert!(
        training["command"]
            .as_str()
            .is_some_and(|c| c.contains("continuo") && c.contains("train")),
        "{training}"
    );
    assert!(training["train_files"].as_u64().unwrap_or(0) > 0);
    assert!(
        card.metrics["final_val_loss"].as_f64().unwrap()
            < card.metrics["initial_val_loss"].as_f64().unwrap()
    );
}

#[test]
fn the_default_model_continues_a_primer_for_two_bars_deterministically() {
    let m = load_model(default_dir(), &Device::Cpu).unwrap();
    let primer = read_midi(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/primers/a-minor-riff.mid"
    )))
    .unwrap()
    .melodic;
    let opts = GenerateOptions {
        bars: 2,
        seed: 3,
        temperature: 0.9,
        ..Default::default()
    };
    let a = generate(&m.model, &m.device, &primer, &opts).unwrap();
    let b = generate(&m.model, &m.device, &primer, &opts).unwrap();
    assert_eq!(a.variations, b.variations);
    let notes = &a.variations[0].notes;
    assert!(!notes.is_empty());
    assert!(notes
        .iter()
        .all(|n| n.start >= 0.0 && n.start < 2.0 * a.variations[0].beats_per_bar));
}
