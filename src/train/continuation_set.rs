//! The real-continuation development set of `continuo eval --continuations`: two-bar primers
//! cut at bar lines from real parts the default model never trains on, each with the real
//! next four bars of the same part.
//!
//! Parts come from the held-out split of a training corpus (only the sources named, e.g.
//! Bach chorale voices, Freedoom's and PianoBooster's held-out pieces) and from whole folders
//! kept out of training (the held-out LMMS projects). A cut starts on a bar that begins a
//! four-bar group, its two primer bars and at least three of its four real bars have onsets;
//! at most [`CUTS_PER_PART`] per part, so no one piece fills a role. Roles are read from the
//! six bars' texture ([`role_of`]); each role keeps at most `per_role` cuts, spread evenly
//! over the material in file order.

use super::dataset::{load_corpus, DataError};
use crate::midi_file::{read_midi, write_midi, MidiFileError, TrackToWrite};
use crate::music::texture::{median_pitch, notes_per_onset};
use crate::music::{Note, Phrase};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const PRIMER_BARS: usize = 2;
pub const REAL_BARS: usize = 4;
/// Most cuts from one part.
pub const CUTS_PER_PART: usize = 4;

/// One cut: where it came from, its role, the primer and the real bars after it.
#[derive(Debug, Clone)]
pub struct Cut {
    pub source: PathBuf,
    pub part: usize,
    pub bar: usize,
    pub role: &'static str,
    pub primer: Phrase,
    pub real: Phrase,
}

/// chords / riff / bass / arp / lead from a part's texture: notes per onset, median pitch,
/// note lengths and notes per bar (the same reading as `scripts/style_corpus.py`'s).
pub fn role_of(notes: &[Note], bars: usize) -> &'static str {
    let per_onset = notes_per_onset(notes);
    let mut lengths: Vec<f64> = notes.iter().map(|n| n.duration).collect();
    lengths.sort_by(f64::total_cmp);
    let median_length = lengths.get(lengths.len() / 2).copied().unwrap_or(0.0);
    if per_onset >= 2.5 {
        "chords"
    } else if per_onset >= 1.6 {
        "riff"
    } else if median_pitch(notes) < 52.0 {
        "bass"
    } else if median_length <= 0.3 && notes.len() >= 6 * bars {
        "arp"
    } else {
        "lead"
    }
}

fn bar_has_onset(notes: &[Note], bar: usize, bpb: f64) -> bool {
    notes
        .iter()
        .any(|n| (n.start / bpb).floor() as usize == bar)
}

/// The notes starting in `[from, to)`, moved to start at 0 and cut at `to`.
fn slice_within(phrase: &Phrase, from: f64, to: f64) -> Phrase {
    let cut = phrase.slice(from, to);
    Phrase::new(
        cut.notes
            .iter()
            .map(|n| Note {
                duration: n.duration.min(to - from - n.start),
                ..*n
            })
            .collect(),
        phrase.beats_per_bar,
    )
}

