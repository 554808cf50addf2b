//! `continuo`: train a model on a folder of MIDI files, continue a primer, evaluate a model.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use continuo::device::{best_device, device_name};
use continuo::midi_file::{read_midi, write_midi, TrackToWrite};
use continuo::model::sampler::{DEFAULT_CANDIDATES, MAX_CANDIDATES};
use continuo::model::{
    generate, load_model, lstm, transformer, Architecture, GenerateOptions, KeyPrefix,
};
use continuo::music::parse::{parse_key, parse_pitch};
use continuo::music::texture::{
    Rhythm, TextureRequest, Told, DENSITY_NAMES, POLYPHONY_NAMES, REGISTER_NAMES,
};
use continuo::music::variation::Variation;
use continuo::music::{detect_key, Key};
use continuo::tokens::{Vocab, PREFIX_LEN};
use continuo::train::eval::{continuation_stats, nll_by_kind, primer_cases, windows};
use continuo::train::{dataset, train, BaseMix, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod device_check;
mod eval;
mod generate;
mod train;

use device_check::{run_device_check, DeviceCheckArgs};
use eval::{run_eval, EvalArgs};
use generate::{run_generate, GenerateArgs};
use train::{run_train, TrainArgs};

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
    /// Cut the real-continuation development set of `eval --continuations`: two-bar primers
    /// and the real next four bars of the same parts, from held-out material only.
    ContinuationSet(ContinuationSetArgs),
    /// The shipped model on this build's best device (a GPU with --features cuda or metal)
    /// against the CPU: logits of a fixed prompt, and answer times (scripts/gpu_check.sh).
    DeviceCheck(DeviceCheckArgs),
}

#[derive(Args)]
struct ContinuationSetArgs {
    /// A training corpus: only its held-out split is cut, and only the sources named.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Source folders of --data to cut from.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bach,freedoom,pianobooster,oneills1850,ryansMammoth,miscFolk"
    )]
    sources: Vec<String>,
    /// Folders kept out of training entirely, cut whole (e.g. data/style/heldout).
    #[arg(long)]
    whole: Vec<PathBuf>,
    /// Most cuts of one role.
    #[arg(long, default_value_t = 60)]
    per_role: usize,
    #[arg(long, default_value = "data/continuations")]
    out: PathBuf,
}

fn run_continuation_set(a: ContinuationSetArgs) -> Result<()> {
    use continuo::train::continuation_set::{balance, collect_cuts, write_set};
    let cuts = collect_cuts(a.data.as_deref(), &a.sources, &a.whole)?;
    let found = cuts.len();
    let kept = balance(cuts, a.per_role);
    write_set(&kept, &a.out)?;
    let mut by_role = std::collections::BTreeMap::<&str, usize>::new();
    for c in &kept {
        *by_role.entry(c.role).or_default() += 1;
    }
    println!(
        "{} of {found} cuts written to {} ({})",
        kept.len(),
        a.out.display(),
        by_role
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
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
    /// Time the prefill of 256 tokens alone (`benches/peers/run.sh` alternates it with ONNX
    /// Runtime's).
    #[arg(long)]
    prefill: bool,
    /// Time the plugin's answer instead: the model in `--model` continues the first two bars
    /// of each primer with the plugin's defaults, for `--candidates` at `--bars`.
    #[arg(long)]
    answer: bool,
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Primers for `--answer` (their first two bars).
    #[arg(long, num_args = 1.., default_values = [
        "examples/dev-primers/chords--pop-I-V-vi-IV.mid",
        "examples/dev-primers/bass--funk-16ths-E.mid",
        "examples/dev-primers/lead--bebop-Bb.mid",
        "examples/dev-primers/arp--trance-16ths-Am.mid",
        "examples/dev-primers/riff--house-piano-G.mid",
    ])]
    primers: Vec<PathBuf>,
    /// Runs of each primer for `--answer` (their median is taken).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Answer lengths `--answer` times.
    #[arg(long, num_args = 1.., default_values_t = [4, 8])]
    bars: Vec<u32>,
    /// Candidate counts `--answer` times (the ratio to one candidate needs 1 among them).
    #[arg(long, num_args = 1.., default_values_t = [1, DEFAULT_CANDIDATES, MAX_CANDIDATES])]
    candidates: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Arch {
    Transformer,
    Lstm,
}

