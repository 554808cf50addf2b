//! The editor in a real X11 window under Xvfb, opened through the CLAP test host: start the
//! server, embed the editor, look at its pixels, click it (XTEST), and close it cleanly.
#![allow(dead_code)]

use crate::host::Session;
use clack_extensions::gui::{GuiApiType, GuiConfiguration, PluginGui, Window};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt, CreateWindowAux, ImageFormat, WindowClass, BUTTON_PRESS_EVENT,
    BUTTON_RELEASE_EVENT, MOTION_NOTIFY_EVENT,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

pub struct Xvfb(Child);

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

/// Starts Xvfb on a free display and points this process's `DISPLAY` at it (so a test binary
/// opens one editor at a time).
pub fn start_xvfb() -> Xvfb {
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
    // The plugin logs here (nice-log reads NICE_LOG when the bundle is loaded), so that a
    // test can read what a host would print.
    std::env::set_var("NICE_LOG", plugin_log_path());
    Xvfb(child)
}

/// Where the plugin's log goes in this test process.
fn plugin_log_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("continuo-gui-{}.log", std::process::id()))
}

/// The lines of the plugin's log about its windows (baseview, X11), which a host prints to
/// its user.
fn windowing_messages() -> Vec<String> {
    let log = std::fs::read_to_string(plugin_log_path()).unwrap_or_default();
    // The log works: the worker said which model it loaded.
    assert!(log.contains("model default"), "the plugin's log: {log:?}");
    log.lines()
        .filter(|l| l.contains("X11") || l.contains("baseview") || l.contains("window"))
        .map(str::to_string)
        .collect()
}

/// The plugin's editor, embedded in a window of ours at the screen's top-left corner.
pub struct Editor {
    pub conn: RustConnection,
    pub window: u32,
    pub width: u32,
    pub height: u32,
    gui: PluginGui,
    threads_before: Vec<(u32, String)>,
}

impl Editor {
    pub fn open(s: &mut Session) -> Editor {
        let (conn, screen_num) = x11rb::connect(None).expect("connect to Xvfb");
        let screen = conn.setup().roots[screen_num].clone();
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
        let threads_before = threads();
        gui.create(&s.instance.plugin_handle(), config)
            .expect("create the editor");
        let size = gui
            .get_size(&s.instance.plugin_handle())
            .expect("editor size");
        let window = conn.generate_id().unwrap();
        conn.create_window(
            screen.root_depth,
            window,
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
        conn.map_window(window).unwrap();
        // A round trip, so that the server has made the parent before the plugin's own
        // connection names it (requests on two connections are not ordered: without it,
        // ReparentWindow can meet BadWindow on a loaded machine).
        conn.get_input_focus().unwrap().reply().unwrap();
        unsafe {
            gui.set_parent(
                &s.instance.plugin_handle(),
                Window::from_x11_handle(window as _),
            )
        }
        .expect("set parent");
        gui.show(&s.instance.plugin_handle()).expect("show");
        Editor {
            conn,
            window,
            width: size.width,
            height: size.height,
            gui,
            threads_before,
        }
    }

    pub fn capture(&self) -> image::RgbImage {
        let (w, h) = (self.width, self.height);
        let image = self
            .conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                0,
                0,
                w as u16,
                h as u16,
                !0,
            )
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

    /// A left click at (x, y) of the window (which sits at the screen's origin), as a user's.
    pub fn click(&self, x: i16, y: i16) {
        let root = self.conn.setup().roots[0].root;
        for (kind, detail) in [
            (MOTION_NOTIFY_EVENT, 0),
            (BUTTON_PRESS_EVENT, 1),
            (BUTTON_RELEASE_EVENT, 1),
        ] {
            self.conn
                .xtest_fake_input(kind, detail, 0, root, x, y, 0)
                .expect("XTEST");
            self.conn.flush().unwrap();
            // The editor reads input once per frame.
            std::thread::sleep(Duration::from_millis(120));
        }
    }

    /// Closes the editor, waits for every thread it started to end, and finds nothing about
    /// its windows in the plugin's log.
    pub fn close(self, s: &mut Session) {
        self.gui.destroy(&s.instance.plugin_handle());
        wait_for_editor_threads_to_end(&self.threads_before);
        let said = windowing_messages();
        assert!(said.is_empty(), "closing the editor logged {said:#?}");
    }

    /// Closes the editor as a host that destroys its own window first: the plugin's window
    /// goes with it, and the editor is told afterwards.
    pub fn close_after_its_parent(self, s: &mut Session) {
        self.conn.destroy_window(self.window).unwrap();
        self.conn.get_input_focus().unwrap().reply().unwrap();
        self.close(s);
    }
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
                // The worker's threads and candle's compute pool (started the first time the
                // worker multiplies, e.g. for a *Regenerate bar* the editor asked for) are the
                // plugin's, not the editor's, and live on.
                !before.iter().any(|(b, _)| b == tid)
                    && !name.starts_with("continuo-")
                    && !name.starts_with("candle-bp-")
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
