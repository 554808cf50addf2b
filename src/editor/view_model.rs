//! What the editor shows, computed without a window so it can be tested: piano-roll geometry,
//! the history list, export names and status lines.

use crate::music::{detect_key, Note};
use crate::shared::{Idea, ModelStatus, WorkerView};
use crate::tokens::MAX_FILL_BARS;

/// A rectangle in the piano roll, in points, relative to the roll's top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoteRect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    /// Primer (captured) or phrase (generated).
    pub generated: bool,
    pub velocity: u8,
}

/// How the roll maps beats and pitches onto its area.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollLayout {
    pub width: f32,
    pub height: f32,
    /// Beats shown: the primer, then the phrase.
    pub beats: f64,
    /// Where the phrase starts (the primer occupies `[0, phrase_start)`).
    pub phrase_start: f64,
    pub low: u8,
    pub high: u8,
    pub beats_per_bar: f64,
}

impl RollLayout {
    /// Fits primer and phrase side by side, with a margin of two semitones.
    pub fn fit(
        width: f32,
        height: f32,
        primer: &[Note],
        phrase: &[Note],
        beats_per_bar: f64,
        phrase_bars: u32,
    ) -> Self {
        let bpb = beats_per_bar.max(0.5);
        let primer_end = primer.iter().map(Note::end).fold(0.0, f64::max);
        // Captured durations carry float noise (4.0000000001 beats): it must not open a bar.
        let phrase_start = if primer.is_empty() {
            0.0
        } else {
            (primer_end / bpb - 1e-6).ceil().max(1.0) * bpb
        };
        let phrase_end = phrase
            .iter()
            .map(Note::end)
            .fold(phrase_bars as f64 * bpb, f64::max);
        let all = primer.iter().chain(phrase);
        let low = all
            .clone()
            .map(|n| n.pitch)
            .min()
            .unwrap_or(60)
            .saturating_sub(2);
        let high = all
            .map(|n| n.pitch)
            .max()
            .unwrap_or(72)
            .saturating_add(2)
            .min(127);
        Self {
            width,
            height,
            beats: (phrase_start + phrase_end).max(bpb),
            phrase_start,
            low,
            high: high.max(low + 12),
            beats_per_bar: bpb,
        }
    }

    pub fn x_of(&self, beat: f64) -> f32 {
        (beat / self.beats) as f32 * self.width
    }

    pub fn row_height(&self) -> f32 {
        self.height / (self.high - self.low + 1) as f32
    }

    pub fn y_of(&self, pitch: u8) -> f32 {
        (self.high.saturating_sub(pitch)) as f32 * self.row_height()
    }

    /// Rectangles for the primer and the phrase (phrase times are from its start).
    pub fn rects(&self, primer: &[Note], phrase: &[Note]) -> Vec<NoteRect> {
        let rect = |n: &Note, offset: f64, generated: bool| NoteRect {
            x: self.x_of(n.start + offset),
            y: self.y_of(n.pitch),
            w: (self.x_of(n.start + offset + n.duration) - self.x_of(n.start + offset)).max(2.0),
            h: self.row_height().max(1.0),
            generated,
            velocity: n.velocity,
        };
        primer
            .iter()
            .map(|n| rect(n, 0.0, false))
            .chain(phrase.iter().map(|n| rect(n, self.phrase_start, true)))
            .collect()
    }

    /// x of every bar line, and whether it is a bar (true) or a beat (false).
    pub fn grid(&self) -> Vec<(f32, bool)> {
        let beats = self.beats.ceil() as usize;
        (0..=beats)
            .map(|b| {
                let is_bar = (b as f64 / self.beats_per_bar).fract().abs() < 1e-9;
                (self.x_of(b as f64), is_bar)
            })
            .collect()
    }

