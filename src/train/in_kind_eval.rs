//! `continuo eval --primers DIR`: the six in-kind checks over a folder of primers named
//! `ROLE--name.mid`, by role and overall, so anyone can measure a model on their own primers.

use crate::midi_file::read_midi;
use crate::model::generate_with;
use crate::model::sampler::{infill_with, Scorer};
use crate::model::GenerateOptions;
use crate::music::in_kind::{check_in_kind, InKind};
use crate::music::{Note, Phrase};
use crate::train::dataset::midi_files;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Separates the role from the name in a primer's file name.
pub const ROLE_SEPARATOR: &str = "--";

/// The role a file's name gives (`ROLE--name.mid` → `role`, lowercase), or why it gives none.
pub fn role_of_file(path: &Path) -> Result<String, String> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.split_once(ROLE_SEPARATOR)
        .map(|(role, _)| role.to_ascii_lowercase())
        .ok_or_else(|| format!("name has no role; call it ROLE{ROLE_SEPARATOR}name.mid"))
}

/// One primer of the folder.
#[derive(Debug, Clone)]
pub struct RolePrimer {
    pub path: PathBuf,
    pub role: String,
    pub primer: Phrase,
}

/// Reads every `ROLE--name.mid` under `dir`; files without a role or unreadable are listed
/// in the second value with the reason, never fatal.
pub fn read_primers(dir: &Path) -> (Vec<RolePrimer>, Vec<(PathBuf, String)>) {
    let mut primers = Vec::new();
    let mut skipped = Vec::new();
    for path in midi_files(dir) {
        let role = match role_of_file(&path) {
            Ok(role) => role,
            Err(why) => {
                skipped.push((path, why));
                continue;
            }
        };
        match read_midi(&path) {
            Ok(song) if !song.melodic.notes.is_empty() => primers.push(RolePrimer {
                role,
                primer: song.melodic,
                path,
            }),
            Ok(_) => skipped.push((path, "no melodic notes".into())),
            Err(e) => skipped.push((path, e.to_string())),
        }
    }
    (primers, skipped)
}

/// How often each check held, over some continuations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InKindRates {
    pub continuations: usize,
    pub in_kind: f64,
    pub texture: f64,
    pub density: f64,
    pub register: f64,
    pub scale: f64,
    pub alive: f64,
    pub new: f64,
}

#[derive(Default)]
struct Tally {
    n: usize,
    all: usize,
    checks: [usize; 6],
}

impl Tally {
    fn add(&mut self, k: &InKind) {
        self.n += 1;
        self.all += usize::from(k.all());
        for (c, &ok) in self.checks.iter_mut().zip(&k.as_array()) {
            *c += usize::from(ok);
        }
    }

    fn rates(&self) -> InKindRates {
        let r = |x: usize| x as f64 / self.n.max(1) as f64;
        InKindRates {
            continuations: self.n,
            in_kind: r(self.all),
            texture: r(self.checks[0]),
            density: r(self.checks[1]),
            register: r(self.checks[2]),
            scale: r(self.checks[3]),
            alive: r(self.checks[4]),
            new: r(self.checks[5]),
        }
    }
}

/// The in-kind table: by role, and overall.
#[derive(Debug, Clone, Serialize)]
pub struct InKindReport {
    pub by_role: BTreeMap<String, InKindRates>,
    pub overall: InKindRates,
    pub primers: usize,
    pub seeds: usize,
}

impl InKindReport {
    fn of(
        by_role: &BTreeMap<String, Tally>,
        overall: &Tally,
        primers: usize,
        seeds: usize,
    ) -> Self {
        InKindReport {
            by_role: by_role
                .iter()
                .map(|(k, t)| (k.clone(), t.rates()))
                .collect(),
            overall: overall.rates(),
            primers,
            seeds,
        }
    }

    /// A plain-text table, a row per role and one overall.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<10} {:>5} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6}\n",
            "role", "n", "in kind", "texture", "density", "register", "scale", "alive", "new"
        );
        let row = |name: &str, r: &InKindRates| {
            format!(
                "{:<10} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6.2} {:>6.2} {:>6.2}\n",
                name,
                r.continuations,
                r.in_kind,
                r.texture,
                r.density,
                r.register,
                r.scale,
                r.alive,
                r.new
            )
        };
        for (role, r) in &self.by_role {
            s += &row(role, r);
        }
        s + &row("overall", &self.overall)
    }
}

