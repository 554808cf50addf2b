//! The plugin's log: nice-plug's own set-up (the `NICE_LOG` destination, DEBUG in debug builds
//! and INFO in release), less the windowing layer's warnings about its own teardown.
//!
//! baseview 0.4.2 (under nice-plug-egui) warns twice whenever a host closes the editor, and
//! neither says anything a user or a host can act on: its window handle's `Drop` asks the
//! window thread to show the window after telling it to stop, so the request fails ("Error
//! while closing window: Request to X11 thread failed"); and the X errors of destroying a
//! window the host has already destroyed with its parent come back as "Received leftover X11
//! error" (`BadWindow` on `SelectInput`/`DestroyWindow`). Hosts print the plugin's stderr, so
//! a producer saw "errors" on every close. The fix belongs in baseview; until then its
//! warnings are dropped here and its errors kept.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// The most detailed level logged: nice-plug's defaults.
const MAX_LEVEL: LevelFilter = if cfg!(debug_assertions) {
    LevelFilter::DEBUG
} else {
    LevelFilter::INFO
};

/// Whether an event is logged: everything up to [`MAX_LEVEL`], except the windowing layer's
/// warnings and below (see the module's comment).
pub fn logged(target: &str, level: Level) -> bool {
    let windowing = target.starts_with("baseview");
    level <= MAX_LEVEL && !(windowing && level > Level::ERROR)
}

/// Installs the log as the process's global subscriber, as nice-plug's `Plugin::setup_logger`
/// asks: `Some(true)` when it is installed (nice-plug then routes panics to it), `Some(false)`
/// when the host process already has one.
pub fn install() -> Option<bool> {
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(cfg!(debug_assertions))
        .with_writer(nice_log::writer_from_env())
        .with_filter(filter_fn(|meta: &Metadata<'_>| {
            logged(meta.target(), *meta.level())
        }));
    let subscriber = tracing_subscriber::registry().with(output);
    Some(tracing::subscriber::set_global_default(subscriber).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windowing_layers_warnings_are_dropped_and_its_errors_kept() {
        let teardown = "baseview::platform::x11::window_thread";
        assert!(!logged(teardown, Level::WARN));
        assert!(!logged(teardown, Level::INFO));
        assert!(logged(teardown, Level::ERROR));
        assert!(logged("nice_plug::wrapper::clap", Level::WARN));
        assert!(logged("continuo::worker", Level::INFO));
        assert_eq!(
            logged("continuo::worker", Level::DEBUG),
            cfg!(debug_assertions)
        );
    }
}