    /// The phrase's bar (0-based) under `x`, if `x` is over the phrase (not the primer);
    /// `bars` is the phrase's length in bars.
    pub fn phrase_bar_at(&self, x: f32, bars: u32) -> Option<u32> {
        let beat = (x / self.width) as f64 * self.beats - self.phrase_start;
        (beat >= 0.0 && bars > 0).then(|| ((beat / self.beats_per_bar) as u32).min(bars - 1))
    }

    /// Left and right x of the phrase's bars `[first, end)`.
    pub fn bars_x(&self, (first, end): (u32, u32)) -> (f32, f32) {
        let at = |bar: u32| self.x_of(self.phrase_start + bar as f64 * self.beats_per_bar);
        (at(first), at(end))
    }

    /// x of the playhead for a phrase-relative beat, if it is inside the phrase.
    pub fn playhead_x(&self, phrase_beat: f64) -> Option<f32> {
        let b = self.phrase_start + phrase_beat;
        (phrase_beat >= 0.0 && b <= self.beats).then(|| self.x_of(b))
    }
}

/// Bars picked in the piano roll for *Regenerate bar*: a click picks one, a drag a range
/// (at most [`MAX_FILL_BARS`] bars, the most the model fills at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BarPick {
    anchor: Option<u32>,
    /// 0-based, end exclusive.
    pub bars: Option<(u32, u32)>,
}

impl BarPick {
    /// The pointer went down on `bar`.
    pub fn press(&mut self, bar: u32) {
        self.anchor = Some(bar);
        self.bars = Some((bar, bar + 1));
    }

    /// The pointer, still down, is over `bar`.
    pub fn drag_to(&mut self, bar: u32) {
        let Some(a) = self.anchor else { return };
        let max = MAX_FILL_BARS as u32 - 1;
        let (lo, hi) = if bar >= a {
            (a, bar.min(a + max))
        } else {
            (bar.max(a.saturating_sub(max)), a)
        };
        self.bars = Some((lo, hi + 1));
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// "Regenerate bar 3" or "Regenerate bars 3–4" (counted from 1, as a DAW does).
    pub fn button_label(&self) -> String {
        match self.bars {
            Some((a, b)) if b > a + 1 => format!("Regenerate bars {}–{}", a + 1, b),
            Some((a, _)) => format!("Regenerate bar {}", a + 1),
            None => "Regenerate bar".into(),
        }
    }
}

/// The primer's key in words, for the header.
pub fn key_label(primer: &[Note]) -> String {
    detect_key(primer).map_or_else(|| "no key yet".into(), |k| k.name())
}

/// One line per remembered idea, newest first.
pub fn history_labels(history: &[Idea]) -> Vec<String> {
    history
        .iter()
        .enumerate()
        .map(|(i, idea)| {
            format!(
                "{}. {} · seed {} · {} notes · {} bars",
                i + 1,
                idea.key.as_deref().unwrap_or("?"),
                idea.seed,
                idea.notes.len(),
                idea.bars
            )
        })
        .collect()
}

/// A file name for an exported phrase: date and time, key and seed, e.g.
/// `continuo-2026-11-21-1403-c-major-seed7.mid`.
pub fn export_name(idea: &Idea, datetime: (i32, u32, u32, u32, u32)) -> String {
    let (y, mo, d, h, mi) = datetime;
    let key = idea
        .key
        .as_deref()
        .unwrap_or("no-key")
        .to_lowercase()
        .replace('#', "sharp")
        .replace(' ', "-");
    format!(
        "continuo-{y:04}-{mo:02}-{d:02}-{h:02}{mi:02}-{key}-seed{}.mid",
        idea.seed
    )
}

/// (year, month, day, hour, minute) in UTC for a Unix time, without a date crate.
pub fn utc_datetime(unix_seconds: u64) -> (i32, u32, u32, u32, u32) {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + if m <= 2 { 1 } else { 0 }) as i32;
    (y, m, d, (secs / 3600) as u32, ((secs % 3600) / 60) as u32)
}