/// Continues each primer `seeds` times (seeds 0..seeds, one variation each, as `continuo
/// generate --seed k` would) with `opts`, and checks every continuation in kind. With
/// `key_from_primer`, pitches keep to each primer's detected key (the plugin's "Key lock:
/// From primer").
pub fn in_kind_report(
    scorer: &mut dyn Scorer,
    primers: &[RolePrimer],
    opts: &GenerateOptions,
    seeds: usize,
    key_from_primer: bool,
) -> candle_core::Result<InKindReport> {
    tally_by_role(primers, seeds, opts, |seeded, p, bpb| {
        let o = GenerateOptions {
            key: if key_from_primer {
                crate::music::detect_key(&p.primer.notes)
            } else {
                opts.key
            },
            ..seeded
        };
        let g = generate_with(scorer, &p.primer, &o, |_| true)?;
        Ok(check_in_kind(
            &p.primer.notes,
            p.primer.bar_count(),
            &g.variations[0].notes,
            opts.bars as usize,
            bpb,
        ))
    })
}

/// Runs `check` for every primer and seed (0..seeds) with `opts` set to that seed, one
/// variation and the primer's bar length, and tallies the results by role.
fn tally_by_role(
    primers: &[RolePrimer],
    seeds: usize,
    opts: &GenerateOptions,
    mut check: impl FnMut(GenerateOptions, &RolePrimer, f64) -> candle_core::Result<InKind>,
) -> candle_core::Result<InKindReport> {
    let mut by_role: BTreeMap<String, Tally> = BTreeMap::new();
    let mut overall = Tally::default();
    for p in primers {
        let bpb = crate::tokens::quantize(&p.primer).beats_per_bar;
        for seed in 0..seeds as u64 {
            let o = GenerateOptions {
                seed,
                variations: 1,
                beats_per_bar: bpb,
                ..opts.clone()
            };
            let k = check(o, p, bpb)?;
            by_role.entry(p.role.clone()).or_default().add(&k);
            overall.add(&k);
        }
    }
    Ok(InKindReport::of(&by_role, &overall, primers.len(), seeds))
}

/// The bars a gap leaves around it, as one phrase without the gap: the notes before it, then
/// those after it moved back by its length. What an infilled bar is checked in kind with.
pub fn around_gap(phrase: &Phrase, gap: std::ops::Range<u32>) -> Phrase {
    let bpb = crate::tokens::quantize(phrase).beats_per_bar;
    let (from, to) = (gap.start as f64 * bpb, gap.end as f64 * bpb);
    let notes = phrase
        .notes
        .iter()
        .filter(|n| n.start < from || n.start >= to)
        .map(|n| Note {
            start: if n.start >= to {
                n.start - (to - from)
            } else {
                n.start
            },
            ..*n
        })
        .collect();
    Phrase::new(notes, phrase.beats_per_bar)
}

/// Infilling in kind: each primer is continued by `opts.bars` bars (seeds 0..seeds), then
/// one bar of that answer (bar `seed mod bars`) is filled anew, hearing every other bar of
/// primer and answer, as the editor's *Regenerate bar* does; the filled bar is checked with
/// the six checks against the bars around it ([`around_gap`]).
pub fn infill_in_kind_report(
    scorer: &mut dyn Scorer,
    primers: &[RolePrimer],
    opts: &GenerateOptions,
    seeds: usize,
) -> candle_core::Result<InKindReport> {
    tally_by_role(primers, seeds, opts, |o, p, bpb| {
        let g = generate_with(scorer, &p.primer, &o, |_| true)?;
        let answer = g.variations[0].notes.iter().map(|n| Note {
            start: n.start + g.start_beat,
            ..*n
        });
        let phrase = Phrase::new(p.primer.notes.iter().copied().chain(answer).collect(), bpb);
        let first_answer_bar = (g.start_beat / bpb).round() as u32;
        let bar = first_answer_bar + (o.seed as u32 % opts.bars.max(1));
        let filled = infill_with(scorer, &phrase, bar..bar + 1, &o, |_| true)?;
        let around = around_gap(&phrase, bar..bar + 1);
        Ok(check_in_kind(
            &around.notes,
            (first_answer_bar + opts.bars - 1) as usize,
            &filled.variations[0].notes,
            1,
            bpb,
        ))
    })
}