/// What the model is told about the answer's texture, and where its onsets may fall.
#[derive(Args, Clone)]
struct TextureArgs {
    /// Notes per onset: primer, any, or 1, 1-2, 2, 3, 4+.
    #[arg(long, default_value = "primer", value_parser = |s: &str| told_arg(s, &POLYPHONY_NAMES))]
    polyphony: Told,
    /// Notes per beat: primer, any, or sparse, quarters, eighths, busy, 16ths, fast.
    #[arg(long, default_value = "primer", value_parser = |s: &str| told_arg(s, &DENSITY_NAMES))]
    density: Told,
    /// Median pitch: primer, any, or low, bass, tenor, middle, upper, high, top.
    #[arg(long, default_value = "primer", value_parser = |s: &str| told_arg(s, &REGISTER_NAMES))]
    register: Told,
    /// Onsets anywhere (free) or only where the primer has onsets in its bars (primer).
    #[arg(long, default_value = "free", value_parser = rhythm_arg)]
    rhythm: Rhythm,
    /// How much of the answer replays the primer's bars: loop (the primer's bars, every
    /// fourth written anew), develop (half the answer replays them, then the model
    /// continues) or new (the model's own bars throughout).
    #[arg(long, default_value = "develop", value_parser = variation_arg)]
    variation: Variation,
    /// Sample this many candidates per answer and keep the one most in kind with the primer
    /// (texture, density, register, key, alive, new); 1 keeps the first sample.
    #[arg(long, default_value_t = DEFAULT_CANDIDATES as u32, value_parser = clap::value_parser!(u32).range(1..=MAX_CANDIDATES as i64))]
    candidates: u32,
    /// Let the model alone follow the texture prefix: no steering of chord sizes and
    /// pitches toward the primer's (or the chosen bins').
    #[arg(long)]
    unsteered: bool,
}

impl TextureArgs {
    fn request(&self) -> TextureRequest {
        TextureRequest {
            polyphony: self.polyphony,
            density: self.density,
            register: self.register,
        }
    }
}

fn told_arg(s: &str, names: &[&str]) -> std::result::Result<Told, String> {
    Told::parse(s, names)
        .ok_or_else(|| format!("'{s}' is none of primer, any, {}", names.join(", ")))
}

fn rhythm_arg(s: &str) -> std::result::Result<Rhythm, String> {
    match s {
        "free" => Ok(Rhythm::Free),
        "primer" | "like-primer" => Ok(Rhythm::LikePrimer),
        _ => Err(format!("'{s}' is neither free nor primer")),
    }
}

