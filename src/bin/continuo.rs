//! `continuo`: train a model on a folder of MIDI files, continue a primer, evaluate a model.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use continuo::device::{best_device, device_name};
use continuo::midi_file::{read_midi, write_midi, TrackToWrite};
use continuo::model::{
    generate, load_model, lstm, transformer, Architecture, GenerateOptions, KeyPrefix,
};
use continuo::music::parse::{parse_key, parse_pitch};
use continuo::music::{detect_key, Key};
use continuo::tokens::Vocab;
use continuo::train::eval::{continuation_stats, nll_by_kind, primer_cases, windows};
use continuo::train::{dataset, train, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "continuo",
    version,
    about = "Continue what you play: train, generate and evaluate Continuo models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on every .mid file under a folder (recursive).
    Train(TrainArgs),
    /// Continue a primer .mid file and write the continuation as .mid (and optionally .png).
    Generate(GenerateArgs),
    /// Held-out NLL and musical statistics of a model on a folder of .mid files.
    Eval(EvalArgs),
    /// Training and decoding speed of a model configuration on this machine.
    Bench(BenchArgs),
    /// (Re)build a model's copy guard from the corpus it was trained on (`continuo train`
    /// writes one; this is for models trained before it did).
    CopyGuard(CopyGuardArgs),
}

#[derive(Args)]
struct CopyGuardArgs {
    /// Model folder; its config.json must record the training split of --data.
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// The folder of .mid files the model was trained on.
    #[arg(long)]
    data: PathBuf,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, value_enum, default_value = "transformer")]
    arch: Arch,
    #[arg(long, default_value_t = 256)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Position table size (the cached decoding runs up to context 512).
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Timed training steps (after one warm-up).
    #[arg(long, default_value_t = 4)]
    steps: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    Transformer,
    Lstm,
}

#[derive(Args)]
struct TrainArgs {
    /// Folder of .mid files (searched recursively).
    #[arg(long)]
    data: PathBuf,
    /// Folder to write the model into.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "transformer")]
    arch: Arch,
    /// Transformer width / LSTM hidden size.
    #[arg(long, default_value_t = 256)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Transformer MLP width (default 4 × d-model).
    #[arg(long)]
    ff: Option<usize>,
    /// Tokens per training window (and the transformer's context).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(8..=4096))]
    seq_len: u32,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Stop after this many minutes of training (counted across --resume).
    #[arg(long)]
    minutes: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue the checkpoint in OUT/checkpoint.
    #[arg(long)]
    resume: bool,
    /// Validation loss every N steps.
    #[arg(long, default_value_t = 200)]
    eval_every: usize,
    #[arg(long, default_value_t = 5.0)]
    checkpoint_minutes: f64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// Model folder (config.json + model.safetensors).
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Primer .mid file; without it the model starts from silence.
    #[arg(long)]
    primer: Option<PathBuf>,
    /// Bars to generate.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    bars: u32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    variations: u32,
    #[arg(long, default_value_t = 0.9, value_parser = positive_f32)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95, value_parser = unit_f32)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep to a key's scale: "primer" (detected) or a key such as "C", "Am", "F# minor".
    #[arg(long)]
    key: Option<String>,
    /// Lowest pitch, as a number or name (C2).
    #[arg(long, default_value = "0", value_parser = pitch_arg)]
    low: u8,
    /// Highest pitch, as a number or name (C7).
    #[arg(long, default_value = "127", value_parser = pitch_arg)]
    high: u8,
    /// Output .mid (variation N > 1 goes to NAME-N.mid).
    #[arg(long)]
    out: PathBuf,
    /// Also draw primer and continuation as a piano roll PNG.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Write the primer before the continuation in the output file.
    #[arg(long)]
    with_primer: bool,
    /// Start the continuation with a note on its first downbeat (as the plugin does).
    #[arg(long)]
    on_downbeat: bool,
    /// Let the model complete runs of 8 notes of its training data (its copy guard is off).
    #[arg(long)]
    no_copy_guard: bool,
    /// Tempo written into the output file (the notes are in beats either way).
    #[arg(long, default_value_t = 120.0)]
    tempo: f64,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Folder of .mid files; evaluation uses its validation split (the files training held out).
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Primers (first 2 bars of validation pieces) to continue.
    #[arg(long, default_value_t = 32)]
    primers: usize,
    /// Bars generated per primer, compared with the real next bars.
    #[arg(long, default_value_t = 4)]
    bars: u32,
    /// Cap on validation tokens scored for NLL.
    #[arg(long, default_value_t = 200_000)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0.9, value_parser = positive_f32)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95, value_parser = unit_f32)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also evaluate unigram and 4-gram baselines counted from the training split.
    #[arg(long)]
    baselines: bool,
    /// Restrict continuations to the primer's key (the plugin's "Key lock: From primer").
    #[arg(long)]
    key_lock: bool,
    /// Give the model the `AnyKey` prefix instead of the primer's key, to measure what the key
    /// prefix buys.
    #[arg(long)]
    no_key_prefix: bool,
    /// Sample without the model's copy guard, to measure what it changes.
    #[arg(long)]
    no_copy_guard: bool,
}

