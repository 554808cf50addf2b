//! The editor, opened by the CLAP test host inside an X11 window under Xvfb with a phrase
//! loaded: the screenshot is not blank and the piano roll holds primer and phrase notes.
//! (Its own test binary: it sets DISPLAY for the process.)

mod gui;
mod host;

use gui::{start_xvfb, Editor};
use host::Session;
use std::time::{Duration, Instant};

#[test]
fn the_editor_shows_primer_and_phrase_in_the_piano_roll() {
    let _xvfb = start_xvfb();
    let mut s = Session::new(48_000.0, 512);
    s.set_param("Length", 2.0, 1.0);
    s.triad_then_phrase();
    s.run_until(16.0);
    // From here the host keeps real time, so the editor's frames and the playhead move on.
    s.speed = 1.0;

    let editor = Editor::open(&mut s);

    // Let the editor draw while the host keeps processing; under load (software GL on a busy
    // machine) the first frames can take seconds, so look again until it has drawn or 30 s pass.
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/editor-screenshot.png");
    let t = Instant::now();
    let mut last_look = Instant::now();
    let (rgb, colours, phrase_px, primer_px) = loop {
        s.process_block();
        if last_look.elapsed() < Duration::from_millis(500) {
            continue;
        }
        last_look = Instant::now();
        let rgb = editor.capture();
        let (colours, phrase_px, primer_px) = census(&rgb);
        if (colours > 30 && phrase_px > 200 && primer_px > 200)
            || t.elapsed() > Duration::from_secs(30)
        {
            break (rgb, colours, phrase_px, primer_px);
        }
    };
    rgb.save(&out).unwrap();
    editor.close_after_its_parent(&mut s);
    assert!(
        colours > 30,
        "the screenshot is nearly blank ({colours} colours): {}",
        out.display()
    );
    assert!(
        phrase_px > 200,
        "no phrase notes (blue) in the piano roll: {phrase_px} pixels, {}",
        out.display()
    );
    assert!(
        primer_px > 200,
        "no primer notes (grey) in the piano roll: {primer_px} pixels, {}",
        out.display()
    );
}

/// (distinct colours, phrase-blue pixels, primer-grey pixels)
fn census(rgb: &image::RgbImage) -> (usize, usize, usize) {
    let mut colours = std::collections::HashSet::new();
    let (mut phrase_px, mut primer_px) = (0, 0);
    for p in rgb.pixels() {
        colours.insert(p.0);
        let [r, g, b] = p.0;
        if b > 170 && r < 120 && g > 80 && g < 180 {
            phrase_px += 1;
        }
        if r > 100 && r < 170 && (r as i32 - g as i32).abs() < 12 && b >= g && b < r + 25 && b > 100
        {
            primer_px += 1;
        }
    }
    (colours.len(), phrase_px, primer_px)
}
