//! The training loop: packed random windows, AdamW, checkpoints, time budget, loss curve.

use super::dataset::{
    load_corpus, packed_stream, target_weights, training_stream, Corpus, WindowSampler,
};
use super::eval::{nll, stream_predictions, windows};
use super::optim::{learning_rate, AdamW};
use crate::model::copy_guard::CopyGuard;
use crate::model::files::{save_model, ModelCard, VocabStamp};
use crate::model::{Architecture, Model};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything a training run is told.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    pub architecture: Architecture,
    pub batch: usize,
    /// Tokens per training window.
    pub seq_len: usize,
    pub lr: f64,
    /// Share of the run spent warming up.
    pub warmup: f64,
    /// Stop after this many steps…
    pub steps: Option<usize>,
    /// …or after this many minutes of training, whichever comes first (over all resumes).
    pub minutes: Option<f64>,
    pub seed: u64,
    pub resume: bool,
    pub eval_every: usize,
    pub checkpoint_minutes: f64,
    pub clip: f64,
    pub weight_decay: f64,
    pub show_progress: bool,
    /// The command line, recorded in the model card.
    pub command: String,
    pub max_val_windows: usize,
    /// Start from this model folder's weights instead of random ones (`--from`).
    pub from: Option<PathBuf>,
    /// While fine-tuning, rehearse the base model's own corpus (against forgetting it) and
    /// measure its held-out loss before and after (share 0: measure only).
    pub base_mix: Option<BaseMix>,
    /// Share of windows rearranged as fill-in-the-middle ([`super::dataset::FILL_SHARE`]).
    pub fill_share: f64,
    /// Loss weight of a filled gap's tokens against 1 for every other token
    /// ([`super::dataset::target_weights`]); 1 trains on the plain mean.
    pub gap_weight: f64,
}

/// A share of every batch drawn from another corpus's training split, and that corpus's
/// held-out loss measured before and after, so forgetting is a number in the card.
#[derive(Debug, Clone)]
pub struct BaseMix {
    pub data: PathBuf,
    /// Share of each batch's windows, 0–1.
    pub share: f64,
}

/// What a run reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub steps: usize,
    pub tokens_per_s: f64,
    pub initial_val_loss: f64,
    pub final_val_loss: f64,
    pub train_seconds: f64,
    pub skipped: Vec<(String, String)>,
}

/// Saved beside the checkpoint weights, so `--resume` picks the run up where it was.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RunState {
    step: usize,
    train_seconds: f64,
    tokens: u64,
    train_curve: Vec<(usize, f64)>,
    val_curve: Vec<(usize, f64)>,
    initial_val_loss: Option<f64>,
    #[serde(default)]
    base_val_loss_before: Option<f64>,
}

/// The base corpus a fine-tuning run rehearses.
struct Rehearsal {
    sampler: WindowSampler,
    validation: Vec<Vec<u32>>,
    share: f64,
}

