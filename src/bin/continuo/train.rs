//! `continuo train`: from random weights, or `--from` another model folder.

use super::*;

#[derive(Args)]
pub struct TrainArgs {
    /// Folder of .mid files (searched recursively).
    #[arg(long)]
    data: PathBuf,
    /// Folder to write the model into.
    #[arg(long)]
    out: PathBuf,
    /// Start from this model folder's weights; its architecture and vocabulary are kept.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Architecture [default: transformer].
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Transformer width / LSTM hidden size [default: 256].
    #[arg(long)]
    d_model: Option<usize>,
    /// [default: 4]
    #[arg(long)]
    layers: Option<usize>,
    /// [default: 4]
    #[arg(long)]
    heads: Option<usize>,
    /// Transformer MLP width (default 4 × d-model).
    #[arg(long)]
    ff: Option<usize>,
    /// Tokens per training window (and the transformer's context) [default: 256].
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    seq_len: Option<u32>,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Peak learning rate [default: 1e-3, or 3e-4 with --from].
    #[arg(long)]
    lr: Option<f64>,
    /// Share of the run spent warming up [default: 0.05, or 0.02 with --from].
    #[arg(long, value_parser = share_f64)]
    warmup: Option<f64>,
    /// With --from: the base model's training corpus, rehearsed against forgetting
    /// [default: the folder its config.json names, when it is on disk].
    #[arg(long)]
    base_data: Option<PathBuf>,
    /// With --from: share of each batch drawn from the base corpus [default: 0.5]; 0 turns
    /// rehearsal off (the base corpus's held-out loss is still measured, before and after).
    #[arg(long, value_parser = share_f64)]
    base_mix: Option<f64>,
    /// Share of training windows rearranged as fill-in-the-middle, so the model also
    /// fills a gap of bars (`generate --infill`, the editor's Regenerate bar) [default: 0.5].
    #[arg(long, value_parser = share_f64)]
    fill_share: Option<f64>,
    /// Loss weight of the tokens of a filled gap (and the marker closing it) against 1 for
    /// every other token: more of the gradient goes to what only fill-in-the-middle
    /// teaches, hearing the bars after a gap.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    gap_weight: f64,
    /// Smear each attention key with the previous position's (a transformer's; with --from,
    /// a base without it gains it, starting at zero, so the run begins as the base).
    #[arg(long)]
    smeared_keys: bool,
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

/// The architecture of `--from`'s model, refusing any flag that contradicts it.
fn base_architecture(a: &TrainArgs, dir: &Path) -> Result<Architecture> {
    let arch =
        continuo::train::warm_start::architecture_of(&continuo::train::warm_start::read_base(dir)?);
    let (kind, d_model, layers, heads, ff, ctx) = match &arch {
        Architecture::Transformer(c) => (
            Arch::Transformer,
            c.d_model,
            c.n_layers,
            Some(c.n_heads),
            Some(c.d_ff),
            Some(c.max_seq_len),
        ),
        Architecture::Lstm(c) => (Arch::Lstm, c.hidden, c.n_layers, None, None, None),
    };
    let refuse = |flag: &str, given: String, base: String| -> Result<()> {
        bail!(
            "{flag} {given} contradicts --from {}: that model has {flag} {base}; leave {flag} out (the architecture comes from the model)",
            dir.display()
        )
    };
    if let Some(k) = a.arch.filter(|&k| k != kind) {
        refuse(
            "--arch",
            format!("{k:?}").to_lowercase(),
            format!("{kind:?}").to_lowercase(),
        )?;
    }
    let numbers = [
        ("--d-model", a.d_model, Some(d_model)),
        ("--layers", a.layers, Some(layers)),
        ("--heads", a.heads, heads),
        ("--ff", a.ff, ff),
    ];
    for (flag, given, base) in numbers {
        if let (Some(g), Some(b)) = (given, base) {
            if g != b {
                refuse(flag, g.to_string(), b.to_string())?;
            }
        }
    }
    let mut arch = arch;
    // A longer context extends the transformer's position table (its new rows start fresh,
    // [`load_base_weights`](continuo::train::warm_start::load_base_weights)): a gap then hears
    // the bars 8 away on each side, where a tune's phrase repeats. A shorter one would drop
    // positions the base learned.
    if let (Some(given), Some(base)) = (a.seq_len.map(|s| s as usize), ctx) {
        match &mut arch {
            Architecture::Transformer(c) if given > base => c.max_seq_len = given,
            _ if given != base => refuse(
                "--seq-len",
                format!("{given} (only a longer context extends a model)"),
                base.to_string(),
            )?,
            _ => {}
        }
    }
    Ok(arch)
}

/// Where and how much of the base corpus a fine-tuning run rehearses.
fn base_mix(a: &TrainArgs) -> Result<Option<BaseMix>> {
    use continuo::train::warm_start::{read_base, BASE_MIX_SHARE};
    let Some(from) = &a.from else {
        if a.base_data.is_some() || a.base_mix.is_some() {
            bail!(
                "--base-data and --base-mix go with --from (they rehearse the base model's corpus)"
            );
        }
        return Ok(None);
    };
    let share = a.base_mix.unwrap_or(BASE_MIX_SHARE);
    let data = match &a.base_data {
        Some(d) => d.clone(),
        None => match read_base(from)?.corpus_folder(from) {
            Some(d) => d,
            None => {
                eprintln!(
                    "the corpus {} was trained on is not on this disk: fine-tuning without \
                     rehearsing it (give --base-data FOLDER to guard against forgetting)",
                    from.display()
                );
                return Ok(None);
            }
        },
    };
    Ok(Some(BaseMix { data, share }))
}

pub fn run_train(a: TrainArgs) -> Result<()> {
    use continuo::train::warm_start::{FINE_TUNE_LR, FINE_TUNE_WARMUP};
    let fine_tune = a.from.is_some();
    let base_mix = base_mix(&a)?;
    let mut architecture = match &a.from {
        Some(dir) => base_architecture(&a, dir)?,
        None => architecture(
            a.arch.unwrap_or(Arch::Transformer),
            a.d_model.unwrap_or(256),
            a.layers.unwrap_or(4),
            a.heads.unwrap_or(4),
            a.ff,
            a.seq_len.unwrap_or(256) as usize,
        )?,
    };
    if a.smeared_keys {
        match &mut architecture {
            Architecture::Transformer(c) => c.smeared_keys = true,
            Architecture::Lstm(_) => bail!("--smeared-keys is for a transformer"),
        }
    }
    let seq_len = architecture
        .max_context()
        .unwrap_or(a.seq_len.unwrap_or(256) as usize);
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
        seq_len,
        lr: a.lr.unwrap_or(if fine_tune { FINE_TUNE_LR } else { 1e-3 }),
        warmup: a
            .warmup
            .unwrap_or(if fine_tune { FINE_TUNE_WARMUP } else { 0.05 }),
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
        from: a.from.clone(),
        base_mix,
        fill_share: a.fill_share.unwrap_or(continuo::train::dataset::FILL_SHARE),
        gap_weight: a.gap_weight,
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
