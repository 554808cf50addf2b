//! A randomized stress run of the audio engine, without the plugin API: random tempo and
//! meter changes, jumps, loops with and without a loop range (the block that crosses the loop
//! end unsplit, as Ardour sends it), one-block stops, block sizes 1–8,192, sample rates
//! 22.05–192 kHz, random input (repeated and zero-length notes), parameter changes, phrases
//! arriving late, superseded or unsorted, bars of the playing phrase swapped (*Regenerate
//! bar*, *Undo*), whole or cut off, for the right phrase or a stale one. After every block and at the end it checks what
//! leaves the engine: no note-on of a sounding key, every note-on ended, the player's keys in
//! the order played, valid pitches and velocities, nothing sounding past a loop end and nothing
//! starting after it while the host loops (loops of any length from anywhere, down to loops
//! too short to play, coming round several times in one block or ending within rounding of
//! a block's first sample), every primer sent in order and inside its bars, and the take
//! never holding a key the player let go (bypass toggled while keys are held).
//!
//! `CONTINUO_STRESS_SEQUENCES=1000000 cargo test --release --test engine_stress` runs a
//! million sequences; the failing seed is printed, and `CONTINUO_STRESS_SEED=N` runs one.

use continuo::audio::capture::MAX_PRIMER_BARS;
use continuo::audio::clock::TransportInfo;
use continuo::audio::engine::{Engine, EngineSettings, InputNote};
use continuo::audio::messages::{BarSwap, GenerationSettings, PhraseChunk, PrimerSnapshot};
use continuo::audio::playback::NoteEmit;
use continuo::audio::trigger::TriggerMode;
use continuo::music::Note;
use continuo::shared::Shared;
use crossbeam_channel::{bounded, Receiver, Sender};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::Ordering;

const INPUT_CHANNEL: u8 = 0;
const SAMPLE_RATES: [f64; 5] = [22_050.0, 44_100.0, 48_000.0, 96_000.0, 192_000.0];
const METERS: [(i32, i32); 6] = [(4, 4), (3, 4), (2, 4), (6, 8), (7, 8), (5, 4)];

fn generation() -> GenerationSettings {
    GenerationSettings::default()
}

/// The host side of one sequence: a transport that plays, loops, jumps and stops.
struct Host {
    pos: f64,
    tempo: f64,
    meter: (i32, i32),
    playing: bool,
    /// Loop range, and whether the host reports it.
    looping: Option<(f64, f64, bool)>,
    /// Blocks left in a stop.
    stopped_for: u32,
    /// How the host reports bar starts: right, Ardour's 4-quarters-per-bar, or not at all.
    bar_style: u8,
    sample_rate: f64,
}

impl Host {
    fn beats_per_bar(&self) -> f64 {
        self.meter.0 as f64 * 4.0 / self.meter.1 as f64
    }

    fn transport(&self) -> TransportInfo {
        let bpb = self.beats_per_bar();
        let bar_index = (self.pos / bpb).floor();
        TransportInfo {
            playing: self.playing && self.stopped_for == 0,
            tempo: Some(self.tempo),
            pos_beats: Some(self.pos),
            time_sig: Some(self.meter),
            bar_start_beats: match self.bar_style {
                0 => Some(bar_index * bpb),
                1 => Some(bar_index * 4.0),
                _ => None,
            },
            loop_range: self
                .looping
                .and_then(|(s, e, reported)| reported.then_some((s, e))),
        }
    }

    /// Whether the host is inside its reported loop at `pos` (a position within half a sample
    /// of the loop end is the loop start, as the host wraps there).
    fn in_reported_loop(&self, bps: f64) -> Option<(f64, f64)> {
        let (ls, le, reported) = self.looping?;
        (reported && self.pos >= ls && self.pos < le + 0.5 * bps).then_some((ls, le))
    }

