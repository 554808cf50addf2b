//! The shipped model develops what it is given (fixed seeds, the plugin's default settings):
//! a one-bar riff comes back varied under *Develop*, nearly throughout under *Loop*, hardly
//! under *New*; a four-chord progression is answered with harmony that moves.

use candle_core::Device;
use continuo::model::sampler::{Variation, DEFAULT_CANDIDATES};
use continuo::model::{generate, load_model, GenerateOptions, LoadedModel};
use continuo::music::coherence::{coherence, replays_primer_bar};
use continuo::music::{Note, Phrase};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn shipped() -> LoadedModel {
    load_model(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default"),
        &Device::Cpu,
    )
    .unwrap()
}

fn n(start: f64, duration: f64, pitch: u8) -> Note {
    Note {
        start,
        duration,
        pitch,
        velocity: 96,
    }
}

/// The funk-blues bass riff in E of issue 31 (E–F#–A–B), one bar.
fn riff() -> Phrase {
    Phrase::new(
        vec![
            n(0.0, 0.5, 40),
            n(0.75, 0.25, 42),
            n(1.0, 0.5, 45),
            n(2.0, 0.5, 47),
            n(2.5, 0.5, 45),
            n(3.0, 0.5, 42),
            n(3.5, 0.5, 40),
        ],
        4.0,
    )
}

/// I–V–vi–IV in C, a whole-note triad a bar.
fn progression() -> Phrase {
    let chords: [[u8; 3]; 4] = [[60, 64, 67], [59, 62, 67], [57, 60, 64], [57, 60, 65]];
    Phrase::new(
        chords
            .iter()
            .enumerate()
            .flat_map(|(bar, c)| c.map(|p| n(bar as f64 * 4.0, 4.0, p)))
            .collect(),
        4.0,
    )
}

fn answer(m: &LoadedModel, primer: &Phrase, variation: Variation, seed: u64) -> Vec<Note> {
    let o = GenerateOptions {
        seed,
        bars: 4,
        temperature: 0.9,
        start_on_downbeat: true,
        beats_per_bar: 4.0,
        copy_guard: m.copy_guard.clone(),
        candidates: DEFAULT_CANDIDATES,
        variation,
        ..Default::default()
    };
    generate(&m.model, &m.device, primer, &o)
        .unwrap()
        .variations[0]
        .notes
        .clone()
}

/// Answer bars that replay the riff (Jaccard ≥ 0.5 of onsets and pitches, any transposition
/// within an octave), whatever else changed.
fn replayed_bars(primer: &Phrase, notes: &[Note]) -> usize {
    (coherence(&primer.notes, primer.bar_count(), notes, 4, 4.0).reuse * 4.0).round() as usize
}

#[test]
fn a_one_bar_riff_comes_back_under_develop_and_loop_and_hardly_under_new() {
    let m = shipped();
    let primer = riff();
    for seed in [1, 2] {
        let develop = answer(&m, &primer, Variation::Develop, seed);
        let looped = answer(&m, &primer, Variation::Loop, seed);
        let new = answer(&m, &primer, Variation::New, seed);
        let (d, l, n) = (
            replayed_bars(&primer, &develop),
            replayed_bars(&primer, &looped),
            replayed_bars(&primer, &new),
        );
        assert!(d >= 2, "seed {seed}: develop replays {d} bars: {develop:?}");
        assert!(l >= 3, "seed {seed}: loop replays {l} bars: {looped:?}");
        assert!(n <= 1, "seed {seed}: new replays {n} bars: {new:?}");
        // Develop varies: it is not the riff four times.
        assert!(
            d < 4 || develop != looped,
            "seed {seed}: develop is a plain loop"
        );
    }
}

#[test]
fn a_four_chord_progression_is_answered_with_moving_harmony() {
    let m = shipped();
    let primer = progression();
    for seed in [1, 2] {
        let notes = answer(&m, &primer, Variation::Develop, seed);
        let chords: BTreeSet<u16> = (0..4)
            .filter_map(|bar| {
                let set = notes
                    .iter()
                    .filter(|x| (x.start / 4.0).floor() as usize == bar)
                    .fold(0u16, |s, x| s | 1 << (x.pitch % 12));
                (set != 0).then_some(set)
            })
            .collect();
        assert!(
            chords.len() >= 3,
            "seed {seed}: {} distinct chords in 4 bars: {notes:?}",
            chords.len()
        );
    }
}

#[test]
fn replayed_bars_count_a_transposed_riff_and_not_its_pitches_in_quarters() {
    let primer = riff();
    let bars: Vec<Vec<(i64, i32)>> = vec![primer
        .notes
        .iter()
        .map(|x| ((x.start * 12.0).round() as i64, x.pitch as i32))
        .collect()];
    let moved: Vec<(i64, i32)> = bars[0].iter().map(|&(o, p)| (o, p + 5)).collect();
    assert!(replays_primer_bar(&moved, &bars));
    let quarters: Vec<(i64, i32)> = [40, 42, 45, 47]
        .iter()
        .enumerate()
        .map(|(i, &p)| (i as i64 * 12, p))
        .collect();
    assert!(!replays_primer_bar(&quarters, &bars));
}
