//! `continuo eval --continuations DIR`: answers to real primers against the real next bars
//! of the same parts (issue 31's protocol), beside the model alone and a loop of the primer.
//!
//! DIR holds `primers/ROLE--name.mid` (two bars from a bar line) and `real/ROLE--name.mid`
//! (the next four bars of the same part, from beat 0). Every answer and every real
//! continuation is measured against its primer ([`coherence`]); each system's measures are
//! then compared with the real ones two ways:
//! - the **overlap area** of the two normalised histograms over the examples (bins below:
//!   values outside the first or last bin count in it), and for note length, inter-onset
//!   interval and onset position the overlap of the pooled histograms of all notes;
//! - the **mean |difference|** from each primer's own real continuation (for the three note
//!   histograms: half the L1 distance of the example's normalised histograms).
//!
//! Scalar bins (lowest edge, width, count): reuse −0.125, 0.25, 5 (one bin per replayed bar
//! of four); groove 0.5, 0.05, 10; pitch-class similarity 0, 0.1, 10; density ratio −2,
//! 0.5, 8; notes-per-onset ratio −1.25, 0.5, 5; register offset −13, 2, 13; pitch-class sets
//! 0.5, 1, 4; in scale 0.5, 0.05, 10.

use super::dataset::midi_files;
use super::in_kind_eval::role_of_file;
use crate::midi_file::read_midi;
use crate::model::generate_with;
use crate::model::sampler::{Scorer, Variation};
use crate::model::GenerateOptions;
use crate::music::coherence::{coherence, loop_of, Coherence, LENGTH_BINS};
use crate::music::in_kind::{check_in_kind, InKind};
use crate::music::Phrase;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One primer and the real bars that followed it.
#[derive(Debug, Clone)]
pub struct ContinuationExample {
    pub name: String,
    pub role: String,
    pub primer: Phrase,
    pub real: Phrase,
}

