//! Host loops and bypass, one case each: a loop that comes round more than once in a block,
//! a block that starts on the loop end within rounding, a loop too short to play, and keys
//! held or released while bypassed. Public engine API only, 48 kHz and 120 BPM (a beat is
//! 24,000 samples).

use continuo::audio::clock::TransportInfo;
use continuo::audio::engine::{Engine, EngineSettings, InputNote};
use continuo::audio::messages::{GenerationSettings, PhraseChunk, PrimerSnapshot};
use continuo::audio::playback::NoteEmit;
use continuo::audio::trigger::TriggerMode;
use continuo::music::Note;
use continuo::shared::Shared;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::Ordering;

const SAMPLE_RATE: f64 = 48_000.0;
const BEATS_PER_SAMPLE: f64 = 2.0 / SAMPLE_RATE;

struct Rig {
    engine: Engine,
    shared: Shared,
    requests: (Sender<PrimerSnapshot>, Receiver<PrimerSnapshot>),
    chunks: (Sender<PhraseChunk>, Receiver<PhraseChunk>),
    settings: EngineSettings,
}

impl Rig {
    fn new() -> Self {
        let shared = Shared::default();
        shared.model_ready.store(true, Ordering::Relaxed);
        Self {
            engine: Engine::new(GenerationSettings::default()),
            shared,
            requests: bounded(4),
            chunks: bounded(4),
            settings: EngineSettings {
                trigger: TriggerMode::Manual,
                ..Default::default()
            },
        }
    }

    /// Loads a phrase of `(beat, pitch)` notes a 32nd long and plays it from beat 0.
    fn phrase(&mut self, notes: &[(f64, u8)], length_beats: f64) {
        let notes: Vec<Note> = notes
            .iter()
            .map(|&(start, pitch)| Note {
                start,
                duration: 0.125,
                pitch,
                velocity: 90,
            })
            .collect();
        self.engine.restore_phrase(&notes, length_beats);
        self.engine.schedule_at(0.0);
    }

    /// One block of `samples` from host beat `pos`, with the loop `loop_range` on.
    fn block(
        &mut self,
        pos: f64,
        loop_range: Option<(f64, f64)>,
        samples: usize,
        inputs: &[InputNote],
    ) -> Vec<NoteEmit> {
        let t = TransportInfo {
            playing: true,
            tempo: Some(120.0),
            pos_beats: Some(pos),
            time_sig: Some((4, 4)),
            bar_start_beats: None,
            loop_range,
        };
        self.engine
            .begin_block(&t, samples, SAMPLE_RATE, &self.settings);
        for &n in inputs {
            self.engine.input(n, &self.settings);
        }
        self.engine
            .end_block(
                &self.settings,
                &self.requests.0,
                &self.chunks.1,
                &self.shared,
            )
            .to_vec()
    }
}

fn key(offset: u32, pitch: u8, on: bool) -> InputNote {
    InputNote {
        offset,
        channel: 0,
        pitch,
        velocity: if on { 100 } else { 0 },
        on,
    }
}

fn note_ons(out: &[NoteEmit], pitch: u8) -> Vec<u32> {
    out.iter()
        .filter(|e| e.on && e.pitch == pitch)
        .map(|e| e.offset)
        .collect()
}

#[test]
fn a_loop_that_comes_round_twice_in_a_block_never_plays_past_its_end() {
    // A quarter-beat loop, an 8,192-sample block from beat 0.2: the host is back at the loop
    // start at samples 1,200 and 7,200. The phrase note at beat 0.27 is after the loop end.
    let mut r = Rig::new();
    r.phrase(&[(0.0, 60), (0.27, 62)], 4.0);
    let out = r.block(0.2, Some((0.0, 0.25)), 8192, &[]);
    assert_eq!(note_ons(&out, 62), Vec::<u32>::new(), "{out:?}");
    assert_eq!(note_ons(&out, 60), vec![1200, 7200], "{out:?}");
    let off_before_second = out
        .iter()
        .any(|e| !e.on && e.pitch == 60 && e.offset > 1200 && e.offset <= 7200);
    assert!(off_before_second, "{out:?}");
}