impl Rehearsal {
    fn load(mix: &BaseMix, opts: &TrainOptions, seed: u64) -> Result<Rehearsal> {
        let t0 = Instant::now();
        let base = load_corpus(&mix.data)
            .with_context(|| format!("reading the base corpus {}", mix.data.display()))?;
        eprintln!(
            "base corpus {} ({} files, {:.0} s to read): {:.0} % of each batch rehearses it; \
             its held-out loss is measured before and after",
            mix.data.display(),
            base.train.len(),
            t0.elapsed().as_secs_f64(),
            mix.share * 100.0
        );
        Ok(Rehearsal {
            sampler: WindowSampler::new(
                training_stream(&base.train),
                opts.seq_len,
                seed ^ 0xBA5E,
                true,
            )
            .with_fill_share(opts.fill_share),
            validation: windows(
                &packed_stream(&base.validation),
                opts.seq_len,
                opts.max_val_windows,
            ),
            share: mix.share.clamp(0.0, 1.0),
        })
    }
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Trains a model on `opts.data`, writing it to `opts.out`.
pub fn train(opts: &TrainOptions, device: &Device) -> Result<TrainReport> {
    let corpus = load_corpus(&opts.data)?;
    for s in &corpus.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    if corpus.train.len() == 1 && corpus.validation.len() == 1 {
        eprintln!(
            "only 1 usable file in {}: it is used for training and for validation, so the \
             validation loss shows how well the model learned that file, not how it \
             generalizes; add a second file to hold one out",
            opts.data.display()
        );
    } else if corpus.validation_overlaps {
        eprintln!(
            "every file in {} is a version of another (they share most 8-note runs), so the \
             held-out file {} has versions in training and the validation loss is \
             optimistic; add a file of other music to hold it out",
            opts.data.display(),
            corpus.validation[0].path.display()
        );
    }
    train_on(&corpus, opts, device)
}

/// Trains on an already loaded corpus.
pub fn train_on(corpus: &Corpus, opts: &TrainOptions, device: &Device) -> Result<TrainReport> {
    if opts.steps.is_none() && opts.minutes.is_none() {
        anyhow::bail!("give --steps or --minutes (or both) so that training knows when to stop");
    }
    let varmap = VarMap::new();
    let vb = super::seeded_init::seeded_var_builder(&varmap, opts.seed, DType::F32, device);
    let model = Model::new(&opts.architecture, vb)?;
    let mut optimizer = AdamW::for_varmap(&varmap, opts.weight_decay)?;

    let ckpt = checkpoint_dir(&opts.out);
    let mut state = RunState::default();
    if opts.resume {
        let state_path = ckpt.join("state.json");
        let text = std::fs::read_to_string(&state_path).with_context(|| {
            format!(
                "--resume: no checkpoint at {}; start without --resume",
                state_path.display()
            )
        })?;
        state = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", state_path.display()))?;
        let arch: Architecture =
            serde_json::from_str(&std::fs::read_to_string(ckpt.join("architecture.json"))?)?;
        if arch != opts.architecture {
            anyhow::bail!(
                "--resume: the checkpoint in {} is a {}, but this command asks for a {}; use the same flags",
                ckpt.display(),
                arch.describe(),
                opts.architecture.describe()
            );
        }
        let mut vm = varmap.clone();
        vm.load(ckpt.join("model.safetensors"))?;
        optimizer.load(&ckpt.join("optimizer.safetensors"), state.step)?;
        eprintln!(
            "resuming at step {} ({:.1} min trained)",
            state.step,
            state.train_seconds / 60.0
        );
    } else if let Some(base) = &opts.from {
        let n = super::warm_start::load_base_weights(base, &varmap, device)?;
        eprintln!("starting from {} ({n} tensors)", base.display());
    }

    let train_stream = training_stream(&corpus.train);
    let val_windows = windows(
        &packed_stream(&corpus.validation),
        opts.seq_len,
        opts.max_val_windows,
    );
    let train_tokens = train_stream.ids.len();
    let seed = opts.seed ^ (state.step as u64).wrapping_mul(0x9E37);
    let mut sampler =
        WindowSampler::new(train_stream, opts.seq_len, seed, true).with_fill_share(opts.fill_share);
    let rehearsal = match &opts.base_mix {
        Some(mix) => Some(Rehearsal::load(mix, opts, seed)?),
        None => None,
    };
    // Windows per batch from the base corpus; at least one is the new folder's.
    let rehearsed = rehearsal.as_ref().map_or(0, |r| {
        ((opts.batch as f64 * r.share).round() as usize).min(opts.batch - 1)
    });
    let mut rehearsal = rehearsal;

    if state.initial_val_loss.is_none() {
        let v = val_loss(&model, device, &val_windows, opts.batch)?;
        state.initial_val_loss = Some(v);
        state.val_curve.push((0, v));
    }
    if let Some(r) = rehearsal
        .as_mut()
        .filter(|_| state.base_val_loss_before.is_none())
    {
        state.base_val_loss_before = Some(val_loss(&model, device, &r.validation, opts.batch)?);
    }

    let bar = if opts.show_progress {
        let b = ProgressBar::new(1000);
        b.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {percent}% (about {eta} left) {msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };

    let session_start = Instant::now();
    let start_seconds = state.train_seconds;
    let start_tokens = state.tokens;
    let mut last_checkpoint = Instant::now();
    let progress = |step: usize, secs: f64| -> f64 {
        let by_steps = opts.steps.map_or(0.0, |s| step as f64 / s.max(1) as f64);
        let by_time = opts.minutes.map_or(0.0, |m| secs / (m * 60.0));
        by_steps.max(by_time)
    };
    let mut smoothed = None::<f64>;
    loop {
        let secs = start_seconds + session_start.elapsed().as_secs_f64();
        let p = progress(state.step, secs);
        if p >= 1.0 {
            break;
        }
        let lr = learning_rate(opts.lr, p, opts.warmup);
        let mut ids = sampler.batch(opts.batch - rehearsed);
        if let Some(r) = rehearsal.as_mut() {
            ids.extend(r.sampler.batch(rehearsed));
        }
        let loss = window_loss(
            &model,
            ids,
            opts.batch,
            opts.seq_len,
            opts.gap_weight,
            device,
        )?;
        let grads = loss.backward()?;
        optimizer.step(&grads, lr, opts.clip)?;
        let loss = loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            anyhow::bail!(
                "training diverged at step {} (loss {loss}); lower --lr",
                state.step
            );
        }
        state.step += 1;
        state.tokens += (opts.batch * opts.seq_len) as u64;
        smoothed = Some(smoothed.map_or(loss, |s| 0.9 * s + 0.1 * loss));
        state.train_curve.push((state.step, loss));

        let secs = start_seconds + session_start.elapsed().as_secs_f64();
        let tps =
            (state.tokens - start_tokens) as f64 / session_start.elapsed().as_secs_f64().max(1e-9);
        if state.step % opts.eval_every.max(1) == 0 {
            let v = val_loss(&model, device, &val_windows, opts.batch)?;
            state.val_curve.push((state.step, v));
        }
        let last_val = state.val_curve.last().map_or(f64::NAN, |v| v.1);
        bar.set_position((progress(state.step, secs) * 1000.0) as u64);
        bar.set_message(format!(
            "step {} loss {:.3} val {:.3} lr {:.1e} {:.0} tok/s",
            state.step,
            smoothed.unwrap_or(loss),
            last_val,
            lr,
            tps
        ));
        state.train_seconds = secs;
        if last_checkpoint.elapsed().as_secs_f64() >= opts.checkpoint_minutes * 60.0 {
            write_checkpoint(&ckpt, &varmap, &optimizer, &state, &opts.architecture)?;
            last_checkpoint = Instant::now();
        }
    }
    bar.finish_and_clear();

    let final_val = val_loss(&model, device, &val_windows, opts.batch)?;
    let base_val_after = match &rehearsal {
        Some(r) => Some(val_loss(&model, device, &r.validation, opts.batch)?),
        None => None,
    };
    if state.val_curve.last().map(|v| v.0) != Some(state.step) {
        state.val_curve.push((state.step, final_val));
    }
    write_checkpoint(&ckpt, &varmap, &optimizer, &state, &opts.architecture)?;

    let session_secs = session_start.elapsed().as_secs_f64();
    let tokens_per_s = (state.tokens - start_tokens) as f64 / session_secs.max(1e-9);
    let report = TrainReport {
        steps: state.step,
        tokens_per_s,
        initial_val_loss: state.initial_val_loss.unwrap_or(f64::NAN),
        final_val_loss: final_val,
        train_seconds: state.train_seconds,
        skipped: corpus
            .skipped
            .iter()
            .map(|s| (s.path.display().to_string(), s.reason.clone()))
            .collect(),
    };
    let card = ModelCard {
        name: opts
            .out
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned()),
        architecture: opts.architecture.clone(),
        vocab: VocabStamp::current(),
        training: serde_json::json!({
            "command": opts.command,
            "data": corpus.folder.display().to_string(),
            "train_files": corpus.train.len(),
            "validation_files": corpus.validation.len(),
            "split": "by groups of near-duplicate files",
            "near_duplicate_files": corpus.near_duplicate_files,
            "skipped_files": corpus.skipped.len(),
            "from": opts.from.as_ref().map(|p| p.display().to_string()),
            "schedule": if opts.from.is_some() { "fine-tune" } else { "from scratch" },
            "warmup_share": opts.warmup,
            "fill_share": opts.fill_share,
            "gap_weight": opts.gap_weight,
            // Measured: windows without a whole bar to take out stay plain.
            "fill_share_made": sampler.filled_share(),
            "base_mix": opts.base_mix.as_ref().map(|m| serde_json::json!({
                "data": m.data.display().to_string(),
                "share": rehearsed as f64 / opts.batch as f64,
            })),
            "validation_overlaps_training": corpus.validation_overlaps,
            "train_notes": Corpus::note_count(&corpus.train),
            "train_part_streams": corpus.train.iter().map(|p| p.parts.len()).sum::<usize>(),
            "train_stream_tokens": train_tokens,
            "train_tokens": Corpus::token_count(&corpus.train),
            "steps": state.step,
            "batch": opts.batch,
            "seq_len": opts.seq_len,
            "peak_lr": opts.lr,
            "tokens_seen": state.tokens,
            "train_minutes": state.train_seconds / 60.0,
            "tokens_per_s": tokens_per_s,
            "parameters": opts.architecture.parameter_count(),
        }),
        metrics: serde_json::json!({
            "initial_val_loss": report.initial_val_loss,
            "final_val_loss": final_val,
            "base_val_loss_before": state.base_val_loss_before,
            "base_val_loss_after": base_val_after,
        }),
    };
    save_model(&opts.out, &varmap, &card)?;
    super::card_text::write_card_text(&opts.out, &card)?;
    let mut guard = CopyGuard::new(
        corpus
            .train
            .iter()
            .flat_map(|p| p.streams().map(|s| s.notes.as_slice())),
    );
    if let Some(base) = &opts.from {
        // The base's own guard covers the corpus it learned from.
        let path = base.join(crate::model::copy_guard::GUARD_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let base_guard = CopyGuard::from_bytes(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                guard = guard.union(&base_guard);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }
    guard.save(&opts.out)?;
    crate::plot::draw_loss_curve(
        &opts.out.join("loss.png"),
        &smooth(&state.train_curve),
        &state.val_curve,
    )?;
    Ok(report)
}

/// Next-token cross-entropy of `batch` windows of `seq_len + 1` tokens (flattened ids): the
/// mean, or with `gap_weight` ≠ 1 the mean weighted by [`target_weights`].
pub fn window_loss(
    model: &Model,
    ids: Vec<u32>,
    batch: usize,
    seq_len: usize,
    gap_weight: f64,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let weights = (gap_weight != 1.0).then(|| target_weights(&ids, seq_len + 1, gap_weight as f32));
    let ids = Tensor::from_vec(ids, (batch, seq_len + 1), device)?;
    let (logits, target) = stream_predictions(model, &ids)?;
    match weights {
        Some(w) => crate::model::ops::weighted_cross_entropy(&logits, &target, &w),
        None => crate::model::ops::cross_entropy(&logits, &target),
    }
}

fn val_loss(model: &Model, device: &Device, windows: &[Vec<u32>], batch: usize) -> Result<f64> {
    let (total, count) = nll(model, device, windows, batch)?;
    Ok(total / count.max(1) as f64)
}

fn write_checkpoint(
    dir: &Path,
    varmap: &VarMap,
    opt: &AdamW,
    state: &RunState,
    arch: &Architecture,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    varmap.save(dir.join("model.safetensors"))?;
    opt.save(&dir.join("optimizer.safetensors"))?;
    std::fs::write(
        dir.join("architecture.json"),
        serde_json::to_string_pretty(arch)?,
    )?;
    // The state goes last: a checkpoint counts only once its state file says so.
    std::fs::write(dir.join("state.json"), serde_json::to_string(state)?)?;
    Ok(())
}

/// Running mean over ~1 % of the run, so the picture shows the trend, not batch noise.
fn smooth(curve: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let w = (curve.len() / 100).max(1);
    curve
        .chunks(w)
        .map(|c| {
            (
                c[c.len() - 1].0,
                c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64,
            )
        })
        .collect()
}
