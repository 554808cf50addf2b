//! The editor, opened by the CLAP test host inside an X11 window under Xvfb with a phrase
//! loaded: the screenshot is not blank and the piano roll holds primer and phrase notes.
//! (Its own test binary: it sets DISPLAY for the process.)

mod host;

use clack_extensions::gui::{GuiApiType, GuiConfiguration, PluginGui, Window};
use host::Session;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, ImageFormat, WindowClass};

struct Xvfb(Child);

impl Drop for Xvfb {
    fn drop(&mut self) {
        // After a pass, the plugin's GL context may still hold an Xlib connection until the
        // process exits, and Xlib exits the process (status 1) or crashes when its server dies
        // under it. So Xvfb runs with `-terminate` and ends by itself when its last client
        // disconnects at our exit; only a failing test kills it here.
        if std::thread::panicking() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start_xvfb() -> Xvfb {
    // A display number nobody uses (no lock file, no socket).
    let display = (90..400)
        .find(|n| {
            !std::path::Path::new(&format!("/tmp/.X{n}-lock")).exists()
                && !std::path::Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        })
        .expect("no free X display number");
    let mut child = Command::new("Xvfb")
        .args([
            format!(":{display}"),
            "-screen".into(),
            "0".into(),
            "1024x768x24".into(),
            "-nolisten".into(),
            "tcp".into(),
            "-terminate".into(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("Xvfb is not installed: run scripts/setup.sh (Debian package xvfb)");
    let socket = format!("/tmp/.X11-unix/X{display}");
    let t = Instant::now();
    while !std::path::Path::new(&socket).exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "Xvfb did not start");
        assert!(child.try_wait().unwrap().is_none(), "Xvfb exited at start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::env::set_var("DISPLAY", format!(":{display}"));
    Xvfb(child)
}

#[test]
fn the_editor_shows_primer_and_phrase_in_the_piano_roll() {
    let _xvfb = start_xvfb();
    let mut s = Session::new(48_000.0, 512);
    s.set_param("Length", 2.0, 1.0);
    s.triad_then_phrase();
    s.run_until(16.0);
    // From here the host keeps real time, so the editor's frames and the playhead move on.
    s.speed = 1.0;

    let (conn, screen_num) = x11rb::connect(None).expect("connect to Xvfb");
    let screen = &conn.setup().roots[screen_num];
    let gui: PluginGui = s
        .instance
        .plugin_handle()
        .get_extension()
        .expect("gui extension");
    let config = GuiConfiguration {
        api_type: GuiApiType::X11,
        is_floating: false,
    };
    assert!(
        gui.is_api_supported(&s.instance.plugin_handle(), config),
        "the editor does not support embedded X11"
    );
    let threads_before_editor = threads();
    gui.create(&s.instance.plugin_handle(), config)
        .expect("create the editor");
    let size = gui
        .get_size(&s.instance.plugin_handle())
        .expect("editor size");
    let parent = conn.generate_id().unwrap();
    conn.create_window(
        screen.root_depth,
        parent,
        screen.root,
        0,
        0,
        size.width as u16,
        size.height as u16,
        0,
        WindowClass::INPUT_OUTPUT,
        screen.root_visual,
        &CreateWindowAux::new().background_pixel(screen.white_pixel),
    )
    .unwrap();
    conn.map_window(parent).unwrap();
    // A round trip, so that the server has made the parent before the plugin's own connection
    // names it (requests on two connections are not ordered: without it, ReparentWindow can
    // meet BadWindow on a loaded machine).
    conn.get_input_focus().unwrap().reply().unwrap();
    unsafe {
        gui.set_parent(
            &s.instance.plugin_handle(),
            Window::from_x11_handle(parent as _),
        )
    }
    .expect("set parent");
    gui.show(&s.instance.plugin_handle()).expect("show");

    // Let the editor draw while the host keeps processing; under load (software GL on a busy
    // machine) the first frames can take seconds, so look again until it has drawn or 30 s pass.
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/editor-screenshot.png");
    let (w, h) = (size.width, size.height);
    let t = Instant::now();
    let mut last_look = Instant::now();
    let (rgb, colours, phrase_px, primer_px) = loop {
        s.process_block();
        if last_look.elapsed() < Duration::from_millis(500) {
            continue;
        }
        last_look = Instant::now();
        let rgb = capture(&conn, parent, w, h);
        let (colours, phrase_px, primer_px) = census(&rgb);
        if (colours > 30 && phrase_px > 200 && primer_px > 200)
            || t.elapsed() > Duration::from_secs(30)
        {
            break (rgb, colours, phrase_px, primer_px);
        }
    };
    rgb.save(&out).unwrap();
    gui.destroy(&s.instance.plugin_handle());
    wait_for_editor_threads_to_end(&threads_before_editor);
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

/// (thread id, name) of every thread of this process.
fn threads() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let tid = e.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((tid, name.trim().to_string()))
        })
        .collect()
}

/// The editor's window thread (baseview) finishes closing its X connection after `destroy`
/// returns, and its GL driver's threads with it. A process that exits meanwhile runs the
/// driver's finalizers under those threads and crashes (seen as SIGSEGV after "test result:
/// ok"); a host that unloads the plugin at once would too. So the test waits for every thread
/// the editor started to end, and fails if one outlives `destroy` by 10 s.
fn wait_for_editor_threads_to_end(before: &[(u32, String)]) {
    let started_by_editor = || -> Vec<(u32, String)> {
        threads()
            .into_iter()
            .filter(|(tid, name)| {
                !before.iter().any(|(b, _)| b == tid) && !name.starts_with("continuo-")
            })
            .collect()
    };
    let t = Instant::now();
    while !started_by_editor().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "threads the editor started still run 10 s after destroy: {:?}",
            started_by_editor()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn capture(conn: &impl Connection, window: u32, w: u32, h: u32) -> image::RgbImage {
    let image = conn
        .get_image(ImageFormat::Z_PIXMAP, window, 0, 0, w as u16, h as u16, !0)
        .unwrap()
        .reply()
        .expect("capture the window");
    let mut rgb = image::RgbImage::new(w, h);
    for (i, px) in image.data.chunks(4).take((w * h) as usize).enumerate() {
        rgb.put_pixel(
            i as u32 % w,
            i as u32 / w,
            image::Rgb([px[2], px[1], px[0]]),
        );
    }
    rgb
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