/// The cuts of one part (notes timed from the file's first bar line).
pub fn cuts_of_part(source: &Path, part_index: usize, part: &Phrase) -> Vec<Cut> {
    let q = crate::tokens::quantize(part);
    let bpb = q.beats_per_bar;
    let bars = q.bar_count();
    let mut cuts = Vec::new();
    let mut bar = 0;
    while bar + PRIMER_BARS + REAL_BARS <= bars && cuts.len() < CUTS_PER_PART {
        let primer_ok = (bar..bar + PRIMER_BARS).all(|b| bar_has_onset(&q.notes, b, bpb));
        let real_bars = (bar + PRIMER_BARS..bar + PRIMER_BARS + REAL_BARS)
            .filter(|&b| bar_has_onset(&q.notes, b, bpb))
            .count();
        if primer_ok && real_bars + 1 >= REAL_BARS {
            let at = bar as f64 * bpb;
            let split = at + PRIMER_BARS as f64 * bpb;
            let end = split + REAL_BARS as f64 * bpb;
            let primer = slice_within(&q, at, split);
            let real = slice_within(&q, split, end);
            let six: Vec<Note> = q.slice(at, end).notes;
            cuts.push(Cut {
                source: source.to_owned(),
                part: part_index,
                bar,
                role: role_of(&six, PRIMER_BARS + REAL_BARS),
                primer,
                real,
            });
            // The next cut starts after this one's real bars, on a four-bar group.
            bar += (PRIMER_BARS + REAL_BARS).div_ceil(4) * 4;
        } else {
            bar += 4;
        }
    }
    cuts
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Midi(#[from] MidiFileError),
    #[error("cannot make {path}: {error}")]
    Folder {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Every cut of the held-out pieces of `corpus` whose path names one of `sources`, and of
/// every file under each of `whole_folders`, in file order.
pub fn collect_cuts(
    corpus: Option<&Path>,
    sources: &[String],
    whole_folders: &[PathBuf],
) -> Result<Vec<Cut>, SetError> {
    let mut parts: Vec<(PathBuf, Vec<Phrase>)> = Vec::new();
    if let Some(folder) = corpus {
        let c = load_corpus(folder)?;
        for p in c.validation {
            let named = p.path.components().any(|c| {
                sources
                    .iter()
                    .any(|s| c.as_os_str().to_string_lossy().eq_ignore_ascii_case(s))
            });
            if named {
                let ps = if p.parts.is_empty() {
                    vec![p.phrase]
                } else {
                    p.parts
                };
                parts.push((p.path, ps));
            }
        }
    }
    for folder in whole_folders {
        for path in super::dataset::midi_files(folder) {
            match read_midi(&path) {
                Ok(song) => {
                    let ps = if song.parts.is_empty() {
                        vec![song.melodic]
                    } else {
                        song.parts
                    };
                    parts.push((path, ps));
                }
                Err(e) => eprintln!("skipped {}: {e}", path.display()),
            }
        }
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(parts
        .iter()
        .flat_map(|(path, ps)| {
            ps.iter()
                .enumerate()
                .flat_map(move |(i, p)| cuts_of_part(path, i, p))
        })
        .collect())
}

/// At most `per_role` cuts of each role, spread evenly over the cuts in their order.
pub fn balance(cuts: Vec<Cut>, per_role: usize) -> Vec<Cut> {
    let mut by_role: BTreeMap<&'static str, Vec<Cut>> = BTreeMap::new();
    for c in cuts {
        by_role.entry(c.role).or_default().push(c);
    }
    by_role
        .into_values()
        .flat_map(|v| {
            let n = v.len();
            let keep = n.min(per_role);
            let picks: Vec<usize> = (0..keep).map(|k| k * n / keep.max(1)).collect();
            v.into_iter()
                .enumerate()
                .filter(move |(i, _)| picks.contains(i))
                .map(|(_, c)| c)
        })
        .collect()
}

/// Writes `primers/ROLE--name.mid` and `real/ROLE--name.mid` under `out`, and a list of the
/// cuts' sources (`SOURCES.md`).
pub fn write_set(cuts: &[Cut], out: &Path) -> Result<(), SetError> {
    for sub in ["primers", "real"] {
        let path = out.join(sub);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|error| SetError::Folder { path, error })?;
    }
    let mut list = String::from(
        "# Real-continuation development set\n\nBuilt by `bash scripts/continuation_set.sh`. Each \
         primer is two bars of one part from a bar line; its real file holds the next four bars \
         of the same part. Not for training or tuning the default model's weights.\n\n\
         | file | source | part | first bar |\n|---|---|---|---|\n",
    );
    for c in cuts {
        let stem = c
            .source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let folder = c
            .source
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let slug: String = format!("{folder}-{stem}-p{}-b{}", c.part, c.bar + 1)
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect();
        let name = format!("{}--{}.mid", c.role, slug.to_ascii_lowercase());
        for (sub, phrase) in [("primers", &c.primer), ("real", &c.real)] {
            write_midi(
                &out.join(sub).join(&name),
                &[TrackToWrite {
                    name: &slug,
                    channel: 0,
                    notes: &phrase.notes,
                }],
                phrase.beats_per_bar,
                120.0,
            )?;
        }
        list += &format!(
            "| {name} | {} | {} | {} |\n",
            c.source.display(),
            c.part,
            c.bar + 1
        );
    }
    let path = out.join("SOURCES.md");
    std::fs::write(&path, list).map_err(|error| SetError::Folder { path, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::music::phrase::test_note as n;

    #[test]
    fn a_part_is_cut_at_four_bar_groups_into_two_primer_and_four_real_bars() {
        let notes: Vec<Note> = (0..16 * 4)
            .map(|i| n(i as f64, 1.0, 40 + (i % 5) as u8))
            .collect();
        let part = Phrase::new(notes, 4.0);
        let cuts = cuts_of_part(Path::new("x.mid"), 0, &part);
        assert_eq!(cuts.len(), 2);
        assert_eq!((cuts[0].bar, cuts[1].bar), (0, 8));
        assert_eq!(cuts[0].primer.notes.len(), 8);
        assert_eq!(cuts[0].real.notes.len(), 16);
        assert_eq!(cuts[0].real.notes[0].start, 0.0);
        assert_eq!(cuts[0].real.notes[0].pitch, 40 + 8 % 5);
        assert_eq!(cuts[0].role, "bass");
    }

    #[test]
    fn roles_follow_texture() {
        let chords: Vec<Note> = (0..8)
            .flat_map(|i| [60, 64, 67].map(|p| n(i as f64 * 2.0, 2.0, p)))
            .collect();
        assert_eq!(role_of(&chords, 4), "chords");
        let arp: Vec<Note> = (0..64)
            .map(|i| n(i as f64 * 0.25, 0.25, 60 + (i % 4) as u8 * 4))
            .collect();
        assert_eq!(role_of(&arp, 4), "arp");
        let lead: Vec<Note> = (0..8).map(|i| n(i as f64 * 2.0, 1.5, 72)).collect();
        assert_eq!(role_of(&lead, 4), "lead");
    }

    #[test]
    fn balance_keeps_at_most_so_many_of_a_role_spread_over_them() {
        let cut = |role, bar| Cut {
            source: PathBuf::from("x.mid"),
            part: 0,
            bar,
            role,
            primer: Phrase::new(vec![], 4.0),
            real: Phrase::new(vec![], 4.0),
        };
        let cuts: Vec<Cut> = (0..10)
            .map(|b| cut("lead", b))
            .chain([cut("bass", 0)])
            .collect();
        let kept = balance(cuts, 5);
        assert_eq!(kept.iter().filter(|c| c.role == "lead").count(), 5);
        assert_eq!(
            kept.iter()
                .filter(|c| c.role == "lead")
                .map(|c| c.bar)
                .collect::<Vec<_>>(),
            vec![0, 2, 4, 6, 8]
        );
        assert_eq!(kept.iter().filter(|c| c.role == "bass").count(), 1);
    }
}
