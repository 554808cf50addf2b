//! `continuo eval`: held-out NLL and statistics of continuations, and the in-kind table over a
//! folder of primers.

use super::*;

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Folder of .mid files; evaluation uses its validation split (the files training held out).
    #[arg(long, required_unless_present_any = ["primers", "continuations"])]
    data: Option<PathBuf>,
    /// Score every file of --data, not its validation split: for a folder of files kept
    /// out of training (e.g. a style's held-out songs).
    #[arg(long, conflicts_with = "baselines")]
    whole_folder: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// A number: continue the first 2 bars of that many validation pieces [default: 32]. A
    /// folder: the in-kind checks over its primers named ROLE--name.mid, a table by role.
    #[arg(long)]
    primers: Option<String>,
    /// A folder of primers/ROLE--name.mid and real/ROLE--name.mid (the real next bars): the
    /// answers, the model alone and a loop of each primer measured against the real bars
    /// (reuse, groove, harmony, density, register, rhythm histograms), overall and by role.
    #[arg(long, conflicts_with_all = ["primers", "data"])]
    continuations: Option<PathBuf>,
    /// With a primer folder: continuations per primer (seeds 0..N).
    #[arg(long, default_value_t = 8)]
    seeds: usize,
    #[command(flatten)]
    texture: TextureArgs,
    /// Bars generated per primer, compared with the real next bars.
    #[arg(long, default_value_t = 4)]
    bars: u32,
    /// Tokens per held-out window scored for NLL [default: the model's context]: 256
    /// compares a model of a longer context with one of 256 tokens on the same windows.
    #[arg(long)]
    window: Option<usize>,
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
    /// Infilling: with --data, also the NLL per note of held-out gaps of 1 and 2 bars given
    /// both sides vs the bars before only; with --primers DIR, the in-kind table of one bar
    /// of each answer filled anew, against the bars around it.
    #[arg(long)]
    infill: bool,
    /// With --infill and --data: most held-out gaps scored per gap length.
    #[arg(long, default_value_t = 300)]
    gaps: usize,
    /// With --infill and --data: bars around each gap on each side, fewer where the
    /// model's context ends (the nearest are kept). 4 gives the figures of sessions 16–19.
    #[arg(long, default_value_t = continuo::train::infill_eval::CONTEXT_BARS)]
    context_bars: usize,
    /// With --data: also score the held-out windows through cached decoding (as generation
    /// computes its logits), with the steps reading f32, f16 and i8 weights, to measure
    /// what the rounded steps cost.
    #[arg(long)]
    step_precisions: bool,
}

/// Held-out NLL per token through cached decoding with the steps reading each precision
/// (`--step-precisions`), and each one's difference from f32.
fn step_precision_report(
    model: &mut continuo::model::Model,
    device: &candle_core::Device,
    ws: &[Vec<u32>],
) -> Result<serde_json::Value> {
    use continuo::model::StepPrecision;
    use continuo::train::eval::nll_through_steps;
    let mut report = serde_json::Map::new();
    let mut f32_nll = f64::NAN;
    for p in StepPrecision::ALL {
        model.set_step_precision(p);
        let (nats, n) = nll_through_steps(model, device, ws, 16)?;
        let per_token = nats / n.max(1) as f64;
        if p == StepPrecision::F32 {
            f32_nll = per_token;
        } else {
            report.insert(
                format!("{}_minus_f32", p.name()),
                (per_token - f32_nll).into(),
            );
        }
        report.insert(p.name().into(), per_token.into());
    }
    model.set_step_precision(StepPrecision::default());
    Ok(report.into())
}

/// Held-out gaps of 1 and 2 bars scored both ways (`--infill`), and as JSON how far the
/// held-out bars' tunes come back ([`repeat_reach`](continuo::train::infill_eval::repeat_reach)).
fn gap_report(
    a: &EvalArgs,
    loaded: &continuo::model::LoadedModel,
    device: &candle_core::Device,
    corpus: &continuo::train::Corpus,
) -> Result<(Vec<continuo::train::infill_eval::GapNll>, serde_json::Value)> {
    use continuo::train::infill_eval::{gap_cases, gap_nll};
    let Some(layout) = Vocab.infill_layout(loaded.model.vocab_size()) else {
        bail!("--infill: {} was trained before infilling (vocabulary v3); it cannot read a gap's suffix", a.model.display());
    };
    if a.context_bars == 0 {
        bail!("--context-bars must be at least 1");
    }
    let ctx = loaded.card.architecture.max_context().unwrap_or(256);
    let (bars, reach) = continuo::train::infill_eval::repeat_reach(&corpus.validation, &[4, 8]);
    let told: Vec<String> = reach
        .iter()
        .map(|r| {
            format!(
                "within {} bars {:.1} % after only, {:.1} % before",
                r.bars_each_side,
                100.0 * r.after_only,
                100.0 * r.before
            )
        })
        .collect();
    if !a.json {
        println!(
            "held-out bars played again pitch for pitch ({bars} bars with 8 on each side): {}",
            told.join("; ")
        );
    }
    let reach_json = serde_json::json!({ "bars": bars, "reach": reach });
    let mut out = Vec::new();
    for bars in [1, 2] {
        let cases = gap_cases(
            &corpus.validation,
            bars,
            a.context_bars,
            layout,
            a.gaps,
            ctx,
        );
        out.push(gap_nll(&loaded.model, device, &cases, bars)?);
    }
    Ok((out, reach_json))
}