fn positive_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' must be a number above 0 (e.g. 0.9)")),
    }
}

fn unit_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("'{s}' must be a number in (0, 1] (e.g. 0.95)")),
    }
}

fn pitch_arg(s: &str) -> Result<u8, String> {
    parse_pitch(s)
        .ok_or_else(|| format!("'{s}' is not a pitch: use 0–127 or a name such as C4 or F#2"))
}

fn main() -> ExitCode {
    continuo::allocator::keep_large_allocations_in_heap();
    continuo::device::fix_cpu_thread_count_before_threads_start();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => run_train(a),
        Command::Generate(a) => run_generate(a),
        Command::Eval(a) => run_eval(a),
        Command::Bench(a) => run_bench(a),
        Command::CopyGuard(a) => run_copy_guard(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn architecture(
    arch: Arch,
    d_model: usize,
    layers: usize,
    heads: usize,
    ff: Option<usize>,
    ctx: usize,
) -> Result<Architecture> {
    let vocab_size = Vocab.size();
    Ok(match arch {
        Arch::Transformer => {
            if !d_model.is_multiple_of(heads) {
                bail!("--d-model {d_model} must be divisible by --heads {heads}");
            }
            Architecture::Transformer(transformer::Config {
                vocab_size,
                d_model,
                n_layers: layers,
                n_heads: heads,
                d_ff: ff.unwrap_or(4 * d_model),
                max_seq_len: ctx,
            })
        }
        Arch::Lstm => Architecture::Lstm(lstm::Config {
            vocab_size,
            d_embed: d_model.min(128),
            hidden: d_model,
            n_layers: layers,
        }),
    })
}

fn run_bench(a: BenchArgs) -> Result<()> {
    let arch = architecture(a.arch, a.d_model, a.layers, a.heads, None, a.ctx)?;
    let device = best_device();
    eprintln!(
        "benchmarking a {} ({} parameters) on {}",
        arch.describe(),
        arch.parameter_count(),
        device_name(&device)
    );
    let r = continuo::bench::run(&arch, a.batch, a.seq_len, a.steps, &device)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("threads {}", r.threads);
    println!("training, batch {} × {} tokens: {:.0} tokens/s fused, {:.0} tokens/s plain candle ops ({:.2}×)", r.batch, r.seq_len, r.train_tokens_per_s, r.train_tokens_per_s_plain_ops, r.train_tokens_per_s / r.train_tokens_per_s_plain_ops);
    println!("batch-1 decoding ms/token     ctx 64   ctx 256   ctx 512");
    println!(
        "  with KV cache              {:>7.2} {:>9.2} {:>9.2}",
        r.infer_ms_per_token_ctx64, r.infer_ms_per_token_ctx256, r.infer_ms_per_token_ctx512
    );
    println!(
        "  without cache              {:>7.2} {:>9.2} {:>9.2}",
        r.infer_ms_per_token_nocache_ctx64,
        r.infer_ms_per_token_nocache_ctx256,
        r.infer_ms_per_token_nocache_ctx512
    );
    println!(
        "  with KV cache, every core            {:>9.2}   (the cached row runs on one thread)",
        r.infer_ms_per_token_ctx256_all_threads
    );
    println!("prefill of 256 tokens: {:.1} ms", r.prefill_ms_256);
    println!("generation incl. grammar masks and sampling: {:.2} ms/token; trigger → first note {:.1} ms", r.generate_ms_per_token, r.first_note_ms);
    Ok(())
}

fn run_train(a: TrainArgs) -> Result<()> {
    let architecture = architecture(
        a.arch,
        a.d_model,
        a.layers,
        a.heads,
        a.ff,
        a.seq_len as usize,
    )?;
    let device = best_device();
    eprintln!(
        "training a {} ({} parameters) on {} from {}",
        architecture.describe(),
        architecture.parameter_count(),
        device_name(&device),
        a.data.display()
    );
    let opts = TrainOptions {
        data: a.data,
        out: a.out.clone(),
        architecture,
        batch: a.batch as usize,
        seq_len: a.seq_len as usize,
        lr: a.lr,
        warmup: 0.05,
        steps: a.steps,
        minutes: a.minutes,
        seed: a.seed,
        resume: a.resume,
        eval_every: a.eval_every,
        checkpoint_minutes: a.checkpoint_minutes,
        clip: 1.0,
        weight_decay: 0.01,
        show_progress: !a.quiet,
        command: command_line(),
        max_val_windows: 256,
    };
    let r = train(&opts, &device)?;
    if !r.skipped.is_empty() {
        eprintln!("{} files skipped (listed above)", r.skipped.len());
    }
    println!(
        "trained {} steps in {:.1} min at {:.0} tokens/s; validation loss {:.3} → {:.3} nats/token; model in {}",
        r.steps,
        r.train_seconds / 60.0,
        r.tokens_per_s,
        r.initial_val_loss,
        r.final_val_loss,
        a.out.display()
    );
    Ok(())
}

fn variation_path(base: &Path, i: usize) -> PathBuf {
    if i == 0 {
        return base.to_owned();
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = base
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    base.with_file_name(format!("{stem}-{}{ext}", i + 1))
}

fn run_generate(a: GenerateArgs) -> Result<()> {
    if a.low > a.high {
        bail!("--low {} is above --high {}", a.low, a.high);
    }
    let device = best_device();
    let loaded = load_model(&a.model, &device)?;
    let primer = match &a.primer {
        Some(p) => read_midi(p)?.melodic,
        None => continuo::music::Phrase::new(vec![], 4.0),
    };
    let key: Option<Key> = match a.key.as_deref() {
        None => None,
        Some("primer") => Some(
            detect_key(&primer.notes)
                .context("--key primer: the primer has no notes to detect a key from")?,
        ),
        Some(k) => Some(parse_key(k).with_context(|| {
            format!("--key '{k}' is not a key; write e.g. C, Am, \"F# minor\" or primer")
        })?),
    };
    let opts = GenerateOptions {
        bars: a.bars,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        variations: a.variations as usize,
        pitch_range: (a.low, a.high),
        key,
        key_prefix: KeyPrefix::Detect,
        beats_per_bar: primer.beats_per_bar,
        start_on_downbeat: a.on_downbeat,
        copy_guard: guard_unless(&loaded, a.no_copy_guard),
    };
    let g = generate(&loaded.model, &device, &primer, &opts)?;
    for (i, phrase) in g.variations.iter().enumerate() {
        let out = variation_path(&a.out, i);
        let shifted: Vec<_> = phrase
            .notes
            .iter()
            .map(|n| continuo::music::Note {
                start: n.start + g.start_beat,
                ..*n
            })
            .collect();
        let mut tracks = Vec::new();
        if a.with_primer {
            tracks.push(TrackToWrite {
                name: "primer",
                channel: 0,
                notes: &primer.notes,
            });
            tracks.push(TrackToWrite {
                name: "continuation",
                channel: 0,
                notes: &shifted,
            });
        } else {
            tracks.push(TrackToWrite {
                name: "continuation",
                channel: 0,
                notes: &phrase.notes,
            });
        }
        write_midi(&out, &tracks, phrase.beats_per_bar, a.tempo)?;
        let key = detect_key(&phrase.notes).map_or("-".into(), |k| k.name());
        println!(
            "{}: {} notes over {} bars, key {}",
            out.display(),
            phrase.notes.len(),
            a.bars,
            key
        );
        if let Some(png) = &a.png {
            let png = variation_path(png, i);
            continuo::plot::draw_piano_roll(
                &png,
                &primer.notes,
                &phrase.notes,
                g.start_beat,
                phrase.beats_per_bar,
            )?;
            println!("{}: piano roll", png.display());
        }
    }
    eprintln!(
        "{} tokens per variation, prefill {:.1} ms, {:.2} ms/token ({}, {})",
        g.tokens,
        g.prefill_ms,
        g.ms_per_token,
        loaded.card.architecture.describe(),
        device_name(&device)
    );
    Ok(())
}

/// NLL and continuation statistics of one scorer on the validation split.
struct EvalRow {
    name: String,
    nll_total: f64,
    tokens: usize,
    stats: continuo::train::eval::MusicStats,
}

fn stats_json(r: &EvalRow, notes: usize) -> serde_json::Value {
    serde_json::json!({
        "nll_per_token": r.nll_total / r.tokens.max(1) as f64,
        "nll_per_note": r.nll_total / notes.max(1) as f64,
        "key_agreement": r.stats.key_agreement,
        "pitch_in_scale": r.stats.pitch_in_scale,
        "pitch_class_entropy": r.stats.pitch_class_entropy,
        "empty_beat_rate": r.stats.empty_beat_rate,
        "notes_per_beat": r.stats.notes_per_beat,
        "polyphony": r.stats.polyphony,
        "copy_rate": r.stats.copy_rate,
        "long_copy_rate": r.stats.long_copy_rate,
    })
}

/// The model's copy guard, unless `off`; says so when the model has none.
fn guard_unless(
    loaded: &continuo::model::LoadedModel,
    off: bool,
) -> Option<std::sync::Arc<continuo::model::copy_guard::CopyGuard>> {
    if off {
        return None;
    }
    if loaded.copy_guard.is_none() {
        eprintln!(
            "note: {} has no copy guard; build one with `continuo copy-guard --data <corpus>`",
            loaded.dir.display()
        );
    }
    loaded.copy_guard.clone()
}

fn run_copy_guard(a: CopyGuardArgs) -> Result<()> {
    use continuo::model::copy_guard::{CopyGuard, GUARD_FILE, GUARD_RUN};
    let card = continuo::model::files::read_card(&a.model)?;
    let corpus = dataset::load_corpus(&a.data)?;
    for s in &corpus.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    // The split must be the model's own, or the guard would protect the wrong files.
    let recorded = |k: &str| card.training.get(k).and_then(|v| v.as_u64());
    let found = (
        corpus.train.len() as u64,
        dataset::Corpus::note_count(&corpus.train) as u64,
    );
    if (recorded("train_files"), recorded("train_notes")) != (Some(found.0), Some(found.1)) {
        bail!(
            "{} was trained on {:?} files with {:?} notes, but the training split of {} has {} files with {} notes; pass the corpus the model was trained on",
            a.model.display(),
            recorded("train_files"),
            recorded("train_notes"),
            a.data.display(),
            found.0,
            found.1
        );
    }
    let guard = CopyGuard::new(corpus.train.iter().map(|p| p.phrase.notes.as_slice()));
    guard.save(&a.model)?;
    println!(
        "wrote {}: {} distinct runs of {GUARD_RUN} notes from {} training files",
        a.model.join(GUARD_FILE).display(),
        guard.len(),
        corpus.train.len()
    );
    Ok(())
}

fn run_eval(a: EvalArgs) -> Result<()> {
    use continuo::model::sampler::ModelScorer;
    use continuo::train::baselines::NGram;
    use continuo::train::copy::CopyIndex;

    let device = best_device();
    let loaded = load_model(&a.model, &device)?;
    let corpus = dataset::load_corpus(&a.data)?;
    for s in &corpus.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    let ctx = loaded.card.architecture.max_context().unwrap_or(256);
    let stream = dataset::packed_stream(&corpus.validation);
    let ws = windows(&stream, ctx, a.max_tokens.div_ceil(ctx));
    // Every token of `scored` is predicted once, after an `AnyKey` prefix, by each scorer.
    let scored_tokens: usize = ws.iter().map(|w| w.len() - 1).sum();
    let vocab = Vocab;
    let scored: Vec<u32> = std::iter::once(vocab.key_prefix(None))
        .chain(stream[..scored_tokens].iter().copied())
        .collect();
    // Notes in the scored part of the stream: one Duration token closes each note.
    let notes = scored[1..]
        .iter()
        .filter(|&&id| matches!(vocab.token(id), Some(continuo::tokens::Token::Duration(_))))
        .count();
    let cases = primer_cases(&corpus.validation, 2, a.bars, a.primers);
    let copies = CopyIndex::new(&corpus.train);
    let opts = GenerateOptions {
        bars: a.bars,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        key_prefix: if a.no_key_prefix {
            KeyPrefix::Any
        } else {
            KeyPrefix::Detect
        },
        copy_guard: guard_unless(&loaded, a.no_copy_guard),
        ..Default::default()
    };

    // One pass over the held-out windows gives the total and its parts.
    let by_kind = nll_by_kind(&loaded.model, &device, &ws, 16)?;
    let (total, count) = by_kind
        .values()
        .fold((0.0, 0), |(t, c), &(nats, n, _)| (t + nats, c + n));
    let (model_stats, real_stats) = continuation_stats(
        &mut ModelScorer::new(&loaded.model, &device),
        &cases,
        &opts,
        Some(&copies),
        a.key_lock,
    )?;
    let mut rows = vec![EvalRow {
        name: "model".into(),
        nll_total: total,
        tokens: count,
        stats: model_stats,
    }];
    if a.baselines {
        let train_stream = dataset::packed_stream(&corpus.train);
        for (name, order) in [("unigram", 1), ("4-gram", 4)] {
            eprintln!(
                "counting the {name} baseline on {} training tokens",
                train_stream.len()
            );
            let mut m = NGram::count(&train_stream, order);
            let (t, c) = m.nll(&scored);
            let (stats, _) = continuation_stats(&mut m, &cases, &opts, Some(&copies), a.key_lock)?;
            rows.push(EvalRow {
                name: name.into(),
                nll_total: t,
                tokens: c,
                stats,
            });
        }
    }
    let m = &rows[0];
    let mut report = serde_json::json!({
        "model": a.model.display().to_string(),
        "architecture": loaded.card.architecture.describe(),
        "nll_per_token": m.nll_total / m.tokens.max(1) as f64,
        "nll_per_note": m.nll_total / notes.max(1) as f64,
        "tokens_scored": count,
        "notes_scored": notes,
        "key_agreement": m.stats.key_agreement,
        "key_agreement_real": real_stats.key_agreement,
        "pitch_in_scale": m.stats.pitch_in_scale,
        "pitch_in_scale_real": real_stats.pitch_in_scale,
        "pitch_class_entropy": m.stats.pitch_class_entropy,
        "pitch_class_entropy_real": real_stats.pitch_class_entropy,
        "empty_beat_rate": m.stats.empty_beat_rate,
        "empty_beat_rate_real": real_stats.empty_beat_rate,
        "notes_per_beat": m.stats.notes_per_beat,
        "notes_per_beat_real": real_stats.notes_per_beat,
        "polyphony": m.stats.polyphony,
        "polyphony_real": real_stats.polyphony,
        "copy_rate": m.stats.copy_rate,
        "copy_rate_real": real_stats.copy_rate,
        "long_copy_rate": m.stats.long_copy_rate,
        "long_copy_rate_real": real_stats.long_copy_rate,
        "n_files": corpus.validation.len(),
        "near_duplicate_files": corpus.near_duplicate_files,
        "n_primers": cases.len(),
        "temperature": a.temperature,
        "top_p": a.top_p,
        "key_lock": a.key_lock,
        "key_prefix": !a.no_key_prefix,
        "copy_guard_runs": opts.copy_guard.as_ref().map(|g| g.len()),
        "nll_by_kind": by_kind
            .iter()
            .map(|(kind, &(nats, n, first))| {
                let per = |x: f64| x / n.max(1) as f64;
                let v = serde_json::json!({
                    "nll_per_token": per(nats),
                    "tokens": n,
                    "top1": per(first as f64),
                });
                (kind.to_string(), v)
            })
            .collect::<serde_json::Map<_, _>>(),
    });
    if a.baselines {
        report["baselines"] = rows[1..]
            .iter()
            .map(|r| (r.name.clone(), stats_json(r, notes)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if a.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "model {} ({})",
        a.model.display(),
        loaded.card.architecture.describe()
    );
    println!(
        "validation: {} files, {} tokens scored, {} notes; {} primers of 2 bars, {} bars continued",
        corpus.validation.len(),
        count,
        notes,
        cases.len(),
        a.bars
    );
    print!("{:<22}", "metric");
    for r in &rows {
        print!(" {:>10}", r.name);
    }
    println!(" {:>10}", "real");
    let line = |name: &str, f: &dyn Fn(&EvalRow) -> f64, real: Option<f64>| {
        print!("{name:<22}");
        for r in &rows {
            print!(" {:>10.3}", f(r));
        }
        match real {
            Some(v) => println!(" {v:>10.3}"),
            None => println!(" {:>10}", "-"),
        }
    };
    line(
        "NLL per token",
        &|r| r.nll_total / r.tokens.max(1) as f64,
        None,
    );
    line("NLL per note", &|r| r.nll_total / notes.max(1) as f64, None);
    line(
        "key agreement",
        &|r| r.stats.key_agreement,
        Some(real_stats.key_agreement),
    );
    line(
        "pitch in scale",
        &|r| r.stats.pitch_in_scale,
        Some(real_stats.pitch_in_scale),
    );
    line(
        "pitch-class entropy",
        &|r| r.stats.pitch_class_entropy,
        Some(real_stats.pitch_class_entropy),
    );
    line(
        "empty-beat rate",
        &|r| r.stats.empty_beat_rate,
        Some(real_stats.empty_beat_rate),
    );
    line(
        "notes per beat",
        &|r| r.stats.notes_per_beat,
        Some(real_stats.notes_per_beat),
    );
    line(
        "polyphony",
        &|r| r.stats.polyphony,
        Some(real_stats.polyphony),
    );
    line(
        "copy rate (8 notes)",
        &|r| r.stats.copy_rate,
        Some(real_stats.copy_rate),
    );
    line(
        "copy rate (16 notes)",
        &|r| r.stats.long_copy_rate,
        Some(real_stats.long_copy_rate),
    );
    println!("model NLL by kind of token predicted:");
    for (kind, &(nats, n, first)) in &by_kind {
        println!(
            "  {kind:<12} {:>7.3} nats over {n:>7} tokens, first choice right {:>5.1} %",
            nats / n.max(1) as f64,
            100.0 * first as f64 / n.max(1) as f64
        );
    }
    Ok(())
}
