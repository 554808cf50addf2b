//! A small CLAP host on clack-host: loads the bundled Continuo.clap, drives it block by
//! block with a transport, and records the notes it sends out with their absolute sample.
#![allow(dead_code)]

use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{
    MidiEvent, NoteOffEvent, NoteOnEvent, ParamValueEvent, TransportEvent, TransportFlags,
};
use clack_host::events::io::EventBuffer;
use clack_host::events::{EventFlags, EventHeader, Match};
use clack_host::prelude::*;
use clack_host::utils::{BeatTime, SecondsTime};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Shared;
impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

// nice-plug's editor needs the host's GUI extension; the test host accepts every request.
impl clack_extensions::gui::HostGuiImpl for Shared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, _size: clack_extensions::gui::GuiSize) -> Result<(), HostError> {
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {}
}

pub struct TestHost;
impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<clack_extensions::gui::HostGui>();
    }
}

/// The bundle under test: built by `cargo xtask bundle continuo --features assert_process_allocs`
/// (scripts/test.sh does that before `cargo test`), or the one `CONTINUO_CLAP` names (the
/// Windows bundle, when scripts/windows.sh runs these tests cross-built under Wine).
pub fn bundle_path() -> PathBuf {
    let p = std::env::var_os("CONTINUO_CLAP").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bundled/Continuo.clap"),
        PathBuf::from,
    );
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask bundle continuo --features assert_process_allocs` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A note event the plugin sent, at an absolute sample of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Out {
    pub sample: u64,
    /// The host's beat at that sample.
    pub beat: f64,
    pub channel: i16,
    pub key: i16,
    pub on: bool,
}

/// What the host does at a given block.
pub struct Transport {
    pub playing: bool,
    pub tempo: f64,
    pub beat: f64,
}

pub struct Session {
    pub entry: PluginEntry,
    pub instance: PluginInstance<TestHost>,
    pub processor: Option<StartedPluginAudioProcessor<TestHost>>,
    pub sample_rate: f64,
    pub block: usize,
    /// Samples processed so far.
    pub sample: u64,
    /// The host's position in beats, advanced per block by the tempo.
    pub beat: f64,
    pub tempo: f64,
    pub playing: bool,
    /// Loop range in beats, looped as Ardour does: the block that crosses the loop end is
    /// reported unsplit, as linear time, and the jump shows in the next block's position.
    pub loop_range: Option<(f64, f64)>,
    /// Time signature (numerator, denominator).
    pub meter: (u16, u16),
    /// Bar starts reported as Ardour 7.3 does: bar number × 4 quarters, whatever the meter.
    pub ardour_bars: bool,
    /// Every input audio sample has this value (a subnormal one, to check the flush).
    pub input_sample: f32,
    /// Output audio samples that were subnormal.
    pub subnormal_outputs: usize,
    pub out: Vec<Out>,
    pending_in: Vec<(u32, bool, u8, u8)>,
    pending_params: Vec<(u32, f64)>,
    /// Run at most this many times faster than real time (the editor test paces itself).
    pub speed: f64,
    /// Take only `CLAP_EVENT_MIDI` notes from the plugin, as Carla's and Qtractor's CLAP hosts
    /// do (their note events are dropped).
    pub midi_only: bool,
    started: Instant,
    simulated: f64,
}

impl Session {
    pub fn new(sample_rate: f64, block: usize) -> Session {
        let entry = unsafe { PluginEntry::load(bundle_path()) }.expect("load Continuo.clap");
        let factory = entry.get_plugin_factory().expect("plugin factory");
        let descriptor = factory
            .plugin_descriptors()
            .find(|d| {
                d.id()
                    .is_some_and(|id| id.to_bytes() == b"org.continuo.continuo")
            })
            .expect("Continuo's descriptor");
        let id = descriptor.id().unwrap().to_owned();
        let host_info = HostInfo::new(
            "continuo-test-host",
            "continuo",
            "https://example.invalid",
            "1.0",
        )
        .unwrap();
        let mut instance =
            PluginInstance::<TestHost>::new(|_| Shared, |_| (), &entry, &id, &host_info)
                .expect("instantiate");
        let config = PluginAudioConfiguration {
            sample_rate,
            min_frames_count: 1,
            max_frames_count: block as u32,
        };
        let processor = instance.activate(|_, _| (), config).expect("activate");
        let processor = processor.start_processing().expect("start processing");
        let mut session = Session {
            entry,
            instance,
            processor: Some(processor),
            sample_rate,
            block,
            sample: 0,
            beat: 0.0,
            tempo: 120.0,
            playing: true,
            loop_range: None,
            meter: (4, 4),
            ardour_bars: false,
            input_sample: 0.0,
            subnormal_outputs: 0,
            out: Vec::new(),
            pending_in: Vec::new(),
            pending_params: Vec::new(),
            speed: 1.0e6,
            midi_only: false,
            started: Instant::now(),
            simulated: 0.0,
        };
        session.wait_for_model();
        session
    }

    pub fn description(&mut self) -> String {
        let factory = self.entry.get_plugin_factory().unwrap();
        let d = factory.plugin_descriptors().next().unwrap();
        d.description()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Queues a note for the next block, at `offset`.
    pub fn note(&mut self, offset: u32, on: bool, key: u8, velocity: u8) {
        self.pending_in.push((offset, on, key, velocity));
    }

    /// The CLAP id of the parameter whose name is `name`.
    pub fn param_id(&mut self, name: &str) -> u32 {
        let handle = self.instance.plugin_handle();
        let params: PluginParams = handle.get_extension().expect("params extension");
        let mut buf = ParamInfoBuffer::new();
        for i in 0..params.count(&handle) {
            let info = params.get_info(&handle, i, &mut buf).unwrap();
            if info.name == name.as_bytes() {
                return info.id.get();
            }
        }
        panic!("no parameter named {name}");
    }

    /// Sets a stepped parameter at the next block. nice-plug's CLAP values for stepped
    /// parameters count steps from the minimum, so `plain - min` is sent.
    pub fn set_param(&mut self, name: &str, plain: f64, min: f64) {
        let id = self.param_id(name);
        self.pending_params.push((id, plain - min));
    }

    pub fn beats_per_bar(&self) -> f64 {
        self.meter.0 as f64 * 4.0 / self.meter.1 as f64
    }

    fn transport(&self) -> TransportEvent {
        let bar = (self.beat / self.beats_per_bar()).floor();
        let bar_start = if self.ardour_bars {
            bar * 4.0
        } else {
            bar * self.beats_per_bar()
        };
        let mut flags = TransportFlags::HAS_TEMPO
            | TransportFlags::HAS_BEATS_TIMELINE
            | TransportFlags::HAS_TIME_SIGNATURE;
        if self.playing {
            flags |= TransportFlags::IS_PLAYING;
        }
        if self.loop_range.is_some() {
            flags |= TransportFlags::IS_LOOP_ACTIVE;
        }
        let (loop_start, loop_end) = self.loop_range.unwrap_or((0.0, 0.0));
        TransportEvent {
            header: EventHeader::new_core(0, EventFlags::empty()),
            flags,
            song_pos_beats: BeatTime::from_float(self.beat),
            song_pos_seconds: SecondsTime::from_float(0.0),
            tempo: self.tempo,
            tempo_inc: 0.0,
            loop_start_beats: BeatTime::from_float(loop_start),
            loop_end_beats: BeatTime::from_float(loop_end),
            loop_start_seconds: SecondsTime::from_float(0.0),
            loop_end_seconds: SecondsTime::from_float(0.0),
            bar_start: BeatTime::from_float(bar_start),
            bar_number: bar as i32,
            time_signature_numerator: self.meter.0,
            time_signature_denominator: self.meter.1,
        }
    }

    /// Processes one block and records the output.
    pub fn process_block(&mut self) {
        let n = self.block;
        let mut input = EventBuffer::new();
        for (id, value) in self.pending_params.drain(..) {
            input.push(&ParamValueEvent::new(
                0,
                ClapId::new(id),
                Pckn::match_all(),
                value,
            ));
        }
        let mut notes = std::mem::take(&mut self.pending_in);
        notes.sort_by_key(|n| n.0);
        for (offset, on, key, vel) in notes {
            let pckn = Pckn::new(0u16, 0u16, key as u16, Match::All);
            if on {
                input.push(&NoteOnEvent::new(offset, pckn, vel as f64 / 127.0));
            } else {
                input.push(&NoteOffEvent::new(offset, pckn, 0.0));
            }
        }
        let mut output = EventBuffer::new();
        let mut in_l = vec![self.input_sample; n];
        let mut in_r = vec![self.input_sample; n];
        let mut out_l = vec![0f32; n];
        let mut out_r = vec![0f32; n];
        let mut in_ports = AudioPorts::with_capacity(2, 1);
        let mut out_ports = AudioPorts::with_capacity(2, 1);
        let in_audio = in_ports.with_input_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_input_only([
                InputChannel::constant(&mut in_l),
                InputChannel::constant(&mut in_r),
            ]),
        }]);
        let mut out_audio = out_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(
                [out_l.as_mut_slice(), out_r.as_mut_slice()].into_iter(),
            ),
        }]);
        let transport = self.transport();
        self.processor
            .as_mut()
            .unwrap()
            .process(
                &in_audio,
                &mut out_audio,
                &input.as_input(),
                &mut output.as_output(),
                Some(self.sample),
                Some(&transport),
            )
            .expect("process");
        self.subnormal_outputs += out_l
            .iter()
            .chain(&out_r)
            .filter(|x| x.is_subnormal())
            .count();
        let bps = self.tempo / 60.0 / self.sample_rate;
        // Where the loop end falls in this block, if it does (the host does not split it).
        let wrap = self
            .loop_range
            .filter(|_| self.playing)
            .and_then(|(ls, le)| {
                let end = self.beat + n as f64 * bps;
                (self.beat < le && end > le).then(|| (((le - self.beat) / bps).round() as u32, ls))
            });
        let beat0 = self.beat;
        let beat_at = |time: u32| match wrap {
            Some((k, ls)) if time >= k => ls + (time - k) as f64 * bps,
            _ => beat0 + time as f64 * bps,
        };
        for e in output.iter() {
            let (time, channel, key, on) = if let Some(midi) = e.as_event::<MidiEvent>() {
                let [status, key, velocity] = midi.data();
                let on = match status & 0xF0 {
                    0x90 if velocity > 0 => true,
                    0x80 | 0x90 => false,
                    _ => continue,
                };
                let channel = (status & 0x0F) as i16;
                (midi.header().time(), channel, key as i16, on)
            } else if self.midi_only {
                continue;
            } else if let Some(on) = e.as_event::<NoteOnEvent>() {
                let p = on.pckn();
                (on.header().time(), p.raw_channel(), p.raw_key(), true)
            } else if let Some(off) = e.as_event::<NoteOffEvent>() {
                let p = off.pckn();
                (off.header().time(), p.raw_channel(), p.raw_key(), false)
            } else {
                continue;
            };
            self.out.push(Out {
                sample: self.sample + time as u64,
                beat: beat_at(time),
                channel,
                key,
                on,
            });
        }
        self.sample += n as u64;
        if self.playing {
            self.beat += n as f64 * bps;
            if let Some((ls, le)) = self.loop_range {
                if self.beat > le && self.beat - n as f64 * bps < le {
                    self.beat = ls + (self.beat - le);
                }
            }
        }
        // Keep pace with the wall clock (times `speed`): the worker generates in real time.
        self.simulated += n as f64 / self.sample_rate / self.speed;
        let ahead = self.simulated - self.started.elapsed().as_secs_f64();
        if ahead > 0.002 {
            std::thread::sleep(Duration::from_secs_f64(ahead));
        }
    }

    /// Processes blocks until the host position reaches `beat` (or `seconds` pass while stopped).
    pub fn run_until(&mut self, beat: f64) {
        while self.beat + 1e-9 < beat {
            self.process_block();
        }
    }

    /// Plays a C-major triad for one bar from the current position (which must be a block
    /// boundary at a bar line), then releases it.
    pub fn play_triad_for_a_bar(&mut self) {
        for k in [60, 64, 67] {
            self.note(0, true, k, 100);
        }
        let release = self.beat + 4.0;
        self.process_block();
        while self.beat + self.block as f64 * self.tempo / 60.0 / self.sample_rate <= release + 1e-9
        {
            self.process_block();
        }
        let offset = ((release - self.beat) * 60.0 / self.tempo * self.sample_rate).round() as u32;
        for k in [60, 64, 67] {
            self.note(offset, false, k, 0);
        }
        self.process_block();
    }

    /// Id of the last phrase the worker finished, from the plugin's saved state (0: none).
    pub fn last_phrase_id(&mut self) -> u64 {
        let state = state_json(&self.save_state());
        let session: serde_json::Value =
            serde_json::from_str(state["fields"]["session"].as_str().unwrap_or("{}"))
                .unwrap_or_default();
        session["last_phrase"]["id"].as_u64().unwrap_or(0)
    }

    /// Stalls the audio thread (as a busy host may) until the worker has finished a phrase
    /// newer than `after`, so that results do not depend on how fast this machine generates.
    pub fn wait_for_phrase(&mut self, after: u64) -> u64 {
        let t = Instant::now();
        loop {
            let id = self.last_phrase_id();
            if id > after {
                return id;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "no phrase generated within 120 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the worker has loaded its model (or failed to): a host keeps processing
    /// meanwhile, but this one runs far faster than real time and would play before it.
    pub fn wait_for_model(&mut self) -> String {
        let t = Instant::now();
        loop {
            let state = state_json(&self.save_state());
            let session: serde_json::Value =
                serde_json::from_str(state["fields"]["session"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
            let status = session["model_status"].as_str().unwrap_or("").to_string();
            if !status.is_empty() {
                return status;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the worker reported no model status within 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The triad in bar 1, then the host runs on until the silence trigger has fired
    /// (beat 5) and the phrase is ready.
    pub fn triad_then_phrase(&mut self) {
        self.play_triad_for_a_bar();
        self.run_until(5.25);
        self.wait_for_phrase(0);
    }

    pub fn save_state(&mut self) -> Vec<u8> {
        let handle = self.instance.plugin_handle();
        let state: PluginState = handle.get_extension().expect("state extension");
        let mut bytes = Vec::new();
        state.save(&handle, &mut bytes).expect("save state");
        bytes
    }

    pub fn load_state(&mut self, bytes: &[u8]) {
        let handle = self.instance.plugin_handle();
        let state: PluginState = handle.get_extension().expect("state extension");
        state.load(&handle, &mut &bytes[..]).expect("load state");
    }

    /// Stops processing, deactivates, and activates again (as a host does on a settings change).
    pub fn reactivate(&mut self) {
        let p = self.processor.take().unwrap().stop_processing();
        self.instance.deactivate(p);
        let config = PluginAudioConfiguration {
            sample_rate: self.sample_rate,
            min_frames_count: 1,
            max_frames_count: self.block as u32,
        };
        let processor = self.instance.activate(|_, _| (), config).expect("activate");
        self.processor = Some(processor.start_processing().expect("start"));
    }

    /// Generated notes: everything on channel `channel` after `from_sample`.
    pub fn generated(&self, from_sample: u64) -> Vec<Out> {
        self.out
            .iter()
            .filter(|o| o.sample >= from_sample)
            .copied()
            .collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(p) = self.processor.take() {
            let p = p.stop_processing();
            self.instance.deactivate(p);
        }
    }
}

/// The JSON inside a saved state (nice-plug prefixes it with its length, 8 bytes LE).
pub fn state_json(bytes: &[u8]) -> serde_json::Value {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + len]).expect("state is JSON")
}

/// A saved state from its JSON, as nice-plug writes it (the inverse of [`state_json`]).
pub fn state_bytes(json: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(json).unwrap();
    let mut bytes = (body.len() as u64).to_le_bytes().to_vec();
    bytes.extend(body);
    bytes
}

/// (key → net count) of on minus off events; all zero when every on has its off.
pub fn unbalanced(events: &[Out]) -> Vec<(i16, i16, i64)> {
    let mut counts: std::collections::BTreeMap<(i16, i16), i64> = Default::default();
    for e in events {
        *counts.entry((e.channel, e.key)).or_default() += if e.on { 1 } else { -1 };
    }
    counts
        .into_iter()
        .filter(|(_, c)| *c != 0)
        .map(|((ch, k), c)| (ch, k, c))
        .collect()
}

/// Keys sounding just before `sample`, by replaying on/off events.
pub fn sounding_before(events: &[Out], sample: u64) -> Vec<i16> {
    let mut on = std::collections::BTreeMap::<i16, i64>::new();
    for e in events.iter().filter(|e| e.sample < sample) {
        *on.entry(e.key).or_default() += if e.on { 1 } else { -1 };
    }
    on.into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(k, _)| k)
        .collect()
}