fn variation_arg(s: &str) -> std::result::Result<Variation, String> {
    Variation::parse(s).ok_or_else(|| format!("'{s}' is none of {}", Variation::NAMES.join(", ")))
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

/// A share: a number from 0 to 1.
fn share_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' must be a share from 0 to 1 (e.g. 0.25)")),
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' must be a number above 0 (e.g. 3)")),
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
        Command::ContinuationSet(a) => run_continuation_set(a),
        Command::DeviceCheck(a) => run_device_check(a),
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
                smeared_keys: false,
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
    if a.answer {
        return run_answer_bench(&a);
    }
    let arch = architecture(a.arch, a.d_model, a.layers, a.heads, None, a.ctx)?;
    let device = best_device();
    eprintln!(
        "benchmarking a {} ({} parameters) on {}",
        arch.describe(),
        arch.parameter_count(),
        device_name(&device)
    );
    if a.prefill {
        let ms = continuo::bench::prefill_only(&arch, &device)?;
        match a.json {
            true => println!("{}", serde_json::json!({ "prefill_ms_256": ms })),
            false => println!("prefill of 256 tokens: {ms:.1} ms"),
        }
        return Ok(());
    }
    let r = continuo::bench::run(&arch, a.batch, a.seq_len, a.steps, &device)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("threads {}", r.threads);
    println!("training, batch {} × {} tokens: {:.0} tokens/s fused, {:.0} tokens/s plain candle ops ({:.2}×)", r.batch, r.seq_len, r.train_tokens_per_s, r.train_tokens_per_s_plain_ops, r.train_tokens_per_s / r.train_tokens_per_s_plain_ops);
    let step = &r.train_step;
    println!(
        "training step {:.0} ms: forward {:.0} %, backward {:.0} %, optimizer {:.0} %",
        step.total * 1e3,
        100.0 * step.forward / step.total,
        100.0 * step.backward / step.total,
        100.0 * step.optimizer / step.total
    );
    println!(
        "this machine's f32 matmul (1024², same backend): {:.0} GFLOP/s; training step {:.1} MFLOP/token = {:.0} GFLOP/s = {:.0} % of it",
        r.matmul_gflops_1024,
        r.train_flops_per_token / 1e6,
        r.train_gflops,
        100.0 * r.train_share_of_matmul
    );
    println!("batch-1 decoding ms/token     ctx 64   ctx 256   ctx 512");
    println!(
        "  with KV cache ({} weights){:>7.2} {:>9.2} {:>9.2}",
        r.step_precision,
        r.infer_ms_per_token_ctx64,
        r.infer_ms_per_token_ctx256,
        r.infer_ms_per_token_ctx512
    );
    for (name, ms) in &r.infer_ms_per_token_ctx256_by_step_precision {
        println!("  with KV cache, {name} weights            {ms:>9.2}");
    }
    println!(
        "  without cache              {:>7.2} {:>9.2} {:>9.2}",
        r.infer_ms_per_token_nocache_ctx64,
        r.infer_ms_per_token_nocache_ctx256,
        r.infer_ms_per_token_nocache_ctx512
    );
    println!("prefill of 256 tokens: {:.1} ms", r.prefill_ms_256);
    println!("generation incl. grammar masks and sampling: {:.2} ms/token; trigger → first note {:.1} ms", r.generate_ms_per_token, r.first_note_ms);
    Ok(())
}

/// `continuo bench --answer`: the plugin's answer, 1 → 4 → 8 candidates.
fn run_answer_bench(a: &BenchArgs) -> Result<()> {
    let device = best_device();
    let loaded = load_model(&a.model, &device)?;
    let primers = a
        .primers
        .iter()
        .map(|p| {
            let phrase = read_midi(p)?.melodic;
            Ok(phrase.slice(0.0, 2.0 * phrase.beats_per_bar))
        })
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "the plugin's answer (Develop, copy guard) to {} two-bar primers, {} on {}, median of {} runs each",
        primers.len(),
        loaded.card.name,
        device_name(&device),
        a.repeats
    );
    let rows = continuo::answer_bench::answer_timings(
        &loaded.model,
        &device,
        loaded.copy_guard.clone(),
        &primers,
        &a.bars,
        &a.candidates,
        a.repeats,
    )?;
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "bars  candidates  tokens/row  first note ms  complete ms  of it prefills ms  × one candidate  × one, run by run"
    );
    for r in &rows {
        let one = rows
            .iter()
            .find(|o| o.bars == r.bars && o.candidates == 1)
            .map_or(f64::NAN, |o| o.complete_ms);
        println!(
            "{:>4}  {:>10}  {:>10}  {:>13.1}  {:>11.1}  {:>17.1}  {:>15.2}  {:>17.2}",
            r.bars,
            r.candidates,
            r.tokens,
            r.first_note_ms,
            r.complete_ms,
            r.prefill_ms,
            r.complete_ms / one,
            r.paired_ratio
        );
    }
    Ok(())
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
