//! Property tests over random and mutated bytes for everything Continuo reads from outside:
//! MIDI files, the plugin's saved session state, and model folders (`config.json`,
//! `model.safetensors`, `copy_guard.safetensors`). Every input must end in a value or a
//! clear error: no panic, no unbounded work (token counts stay proportional to the notes). A
//! hang shows as a test that does not end. Bounded in cases so CI stays quick;
//! `PROPTEST_CASES=100000` runs longer.

use continuo::audio::clock::TransportInfo;
use continuo::audio::engine::{Engine, EngineSettings};
use continuo::audio::trigger::TriggerMode;
use continuo::midi_file::{parse_midi, MAX_FILE_BEATS};
use continuo::model::load_model;
use continuo::params::SessionState;
use continuo::shared::{Idea, Shared};
use continuo::tokens::Vocab;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

/// Cases per property: `default`, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    [
        "bach_bwv1.6.mid",
        "freedoom_victor.mid",
        "oneills_01.mid",
        "pianobooster_chord_of_c_major.mid",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join(f)).unwrap())
    .collect()
}

/// Edits of a valid input: flipped, replaced, inserted and deleted bytes.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Delete),
            any::<usize>().prop_map(Edit::Truncate),
        ],
        1..8,
    )
}

/// Applies edits within the first `reach` bytes (headers are where parsers trust most).
fn mutate(mut bytes: Vec<u8>, edits: &[Edit], reach: usize) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        let n = len.clamp(1, reach).min(len.max(1));
        match *e {
            Edit::Set(i, b) if len > 0 => bytes[i % n] = b,
            Edit::Insert(i, b) => bytes.insert(i % (n.min(len) + 1), b),
            Edit::Delete(i) if len > 0 => {
                bytes.remove(i % n);
            }
            // Truncation a quarter of the time, or most cases would test short files only.
            Edit::Truncate(i) if i.is_multiple_of(4) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

fn check_midi(bytes: &[u8]) {
    if let Ok(song) = parse_midi(bytes, Path::new("fuzz.mid")) {
        assert!(song
            .melodic
            .notes
            .iter()
            .all(|n| n.start + n.duration <= MAX_FILE_BEATS + 1.0));
        // Tokens stay proportional to notes and bars: a bounded amount of work downstream.
        let ids = Vocab.encode(&song.melodic, true);
        let bars = (MAX_FILE_BEATS / song.melodic.beats_per_bar.max(0.5)) as usize + 2;
        assert!(ids.len() <= 4 * song.melodic.notes.len() + 2 * bars + 8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_a_song_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_midi(&bytes);
        let mut with_header = b"MThd\0\0\0\x06".to_vec();
        with_header.extend(&bytes);
        check_midi(&with_header);
    }

    #[test]
    fn mutated_midi_files_are_a_song_or_an_error(which in 0usize..4, e in edits(), reach in 14usize..4096) {
        let files = fixtures();
        check_midi(&mutate(files[which].clone(), &e, reach));
    }
}

fn settings() -> EngineSettings {
    EngineSettings {
        trigger: TriggerMode::Manual,
        looping: true,
        channel: 1,
        ..Default::default()
    }
}

fn valid_state_json() -> String {
    let idea = Idea {
        id: 3,
        seed: 7,
        primer: vec![continuo::music::Note {
            start: 0.0,
            duration: 1.0,
            pitch: 60,
            velocity: 90,
        }],
        notes: (0..12)
            .map(|i| continuo::music::Note {
                start: i as f64 * 0.5,
                duration: 0.5,
                pitch: 60 + (i % 5) as u8,
                velocity: 100,
            })
            .collect(),
        beats_per_bar: 4.0,
        bars: 2,
        key: Some("C major".into()),
        variant_of: None,
    };
    serde_json::to_string(&SessionState {
        model_path: None,
        last_primer: idea.primer.clone(),
        last_phrase: Some(idea),
        model_status: String::new(),
    })
    .unwrap()
}

/// A restored state as the plugin takes it: validated, loaded, played for a few blocks.
fn play_restored(state: &SessionState) {
    let Some(saved) = &state.last_phrase else {
        return;
    };
    let (idea, _) = saved.validated();
    assert!(idea
        .notes
        .iter()
        .all(|n| n.pitch <= 127 && (1..=127).contains(&n.velocity)));
    assert!(idea.notes.windows(2).all(|w| w[0].start <= w[1].start));
    let mut engine = Engine::new(settings().generation);
    let shared = Shared::default();
    let (req_tx, _req_rx) = crossbeam_channel::bounded(4);
    let (_chunk_tx, chunk_rx) = crossbeam_channel::bounded(4);
    engine.restore_phrase(&saved.notes, saved.bars as f64 * saved.beats_per_bar);
    engine.schedule_at(0.0);
    let mut pos = 0.0;
    for _ in 0..32 {
        let transport = TransportInfo {
            playing: true,
            tempo: Some(120.0),
            pos_beats: Some(pos),
            time_sig: Some((4, 4)),
            bar_start_beats: None,
            loop_range: None,
        };
        let bt = engine.begin_block(&transport, 512, 48_000.0, &settings());
        pos = bt.end_beat();
        for e in engine.end_block(&settings(), &req_tx, &chunk_rx, &shared) {
            assert!(e.pitch <= 127 && e.velocity <= 127);
        }
    }
    engine.schedule_release();
    let transport = TransportInfo::default();
    engine.begin_block(&transport, 64, 48_000.0, &settings());
    engine.end_block(&settings(), &req_tx, &chunk_rx, &shared);
    assert_eq!(engine.sounding(), 0, "a key is left on after deactivate");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn mutated_session_state_loads_or_is_refused(e in edits(), reach in 1usize..2048) {
        let bytes = mutate(valid_state_json().into_bytes(), &e, reach);
        if let Ok(state) = serde_json::from_slice::<SessionState>(&bytes) {
            play_restored(&state);
        }
    }

    #[test]
    fn saved_ideas_with_any_numbers_play_safely(
        notes in prop::collection::vec(
            (prop_oneof![any::<f64>(), -10.0f64..100.0], prop_oneof![any::<f64>(), 0.0f64..10.0], any::<u8>(), any::<u8>()),
            0..64,
        ),
        beats_per_bar in prop_oneof![any::<f64>(), 0.0f64..16.0],
        bars in any::<u32>(),
    ) {
        let idea = Idea {
            id: 1,
            seed: 0,
            primer: vec![],
            notes: notes
                .iter()
                .map(|&(start, duration, pitch, velocity)| continuo::music::Note { start, duration, pitch, velocity })
                .collect(),
            beats_per_bar,
            bars,
            key: None,
            variant_of: None,
        };
        play_restored(&SessionState { last_phrase: Some(idea), ..Default::default() });
    }
}

fn default_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
}

const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "copy_guard.safetensors"];

