//! Cost of one 512-sample block of Continuo's audio-thread engine at 48 kHz, 120 BPM:
//! idle, capturing a held chord, and playing a phrase. Run: `cargo bench --bench process_block`.

use continuo::audio::clock::TransportInfo;
use continuo::audio::engine::{Engine, EngineSettings, InputNote};
use continuo::audio::messages::{GenerationSettings, PhraseChunk};
use continuo::audio::trigger::TriggerMode;
use continuo::music::Note;
use continuo::shared::Shared;
use std::time::Instant;

const BLOCK: usize = 512;
const RATE: f64 = 48_000.0;
const BLOCKS: usize = 20_000;

fn settings() -> EngineSettings {
    EngineSettings {
        trigger: TriggerMode::Manual,
        looping: true,
        generation: GenerationSettings {
            bars: 4,
            top_p: 0.95,
            seed: 1,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// ns per block over `BLOCKS` blocks; `feed` may add input notes to a block.
fn run(
    engine: &mut Engine,
    shared: &Shared,
    mut feed: impl FnMut(usize, &mut Engine, &EngineSettings),
) -> f64 {
    let (req_tx, _req_rx) = crossbeam_channel::bounded(4);
    let (_chunk_tx, chunk_rx) = crossbeam_channel::bounded::<PhraseChunk>(4);
    let s = settings();
    let bps = 120.0 / 60.0 / RATE;
    let t = Instant::now();
    for b in 0..BLOCKS {
        let transport = TransportInfo {
            playing: true,
            tempo: Some(120.0),
            pos_beats: Some((b * BLOCK) as f64 * bps),
            time_sig: Some((4, 4)),
            bar_start_beats: None,
            loop_range: None,
        };
        engine.begin_block(&transport, BLOCK, RATE, &s);
        feed(b, engine, &s);
        std::hint::black_box(engine.end_block(&s, &req_tx, &chunk_rx, shared));
    }
    t.elapsed().as_nanos() as f64 / BLOCKS as f64
}

fn main() {
    let shared = Shared::default();
    let mut idle = Engine::new(settings().generation);
    let idle_ns = run(&mut idle, &shared, |_, _, _| {});

    let mut capturing = Engine::new(settings().generation);
    let capture_ns = run(&mut capturing, &shared, |b, e, s| {
        // A four-note chord struck and released every 8 blocks.
        let on = b % 8 == 0;
        for p in [60, 64, 67, 71] {
            e.input(
                InputNote {
                    offset: 100,
                    channel: 0,
                    pitch: p,
                    velocity: 90,
                    on,
                },
                s,
            );
        }
    });

    let mut playing = Engine::new(settings().generation);
    // A dense 4-bar phrase: 16ths with a four-note chord on every beat.
    let mut notes = Vec::new();
    for i in 0..64 {
        notes.push(Note {
            start: i as f64 * 0.25,
            duration: 0.25,
            pitch: 72 + (i % 12) as u8,
            velocity: 90,
        });
        if i % 4 == 0 {
            for p in [48, 55, 60, 64] {
                notes.push(Note {
                    start: i as f64 * 0.25,
                    duration: 1.0,
                    pitch: p,
                    velocity: 80,
                });
            }
        }
    }
    continuo::music::phrase::sort_notes(&mut notes);
    playing.restore_phrase(&notes, 16.0);
    playing.schedule_at(0.0);
    let play_ns = run(&mut playing, &shared, |_, _, _| {});

    let block_ns = BLOCK as f64 / RATE * 1e9;
    println!("process() per 512-sample block at 48 kHz ({BLOCKS} blocks each; the block lasts {:.0} µs):", block_ns / 1e3);
    for (name, ns) in [
        ("idle", idle_ns),
        ("capturing a chord", capture_ns),
        ("playing a dense phrase (looped)", play_ns),
    ] {
        println!(
            "  {name:<32} {:>8.2} µs  ({:.4} % of the block's real time)",
            ns / 1e3,
            ns / block_ns * 100.0
        );
    }
}
