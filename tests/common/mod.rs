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
