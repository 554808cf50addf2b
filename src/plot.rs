//! Pictures: the training loss curve and a piano roll of primer + continuation (PNG).

use crate::music::parse::pitch_name;
use crate::music::Note;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {reason}")]
pub struct PlotError {
    pub path: String,
    pub reason: String,
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

// plotters draws text only with a registered font; egui's bundled font is already a dependency.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// Train and validation loss (nats per token) against the step.
pub fn draw_loss_curve(
    path: &Path,
    train: &[(usize, f64)],
    validation: &[(usize, f64)],
) -> Result<(), PlotError> {
    register_font();
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let max_step = train
        .iter()
        .chain(validation)
        .map(|p| p.0)
        .max()
        .unwrap_or(1)
        .max(1);
    let all = train.iter().chain(validation).map(|p| p.1);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo * 0.95, hi * 1.05)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption("Continuo training loss", ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..max_step, lo..hi)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("cross-entropy (nats/token)")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(LineSeries::new(train.iter().copied(), &BLUE))
        .map_err(|e| plot_err(path, e))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            validation.iter().copied(),
            RED.stroke_width(2),
        ))
        .map_err(|e| plot_err(path, e))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// A piano roll: primer notes grey, continuation notes blue, bar lines, the continuation
/// starting at `continuation_start` beats.
pub fn draw_piano_roll(
    path: &Path,
    primer: &[Note],
    continuation: &[Note],
    continuation_start: f64,
    beats_per_bar: f64,
) -> Result<(), PlotError> {
    register_font();
    let shifted: Vec<Note> = continuation
        .iter()
        .map(|n| Note {
            start: n.start + continuation_start,
            ..*n
        })
        .collect();
    let all = primer.iter().chain(&shifted);
    let end = all
        .clone()
        .map(Note::end)
        .fold(continuation_start + beats_per_bar, f64::max);
    let end = (end / beats_per_bar).ceil() * beats_per_bar;
    let lo = all
        .clone()
        .map(|n| n.pitch)
        .min()
        .unwrap_or(60)
        .saturating_sub(2) as f64;
    let hi = all.map(|n| n.pitch).max().unwrap_or(72).saturating_add(2) as f64;
    // A row per pitch, centred on its label; names on every pitch while they fit.
    let (lo, hi) = (lo - 0.5, hi + 0.5);
    let rows = (hi - lo) as usize;

    let root = BitMapBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("primer (grey) -> continuation (blue)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..end, lo..hi)
        .map_err(|e| plot_err(path, e))?;
    let step = rows.div_ceil(24).max(1);
    chart
        .configure_mesh()
        .x_desc("bar")
        .y_desc("pitch")
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(rows / step + 1)
        .y_label_formatter(&|y| {
            let p = y.round();
            if (p - y).abs() < 0.01 && (0.0..=127.0).contains(&p) {
                pitch_name(p as u8)
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| plot_err(path, e))?;
    let bars = (end / beats_per_bar).round() as usize;
    chart
        .draw_series((0..=bars).map(|b| {
            let x = b as f64 * beats_per_bar;
            PathElement::new(vec![(x, lo), (x, hi)], BLACK.mix(0.3))
        }))
        .map_err(|e| plot_err(path, e))?;
    // Bar numbers, counted from 1, just inside the top of each bar.
    chart
        .draw_series((0..bars).map(|b| {
            Text::new(
                format!("{}", b + 1),
                (b as f64 * beats_per_bar + end * 0.004, hi - 0.2),
                ("sans-serif", 14).into_font().color(&BLACK.mix(0.7)),
            )
        }))
        .map_err(|e| plot_err(path, e))?;
    let rect = |n: &Note, color: RGBColor| {
        let p = n.pitch as f64;
        Rectangle::new(
            [(n.start, p - 0.45), (n.end(), p + 0.45)],
            color.mix(0.4 + 0.6 * n.velocity as f64 / 127.0).filled(),
        )
    };
    chart
        .draw_series(primer.iter().map(|n| rect(n, RGBColor(110, 110, 110))))
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(shifted.iter().map(|n| rect(n, RGBColor(30, 90, 220))))
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}