    /// Moves on by one block, wrapping at the loop end as often as the loop comes round in it
    /// (the host reports the block unsplit and the jump in the next one).
    fn advance(&mut self, samples: usize, tempo_used: f64) {
        if !self.playing || self.stopped_for > 0 {
            self.stopped_for = self.stopped_for.saturating_sub(1);
            return;
        }
        let bps = tempo_used / 60.0 / self.sample_rate;
        let end = self.pos + samples as f64 * bps;
        if let Some((ls, le, _)) = self.looping {
            if self.pos < le + 0.5 * bps && end > le {
                self.pos = ls + (end - le).rem_euclid(le - ls);
                return;
            }
        }
        self.pos = end;
    }
}

/// What the receiver downstream hears.
struct Downstream {
    sounding: [[bool; 128]; 16],
}

/// The worker's side, played by the test: phrases of random notes for each request, sent in
/// chunks over several blocks, sometimes out of order or for an older id.
struct FakeWorker {
    queue: Vec<PhraseChunk>,
    /// (id, length in beats) of the last phrase made: bar swaps target it.
    last_phrase: Option<(u64, f64)>,
}

impl FakeWorker {
    fn take_requests(
        &mut self,
        rng: &mut ChaCha8Rng,
        requests: &Receiver<PrimerSnapshot>,
    ) -> Result<(), String> {
        while let Ok(p) = requests.try_recv() {
            check_primer(&p)?;
            if rng.gen_bool(0.1) {
                continue; // the worker gave up on this one
            }
            let length = 2.0 * p.beats_per_bar;
            let n = rng.gen_range(0..48);
            let mut notes: Vec<Note> = (0..n)
                .map(|_| Note {
                    start: rng.gen_range(0.0..length),
                    duration: match rng.gen_range(0..4) {
                        0 => rng.gen_range(1e-6..1e-3),
                        1 => rng.gen_range(0.0..8.0),
                        _ => rng.gen_range(0.05..1.0),
                    },
                    pitch: if rng.gen_bool(0.6) {
                        rng.gen_range(58..64)
                    } else {
                        rng.gen_range(0..128)
                    },
                    velocity: rng.gen_range(1..128),
                })
                .collect();
            if rng.gen_bool(0.8) {
                notes.sort_by(|a, b| a.start.total_cmp(&b.start));
            }
            let id = if rng.gen_bool(0.05) {
                p.id.saturating_sub(1)
            } else {
                p.id
            };
            self.queue_chunks(&notes, || PhraseChunk::new(id, length));
            self.last_phrase = Some((id, length));
        }
        Ok(())
    }

    /// Now and then, new notes for a bar or two of the last phrase (sometimes a stale id, a
    /// swap cut short, notes outside the bars, or a swap overtaken by the next one).
    fn swap_bars(&mut self, rng: &mut ChaCha8Rng, shared: &Shared) {
        let Some((target, length)) = self.last_phrase else {
            return;
        };
        if !rng.gen_bool(0.02) {
            return;
        }
        let bpb = length / 2.0;
        let first = rng.gen_range(0..2) as f64 * bpb;
        let bars = if rng.gen_bool(0.7) { 1.0 } else { 2.0 };
        let swap = BarSwap {
            target: if rng.gen_bool(0.1) {
                target + 1
            } else {
                target
            },
            from: first,
            to: first + bars * bpb,
        };
        let notes: Vec<Note> = (0..rng.gen_range(0..40))
            .map(|_| Note {
                start: rng.gen_range(swap.from - 1.0..swap.to + 1.0).max(0.0),
                duration: rng.gen_range(1e-4..6.0),
                pitch: rng.gen_range(56..66),
                velocity: rng.gen_range(1..128),
            })
            .collect();
        let id = shared.new_id();
        self.queue_chunks(&notes, || PhraseChunk::for_swap(id, length, swap));
        if rng.gen_bool(0.1) {
            self.queue.pop(); // cut short: its last chunk never comes
        }
    }