/// NLL and continuation statistics of one scorer on the validation split.
pub struct EvalRow {
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

/// The sampling options the flags ask for, answers starting on their first downbeat as the
/// plugin's do.
fn eval_options(a: &EvalArgs, loaded: &continuo::model::LoadedModel) -> GenerateOptions {
    GenerateOptions {
        bars: a.bars,
        temperature: a.temperature,
        top_p: a.top_p,
        key_prefix: if a.no_key_prefix {
            KeyPrefix::Any
        } else {
            KeyPrefix::Detect
        },
        texture: a.texture.request(),
        rhythm: a.texture.rhythm,
        variation: a.texture.variation,
        steer_texture: !a.texture.unsteered,
        candidates: a.texture.candidates as usize,
        start_on_downbeat: true,
        copy_guard: guard_unless(loaded, a.no_copy_guard),
        ..Default::default()
    }
}

/// `continuo eval --continuations DIR`: answers against the real next bars.
pub fn run_continuation_eval(a: &EvalArgs, dir: &Path) -> Result<()> {
    use continuo::model::sampler::ModelScorer;
    use continuo::train::continuation_eval::{continuation_report, read_continuations};
    if !dir.join("primers").is_dir() || !dir.join("real").is_dir() {
        bail!(
            "--continuations {}: needs primers/ and real/ folders of ROLE--name.mid files (scripts/continuation_set.sh builds one)",
            dir.display()
        );
    }
    let device = best_device();
    let loaded = load_model(&a.model, &device)?;
    let (examples, skipped) = read_continuations(dir);
    for (path, why) in &skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    if examples.is_empty() {
        bail!("no primer with its real continuation in {}", dir.display());
    }
    let opts = eval_options(a, &loaded);
    let t0 = std::time::Instant::now();
    let report = continuation_report(
        &mut ModelScorer::new(&loaded.model, &device),
        &examples,
        &opts,
        a.seeds,
    )?;
    if a.json {
        let mut j = serde_json::to_value(&report)?;
        j["model"] = a.model.display().to_string().into();
        j["folder"] = dir.display().to_string().into();
        j["temperature"] = a.temperature.into();
        j["seconds"] = t0.elapsed().as_secs_f64().into();
        println!("{j}");
    } else {
        println!(
            "{} primers × {} seeds, {} bars each, from {} ({:.0} s)\n{}",
            examples.len(),
            a.seeds,
            a.bars,
            dir.display(),
            t0.elapsed().as_secs_f64(),
            report.table()
        );
    }
    Ok(())
}

/// `continuo eval --primers DIR`: the in-kind table.
pub fn run_in_kind_eval(a: &EvalArgs, dir: &Path) -> Result<()> {
    use continuo::model::sampler::ModelScorer;
    use continuo::train::in_kind_eval::{in_kind_report, infill_in_kind_report, read_primers};
    if !dir.is_dir() {
        bail!("--primers {}: no such folder (give a number of held-out primers, or a folder of ROLE--name.mid files)", dir.display());
    }
    let device = best_device();
    let loaded = load_model(&a.model, &device)?;
    let (primers, skipped) = read_primers(dir);
    for (path, why) in &skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    if primers.is_empty() {
        bail!(
            "no primers named ROLE--name.mid with notes in {}",
            dir.display()
        );
    }
    let opts = eval_options(a, &loaded);
    let t0 = std::time::Instant::now();
    let mut scorer = ModelScorer::new(&loaded.model, &device);
    let report = if a.infill {
        infill_in_kind_report(&mut scorer, &primers, &opts, a.seeds)?
    } else {
        in_kind_report(&mut scorer, &primers, &opts, a.seeds, a.key_lock)?
    };
    if a.json {
        let mut j = serde_json::to_value(&report)?;
        j["model"] = a.model.display().to_string().into();
        j["folder"] = dir.display().to_string().into();
        j["bars"] = a.bars.into();
        j["temperature"] = a.temperature.into();
        j["seconds"] = t0.elapsed().as_secs_f64().into();
        j["infill"] = a.infill.into();
        println!("{j}");
    } else {
        println!(
            "{} primers × {} seeds, {} bars each{}, from {} ({:.0} s)\n{}",
            report.primers,
            report.seeds,
            a.bars,
            if a.infill {
                "; one bar of each answer filled anew and checked against the bars around it"
            } else {
                ""
            },
            dir.display(),
            t0.elapsed().as_secs_f64(),
            report.table()
        );
    }
    Ok(())
}

pub fn run_eval(a: EvalArgs) -> Result<()> {
    use continuo::model::sampler::ModelScorer;
    use continuo::train::baselines::NGram;
    use continuo::train::copy::CopyIndex;

    if let Some(dir) = &a.continuations {
        return run_continuation_eval(&a, dir);
    }
    let n_primers = match &a.primers {
        None => 32,
        Some(s) => match s.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return run_in_kind_eval(&a, Path::new(s)),
        },
    };
    let Some(data) = &a.data else {
        bail!("give --data FOLDER for held-out NLL and statistics (or --primers DIR for the in-kind table)");
    };
    let device = best_device();
    let mut loaded = load_model(&a.model, &device)?;
    let mut corpus = dataset::load_corpus(data)?;
    if a.whole_folder {
        let train = std::mem::take(&mut corpus.train);
        corpus.validation.extend(train);
    }
    for s in &corpus.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    let model_ctx = loaded.card.architecture.max_context().unwrap_or(256);
    let ctx = a.window.unwrap_or(model_ctx);
    if !(PREFIX_LEN + 2..=model_ctx).contains(&ctx) {
        bail!(
            "--window {ctx}: give {} to {model_ctx} tokens (the model's context)",
            PREFIX_LEN + 2
        );
    }
    let stream = dataset::packed_stream(&corpus.validation);
    let ws = windows(&stream, ctx, a.max_tokens.div_ceil(ctx));
    // Every token of `scored` is predicted once, after the "any" prefix, by each scorer.
    let scored_tokens: usize = ws.iter().map(|w| w.len() - PREFIX_LEN).sum();
    let vocab = Vocab;
    let scored: Vec<u32> = vocab
        .any_prefix()
        .into_iter()
        .chain(stream[..scored_tokens].iter().copied())
        .collect();
    // Notes in the scored part of the stream: one Duration token closes each note.
    let notes = scored[PREFIX_LEN..]
        .iter()
        .filter(|&&id| matches!(vocab.token(id), Some(continuo::tokens::Token::Duration(_))))
        .count();
    let cases = primer_cases(&corpus.validation, 2, a.bars, n_primers);
    let copies = CopyIndex::new(&corpus.train);
    let opts = GenerateOptions {
        seed: a.seed,
        start_on_downbeat: false,
        ..eval_options(&a, &loaded)
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
    let (gaps, repeat_reach) = if a.infill {
        gap_report(&a, &loaded, &device, &corpus)?
    } else {
        (vec![], serde_json::Value::Null)
    };
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
        "candidates": opts.candidates,
        "steer_texture": opts.steer_texture,
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
    if a.infill {
        report["infill"] = serde_json::to_value(&gaps)?;
        report["infill_context_bars"] = a.context_bars.into();
        report["infill_repeat_reach"] = repeat_reach;
    }
    if a.step_precisions {
        report["nll_per_token_through_steps"] =
            step_precision_report(&mut loaded.model, &device, &ws)?;
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
    if let Some(s) = report.get("nll_per_token_through_steps") {
        let at = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "NLL per token through cached decoding: f32 weights {:.5}, f16 {:.5} (f16 − f32 = {:+.5}), i8 {:.5} (i8 − f32 = {:+.5})",
            at("f32"),
            at("f16"),
            at("f16_minus_f32"),
            at("i8"),
            at("i8_minus_f32")
        );
    }
    for g in &gaps {
        println!(
            "held-out gaps of {} bar(s), up to {} bars heard each side: {} gaps, {} notes; NLL per note {:.3} hearing both sides, {:.3} the bars before only ({:.1} % lower)",
            g.gap_bars,
            a.context_bars,
            g.gaps,
            g.notes,
            g.both_sides_per_note,
            g.prefix_only_per_note,
            100.0 * g.reduction
        );
        let kinds: Vec<String> = g
            .by_kind
            .iter()
            .map(|(k, (b, p, a))| format!("{k} {b:.3} / {p:.3} / {a:.3}"))
            .collect();
        println!(
            "  over the tokens the grammar allows (as generation samples): {:.3} vs {:.3} ({:.1} % lower)",
            g.both_sides_per_note_in_grammar,
            g.prefix_only_per_note_in_grammar,
            100.0 * g.reduction_in_grammar
        );
        println!(
            "  in the infill form with no bar after the gap: {:.3} ({:.3} in the grammar); the bars after lower it by {:.1} % ({:.1} % in the grammar)",
            g.no_bars_after_per_note,
            g.no_bars_after_per_note_in_grammar,
            100.0 * g.reduction_by_bars_after,
            100.0 * g.reduction_by_bars_after_in_grammar
        );
        println!(
            "  nats per note by kind, both sides / before only / infill form with no bar after: {}",
            kinds.join(", ")
        );
        let (b, p, a) = g.first_pitch;
        println!("  the gap's first pitch, nats per gap: {b:.3} / {p:.3} / {a:.3}");
        for (r, told) in [
            (g.repeats_after_only, "a bar after them and no bar before"),
            (g.repeats_before_only, "a bar before them and no bar after"),
        ] {
            let (b, p, a) = r.pitch;
            println!(
                "  {} gaps repeat {told}: pitch nats per note {b:.3} / {p:.3} / {a:.3}",
                r.gaps
            );
        }
    }
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
