//! Any bytes as a MIDI file: a song or an error, in bounded work (the tokens of a song stay
//! proportional to its notes and bars).
#![no_main]

use continuo::midi_file::{parse_midi, MAX_FILE_BEATS};
use continuo::tokens::Vocab;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(song) = parse_midi(data, Path::new("fuzz.mid")) {
        let ids = Vocab.encode(&song.melodic, true);
        let bars = (MAX_FILE_BEATS / song.melodic.beats_per_bar.max(0.5)) as usize + 2;
        assert!(ids.len() <= 4 * song.melodic.notes.len() + 2 * bars + 8);
    }
});
