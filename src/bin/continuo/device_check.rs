//! `continuo device-check`: the shipped model on the best device this build has (a GPU with
//! `--features cuda` or `metal`) against the CPU: the logits of a fixed prompt, and the time
//! of an answer of 1 and 4 candidates on each. `scripts/gpu_check.sh` runs it.

use super::*;
use continuo::model::sampler::prompt_tokens;
use std::time::Instant;

#[derive(Args)]
pub struct DeviceCheckArgs {
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// The primer of the fixed prompt and of the timed answers.
    #[arg(long, default_value = "examples/primers/c-major-triad.mid")]
    primer: PathBuf,
    /// Timed answers per device and candidate count (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long)]
    json: bool,
}

/// Median milliseconds of `runs` answers of 8 bars with `candidates` candidates.
fn answer_ms(
    loaded: &continuo::model::LoadedModel,
    device: &candle_core::Device,
    primer: &continuo::music::Phrase,
    candidates: usize,
    runs: usize,
) -> Result<f64> {
    let opts = GenerateOptions {
        bars: 8,
        temperature: 0.9,
        seed: 1,
        candidates,
        start_on_downbeat: true,
        beats_per_bar: primer.beats_per_bar,
        ..Default::default()
    };
    let mut ms: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            generate(&loaded.model, device, primer, &opts).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<candle_core::Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

pub fn run_device_check(a: DeviceCheckArgs) -> Result<()> {
    let cpu = candle_core::Device::Cpu;
    let best = best_device();
    let primer = read_midi(&a.primer)?.melodic;
    let on_cpu = load_model(&a.model, &cpu)?;
    let on_best = load_model(&a.model, &best)?;
    let prompt = prompt_tokens(
        &primer,
        &GenerateOptions::default(),
        on_cpu.model.max_context(),
    )
    .ids;
    let logits = |m: &continuo::model::LoadedModel, d: &candle_core::Device| -> Result<Vec<f32>> {
        let ids = candle_core::Tensor::from_vec(prompt.clone(), (1, prompt.len()), d)?;
        Ok(m.model
            .forward_last(&ids)?
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1()?)
    };
    let (l_cpu, l_best) = (logits(&on_cpu, &cpu)?, logits(&on_best, &best)?);
    let max_diff = l_cpu
        .iter()
        .zip(&l_best)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let mut times = serde_json::Map::new();
    for (name, m, d) in [("cpu", &on_cpu, &cpu), ("device", &on_best, &best)] {
        for c in [1, 4] {
            times.insert(
                format!("{name}_{c}_candidates_ms"),
                answer_ms(m, d, &primer, c, a.runs)?.into(),
            );
        }
    }
    let gpu = !matches!(best, candle_core::Device::Cpu);
    let report = serde_json::json!({
        "device": device_name(&best),
        "gpu_present": gpu,
        "prompt_tokens": prompt.len(),
        "max_abs_logit_difference": max_diff,
        "answer_8_bars_median_ms": times,
        "runs": a.runs,
    });
    if a.json {
        println!("{report}");
    } else {
        if !gpu {
            println!("no GPU in this build or on this machine: the device is the CPU");
        }
        println!(
            "device {}: logits of a {}-token prompt differ from the CPU's by at most {max_diff:.2e}",
            device_name(&best),
            prompt.len()
        );
        for (k, v) in &times {
            println!("{k}: {:.1}", v.as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(())
}
