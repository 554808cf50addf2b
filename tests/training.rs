//! Training on a folder: bad files are skipped by name, loss goes down, resume continues, the
//! copy guard holds the training runs.

mod common;

use candle_core::Device;
use continuo::train::{load_corpus, train};

#[test]
fn a_corrupt_and_an_empty_file_are_skipped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    for f in common::fixture_files() {
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let nested = dir.path().join("more/deeper");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(
        nested.join("corrupt.mid"),
        b"MThd\x00\x00\x00\x06garbage that is not midi",
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.mid"), b"").unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        b"not a midi file, not even looked at",
    )
    .unwrap();

    let corpus = load_corpus(dir.path()).unwrap();
    let skipped: Vec<String> = corpus
        .skipped
        .iter()
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(
        skipped
            .iter()
            .any(|p| p.ends_with("more/deeper/corrupt.mid")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|p| p.ends_with("empty.mid")),
        "{skipped:?}"
    );
    assert!(!skipped.iter().any(|p| p.ends_with("notes.txt")));
    let usable = corpus.train.len() + corpus.validation.len();
    assert_eq!(
        usable + corpus.skipped.len(),
        common::fixture_files().len() + 2
    );
    assert!(
        usable >= common::fixture_files().len() - 1,
        "only drum-only files may be skipped"
    );
}

#[test]
fn a_folder_with_no_usable_files_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.mid"), b"nope").unwrap();
    let err = load_corpus(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no usable .mid files"), "{err}");
}

