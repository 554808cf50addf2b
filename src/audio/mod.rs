//! Everything that runs on the audio thread, kept apart so a reader sees at once what must
//! stay real-time safe: no allocation, no lock, no blocking call, no panic path.
//! Every type here is fixed-capacity and `Copy`; nothing is heap-allocated after `new`.

pub mod bar_swap;
pub mod capture;
pub mod clock;
pub mod engine;
pub mod messages;
pub mod playback;
pub mod trigger;
pub mod voices;
