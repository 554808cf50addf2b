//! Generation from a trained model: determinism, grammar, refusal of mismatched models.

mod common;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use continuo::midi_file::read_midi;
use continuo::model::{generate, load_model, GenerateOptions, Model, ModelError};
use continuo::music::{detect_key, Phrase};
use continuo::tokens::Grammar;
use std::path::Path;

fn primer() -> Phrase {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/primers/c-major-triad.mid");
    read_midi(&p).unwrap().melodic
}

#[test]
fn the_same_seed_gives_the_same_notes_and_other_seeds_differ() {
    let m = load_model(common::tiny_model_dir(), &Device::Cpu).unwrap();
    let opts = GenerateOptions {
        bars: 4,
        seed: 7,
        temperature: 1.0,
        ..Default::default()
    };
    let a = generate(&m.model, &m.device, &primer(), &opts).unwrap();
    let b = generate(&m.model, &m.device, &primer(), &opts).unwrap();
    assert_eq!(a.variations, b.variations);
    assert!(!a.variations[0].notes.is_empty());
    let others: Vec<_> = (8..11)
        .map(|seed| {
            generate(
                &m.model,
                &m.device,
                &primer(),
                &GenerateOptions {
                    seed,
                    ..opts.clone()
                },
            )
            .unwrap()
        })
        .collect();
    assert!(
        others.iter().all(|o| o.variations != a.variations),
        "other seeds gave the same phrase"
    );
}

#[test]
fn variations_in_one_batch_differ_and_stay_within_the_bar_budget() {
    let m = load_model(common::tiny_model_dir(), &Device::Cpu).unwrap();
    let opts = GenerateOptions {
        bars: 2,
        seed: 3,
        variations: 3,
        ..Default::default()
    };
    let g = generate(&m.model, &m.device, &primer(), &opts).unwrap();
    assert_eq!(g.variations.len(), 3);
    assert_ne!(g.variations[0], g.variations[1]);
    assert_eq!(
        g.start_beat, 4.0,
        "the continuation starts on the bar after the one-bar primer"
    );
    for v in &g.variations {
        assert!(
            v.notes.iter().all(|n| n.start >= 0.0 && n.start < 8.0),
            "{v:?}"
        );
    }
}

#[test]
fn key_and_range_masks_are_obeyed() {
    let m = load_model(common::tiny_model_dir(), &Device::Cpu).unwrap();
    let c_major = detect_key(&primer().notes).unwrap();
    let opts = GenerateOptions {
        bars: 4,
        seed: 11,
        key: Some(c_major),
        pitch_range: (55, 79),
        temperature: 1.3,
        ..Default::default()
    };
    let g = generate(&m.model, &m.device, &primer(), &opts).unwrap();
    let notes = &g.variations[0].notes;
    assert!(!notes.is_empty());
    for n in notes {
        assert!(
            c_major.contains(n.pitch),
            "{} is outside {}",
            n.pitch,
            c_major.name()
        );
        assert!((55..=79).contains(&n.pitch));
    }
}

#[test]
fn ten_thousand_tokens_from_a_random_model_are_all_well_formed() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(&common::tiny_transformer(), vb).unwrap();
    let mut total = 0;
    let mut seed = 0;
    while total < 10_000 {
        let opts = GenerateOptions {
            bars: 16,
            seed,
            variations: 4,
            temperature: 1.5,
            top_p: 1.0,
            ..Default::default()
        };
        let g = generate(&model, &Device::Cpu, &primer(), &opts).unwrap();
        for ids in &g.ids {
            let mut all = g.prompt.clone();
            all.extend(ids);
            assert!(Grammar::accepts(&all), "seed {seed}: malformed sequence");
            total += ids.len();
        }
        seed += 1;
    }
}