    fn queue_chunks(&mut self, notes: &[Note], chunk: impl Fn() -> PhraseChunk) {
        let chunks: Vec<&[Note]> = notes.chunks(16).collect();
        for (i, part) in chunks.iter().enumerate() {
            let mut c = chunk();
            part.iter().for_each(|&n| c.push(n));
            c.finished = i + 1 == chunks.len();
            self.queue.push(c);
        }
        if chunks.is_empty() {
            let mut c = chunk();
            c.finished = true;
            self.queue.push(c);
        }
    }

    fn deliver(&mut self, rng: &mut ChaCha8Rng, chunks: &Sender<PhraseChunk>) {
        let n = rng.gen_range(0..=self.queue.len().min(3));
        for c in self.queue.drain(..n) {
            let _ = chunks.try_send(c);
        }
    }
}

/// A primer is valid when its notes are in time order, inside its bars (from its first bar
/// line, at most the engine's 8 bars before the trigger and the bar the trigger is in), and
/// real notes.
fn check_primer(p: &PrimerSnapshot) -> Result<(), String> {
    let bars = p.beats_per_bar * (MAX_PRIMER_BARS + 1.0);
    let notes = p.notes();
    let sorted = notes.windows(2).all(|w| w[0].start <= w[1].start);
    let inside = notes.iter().all(|n| {
        n.start >= -1e-9
            && n.start < bars
            && n.duration > 0.0
            && n.start + n.duration <= bars + 1.0 / 96.0
    });
    let real = notes
        .iter()
        .all(|n| n.pitch < 128 && (1..128).contains(&n.velocity));
    if sorted && inside && real {
        Ok(())
    } else {
        Err(format!(
            "invalid primer sent ({} beats a bar, sorted {sorted}, inside {inside}): {notes:?}",
            p.beats_per_bar
        ))
    }
}

fn random_settings(rng: &mut ChaCha8Rng, s: &mut EngineSettings, shared_channel: bool) {
    match rng.gen_range(0..12) {
        0 => s.bypass = !s.bypass,
        1 => s.pass_through = !s.pass_through,
        2 => s.looping = !s.looping,
        3 if !shared_channel => s.channel = rng.gen_range(1..16),
        4 => {
            s.trigger =
                [TriggerMode::Auto, TriggerMode::Manual, TriggerMode::Key][rng.gen_range(0..3)]
        }
        5 => s.silence_beats = rng.gen_range(0.05..2.0),
        6 => s.quantize_to_bar = !s.quantize_to_bar,
        7 => s.generate_on = !s.generate_on,
        _ => {}
    }
}