#[test]
fn the_split_is_by_file_and_the_same_every_time() {
    let a = load_corpus(&common::fixtures()).unwrap();
    let b = load_corpus(&common::fixtures()).unwrap();
    let names = |c: &continuo::train::Corpus| {
        c.validation
            .iter()
            .map(|p| p.path.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    assert!(!a.validation.is_empty());
    for v in &a.validation {
        assert!(a.train.iter().all(|t| t.path != v.path));
    }
}

#[test]
fn a_tiny_transformer_lowers_validation_loss_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let opts = common::train_options(&dir.path().join("m"), common::tiny_transformer(), 60);
    let r = train(&opts, &Device::Cpu).unwrap();
    assert!(
        r.final_val_loss < r.initial_val_loss - 1.5,
        "validation loss {} -> {}",
        r.initial_val_loss,
        r.final_val_loss
    );
    for f in [
        "model.safetensors",
        "config.json",
        "loss.png",
        "checkpoint/state.json",
        "copy_guard.safetensors",
    ] {
        assert!(dir.path().join("m").join(f).is_file(), "{f} missing");
    }
    // The copy guard holds the training files' runs, and only theirs.
    let loaded = continuo::model::load_model(&dir.path().join("m"), &Device::Cpu).unwrap();
    let guard = loaded.copy_guard.expect("training writes a copy guard");
    let corpus = load_corpus(&opts.data).unwrap();
    let long: Vec<_> = corpus
        .train
        .iter()
        .filter(|p| p.phrase.notes.len() >= 8)
        .collect();
    assert!(!long.is_empty());
    assert!(long.iter().all(|p| guard.copies(&p.phrase.notes)));
    // A zig-zag in dotted eighths: in no fixture.
    let unheard: Vec<_> = (0..12u8)
        .map(|i| continuo::music::Note {
            start: i as f64 * 0.75,
            duration: 0.25,
            pitch: if i % 2 == 0 { 60 + i } else { 90 - i },
            velocity: 64,
        })
        .collect();
    assert!(!guard.copies(&unheard));
}

#[test]
fn a_tiny_lstm_lowers_validation_loss_too() {
    let dir = tempfile::tempdir().unwrap();
    let opts = common::train_options(&dir.path().join("l"), common::tiny_lstm(), 25);
    let r = train(&opts, &Device::Cpu).unwrap();
    assert!(
        r.final_val_loss < r.initial_val_loss - 0.5,
        "{} -> {}",
        r.initial_val_loss,
        r.final_val_loss
    );
}

#[test]
fn resume_continues_from_the_checkpoint_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let first = train(
        &common::train_options(&out, common::tiny_transformer(), 10),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(first.steps, 10);
    let mut again = common::train_options(&out, common::tiny_transformer(), 20);
    again.resume = true;
    let second = train(&again, &Device::Cpu).unwrap();
    assert_eq!(second.steps, 20);
    assert_eq!(second.initial_val_loss, first.initial_val_loss);
    assert!(second.final_val_loss < first.final_val_loss);
}

#[test]
fn the_same_seed_trains_the_same_weights_and_another_seed_others() {
    let dir = tempfile::tempdir().unwrap();
    let weights = |name: &str, seed: u64| {
        let out = dir.path().join(name);
        let mut opts = common::train_options(&out, common::tiny_transformer(), 6);
        opts.seed = seed;
        train(&opts, &Device::Cpu).unwrap();
        std::fs::read(out.join("model.safetensors")).unwrap()
    };
    let a = weights("a", 1);
    assert!(
        a == weights("b", 1),
        "one command trained two different models"
    );
    assert!(a != weights("c", 2), "--seed changed nothing");
}

#[test]
fn training_from_a_model_folder_starts_from_its_weights() {
    let base = common::tiny_model_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = common::train_options(&dir.path().join("m"), common::tiny_transformer(), 2);
    opts.from = Some(base.to_owned());
    opts.lr = 1e-4;
    let r = train(&opts, &Device::Cpu).unwrap();
    // The same validation windows as the base's last evaluation: the run starts where the
    // base ended, not from random weights (which score about 5.7 nats per token).
    let card = continuo::model::files::read_card(base).unwrap();
    let base_final = card.metrics["final_val_loss"].as_f64().unwrap();
    assert!(
        (r.initial_val_loss - base_final).abs() < 1e-3,
        "started at {} after a base that ended at {base_final}",
        r.initial_val_loss
    );
    let card = continuo::model::files::read_card(&dir.path().join("m")).unwrap();
    assert_eq!(
        card.training["from"].as_str(),
        Some(base.display().to_string().as_str())
    );
}

#[test]
fn a_model_trained_from_another_guards_its_base_runs_too() {
    let base = common::tiny_model_dir();
    // Fine-tune on three of the fixtures only.
    let data = tempfile::tempdir().unwrap();
    let files = common::fixture_files();
    for f in files
        .iter()
        .filter(|f| f.to_string_lossy().contains("oneills_0"))
        .take(3)
    {
        std::fs::copy(f, data.path().join(f.file_name().unwrap())).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut opts = common::train_options(&dir.path().join("m"), common::tiny_transformer(), 2);
    opts.data = data.path().to_owned();
    opts.from = Some(base.to_owned());
    train(&opts, &Device::Cpu).unwrap();
    let load = |d: &std::path::Path| {
        continuo::model::copy_guard::CopyGuard::from_bytes(
            &std::fs::read(d.join("copy_guard.safetensors")).unwrap(),
        )
        .unwrap()
    };
    let (base_guard, tuned) = (load(base), load(&dir.path().join("m")));
    assert!(
        tuned.len() >= base_guard.len(),
        "{} < {}",
        tuned.len(),
        base_guard.len()
    );
    // A tune the fine-tuning never saw, but the base trained on, is still guarded.
    let base_only = files
        .iter()
        .filter(|f| !f.to_string_lossy().contains("oneills"))
        .map(|f| continuo::midi_file::read_midi(f).unwrap().melodic.notes)
        .find(|notes| base_guard.copies(notes))
        .expect("no fixture of the base's training split");
    assert!(
        tuned.copies(&base_only),
        "the base's training runs are not guarded"
    );
}

#[test]
fn fine_tuning_lowers_the_loss_on_the_new_files_and_its_card_says_so() {
    let style = common::style_folder(5);
    let out = tempfile::tempdir().unwrap();
    let mut opts = common::fine_tune_options(style.path(), &out.path().join("mine"), 30);
    // Rehearse the base's corpus (the fixtures) on a quarter of each batch.
    opts.base_mix = Some(continuo::train::BaseMix {
        data: common::fixtures(),
        share: 0.25,
    });
    let r = train(&opts, &Device::Cpu).unwrap();
    assert!(
        r.final_val_loss < r.initial_val_loss - 0.3,
        "held-out loss of the new files {} → {}",
        r.initial_val_loss,
        r.final_val_loss
    );
    let dir = out.path().join("mine");
    let card = continuo::model::files::read_card(&dir).unwrap();
    // 5 files: 4 trained on, 1 held out.
    assert_eq!(card.training["train_files"], 4);
    assert_eq!(card.training["validation_files"], 1);
    assert_eq!(card.training["schedule"], "fine-tune");
    assert!((card.training["base_mix"]["share"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    let before = card.metrics["base_val_loss_before"].as_f64().unwrap();
    let after = card.metrics["base_val_loss_after"].as_f64().unwrap();
    assert!(before.is_finite() && after.is_finite());
    let text = std::fs::read_to_string(dir.join("MODEL_CARD.md")).unwrap();
    let base = common::tiny_model_dir().display().to_string();
    assert!(
        text.contains(&format!("Fine-tuned from** `{base}`")),
        "{text}"
    );
    assert!(text.contains("4 files trained on, 1 held out"), "{text}");
    assert!(text.contains(&format!("{:.3}", r.final_val_loss)), "{text}");
    assert!(text.contains("held out of the base corpus"), "{text}");
}

#[test]
fn a_folder_of_versions_of_one_piece_still_holds_one_out_and_says_so() {
    // The same riff in the same key five times: one near-duplicate group.
    let style = common::style_folder(1);
    let src = style.path().join("riff-0.mid");
    let data = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::copy(&src, data.path().join(format!("take-{i}.mid"))).unwrap();
    }
    let corpus = continuo::train::load_corpus(data.path()).unwrap();
    assert_eq!(corpus.validation.len(), 1);
    assert_eq!(corpus.train.len(), 4);
    assert!(corpus.validation_overlaps);
}

#[test]
fn a_run_that_adds_smeared_keys_to_its_base_starts_where_the_base_ended() {
    use continuo::model::{transformer, Architecture};
    let Architecture::Transformer(smeared) = common::tiny_transformer() else {
        unreachable!("the tiny model is a transformer")
    };
    let plain = transformer::Config {
        smeared_keys: false,
        ..smeared.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    let base_opts = common::train_options(&base_dir, Architecture::Transformer(plain), 3);
    let base = train(&base_opts, &Device::Cpu).unwrap();
    let out = dir.path().join("smeared");
    let mut opts = common::train_options(&out, Architecture::Transformer(smeared), 3);
    opts.from = Some(base_dir);
    let run = train(&opts, &Device::Cpu).unwrap();
    // The smears start at zero: the model before the first step is the base, exactly.
    assert!(
        (run.initial_val_loss - base.final_val_loss).abs() < 1e-5,
        "the base ended at {}, the run began at {}",
        base.final_val_loss,
        run.initial_val_loss
    );
    let weights =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let smear = weights["blocks.0.attn.key_smear"]
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(smear > 0.0, "the key smear was not trained");
}

#[test]
fn a_run_with_a_longer_context_keeps_the_bases_positions_and_learns_the_new_ones() {
    use continuo::model::{transformer, Architecture};
    let base = common::tiny_model_dir();
    let Architecture::Transformer(c) = common::tiny_transformer() else {
        unreachable!("the tiny model is a transformer")
    };
    let longer = transformer::Config {
        max_seq_len: 2 * c.max_seq_len,
        ..c.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("long");
    let mut opts = common::train_options(&out, Architecture::Transformer(longer), 2);
    opts.from = Some(base.to_owned());
    opts.seq_len = 2 * c.max_seq_len;
    opts.lr = 1e-9;
    train(&opts, &Device::Cpu).unwrap();
    let load = |p: &std::path::Path| {
        candle_core::safetensors::load(p.join("model.safetensors"), &Device::Cpu).unwrap()
    };
    let (old, new) = (load(base), load(&out));
    let name = old
        .keys()
        .find(|k| old[*k].dims() == [c.max_seq_len, c.d_model])
        .expect("a position table")
        .clone();
    let (old, new) = (&old[&name], &new[&name]);
    assert_eq!(new.dims(), [2 * c.max_seq_len, c.d_model]);
    // At a learning rate of 1e-9 two steps leave the base's rows where they were.
    let kept = new.narrow(0, 0, c.max_seq_len).unwrap();
    let diff = common::max_abs(&(kept - old).unwrap());
    assert!(diff < 1e-4, "the base's positions moved by {diff}");
    let card = continuo::model::files::read_card(&out).unwrap();
    assert_eq!(card.architecture.max_context(), Some(2 * c.max_seq_len));
}