/// A temporary model folder holding these files of the tiny test model.
fn tiny_model_copy(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::copy(common::tiny_model_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// The error loading `dir` gives (it must give one).
fn load_error(dir: &std::path::Path) -> String {
    match load_model(dir, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_model_with_another_vocabulary_is_refused_naming_its_config() {
    let dir = tiny_model_copy(&["config.json", "model.safetensors"]);
    let path = dir.path().join("config.json");
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    card["vocab"]["hash"] = "0000000000000000".into();
    std::fs::write(&path, card.to_string()).unwrap();
    match load_model(dir.path(), &Device::Cpu) {
        Err(e @ ModelError::VocabMismatch { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("config.json") && msg.contains("retrain"),
                "{msg}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a mismatched vocabulary was accepted"),
    }
}

#[test]
fn a_missing_weights_file_is_named() {
    let dir = tiny_model_copy(&["config.json"]);
    let err = load_error(dir.path());
    assert!(
        err.contains("weights file not found") && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn a_model_without_a_copy_guard_loads_and_a_broken_one_is_named() {
    let dir = tiny_model_copy(&["config.json", "model.safetensors"]);
    // A model trained before guards existed still loads, without one.
    let loaded = load_model(dir.path(), &Device::Cpu).unwrap();
    assert!(loaded.copy_guard.is_none());
    // A truncated guard is an error that names the file, not a silently unguarded model.
    let guard = std::fs::read(common::tiny_model_dir().join("copy_guard.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("copy_guard.safetensors"),
        &guard[..guard.len() / 2],
    )
    .unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("copy_guard.safetensors") && err.contains("continuo copy-guard"),
        "{err}"
    );
}

/// A copy of the tiny model whose `config.json` architecture has `field` set to `value`.
fn tiny_model_with(field: &str, value: usize) -> tempfile::TempDir {
    let dir = tiny_model_copy(&["config.json", "model.safetensors"]);
    let path = dir.path().join("config.json");
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    card["architecture"][field] = value.into();
    std::fs::write(&path, card.to_string()).unwrap();
    dir
}

#[test]
fn impossible_model_sizes_are_refused_naming_the_field() {
    for (field, value, says) in [
        ("n_heads", 0, "\"n_heads\" is 0"),
        ("n_layers", 0, "\"n_layers\" is 0"),
        ("n_heads", 3, "does not divide \"d_model\""),
    ] {
        let dir = tiny_model_with(field, value);
        let err = load_error(dir.path());
        assert!(
            err.contains(says) && err.contains("config.json"),
            "{field} = {value}: {err}"
        );
    }
}

#[test]
fn a_broken_weights_file_is_reported_without_a_backtrace() {
    let dir = tiny_model_copy(&["config.json", "model.safetensors"]);
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_continuo"))
        .env("RUST_BACKTRACE", "1")
        .args(["generate", "--model"])
        .arg(dir.path())
        .args(["--out", "/tmp/never.mid"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("model.safetensors"), "{stderr}");
    assert!(
        !stderr.contains("0: ") && !stderr.contains("candle-core"),
        "{stderr}"
    );
}

#[test]
fn gap_nll_within_the_grammar_is_never_above_the_whole_vocabulary_and_kinds_add_up() {
    use continuo::train::infill_eval::{gap_cases, gap_nll};
    let m = load_model(common::tiny_model_dir(), &Device::Cpu).unwrap();
    let notes = (0..64)
        .map(|i| continuo::music::Note {
            start: i as f64 * 0.5,
            duration: 0.5,
            pitch: 60 + (i * 5 % 12) as u8,
            velocity: 80,
        })
        .collect();
    let piece = continuo::train::Piece::new("g.mid".into(), Phrase::new(notes, 4.0), vec![]);
    for bars in [1, 2] {
        let cases = gap_cases(
            std::slice::from_ref(&piece),
            bars,
            4,
            continuo::tokens::InfillLayout::current(),
            10,
            128,
        );
        assert!(!cases.is_empty());
        let g = gap_nll(&m.model, &Device::Cpu, &cases, bars).unwrap();
        let finite = [
            g.both_sides_per_note,
            g.prefix_only_per_note,
            g.no_bars_after_per_note,
            g.both_sides_per_note_in_grammar,
            g.prefix_only_per_note_in_grammar,
            g.no_bars_after_per_note_in_grammar,
        ];
        assert!(finite.iter().all(|x| x.is_finite() && *x > 0.0), "{g:?}");
        // Leaving out tokens that cannot come there only raises the target's share.
        assert!(g.both_sides_per_note_in_grammar <= g.both_sides_per_note + 1e-6);
        assert!(g.prefix_only_per_note_in_grammar <= g.prefix_only_per_note + 1e-6);
        assert!(g.no_bars_after_per_note_in_grammar <= g.no_bars_after_per_note + 1e-6);
        let (b, p, n) = g
            .by_kind
            .values()
            .fold((0.0, 0.0, 0.0), |(b, p, n), (kb, kp, kn)| {
                (b + kb, p + kp, n + kn)
            });
        assert!((b - g.both_sides_per_note).abs() < 1e-3, "{g:?}");
        assert!((p - g.prefix_only_per_note).abs() < 1e-3, "{g:?}");
        assert!((n - g.no_bars_after_per_note).abs() < 1e-3, "{g:?}");
        assert!(g.by_kind.contains_key("gap end") && g.by_kind.contains_key("pitch"));
        // Each gap's first pitch is one of its pitches: its nats are a part of theirs.
        let pitch = g.by_kind["pitch"];
        let (gaps, notes) = (g.gaps as f64, g.notes as f64);
        for (first, all) in [
            (g.first_pitch.0, pitch.0),
            (g.first_pitch.1, pitch.1),
            (g.first_pitch.2, pitch.2),
        ] {
            assert!(first > 0.0 && first * gaps <= all * notes + 1e-6, "{g:?}");
        }
    }
}