#[test]
fn a_block_that_starts_on_the_loop_end_within_rounding_starts_at_the_loop_start() {
    // A 0..4 loop; the host's rounded position is 0.4 samples before the loop end.
    let mut r = Rig::new();
    r.phrase(&[(0.0, 60), (4.01, 62)], 8.0);
    let mut pos = 4.0 - 3.0 * 512.0 * BEATS_PER_SAMPLE;
    for _ in 0..3 {
        r.block(pos, Some((0.0, 4.0)), 512, &[]);
        pos += 512.0 * BEATS_PER_SAMPLE;
    }
    let out = r.block(4.0 - 0.4 * BEATS_PER_SAMPLE, Some((0.0, 4.0)), 512, &[]);
    assert_eq!(note_ons(&out, 62), Vec::<u32>::new(), "{out:?}");
    assert_eq!(note_ons(&out, 60), vec![0], "{out:?}");
}

#[test]
fn a_loop_too_short_to_play_plays_nothing_after_its_end() {
    // 0.03 beats (720 samples), under the 1/16-beat minimum: the phrase's first note plays
    // and ends inside the loop; the note at beat 0.05 never starts.
    let mut r = Rig::new();
    r.phrase(&[(0.0, 60), (0.05, 62)], 4.0);
    let out = r.block(0.0, Some((0.0, 0.03)), 8192, &[]);
    assert_eq!(note_ons(&out, 62), Vec::<u32>::new(), "{out:?}");
    assert_eq!(note_ons(&out, 60), vec![0], "{out:?}");
    let off = out
        .iter()
        .find(|e| !e.on && e.pitch == 60)
        .expect("released");
    assert!(off.offset <= 720, "{out:?}");
    let next = r.block(
        0.03 * (8192.0_f64 / 720.0).fract(),
        Some((0.0, 0.03)),
        8192,
        &[],
    );
    assert!(next.iter().all(|e| !e.on), "{next:?}");
}

#[test]
fn a_key_held_across_a_loop_wrap_while_bypassed_stays_in_order_in_the_primer() {
    // C4 pressed at beat 3.5 of a 0..4 loop, bypass on, the loop wraps, bypass off, D4 played
    // at 0.5, both released: the primer has C4 before D4, half a beat before the bar line.
    let mut r = Rig::new();
    let lp = Some((0.0, 4.0));
    let block = 12_000; // half a beat
    r.block(2.75, lp, block, &[]);
    r.block(3.25, lp, block, &[key(6_000, 60, true)]);
    r.settings.bypass = true;
    // Across the loop end: from 3.75, wrapping at sample 6,000.
    r.block(3.75, lp, block, &[]);
    r.settings.bypass = false;
    r.block(0.25, lp, block, &[key(6_000, 62, true)]);
    r.block(0.75, lp, block, &[key(0, 60, false), key(0, 62, false)]);
    r.shared.generate_requested.store(true, Ordering::Relaxed);
    r.block(1.25, lp, block, &[]);
    let primer = r.requests.1.try_recv().expect("a primer was sent");
    let notes: Vec<(f64, u8)> = primer.notes().iter().map(|n| (n.start, n.pitch)).collect();
    assert_eq!(notes, vec![(3.5, 60), (4.5, 62)], "{:?}", primer.notes());
    assert_eq!(primer.notes()[0].duration, 1.25);
}

#[test]
fn a_key_released_while_bypassed_lets_auto_answer() {
    let mut r = Rig::new();
    r.settings.trigger = TriggerMode::Auto;
    r.settings.silence_beats = 0.5;
    let block = 4_800; // a fifth of a beat
    let mut pos = 0.0;
    let mut step = |r: &mut Rig, inputs: &[InputNote]| {
        r.block(pos, None, block, inputs);
        pos += block as f64 * BEATS_PER_SAMPLE;
    };
    step(&mut r, &[key(0, 60, true)]);
    step(&mut r, &[]);
    r.settings.bypass = true;
    step(&mut r, &[key(100, 60, false)]);
    r.settings.bypass = false;
    for _ in 0..10 {
        step(&mut r, &[]);
    }
    let primer = r
        .requests
        .1
        .try_recv()
        .expect("Auto answered after the key went up");
    assert_eq!(primer.notes().len(), 1);
    assert_eq!(primer.notes()[0].pitch, 60);
}
