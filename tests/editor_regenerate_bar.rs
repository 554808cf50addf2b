//! *Regenerate bar*, as a producer does it: the CLAP test host plays a phrase, the editor
//! (under Xvfb) gets a click on bar 3 while bar 2 plays and a click on *Regenerate bar 3*;
//! bar 3 is played anew from its bar line, every other bar as it was, every note closed, all
//! under `assert_process_allocs`. (Its own test binary: it sets DISPLAY for the process.)

mod gui;
mod host;

use continuo::editor::view_model::RollLayout;
use continuo::shared::Idea;
use gui::{start_xvfb, Editor};
use host::{state_json, unbalanced, Session};
use std::time::{Duration, Instant};

/// The roll's background, as the editor paints it.
const ROLL_BACKGROUND: [u8; 3] = [24, 26, 32];

/// The idea the plugin keeps in its saved state.
fn last_idea(s: &mut Session) -> Idea {
    let state = state_json(&s.save_state());
    let session: serde_json::Value =
        serde_json::from_str(state["fields"]["session"].as_str().unwrap()).unwrap();
    serde_json::from_value(session["last_phrase"].clone()).expect("an idea in the state")
}

/// (left, top, right, bottom) of the piano roll in the window, once the editor has drawn it.
fn roll_bounds(editor: &Editor) -> (u32, u32, u32, u32) {
    let t = Instant::now();
    loop {
        let rgb = editor.capture();
        let mut b = (u32::MAX, u32::MAX, 0, 0);
        let mut n = 0;
        for (x, y, p) in rgb.enumerate_pixels() {
            if p.0 == ROLL_BACKGROUND {
                n += 1;
                b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
            }
        }
        if n > 10_000 {
            return b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the editor drew no piano roll in 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (onset in phrase ticks of 1/12 beat, pitch).
type Onsets = Vec<(i64, u8)>;

/// The onsets of `notes` (beat, pitch), sorted.
fn onsets(notes: impl Iterator<Item = (f64, u8)>) -> Onsets {
    let mut v: Vec<(i64, u8)> = notes.map(|(b, p)| ((b * 12.0).round() as i64, p)).collect();
    v.sort();
    v
}

#[test]
fn regenerating_bar_3_while_bar_2_plays_changes_only_bar_3_from_its_bar_line() {
    let _xvfb = start_xvfb();
    let mut s = Session::new(48_000.0, 512);
    s.set_param("Length", 4.0, 1.0);
    // The triad in bar 1; the phrase plays from beat 8, its bar 2 from beat 12.
    s.triad_then_phrase();
    let phrase_start = 8.0;
    let original = last_idea(&mut s);
    assert_eq!(original.bars, 4);
    s.run_until(phrase_start + 4.5);

    // The host's audio thread waits here (a busy host) while the producer clicks.
    let editor = Editor::open(&mut s);
    let (left, top, right, bottom) = roll_bounds(&editor);
    let layout = RollLayout::fit(
        (right - left) as f32,
        (bottom - top) as f32,
        &original.primer,
        &original.notes,
        original.beats_per_bar,
        original.bars,
    );
    let (x0, x1) = layout.bars_x((2, 3));
    let bar_3 = (left as f32 + (x0 + x1) / 2.0) as i16;
    editor.click(bar_3, (top + 100) as i16);
    // *Regenerate bar 3* is the first button under the roll.
    let t = Instant::now();
    let variant = loop {
        editor.click(left as i16 + 30, bottom as i16 + 12);
        let wait = Instant::now();
        let found = loop {
            let idea = last_idea(&mut s);
            if idea.id != original.id || wait.elapsed() > Duration::from_secs(20) {
                break idea;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if found.id != original.id {
            break found;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/editor-regenerate-bar.png");
            editor.capture().save(&out).unwrap();
            panic!("no bar was regenerated in 60 s: {}", out.display());
        }
    };
    editor.close(&mut s);
    let v = variant.variant_of.expect("the new idea is a variant");
    assert_eq!((v.parent, v.bars), (original.id, (2, 3)));
    let bpb = original.beats_per_bar;
    // Onsets in ticks (1/12 beat), so that a host beat a hair off the grid counts as on it.
    let bar_3 = ((2.0 * bpb * 12.0) as i64)..((3.0 * bpb * 12.0) as i64);
    let split = |notes: &[continuo::music::Note]| -> (Onsets, Onsets) {
        let all = onsets(notes.iter().map(|n| (n.start, n.pitch)));
        all.into_iter().partition(|(t, _)| bar_3.contains(t))
    };
    let (old_bar_3, old_others) = split(&original.notes);
    let (new_bar_3, new_others) = split(&variant.notes);
    assert_ne!(old_bar_3, new_bar_3, "the infill played bar 3 as it was");
    assert_eq!(old_others, new_others, "the variant changed another bar");

    // The host plays on past the phrase's end.
    s.run_until(phrase_start + 4.0 * bpb + 1.0);
    let played = onsets(
        s.generated(0)
            .iter()
            .filter(|o| o.on && o.beat >= phrase_start - 1e-6)
            .map(|o| (o.beat - phrase_start, o.key as u8)),
    );
    let (played_bar_3, played_others): (Onsets, Onsets) =
        played.into_iter().partition(|(t, _)| bar_3.contains(t));
    // Bar 3 as the variant has it, from its bar line on; every other bar as it was.
    assert_eq!(played_bar_3, new_bar_3);
    assert_eq!(played_others, old_others);
    assert_eq!(unbalanced(&s.out), vec![], "a note was left on");
}