/// The model line of the status panel.
pub fn model_line(m: &ModelStatus) -> String {
    match &m.error {
        Some(e) => format!("No model: {e}. MIDI passes through unchanged."),
        None if m.parameters == 0 => "Loading model…".into(),
        None => format!(
            "{} · {} · {:.1}M parameters · {}",
            m.name,
            m.description,
            m.parameters as f64 / 1e6,
            m.device
        ),
    }
}

/// Whether the loaded model's copy guard is on (shown beside the activity line).
pub fn guard_line(m: &ModelStatus) -> Option<String> {
    if !m.loaded() {
        return None;
    }
    Some(match m.guarded_runs {
        0 => "no copy guard".to_string(),
        n => format!("copy guard: {}k training runs", n.div_ceil(1000)),
    })
}

/// Where the phrase is playing: beats into it, its length and bar length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayingPhrase {
    pub playhead: f64,
    pub length_beats: f64,
    pub beats_per_bar: f64,
    /// The phrase repeats (past its length it is still playing).
    pub looping: bool,
}

/// The activity line: generating with progress, playing (and where), or idle with the last
/// speed.
pub fn activity_line(v: &WorkerView, playing: Option<PlayingPhrase>) -> String {
    let speed = if v.last_ms_per_token > 0.0 {
        format!(" · last phrase {:.2} ms/token", v.last_ms_per_token)
    } else {
        String::new()
    };
    if v.generating {
        format!(
            "Generating… bar {} of {}",
            v.bars_done.min(v.bars_total),
            v.bars_total
        )
    } else if let Some(p) = playing.filter(|p| {
        p.playhead >= 0.0 && p.length_beats > 0.0 && (p.looping || p.playhead < p.length_beats)
    }) {
        let bars = (p.length_beats / p.beats_per_bar.max(0.5)).round().max(1.0);
        let bar = (p.playhead.rem_euclid(p.length_beats) / p.beats_per_bar.max(0.5)).floor() + 1.0;
        format!("Playing bar {} of {}{speed}", bar.min(bars), bars)
    } else if speed.is_empty() {
        "Idle · play something, then pause".into()
    } else {
        format!("Idle{speed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(start: f64, duration: f64, pitch: u8) -> Note {
        Note {
            start,
            duration,
            pitch,
            velocity: 100,
        }
    }

    fn idea() -> Idea {
        Idea {
            id: 3,
            seed: 7,
            primer: vec![n(0.0, 4.0, 60)],
            notes: vec![n(0.0, 1.0, 64)],
            beats_per_bar: 4.0,
            bars: 2,
            key: Some("C# minor".into()),
            variant_of: None,
        }
    }

    #[test]
    fn phrase_rectangles_sit_after_the_primer_on_the_pitch_rows() {
        let primer = [n(0.0, 4.000000000114242, 60), n(0.0, 4.0, 64)];
        let phrase = [n(0.0, 1.0, 67), n(1.0, 1.0, 65)];
        let l = RollLayout::fit(600.0, 300.0, &primer, &phrase, 4.0, 2);
        assert_eq!(l.phrase_start, 4.0);
        assert_eq!(l.beats, 12.0);
        let r = l.rects(&primer, &phrase);
        assert_eq!(r.len(), 4);
        assert_eq!(r.iter().filter(|r| r.generated).count(), 2);
        assert_eq!(
            r[2].x, 200.0,
            "the phrase starts one bar (4 of 12 beats) in"
        );
        assert_eq!(r[2].w, 50.0);
        assert!(r[2].y < r[0].y, "higher pitches are drawn higher");
        assert!(r
            .iter()
            .all(|r| r.x >= 0.0 && r.x + r.w <= 600.0 && r.y >= 0.0 && r.y + r.h <= 300.0 + 1e-3));
    }

    #[test]
    fn the_grid_marks_bars_and_beats() {
        let l = RollLayout::fit(120.0, 100.0, &[], &[n(0.0, 1.0, 60)], 3.0, 2);
        let g = l.grid();
        assert_eq!(g.len(), 7);
        assert_eq!(g.iter().filter(|(_, bar)| *bar).count(), 3);
        assert_eq!(l.playhead_x(3.0), Some(60.0));
        assert_eq!(l.playhead_x(-1.0), None);
    }

    #[test]
    fn export_names_carry_date_key_and_seed() {
        let dt = utc_datetime(1_795_000_000);
        assert_eq!(dt, (2026, 11, 18, 11, 6));
        assert_eq!(
            export_name(&idea(), dt),
            "continuo-2026-11-18-1106-csharp-minor-seed7.mid"
        );
    }

    #[test]
    fn history_lists_newest_first_with_key_and_seed() {
        let labels = history_labels(&[idea(), Idea { seed: 9, ..idea() }]);
        assert_eq!(labels[0], "1. C# minor · seed 7 · 1 notes · 2 bars");
        assert!(labels[1].starts_with("2. ") && labels[1].contains("seed 9"));
    }

    #[test]
    fn status_lines_say_what_is_happening() {
        let err = ModelStatus {
            error: Some("weights file not found: /x/model.safetensors".into()),
            ..Default::default()
        };
        assert!(model_line(&err).contains("weights file not found: /x/model.safetensors"));
        let loaded = ModelStatus {
            name: "default".into(),
            parameters: 3_300_000,
            guarded_runs: 712_345,
            ..Default::default()
        };
        assert_eq!(
            guard_line(&loaded).as_deref(),
            Some("copy guard: 713k training runs")
        );
        let unguarded = ModelStatus {
            guarded_runs: 0,
            ..loaded
        };
        assert_eq!(guard_line(&unguarded).as_deref(), Some("no copy guard"));
        assert_eq!(guard_line(&err), None);
        let v = WorkerView {
            generating: true,
            bars_done: 1,
            bars_total: 4,
            ..Default::default()
        };
        assert_eq!(activity_line(&v, None), "Generating… bar 1 of 4");
        let done = WorkerView {
            last_ms_per_token: 2.5,
            ..Default::default()
        };
        let playing = PlayingPhrase {
            playhead: 5.0,
            length_beats: 8.0,
            beats_per_bar: 4.0,
            looping: false,
        };
        assert_eq!(
            activity_line(&done, Some(playing)),
            "Playing bar 2 of 2 · last phrase 2.50 ms/token"
        );
        let after = PlayingPhrase {
            playhead: -1.0,
            ..playing
        };
        assert_eq!(
            activity_line(&done, Some(after)),
            "Idle · last phrase 2.50 ms/token"
        );
        let ended = PlayingPhrase {
            playhead: 9.0,
            ..playing
        };
        assert_eq!(
            activity_line(&done, Some(ended)),
            "Idle · last phrase 2.50 ms/token"
        );
        let looped = PlayingPhrase {
            looping: true,
            ..ended
        };
        assert_eq!(
            activity_line(&done, Some(looped)),
            "Playing bar 1 of 2 · last phrase 2.50 ms/token"
        );
    }

    #[test]
    fn a_click_picks_a_phrase_bar_and_a_drag_a_range_of_at_most_eight() {
        let i = idea();
        // Primer: one bar; phrase: three bars; 16 beats over 600 points.
        let layout = RollLayout::fit(600.0, 200.0, &i.primer, &i.notes, 4.0, 3);
        assert_eq!(layout.phrase_bar_at(100.0, 3), None, "the primer's bar");
        assert_eq!(layout.phrase_bar_at(250.0, 3), Some(0));
        assert_eq!(layout.phrase_bar_at(599.0, 3), Some(2));
        assert_eq!(layout.bars_x((1, 2)), (300.0, 450.0));
        let mut pick = BarPick::default();
        pick.press(4);
        assert_eq!(pick.button_label(), "Regenerate bar 5");
        pick.drag_to(2);
        assert_eq!(
            (pick.bars, pick.button_label().as_str()),
            (Some((2, 5)), "Regenerate bars 3–5")
        );
        pick.drag_to(30);
        assert_eq!(pick.bars, Some((4, 12)));
    }
}