proptest! {
    // Each case copies a 13 MB model: fewer cases.
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn mutated_model_folders_load_or_are_refused(which in 0usize..3, e in edits(), reach in 1usize..4096) {
        let dir = tempfile::tempdir().unwrap();
        for f in MODEL_FILES {
            let bytes = std::fs::read(default_model_dir().join(f)).unwrap();
            let bytes = if f == MODEL_FILES[which] { mutate(bytes, &e, reach) } else { bytes };
            std::fs::write(dir.path().join(f), bytes).unwrap();
        }
        match load_model(dir.path(), &candle_core::Device::Cpu) {
            Ok(m) => {
                // What loads must also run: one forward pass of a short prompt.
                let ids = candle_core::Tensor::new(&[[1u32, 2, 3]], &candle_core::Device::Cpu).unwrap();
                let _ = m.model.forward(&ids);
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn configs_with_any_sizes_load_or_are_refused(
        d_model in prop_oneof![Just(0usize), 1usize..600, Just(usize::MAX)],
        n_heads in prop_oneof![Just(0usize), 1usize..9, Just(1usize << 40)],
        n_layers in prop_oneof![Just(0usize), 1usize..6, Just(1usize << 20)],
        max_seq_len in prop_oneof![Just(0usize), 1usize..1024, Just(1usize << 33)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        for f in MODEL_FILES {
            std::fs::copy(default_model_dir().join(f), dir.path().join(f)).unwrap();
        }
        let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
        let a = &mut v["architecture"];
        a["d_model"] = d_model.into();
        a["n_heads"] = n_heads.into();
        a["n_layers"] = n_layers.into();
        a["max_seq_len"] = max_seq_len.into();
        std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
        if let Ok(m) = load_model(dir.path(), &candle_core::Device::Cpu) {
            let ids = candle_core::Tensor::new(&[[1u32, 2, 3]], &candle_core::Device::Cpu).unwrap();
            m.model.forward(&ids).expect("a model that loads runs");
        }
    }
}
