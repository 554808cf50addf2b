//! The shipped model: its card matches this build's vocabulary, and it continues a bundled
//! primer the same way every time.

use candle_core::Device;
use continuo::midi_file::read_midi;
use continuo::model::files::{read_card, VocabStamp};
use continuo::model::{generate, load_model, GenerateOptions};
use continuo::tokens::{InfillLayout, Vocab};
use std::path::Path;

fn default_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default"))
}

fn bundled_primer(name: &str) -> continuo::music::Phrase {
    let path = default_dir().join(format!("../../examples/primers/{name}.mid"));
    read_midi(&path).unwrap().melodic
}

#[test]
fn the_default_model_card_matches_this_vocabulary_and_records_its_training() {
    let card = read_card(default_dir()).unwrap();
    assert_eq!(card.vocab, VocabStamp::current());
    assert!(card.vocab.is_readable(card.architecture.vocab_size()));
    // It fills a gap in this vocabulary's order, the bars after first.
    assert_eq!(
        Vocab.infill_layout(card.architecture.vocab_size()),
        Some(InfillLayout::current())
    );
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
    let primer = bundled_primer("a-minor-riff");
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

#[test]
fn the_default_model_stays_in_the_key_it_is_told() {
    use continuo::model::KeyPrefix;
    use continuo::music::{Key, Phrase};
    let m = load_model(default_dir(), &Device::Cpu).unwrap();
    // No primer and no Key lock mask: the key prefix is all the model is told, and pitches are
    // masked by the grammar alone.
    for key in ["Eb major", "E minor"] {
        let told = (0..24)
            .map(Key::from_index)
            .find(|k| k.name() == key)
            .unwrap();
        let opts = GenerateOptions {
            bars: 4,
            seed: 11,
            variations: 4,
            temperature: 0.9,
            key_prefix: KeyPrefix::Told(told),
            ..Default::default()
        };
        let g = generate(&m.model, &m.device, &Phrase::new(vec![], 4.0), &opts).unwrap();
        assert_eq!(g.prompt[0], continuo::tokens::Vocab.key_prefix(Some(told)));
        let notes: Vec<_> = g.variations.iter().flat_map(|p| p.notes.iter()).collect();
        assert!(notes.len() >= 16, "{key}: {} notes", notes.len());
        let in_key =
            notes.iter().filter(|n| told.contains(n.pitch)).count() as f64 / notes.len() as f64;
        assert!(
            in_key > 0.8,
            "{key}: only {in_key:.2} of the pitches in key"
        );
    }
}

#[test]
fn the_copy_guard_makes_the_default_model_vary_a_run_it_would_have_played() {
    use continuo::model::copy_guard::CopyGuard;
    use std::sync::Arc;
    let m = load_model(default_dir(), &Device::Cpu).unwrap();
    // The shipped guard holds the runs of a real training corpus, not a token few.
    let shipped = m
        .copy_guard
        .as_ref()
        .expect("models/default has a copy guard");
    assert!(shipped.len() > 100_000, "{shipped:?}");

    let primer = bundled_primer("c-major-triad");
    let free = GenerateOptions {
        bars: 4,
        seed: 5,
        variations: 3,
        temperature: 0.9,
        copy_guard: None,
        ..Default::default()
    };
    let unguarded = generate(&m.model, &m.device, &primer, &free).unwrap();
    // Pretend the model had been trained on exactly what it just played: with that guard, the
    // same seeds must play something else, and no 8 notes of it.
    let own = CopyGuard::new(unguarded.variations.iter().map(|v| v.notes.as_slice()));
    assert!(own.len() >= 3, "{own:?}");
    let guarded = generate(
        &m.model,
        &m.device,
        &primer,
        &GenerateOptions {
            copy_guard: Some(Arc::new(own.clone())),
            ..free
        },
    )
    .unwrap();
    for (before, after) in unguarded.variations.iter().zip(&guarded.variations) {
        assert!(before.notes.len() >= 8);
        assert_ne!(before.notes, after.notes);
        assert!(!own.copies(&after.notes), "a guarded run was played");
        // Up to the first refused note, sampling is the same.
        assert_eq!(before.notes[..7], after.notes[..7]);
    }
}
