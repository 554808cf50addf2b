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
        ("--seq-len", a.seq_len.map(|s| s as usize), ctx),
    ];
    for (flag, given, base) in numbers {
        if let (Some(g), Some(b)) = (given, base) {
            if g != b {
                refuse(flag, g.to_string(), b.to_string())?;
            }
        }
    }
    Ok(arch)
}

pub fn run_train(a: TrainArgs) -> Result<()> {
    let architecture = match &a.from {
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
        from: a.from.clone(),
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
