//! Shared by the integration tests: the fixtures folder and a tiny model trained on it once.
#![allow(dead_code)]

use continuo::model::{lstm, transformer, Architecture};
use continuo::tokens::Vocab;
use continuo::train::{train, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture_files() -> Vec<PathBuf> {
    continuo::train::dataset::midi_files(&fixtures())
}

pub fn tiny_transformer() -> Architecture {
    Architecture::Transformer(transformer::Config {
        vocab_size: Vocab.size(),
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        d_ff: 256,
        max_seq_len: 128,
        smeared_keys: true,
    })
}

pub fn tiny_lstm() -> Architecture {
    Architecture::Lstm(lstm::Config {
        vocab_size: Vocab.size(),
        d_embed: 32,
        hidden: 64,
        n_layers: 1,
    })
}

pub fn train_options(out: &Path, arch: Architecture, steps: usize) -> TrainOptions {
    TrainOptions {
        data: fixtures(),
        out: out.to_owned(),
        architecture: arch,
        batch: 16,
        seq_len: 128,
        lr: 3e-3,
        warmup: 0.05,
        steps: Some(steps),
        minutes: None,
        seed: 1,
        resume: false,
        eval_every: 1000,
        checkpoint_minutes: 60.0,
        clip: 1.0,
        weight_decay: 0.01,
        show_progress: false,
        command: "test".into(),
        max_val_windows: 64,
        from: None,
        base_mix: None,
        fill_share: continuo::train::dataset::FILL_SHARE,
        gap_weight: 1.0,
    }
}

/// A small transformer trained on the fixtures for 80 steps, once per test binary.
pub fn tiny_model_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, continuo::train::TrainReport)> = OnceLock::new();
    let (dir, _) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tiny");
        let report = train(
            &train_options(&out, tiny_transformer(), 80),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        (dir, report)
    });
    Box::leak(dir.path().join("tiny").into_boxed_path())
}

/// A small "style" folder the fixtures lack: a syncopated minor-key riff (root, octave, fifth
/// and a flat-seventh pickup on the off-beats), 16 bars, one file per key.
pub fn style_folder(files: usize) -> tempfile::TempDir {
    use continuo::midi_file::{write_midi, TrackToWrite};
    use continuo::music::Note;
    let dir = tempfile::tempdir().unwrap();
    let riff: [(f64, f64, i32); 6] = [
        (0.0, 0.5, 0),
        (0.75, 0.25, 12),
        (1.5, 0.5, 7),
        (2.5, 0.25, 0),
        (3.0, 0.5, 10),
        (3.5, 0.25, 12),
    ];
    for f in 0..files {
        let root = 36 + (f as i32 * 5) % 12;
        let notes: Vec<Note> = (0..16)
            .flat_map(|bar| {
                riff.iter().map(move |&(s, d, step)| Note {
                    start: bar as f64 * 4.0 + s,
                    duration: d,
                    pitch: (root + step) as u8,
                    velocity: 100,
                })
            })
            .collect();
        let tracks = [TrackToWrite {
            name: "riff",
            channel: 0,
            notes: &notes,
        }];
        write_midi(
            &dir.path().join(format!("riff-{f}.mid")),
            &tracks,
            4.0,
            124.0,
        )
        .unwrap();
    }
    dir
}

/// Options that fine-tune the tiny model on `data` for `steps` steps into `out`.
pub fn fine_tune_options(data: &Path, out: &Path, steps: usize) -> TrainOptions {
    let mut opts = train_options(out, tiny_transformer(), steps);
    opts.data = data.to_owned();
    opts.from = Some(tiny_model_dir().to_owned());
    opts.lr = 1e-3;
    opts.warmup = 0.02;
    opts
}

/// The largest |x| over a tensor's elements (for comparing weights or outputs).
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_scalar::<f32>())
        .unwrap()
}
