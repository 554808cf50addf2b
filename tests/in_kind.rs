//! The shipped model answers in kind (fixed seeds, the development primers in
//! `examples/dev-primers/`, written by `scripts/dev_primers.py`): a bass line with a bass
//! line, block chords with block chords; Polyphony 1 + Register low turns chords into a bass
//! line; "Rhythm: Like primer" keeps the primer's onset positions; a model of the previous
//! vocabulary is refused.

use candle_core::Device;
use continuo::midi_file::read_midi;
use continuo::model::files::read_card;
use continuo::model::sampler::{Rhythm, DEFAULT_CANDIDATES};
use continuo::model::{generate, load_model, GenerateOptions, LoadedModel};
use continuo::music::texture::{onset_tick, TextureRequest, Told};
use continuo::music::{Note, Phrase};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SEEDS: u64 = 4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> LoadedModel {
    load_model(&root().join("models/default"), &Device::Cpu).unwrap()
}

fn primer(name: &str) -> Phrase {
    read_midi(&root().join(format!("examples/dev-primers/{name}.mid")))
        .unwrap()
        .melodic
}

/// Continuations of `primer` for seeds 0..SEEDS, 4 bars, as the plugin asks (its default
/// number of candidates).
fn continuations(m: &LoadedModel, primer: &Phrase, opts: GenerateOptions) -> Vec<Vec<Note>> {
    (0..SEEDS)
        .map(|seed| {
            let o = GenerateOptions {
                seed,
                bars: 4,
                temperature: 0.9,
                start_on_downbeat: true,
                beats_per_bar: primer.beats_per_bar,
                copy_guard: m.copy_guard.clone(),
                candidates: DEFAULT_CANDIDATES,
                ..opts.clone()
            };
            generate(&m.model, &m.device, primer, &o)
                .unwrap()
                .variations[0]
                .notes
                .clone()
        })
        .collect()
}

/// Notes per onset tick, over all continuations.
fn onset_sizes(all: &[Vec<Note>]) -> Vec<usize> {
    all.iter()
        .flat_map(|notes| {
            let mut by_onset: BTreeMap<i64, usize> = BTreeMap::new();
            for n in notes {
                *by_onset.entry(onset_tick(n)).or_default() += 1;
            }
            by_onset.into_values().collect::<Vec<_>>()
        })
        .collect()
}

fn median(all: &[Vec<Note>]) -> f64 {
    continuo::music::texture::median_pitch(&all.concat())
}

#[test]
fn a_bass_line_is_answered_below_c3_one_note_at_a_time() {
    let m = shipped();
    for name in ["bass--walking-F", "bass--rock-eighths-D", "bass--808-Cm"] {
        let all = continuations(&m, &primer(name), GenerateOptions::default());
        let sizes = onset_sizes(&all);
        assert!(!sizes.is_empty(), "{name}: no notes");
        let single = sizes.iter().filter(|&&s| s == 1).count() as f64 / sizes.len() as f64;
        assert!(
            single >= 0.9,
            "{name}: {single:.2} of onsets are single notes"
        );
        assert!(median(&all) < 48.0, "{name}: median pitch {}", median(&all));
    }
}

#[test]
fn block_chords_are_answered_with_block_chords() {
    let m = shipped();
    for name in [
        "chords--pop-I-V-vi-IV",
        "chords--gospel-Eb",
        "chords--ballad-waltz-G-3-4",
    ] {
        let all = continuations(&m, &primer(name), GenerateOptions::default());
        let sizes = onset_sizes(&all);
        assert!(!sizes.is_empty(), "{name}: no notes");
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!(mean >= 2.5, "{name}: {mean:.2} notes per onset");
    }
}

#[test]
fn polyphony_1_and_register_low_turn_chords_into_a_bass_line() {
    let m = shipped();
    let opts = GenerateOptions {
        texture: TextureRequest {
            polyphony: Told::Bin(0),
            register: Told::Bin(0),
            ..Default::default()
        },
        ..Default::default()
    };
    for name in ["chords--pop-I-V-vi-IV", "chords--neo-soul-Dm9"] {
        let all = continuations(&m, &primer(name), opts.clone());
        let sizes = onset_sizes(&all);
        assert!(!sizes.is_empty(), "{name}: no notes");
        assert!(sizes.iter().all(|&s| s == 1), "{name}: chords in {sizes:?}");
        let highest = all.concat().iter().map(|n| n.pitch).max().unwrap();
        assert!(highest < 48, "{name}: a note at {highest}, not below C3");
    }
}

#[test]
fn rhythm_like_primer_puts_every_onset_on_a_primer_onset_position() {
    let m = shipped();
    let p = primer("riff--house-piano-G");
    let bar_ticks = (p.beats_per_bar * 12.0).round() as i64;
    let positions: Vec<i64> = p
        .notes
        .iter()
        .map(|n| onset_tick(n).rem_euclid(bar_ticks))
        .collect();
    let opts = GenerateOptions {
        rhythm: Rhythm::LikePrimer,
        ..Default::default()
    };
    let all = continuations(&m, &p, opts);
    assert!(all.iter().all(|notes| !notes.is_empty()));
    for n in all.concat() {
        let pos = onset_tick(&n).rem_euclid(bar_ticks);
        assert!(positions.contains(&pos), "onset at tick {pos} of the bar");
    }
}

#[test]
fn a_model_of_vocabulary_v2_is_refused_with_what_to_do() {
    let err = read_card(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v2-model"
    )))
    .expect_err("a v2 model was accepted")
    .to_string();
    assert!(err.contains("vocabulary v2"), "{err}");
    let speaks = format!("speaks v{}", continuo::tokens::VOCAB_VERSION);
    assert!(err.contains(&speaks) && err.contains("--from"), "{err}");
}
