//! Any bytes as the plugin's saved session state: refused, or cleaned and played through the
//! audio engine without an invalid event or a key left on after deactivate.
#![no_main]

use continuo::audio::clock::TransportInfo;
use continuo::audio::engine::{Engine, EngineSettings};
use continuo::audio::trigger::TriggerMode;
use continuo::params::SessionState;
use continuo::shared::Shared;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = serde_json::from_slice::<SessionState>(data) else {
        return;
    };
    let Some(saved) = state.last_phrase else {
        return;
    };
    let (idea, _) = saved.validated();
    assert!(idea
        .notes
        .iter()
        .all(|n| n.pitch <= 127 && n.velocity <= 127));
    let s = EngineSettings {
        trigger: TriggerMode::Manual,
        looping: true,
        channel: 1,
        ..Default::default()
    };
    let mut engine = Engine::new(s.generation);
    let shared = Shared::default();
    let (req_tx, _req_rx) = crossbeam_channel::bounded(4);
    let (_chunk_tx, chunk_rx) = crossbeam_channel::bounded(4);
    // The restored phrase as the plugin loads it (unvalidated: the engine checks too).
    engine.restore_phrase(&saved.notes, saved.bars as f64 * saved.beats_per_bar);
    engine.schedule_at(0.0);
    let mut pos = 0.0;
    for _ in 0..16 {
        let t = TransportInfo {
            playing: true,
            tempo: Some(120.0),
            pos_beats: Some(pos),
            time_sig: Some((4, 4)),
            ..Default::default()
        };
        pos = engine.begin_block(&t, 2048, 48_000.0, &s).end_beat();
        for e in engine.end_block(&s, &req_tx, &chunk_rx, &shared) {
            assert!(e.pitch <= 127 && e.velocity <= 127);
        }
    }
    engine.schedule_release();
    engine.begin_block(&TransportInfo::default(), 64, 48_000.0, &s);
    engine.end_block(&s, &req_tx, &chunk_rx, &shared);
    assert_eq!(engine.sounding(), 0);
});