/// Runs one seeded sequence; returns an error naming the first broken rule.
fn run_sequence(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shared = Shared::default();
    shared.model_ready.store(true, Ordering::Relaxed);
    let (req_tx, req_rx) = bounded::<PrimerSnapshot>(4);
    let (chunk_tx, chunk_rx) = bounded::<PhraseChunk>(64);
    let mut engine = Engine::new(generation());
    let mut worker = FakeWorker {
        queue: Vec::new(),
        last_phrase: None,
    };
    let mut s = EngineSettings {
        bypass: false,
        trigger: TriggerMode::Auto,
        silence_beats: rng.gen_range(0.05..1.0),
        trigger_note: 60,
        generate_on: false,
        pass_through: true,
        quantize_to_bar: rng.gen_bool(0.5),
        looping: rng.gen_bool(0.5),
        channel: rng.gen_range(1..16),
        generation: generation(),
    };
    // Some sequences play the phrase on the player's channel, where the two share keys.
    let shared_channel = rng.gen_bool(0.3);
    if shared_channel {
        s.channel = INPUT_CHANNEL;
    }
    let mut host = Host {
        pos: rng.gen_range(0.0..32.0),
        tempo: rng.gen_range(40.0..240.0),
        meter: METERS[rng.gen_range(0..METERS.len())],
        playing: rng.gen_bool(0.85),
        looping: None,
        stopped_for: 0,
        bar_style: rng.gen_range(0..3),
        sample_rate: SAMPLE_RATES[rng.gen_range(0..SAMPLE_RATES.len())],
    };
    let mut down = Downstream {
        sounding: [[false; 128]; 16],
    };
    // Keys the player holds, and which of them were passed through (so must sound).
    let mut held = [false; 128];
    let mut passed = [false; 128];
    let blocks = rng.gen_range(20..120);
    let mut released_all = false;
    for block in 0..blocks + 4 {
        let ending = block >= blocks;
        if !ending {
            match rng.gen_range(0..100) {
                0..=3 => host.tempo = rng.gen_range(40.0..240.0),
                4 => host.tempo = [1e7, f64::NAN, 0.0, -5.0][rng.gen_range(0..4)],
                5..=6 => host.meter = METERS[rng.gen_range(0..METERS.len())],
                7..=9 => host.pos = rng.gen_range(0.0..64.0),
                10..=12 => host.stopped_for = 1,
                13 => host.stopped_for = rng.gen_range(3..8),
                14 => host.playing = !host.playing,
                15..=17 => {
                    // Bar loops, and loops of any length from anywhere, down to loops shorter
                    // than the engine plays (changed while playing, as a player drags them).
                    let (ls, le) = if rng.gen_bool(0.5) {
                        let ls = (rng.gen_range(0..8) as f64) * host.beats_per_bar();
                        (ls, ls + rng.gen_range(1..4) as f64 * host.beats_per_bar())
                    } else {
                        let ls = rng.gen_range(0.0..32.0);
                        let len = [
                            1.0 / 64.0,
                            1.0 / 32.0,
                            0.05,
                            1.0 / 16.0,
                            0.1,
                            0.25,
                            0.5,
                            1.5,
                        ][rng.gen_range(0..8)];
                        (ls, ls + len)
                    };
                    host.looping = Some((ls, le, rng.gen_bool(0.7)));
                    if host.pos > le || rng.gen_bool(0.3) {
                        host.pos = if rng.gen_bool(0.5) {
                            ls
                        } else {
                            rng.gen_range(ls..le)
                        };
                    }
                }
                24..=26 => {
                    // Bypass toggled, often while keys are held.
                    s.bypass = !s.bypass;
                }
                18 => host.looping = None,
                19..=21 => random_settings(&mut rng, &mut s, shared_channel),
                22 => shared.generate_requested.store(true, Ordering::Relaxed),
                23 => {
                    engine.schedule_release();
                    released_all = true;
                }
                _ => {}
            }
        } else if block == blocks {
            // The end: every key up, the transport stopped, no new phrase; the last block
            // comes after a deactivate.
            host.playing = false;
            s.bypass = false;
            s.trigger = TriggerMode::Manual;
            worker.queue.clear();
            while chunk_rx.try_recv().is_ok() {}
        } else if block == blocks + 3 {
            // Deactivated, and bypassed: nothing may be left on.
            engine.schedule_release();
            released_all = true;
            s.bypass = true;
        }
        let to_loop_end = host
            .looping
            .map(|(_, le, _)| ((le - host.pos) / (host.tempo / 60.0 / host.sample_rate)).round());
        let samples = match rng.gen_range(0..12) {
            // A block that ends on the loop end, within rounding: the next one starts there.
            10..=11 if to_loop_end.is_some_and(|n| (1.0..=8192.0).contains(&n)) => {
                to_loop_end.unwrap_or(1.0) as usize
            }
            0 => rng.gen_range(1..16),
            1 => 8192,
            2..=3 => rng.gen_range(16..8193),
            _ => [64, 128, 256, 512, 1024][rng.gen_range(0..5)],
        };
        let transport = host.transport();
        let host_bps_before = host.tempo / 60.0 / host.sample_rate;
        let in_loop = host
            .in_reported_loop(host_bps_before)
            .filter(|_| transport.playing && (10.0..=999.0).contains(&host.tempo));
        let phrase_before = (engine.playback().id(), engine.playback().notes().to_vec());
        let bt = engine.begin_block(&transport, samples, host.sample_rate, &s);
        let deactivated = released_all;
        if released_all {
            passed = [false; 128];
            released_all = false;
        }
        let down_before = down.sounding;
        let valid_tempo = (10.0..=999.0).contains(&host.tempo);
        let tempo_used = if valid_tempo { host.tempo } else { bt.tempo };

        // Input, in time order, with repeats and zero-length notes.
        let mut inputs: Vec<InputNote> = Vec::new();
        let n_inputs = if ending { 0 } else { rng.gen_range(0..6) };
        let mut offsets: Vec<u32> = (0..n_inputs)
            .map(|_| rng.gen_range(0..samples as u32))
            .collect();
        offsets.sort();
        for offset in offsets {
            let pitch = if rng.gen_bool(0.7) {
                rng.gen_range(58..64)
            } else {
                rng.gen_range(0..128)
            };
            let on = if rng.gen_bool(0.1) {
                true
            } else {
                !held[pitch as usize]
            };
            inputs.push(InputNote {
                offset,
                channel: INPUT_CHANNEL,
                pitch,
                velocity: rng.gen_range(1..128),
                on,
            });
            if on && rng.gen_bool(0.15) {
                // A zero-length note: on and off at one sample.
                inputs.push(InputNote {
                    offset,
                    channel: INPUT_CHANNEL,
                    pitch,
                    velocity: 0,
                    on: false,
                });
            }
        }
        if block == blocks {
            for (pitch, h) in held.iter().enumerate() {
                if *h {
                    inputs.push(InputNote {
                        offset: 0,
                        channel: INPUT_CHANNEL,
                        pitch: pitch as u8,
                        velocity: 0,
                        on: false,
                    });
                }
            }
        }
        let trigger_key = |p: u8| s.trigger == TriggerMode::Key && p == s.trigger_note;
        for n in &inputs {
            held[n.pitch as usize] = n.on;
            if n.on {
                if s.bypass || (s.pass_through && !trigger_key(n.pitch)) {
                    passed[n.pitch as usize] = true;
                }
            } else {
                passed[n.pitch as usize] = false;
            }
            engine.input(*n, &s);
        }
        let out: Vec<NoteEmit> = engine.end_block(&s, &req_tx, &chunk_rx, &shared).to_vec();
        if !ending {
            worker.take_requests(&mut rng, &req_rx)?;
            worker.swap_bars(&mut rng, &shared);
            worker.deliver(&mut rng, &chunk_tx);
        }
        host.advance(samples, tempo_used);

        // The rules.
        let mut last_offset = 0;
        for e in &out {
            let where_ = format!(
                "block {block} ({samples} samples at {} Hz): {e:?}",
                host.sample_rate
            );
            if e.offset < last_offset || e.offset as usize >= samples {
                return Err(format!("out of order or outside the block: {where_}"));
            }
            last_offset = e.offset;
            if e.pitch > 127 || e.velocity > 127 || e.channel > 15 || (e.on && e.velocity == 0) {
                return Err(format!("invalid event: {where_}"));
            }
            let slot = &mut down.sounding[e.channel as usize][e.pitch as usize];
            if e.on == *slot {
                let what = if e.on {
                    "note-on of a sounding key"
                } else {
                    "note-off of a silent key"
                };
                return Err(format!("{what}: {where_}"));
            }
            *slot = e.on;
        }
        if deactivated {
            // After a deactivate, the first block ends every key at its first sample.
            let mut state = down_before;
            for e in out.iter().filter(|e| e.offset == 0 && !e.on) {
                state[e.channel as usize][e.pitch as usize] = false;
            }
            let left: Vec<(usize, usize)> = (0..16)
                .flat_map(|c| (0..128).map(move |k| (c, k)))
                .filter(|&(c, k)| state[c][k])
                .collect();
            if !left.is_empty() {
                return Err(format!(
                    "block {block}: (channel, key) {left:?} not released after deactivate"
                ));
            }
        }
        if !(shared_channel || s.bypass) {
            // Nothing the phrase started before a loop end may sound past it, at every pass.
            for k in bt.spans().skip(1).map(|span| span.first_offset) {
                let mut state = down_before[s.channel as usize];
                for e in out.iter().filter(|e| e.channel == s.channel) {
                    if e.offset > k || (e.offset == k && e.on) {
                        break;
                    }
                    state[e.pitch as usize] = e.on;
                }
                if let Some(p) = (0..128).find(|&p| state[p]) {
                    return Err(format!(
                        "block {block}: phrase key {p} sounds past the loop end at sample {k}: {out:?}"
                    ));
                }
            }
        }
        let playback = engine.playback();
        let same_phrase =
            playback.id() == phrase_before.0 && playback.notes().starts_with(&phrase_before.1);
        if let (Some((ls, le)), Some(start), true, false) = (
            in_loop,
            playback.start(),
            same_phrase,
            shared_channel || s.bypass,
        ) {
            // While the host loops, every phrase note that starts is one placed inside the
            // loop: nothing starts after the loop end.
            let length = playback.length_beats();
            let bps = bt.beats_per_sample;
            // The phrase note a note-on plays: its key, on the beat of its sample (a looping
            // phrase: the pass nearest that beat).
            let inside = |e: &NoteEmit| {
                let beat = bt.beat_at(e.offset);
                playback.notes().iter().any(|n| {
                    let at = start + n.start;
                    let at = if s.looping && length > 0.0 {
                        at + ((beat - at) / length).round().max(0.0) * length
                    } else {
                        at
                    };
                    n.pitch == e.pitch
                        && (at - beat).abs() <= 1.01 * bps
                        && at >= ls - 2.0 * bps
                        && at < le
                })
            };
            if let Some(e) = out
                .iter()
                .find(|e| e.on && e.channel == s.channel && !inside(e))
            {
                return Err(format!(
                    "block {block}: phrase key {} starts outside the loop {ls}..{le} at sample {}: {out:?}",
                    e.pitch, e.offset
                ));
            }
        }
        if let Some(p) = (0..128u8).find(|&p| engine.take_holds(p) && !held[p as usize]) {
            return Err(format!(
                "block {block}: the take holds key {p}, which the player released"
            ));
        }
        if !shared_channel {
            let downstream = &down.sounding[INPUT_CHANNEL as usize];
            if let Some(p) = (0..128).find(|&p| downstream[p] != passed[p]) {
                return Err(format!(
                    "block {block}: the player's key {p} is {} downstream but {} by the player (input {inputs:?}, out {out:?})",
                    if downstream[p] { "on" } else { "off" },
                    if passed[p] { "passed on" } else { "not passed on" },
                ));
            }
        }
    }
    let left: Vec<(usize, usize)> = (0..16)
        .flat_map(|c| (0..128).map(move |k| (c, k)))
        .filter(|&(c, k)| down.sounding[c][k])
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "(channel, key) {left:?} left sounding after stop, every key up and deactivate (phrase channel {})",
            s.channel
        ));
    }
    Ok(())
}

#[test]
fn the_engine_never_leaves_a_key_on_or_starts_one_twice() {
    let count: u64 = std::env::var("CONTINUO_STRESS_SEQUENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seeds: Vec<u64> = match std::env::var("CONTINUO_STRESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..count).collect(),
    };
    let t = std::time::Instant::now();
    for seed in seeds {
        let result = std::panic::catch_unwind(|| run_sequence(seed))
            .unwrap_or_else(|_| Err("panicked".into()));
        if let Err(e) = result {
            panic!("stress sequence failed; rerun with CONTINUO_STRESS_SEED={seed}: {e}");
        }
    }
    eprintln!("{count} sequences in {:.1} s", t.elapsed().as_secs_f64());
}
