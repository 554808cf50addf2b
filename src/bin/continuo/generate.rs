//! `continuo generate`: continue a primer into .mid (and .png) files.

use super::*;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder (config.json + model.safetensors).
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Primer .mid file; without it the model starts from silence.
    #[arg(long, conflicts_with = "infill")]
    primer: Option<PathBuf>,
    /// Regenerate bars of this .mid file (with --bars-to-fill) instead of continuing a
    /// primer: the model hears the bars on both sides; every other bar is kept as it is.
    #[arg(long, requires = "bars_to_fill")]
    infill: Option<PathBuf>,
    /// Bars to regenerate, counted from 1: "3", or "3..4" for bars 3 and 4.
    #[arg(long, requires = "infill", value_parser = bar_range)]
    bars_to_fill: Option<(u32, u32)>,
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
    #[command(flatten)]
    texture: TextureArgs,
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

/// "3" or "3..4" (inclusive, from 1) → (first, last).
fn bar_range(s: &str) -> Result<(u32, u32), String> {
    let bar = |t: &str| -> Result<u32, String> {
        match t.trim().parse::<u32>() {
            Ok(b) if b >= 1 => Ok(b),
            _ => Err(format!("'{t}' is not a bar number (bars count from 1)")),
        }
    };
    let (first, last) = match s.split_once("..") {
        Some((a, b)) => (bar(a)?, bar(b.trim_start_matches('='))?),
        None => (bar(s)?, bar(s)?),
    };
    let max = continuo::tokens::MAX_FILL_BARS as u32;
    if last < first || last - first >= max {
        return Err(format!(
            "'{s}': give a first and last bar, last ≥ first, at most {max} bars (e.g. 3..4)"
        ));
    }
    Ok((first, last))
}

pub fn run_generate(a: GenerateArgs) -> Result<()> {
    if a.low > a.high {
        bail!("--low {} is above --high {}", a.low, a.high);
    }
    let device = best_device();
    let loaded = load_model(&a.model, &device)?;
    if let (Some(file), Some(bars)) = (&a.infill, a.bars_to_fill) {
        return run_infill(&a, &loaded, &device, file, bars);
    }
    let primer = match &a.primer {
        Some(p) => read_midi(p)?.melodic,
        None => continuo::music::Phrase::new(vec![], 4.0),
    };
    let opts = options(&a, &loaded, &primer)?;
    let g = generate(&loaded.model, &device, &primer, &opts)?;
    write_variations(&a, &primer, &g)?;
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

/// The sampling options the flags ask for; `primer` is what `--key primer` listens to.
fn options(
    a: &GenerateArgs,
    loaded: &continuo::model::LoadedModel,
    primer: &continuo::music::Phrase,
) -> Result<GenerateOptions> {
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
    Ok(GenerateOptions {
        bars: a.bars,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        variations: a.variations as usize,
        pitch_range: (a.low, a.high),
        key,
        key_prefix: KeyPrefix::Detect,
        texture: a.texture.request(),
        rhythm: a.texture.rhythm,
        variation: a.texture.variation,
        steer_texture: !a.texture.unsteered,
        candidates: a.texture.candidates as usize,
        beats_per_bar: primer.beats_per_bar,
        start_on_downbeat: a.on_downbeat,
        copy_guard: guard_unless(loaded, a.no_copy_guard),
    })
}

/// `--infill FILE --bars-to-fill A..B`: the file with bars A..B regenerated, byte for byte
/// the same elsewhere.
fn run_infill(
    a: &GenerateArgs,
    loaded: &continuo::model::LoadedModel,
    device: &candle_core::Device,
    file: &Path,
    (first, last): (u32, u32),
) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let phrase = continuo::midi_file::parse_midi(&bytes, file)?.melodic;
    let bpb = continuo::tokens::quantize(&phrase).beats_per_bar;
    let gap = first - 1..last;
    let (from, to) = (gap.start as f64 * bpb, gap.end as f64 * bpb);
    let replaced = phrase
        .notes
        .iter()
        .filter(|n| n.start >= from && n.start < to)
        .count();
    let opts = options(a, loaded, &phrase)?;
    let g = continuo::model::sampler::infill(&loaded.model, device, &phrase, gap, &opts)
        .map_err(|e| anyhow::anyhow!(continuo::model::files::without_backtrace(&e.to_string())))
        .with_context(|| format!("filling bars {first}..{last} of {}", file.display()))?;
    for (i, filled) in g.variations.iter().enumerate() {
        let out = variation_path(&a.out, i);
        let placed: Vec<_> = filled
            .notes
            .iter()
            .map(|n| continuo::music::Note {
                start: n.start + from,
                ..*n
            })
            .collect();
        let written = continuo::midi_file::replace_notes(&bytes, file, from, to, &placed)?;
        std::fs::write(&out, written).with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "{}: bars {first}..{last} of {} filled with {} notes (it had {replaced}); every other bar as it was",
            out.display(),
            file.display(),
            placed.len(),
        );
        if let Some(png) = &a.png {
            let png = variation_path(png, i);
            let around: Vec<_> = phrase
                .notes
                .iter()
                .filter(|n| n.start < from || n.start >= to)
                .copied()
                .collect();
            continuo::plot::draw_piano_roll(&png, &around, &filled.notes, from, bpb)?;
            println!("{}: piano roll", png.display());
        }
    }
    Ok(())
}

/// Writes each continuation (with the primer, if asked) and its piano roll.
fn write_variations(
    a: &GenerateArgs,
    primer: &continuo::music::Phrase,
    g: &continuo::model::Generated,
) -> Result<()> {
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
    Ok(())
}