/// Reads the pairs of DIR/primers and DIR/real; a primer without its real continuation, an
/// unreadable file or a name without a role is listed with the reason, never fatal.
pub fn read_continuations(dir: &Path) -> (Vec<ContinuationExample>, Vec<(PathBuf, String)>) {
    let mut examples = Vec::new();
    let mut skipped = Vec::new();
    for path in midi_files(&dir.join("primers")) {
        let Some(file) = path.file_name().map(|f| f.to_owned()) else {
            continue;
        };
        let role = match role_of_file(&path) {
            Ok(role) => role,
            Err(why) => {
                skipped.push((path, why));
                continue;
            }
        };
        let name = Path::new(&file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let real_path = dir.join("real").join(&file);
        match (read_midi(&path), read_midi(&real_path)) {
            (Ok(p), Ok(r)) if !p.melodic.notes.is_empty() && !r.melodic.notes.is_empty() => {
                examples.push(ContinuationExample {
                    role,
                    name,
                    primer: p.melodic,
                    real: r.melodic,
                })
            }
            (Err(e), _) => skipped.push((path, e.to_string())),
            (_, Err(e)) => skipped.push((real_path, e.to_string())),
            _ => skipped.push((
                path,
                "no melodic notes in the primer or its real bars".into(),
            )),
        }
    }
    (examples, skipped)
}

/// How a scalar measure is binned for the overlap area.
struct Binning {
    lo: f64,
    width: f64,
    n: usize,
}

impl Binning {
    fn bin(&self, x: f64) -> usize {
        (((x - self.lo) / self.width).floor().max(0.0) as usize).min(self.n - 1)
    }
}

/// The scalar measures: name, value, bins.
type Scalar = (&'static str, fn(&Coherence) -> f64, Binning);

fn scalars() -> [Scalar; 8] {
    let b = |lo, width, n| Binning { lo, width, n };
    [
        ("reuse", |c| c.reuse, b(-0.125, 0.25, 5)),
        ("groove", |c| c.groove, b(0.5, 0.05, 10)),
        (
            "pitch-class similarity",
            |c| c.pitch_class_similarity,
            b(0.0, 0.1, 10),
        ),
        ("density ratio", |c| c.density_ratio, b(-2.0, 0.5, 8)),
        (
            "notes per onset ratio",
            |c| c.notes_per_onset_ratio,
            b(-1.25, 0.5, 5),
        ),
        ("register offset", |c| c.register_offset, b(-13.0, 2.0, 13)),
        ("pitch-class sets", |c| c.pitch_class_sets, b(0.5, 1.0, 4)),
        ("in scale", |c| c.in_scale, b(0.5, 0.05, 10)),
    ]
}

/// The note histograms: name and counts.
type Histogram = (&'static str, fn(&Coherence) -> Vec<f64>);

fn histograms() -> [Histogram; 3] {
    [
        ("note length", |c| c.note_lengths.to_vec()),
        ("inter-onset interval", |c| c.inter_onset.to_vec()),
        ("onset position", |c| c.onset_quarters.to_vec()),
    ]
}

fn normalised(h: &[f64]) -> Vec<f64> {
    let total: f64 = h.iter().sum();
    h.iter()
        .map(|x| if total > 0.0 { x / total } else { 0.0 })
        .collect()
}

/// Σ min of two normalised histograms: 1 for the same distribution, 0 for disjoint ones.
pub fn overlap_area(a: &[f64], b: &[f64]) -> f64 {
    normalised(a)
        .iter()
        .zip(normalised(b))
        .map(|(x, y)| x.min(y))
        .sum()
}

/// One system's answers, each with the index of its example.
struct Answers {
    name: String,
    measured: Vec<(usize, Coherence, InKind)>,
}

/// One system's figures over a group of examples.
#[derive(Debug, Clone, Serialize)]
pub struct SystemFigures {
    pub system: String,
    pub answers: usize,
    /// Mean of each measure (scalars only).
    pub mean: BTreeMap<String, f64>,
    /// Overlap area with the real continuations' distribution (scalars and histograms).
    pub overlap: BTreeMap<String, f64>,
    /// Mean |difference| from each primer's own real continuation.
    pub mean_abs_difference: BTreeMap<String, f64>,
    /// Share passing all six recalibrated in-kind checks, and each check's.
    pub in_kind: f64,
    pub checks: BTreeMap<String, f64>,
}

/// The figures of every system (the real continuations first) over a group of examples.
#[derive(Debug, Clone, Serialize)]
pub struct GroupFigures {
    pub examples: usize,
    pub systems: Vec<SystemFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContinuationReport {
    pub overall: GroupFigures,
    pub by_role: BTreeMap<String, GroupFigures>,
    pub seeds: usize,
    pub bars: u32,
}

fn figures(real: &Answers, system: &Answers, keep: &dyn Fn(usize) -> bool) -> SystemFigures {
    let real_of: BTreeMap<usize, &Coherence> = real
        .measured
        .iter()
        .filter(|(i, ..)| keep(*i))
        .map(|(i, c, _)| (*i, c))
        .collect();
    let mine: Vec<&(usize, Coherence, InKind)> =
        system.measured.iter().filter(|(i, ..)| keep(*i)).collect();
    let n = mine.len().max(1) as f64;
    let (mut mean, mut overlap, mut diff) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (name, get, bins) in scalars() {
        let hist = |values: &mut dyn Iterator<Item = f64>| {
            let mut h = vec![0.0; bins.n];
            values.for_each(|x| h[bins.bin(x)] += 1.0);
            h
        };
        let h_sys = hist(&mut mine.iter().map(|(_, c, _)| get(c)));
        let h_real = hist(&mut real_of.values().map(|c| get(c)));
        mean.insert(
            name.to_string(),
            mine.iter().map(|(_, c, _)| get(c)).sum::<f64>() / n,
        );
        overlap.insert(name.to_string(), overlap_area(&h_sys, &h_real));
        diff.insert(
            name.to_string(),
            mine.iter()
                .map(|(i, c, _)| (get(c) - get(real_of[i])).abs())
                .sum::<f64>()
                / n,
        );
    }
    for (name, get) in histograms() {
        let pooled = |cs: &mut dyn Iterator<Item = &Coherence>| {
            cs.fold(vec![0.0; LENGTH_BINS], |mut acc, c| {
                for (a, x) in acc.iter_mut().zip(get(c)) {
                    *a += x;
                }
                acc
            })
        };
        let h_sys = pooled(&mut mine.iter().map(|(_, c, _)| c));
        let h_real = pooled(&mut real_of.values().copied());
        overlap.insert(name.to_string(), overlap_area(&h_sys, &h_real));
        let tv = |a: &Coherence, b: &Coherence| {
            let (p, q) = (normalised(&get(a)), normalised(&get(b)));
            p.iter().zip(&q).map(|(x, y)| (x - y).abs()).sum::<f64>() / 2.0
        };
        diff.insert(
            name.to_string(),
            mine.iter().map(|(i, c, _)| tv(c, real_of[i])).sum::<f64>() / n,
        );
    }
    let checks = InKind::NAMES
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let passed = mine.iter().filter(|(.., ik)| ik.as_array()[k]).count();
            (name.to_string(), passed as f64 / n)
        })
        .collect();
    SystemFigures {
        system: system.name.clone(),
        answers: mine.len(),
        mean,
        overlap,
        mean_abs_difference: diff,
        in_kind: mine.iter().filter(|(.., ik)| ik.all()).count() as f64 / n,
        checks,
    }
}

/// Continues every primer `seeds` times (seeds 0..seeds) with `opts` ("answer") and with the
/// model alone (*New*, unsteered, one candidate), loops each primer, and compares all three
/// and the real continuations themselves with the real continuations, overall and by role.
pub fn continuation_report(
    scorer: &mut dyn Scorer,
    examples: &[ContinuationExample],
    opts: &GenerateOptions,
    seeds: usize,
) -> candle_core::Result<ContinuationReport> {
    let bars = opts.bars as usize;
    let mut real = Answers {
        name: "real".into(),
        measured: vec![],
    };
    let mut looped = Answers {
        name: "loop".into(),
        measured: vec![],
    };
    let mut answer = Answers {
        name: format!("answer ({})", opts.variation.name()),
        measured: vec![],
    };
    let mut alone = Answers {
        name: "model alone".into(),
        measured: vec![],
    };
    let alone_opts = GenerateOptions {
        variation: Variation::New,
        steer_texture: false,
        candidates: 1,
        ..opts.clone()
    };
    for (i, ex) in examples.iter().enumerate() {
        let bpb = crate::tokens::quantize(&ex.primer).beats_per_bar;
        let primer_bars = ex.primer.bar_count();
        let measure = |notes: &[crate::music::Note]| {
            (
                i,
                coherence(&ex.primer.notes, primer_bars, notes, bars, bpb),
                check_in_kind(&ex.primer.notes, primer_bars, notes, bars, bpb),
            )
        };
        let real_notes: Vec<_> = ex
            .real
            .notes
            .iter()
            .filter(|n| n.start < bars as f64 * bpb)
            .copied()
            .collect();
        real.measured.push(measure(&real_notes));
        looped
            .measured
            .push(measure(&loop_of(&ex.primer.notes, primer_bars, bars, bpb)));
        for seed in 0..seeds as u64 {
            for (o, out) in [(opts, &mut answer), (&alone_opts, &mut alone)] {
                let o = GenerateOptions {
                    seed,
                    variations: 1,
                    beats_per_bar: bpb,
                    ..o.clone()
                };
                let g = generate_with(scorer, &ex.primer, &o, |_| true)?;
                out.measured.push(measure(&g.variations[0].notes));
            }
        }
    }
    let group = |keep: &dyn Fn(usize) -> bool| GroupFigures {
        examples: (0..examples.len()).filter(|&i| keep(i)).count(),
        systems: [&real, &answer, &alone, &looped]
            .iter()
            .map(|s| figures(&real, s, keep))
            .collect(),
    };
    let mut roles: Vec<&str> = examples.iter().map(|e| e.role.as_str()).collect();
    roles.sort_unstable();
    roles.dedup();
    Ok(ContinuationReport {
        overall: group(&|_| true),
        by_role: roles
            .iter()
            .map(|r| (r.to_string(), group(&|i| examples[i].role == *r)))
            .collect(),
        seeds,
        bars: opts.bars,
    })
}

impl ContinuationReport {
    /// Plain-text tables: every measure overall (mean, overlap with real, mean |difference|
    /// from the own real continuation, per system), then reuse, groove and in kind by role.
    pub fn table(&self) -> String {
        let systems = &self.overall.systems;
        let mut s = format!("{:<24}", "overall: measure");
        for f in systems {
            s += &format!(" | {:^22}", f.system);
        }
        s += &format!("\n{:<24}", "");
        for _ in systems {
            s += &format!(" | {:>6} {:>7} {:>7}", "mean", "overlap", "|diff|");
        }
        s += "\n";
        let names: Vec<&str> = scalars()
            .iter()
            .map(|x| x.0)
            .chain(histograms().iter().map(|x| x.0))
            .collect();
        for name in names {
            s += &format!("{name:<24}");
            for f in systems {
                let mean = f
                    .mean
                    .get(name)
                    .map_or("".to_string(), |m| format!("{m:.2}"));
                s += &format!(
                    " | {:>6} {:>7.2} {:>7.3}",
                    mean, f.overlap[name], f.mean_abs_difference[name]
                );
            }
            s += "\n";
        }
        s += &format!("{:<24}", "in kind (all six)");
        for f in systems {
            s += &format!(" | {:>6.2} {:>7} {:>7}", f.in_kind, "", "");
        }
        s += "\n";
        for check in InKind::NAMES {
            s += &format!("{:<24}", format!("  {check}"));
            for f in systems {
                s += &format!(" | {:>6.2} {:>7} {:>7}", f.checks[check], "", "");
            }
            s += "\n";
        }
        s += &format!("\n{:<10} {:>4}", "by role", "n");
        for f in systems {
            s += &format!(" | {:^20}", f.system);
        }
        s += &format!("\n{:<15}", "");
        for _ in systems {
            s += &format!(" | {:>6} {:>6} {:>6}", "reuse", "groove", "inkind");
        }
        s += "\n";
        for (role, g) in self
            .by_role
            .iter()
            .chain([(&"overall".to_string(), &self.overall)])
        {
            s += &format!("{:<10} {:>4}", role, g.examples);
            for f in &g.systems {
                s += &format!(
                    " | {:>6.2} {:>6.2} {:>6.2}",
                    f.mean["reuse"], f.mean["groove"], f.in_kind
                );
            }
            s += "\n";
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_area_is_one_for_equal_shapes_and_zero_for_disjoint_ones() {
        assert!((overlap_area(&[1.0, 3.0], &[2.0, 6.0]) - 1.0).abs() < 1e-12);
        assert_eq!(overlap_area(&[1.0, 0.0], &[0.0, 5.0]), 0.0);
        assert!((overlap_area(&[1.0, 1.0], &[1.0, 0.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bins_hold_values_outside_their_range_at_the_ends() {
        let b = Binning {
            lo: -0.125,
            width: 0.25,
            n: 5,
        };
        assert_eq!(
            [0.0, 0.25, 0.5, 0.75, 1.0].map(|x| b.bin(x)),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(b.bin(-3.0), 0);
        assert_eq!(b.bin(7.0), 4);
    }
}
