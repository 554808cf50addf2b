//! The generation thread: owns the model and its device, turns primers into phrases and
//! streams them back in chunks while it is still generating.
//!
//! Neither side ever parks on a channel the audio thread touches: the audio thread only
//! `try_send`s and `try_recv`s, and the worker polls with short sleeps, so the audio thread
//! never has to wake a sleeping thread (which would take a lock inside crossbeam).

use crate::audio::messages::{BarSwap, GenerationSettings, KeyLock, PhraseChunk, PrimerSnapshot};
use crate::device::{best_device, device_name};
use crate::model::copy_guard::CopyGuard;
use crate::model::files::{load_model, load_model_from_bytes, LoadedModel};
use crate::model::sampler::{infill_with, ModelScorer};
use crate::model::{generate_streaming, GenerateOptions, KeyPrefix};
use crate::music::{detect_key, Key, Note, Phrase};
use crate::shared::{Idea, ModelStatus, Shared, Variant, HISTORY_LEN};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the worker looks for work.
const POLL: Duration = Duration::from_millis(2);
/// Primers in flight; a newer one supersedes older ones anyway.
const REQUEST_CAPACITY: usize = 4;
/// Chunks in flight to the audio thread.
const CHUNK_QUEUE: usize = 256;

/// The default model, compiled in so the plugin works wherever its bundle is copied.
static DEFAULT_CONFIG: &str = include_str!("../models/default/config.json");
static DEFAULT_WEIGHTS: &[u8] = include_bytes!("../models/default/model.safetensors");
static DEFAULT_COPY_GUARD: &[u8] = include_bytes!("../models/default/copy_guard.safetensors");

/// Where the model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Embedded,
    Folder(PathBuf),
}

/// What the editor can ask of the worker.
#[derive(Debug, Clone)]
pub enum Command {
    /// Generate again from the last primer, with this seed.
    Regenerate {
        seed: u64,
    },
    /// Send a remembered idea to the audio thread again.
    Recall {
        idea: Idea,
    },
    /// Make bars `bars` (0-based, end exclusive, of the phrase) of `idea` anew, hearing the
    /// primer and the bars on both sides; the new bars replace the old ones in place.
    RegenerateBars {
        idea: Idea,
        bars: (u32, u32),
        seed: u64,
    },
    /// Bring back the bars a variant replaced (the idea it was made from).
    Undo {
        idea: Idea,
    },
    LoadModel(ModelSource),
    Shutdown,
}

/// The audio thread's ends of the channels.
pub struct AudioEnds {
    pub requests: Sender<PrimerSnapshot>,
    pub chunks: Receiver<PhraseChunk>,
}

/// The editor → worker command channel; made before the worker so the editor can exist first.
pub fn command_channel() -> (Sender<Command>, Receiver<Command>) {
    bounded(64)
}

/// Callbacks the plugin gives the worker, so the session state follows it.
pub struct Hooks {
    pub on_model_loaded: Box<dyn Fn(&ModelStatus) + Send>,
    pub on_idea: Box<dyn Fn(&Idea) + Send>,
}

/// Owns the worker thread; dropping it stops the thread.
pub struct Worker {
    commands: Sender<Command>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker with a model source; returns it and the audio thread's channel ends.
    /// `commands` carries the editor's requests (see [`command_channel`]).
    pub fn spawn(
        shared: Arc<Shared>,
        source: ModelSource,
        hooks: Hooks,
        commands: (Sender<Command>, Receiver<Command>),
    ) -> (Worker, AudioEnds) {
        let (req_tx, req_rx) = bounded(REQUEST_CAPACITY);
        let (chunk_tx, chunk_rx) = bounded(CHUNK_QUEUE);
        let (cmd_tx, cmd_rx) = commands;
        let shared_for_drop = shared.clone();
        let thread = std::thread::Builder::new()
            .name("continuo-worker".into())
            .spawn(move || {
                let mut state = WorkerState {
                    shared,
                    model: None,
                    chunks: chunk_tx,
                    last_primer: None,
                    playing: None,
                    hooks,
                };
                state.load(source);
                state.run(req_rx, cmd_rx);
                drop(state);
                crate::model::release_spare_buffers();
            })
            .expect("the OS refused to start the worker thread");
        (
            Worker {
                commands: cmd_tx,
                shared: shared_for_drop,
                thread: Some(thread),
            },
            AudioEnds {
                requests: req_tx,
                chunks: chunk_rx,
            },
        )
    }

    /// Queues a command (from the editor or the plugin's main thread).
    pub fn send(&self, c: Command) {
        let _ = self.commands.try_send(c);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A newer id makes a generation in progress stop at its next token.
        self.shared.new_id();
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct WorkerState {
    shared: Arc<Shared>,
    model: Option<LoadedModel>,
    chunks: Sender<PhraseChunk>,
    last_primer: Option<PrimerSnapshot>,
    /// (idea id, the id its phrase plays under) of the idea sent to the audio thread last:
    /// bar swaps target that phrase.
    playing: Option<(u64, u64)>,
    hooks: Hooks,
}

impl WorkerState {
    fn run(&mut self, requests: Receiver<PrimerSnapshot>, commands: Receiver<Command>) {
        loop {
            match commands.try_recv() {
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return,
                Ok(Command::LoadModel(source)) => self.load(source),
                Ok(Command::Regenerate { seed }) => {
                    if let Some(mut p) = self.last_primer {
                        p.id = self.shared.new_id();
                        p.settings.seed = seed;
                        self.guarded_generate(p);
                    }
                }
                Ok(Command::Recall { idea }) => self.recall(idea),
                Ok(Command::RegenerateBars { idea, bars, seed }) => {
                    self.guarded(|w| w.regenerate_bars(idea, bars, seed))
                }
                Ok(Command::Undo { idea }) => self.undo(idea),
                Err(TryRecvError::Empty) => {}
            }
            // Only the newest waiting primer matters.
            let mut newest = None;
            while let Ok(p) = requests.try_recv() {
                newest = Some(p);
            }
            match newest {
                Some(p) => {
                    self.last_primer = Some(p);
                    self.guarded_generate(p);
                }
                None => std::thread::sleep(POLL),
            }
        }
    }

    fn load(&mut self, source: ModelSource) {
        let device = best_device();
        // Loading runs behind the same panic guard as generation: a model folder must never
        // take the worker (and the host) down.
        let loaded = catch_unwind(AssertUnwindSafe(|| match &source {
            ModelSource::Embedded => load_model_from_bytes(
                DEFAULT_CONFIG,
                DEFAULT_WEIGHTS,
                Some(DEFAULT_COPY_GUARD),
                std::path::Path::new("default"),
                &device,
            ),
            ModelSource::Folder(dir) => load_model(dir, &device),
        }));
        let name = match &source {
            ModelSource::Embedded => "default (built in)".to_string(),
            ModelSource::Folder(dir) => dir.display().to_string(),
        };
        let result = match loaded {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(panic) => Err(format!(
                "loading the model crashed ({})",
                panic_text(&*panic)
            )),
        };
        let status = match result {
            Ok(m) => {
                let s = ModelStatus {
                    name,
                    description: m.card.architecture.describe(),
                    parameters: m.card.architecture.parameter_count(),
                    device: device_name(&device).to_string(),
                    guarded_runs: m.copy_guard.as_ref().map_or(0, |g| g.len()),
                    error: None,
                    can_infill: crate::tokens::Vocab
                        .infill_layout(m.model.vocab_size())
                        .is_some(),
                };
                self.model = Some(m);
                s
            }
            Err(e) => {
                self.model = None;
                ModelStatus {
                    name,
                    device: device_name(&device).to_string(),
                    error: Some(e),
                    ..Default::default()
                }
            }
        };
        // For the host's log (the editor shows the same): what plays, or why MIDI passes through.
        match &status.error {
            None => tracing::info!(
                "model {}: {}, {} parameters, on {}",
                status.name,
                status.description,
                status.parameters,
                status.device
            ),
            Some(e) => tracing::warn!("model {} not loaded, MIDI passes through: {e}", status.name),
        }
        self.shared
            .model_ready
            .store(status.loaded(), Ordering::Release);
        (self.hooks.on_model_loaded)(&status);
        self.shared.view().model = status;
    }

    /// Generation behind a panic guard: a panic becomes a status line, and the worker goes on.
    fn guarded_generate(&mut self, p: PrimerSnapshot) {
        self.guarded(|w| w.generate(p))
    }

    fn guarded(&mut self, work: impl FnOnce(&mut Self) -> anyhow::Result<()>) {
        let result = catch_unwind(AssertUnwindSafe(|| work(self)));
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("generation failed: {e}")),
            Err(panic) => Some(format!(
                "generation crashed ({}); the worker restarted",
                panic_text(&*panic)
            )),
        };
        let mut view = self.shared.view();
        view.generating = false;
        if error.is_some() {
            view.last_error = error;
        }
    }

    fn generate(&mut self, p: PrimerSnapshot) -> anyhow::Result<()> {
        let Some(loaded) = &self.model else {
            return Ok(());
        };
        let primer = Phrase::new(p.notes().to_vec(), p.beats_per_bar);
        let opts = generate_options(&p.settings, &primer, loaded.copy_guard.clone());
        {
            let mut view = self.shared.view();
            view.generating = true;
            view.bars_done = 0;
            view.bars_total = p.settings.bars;
            view.last_error = None;
        }
        let length_beats = p.settings.bars as f64 * p.beats_per_bar;
        let mut chunk = PhraseChunk::new(p.id, length_beats);
        let shared = self.shared.clone();
        let chunks = self.chunks.clone();
        let generated = generate_streaming(&loaded.model, &loaded.device, &primer, &opts, |s| {
            if !shared.is_current(p.id) {
                return false;
            }
            chunk.push(s.note);
            if chunk.is_full() {
                send_chunk(&chunks, &shared, chunk);
                chunk = PhraseChunk::new(p.id, length_beats);
            }
            shared.view().bars_done = s.bars_done;
            true
        })?;
        if !self.shared.is_current(p.id) {
            return Ok(());
        }
        let notes: Vec<Note> = generated.variations[0].notes.clone();
        let idea = Idea {
            id: p.id,
            seed: p.settings.seed,
            primer: primer.notes.clone(),
            notes,
            beats_per_bar: generated.variations[0].beats_per_bar,
            bars: p.settings.bars,
            key: opts.told_key(&primer).map(|k| k.name()),
            variant_of: None,
        };
        self.playing = Some((idea.id, p.id));
        (self.hooks.on_idea)(&idea);
        {
            let mut view = self.shared.view();
            view.last_ms_per_token = generated.ms_per_token;
            view.bars_done = p.settings.bars;
            view.history.push_front(idea);
            view.history.truncate(HISTORY_LEN);
        }
        // The finished chunk goes last: whoever sees the phrase finished finds it in the
        // history (the editor's *Regenerate bar* acts on the history's idea).
        chunk.finished = true;
        send_chunk(&self.chunks, &self.shared, chunk);
        Ok(())
    }

    fn recall(&mut self, idea: Idea) {
        let (idea, _) = idea.validated();
        let id = self.shared.new_id();
        let length_beats = idea.bars as f64 * idea.beats_per_bar;
        send_notes(&self.chunks, &self.shared, &idea.notes, || {
            PhraseChunk::new(id, length_beats)
        });
        self.playing = Some((idea.id, id));
    }

    /// Regenerates bars `bars` of `idea` by infilling: the model hears the primer, the bars
    /// before and the bars after. The variant goes to the history and replaces the bars in
    /// the phrase that plays ([`Self::swap_in`]).
    fn regenerate_bars(&mut self, idea: Idea, bars: (u32, u32), seed: u64) -> anyhow::Result<()> {
        let Some(loaded) = &self.model else {
            return Ok(());
        };
        let (idea, _) = idea.validated();
        let id = self.shared.new_id();
        let bpb = idea.beats_per_bar;
        let primer = Phrase::new(idea.primer.clone(), bpb);
        // The phrase was generated from the bar after the primer's last onset (the sampler's
        // start bar), so primer and phrase sit on one timeline of whole bars.
        let primer_bars = primer.bar_count() as u32;
        let shift = primer_bars as f64 * bpb;
        let whole = Phrase::new(
            primer
                .notes
                .iter()
                .copied()
                .chain(idea.notes.iter().map(|n| Note {
                    start: n.start + shift,
                    ..*n
                }))
                .collect(),
            bpb,
        );
        let settings = self
            .last_primer
            .map_or_else(GenerationSettings::default, |p| p.settings);
        let opts = GenerateOptions {
            seed,
            ..generate_options(&settings, &primer, loaded.copy_guard.clone())
        };
        {
            let mut view = self.shared.view();
            view.generating = true;
            view.bars_done = 0;
            view.bars_total = bars.1 - bars.0;
            view.last_error = None;
        }
        let shared = self.shared.clone();
        let generated = infill_with(
            &mut ModelScorer::new(&loaded.model, &loaded.device),
            &whole,
            primer_bars + bars.0..primer_bars + bars.1,
            &opts,
            |_| shared.is_current(id),
        )
        .map_err(|e| anyhow::anyhow!(crate::model::files::without_backtrace(&e.to_string())))?;
        if !self.shared.is_current(id) {
            return Ok(());
        }
        let variant_of = Variant {
            parent: idea.id,
            bars,
        };
        let (from, to) = variant_of.beats(bpb);
        let mut notes: Vec<Note> = idea
            .notes
            .iter()
            .filter(|n| !(from..to).contains(&n.start))
            .copied()
            .chain(generated.variations[0].notes.iter().map(|n| Note {
                start: n.start + from,
                ..*n
            }))
            .collect();
        notes.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.pitch.cmp(&b.pitch)));
        let variant = Idea {
            id,
            seed,
            notes,
            variant_of: Some(variant_of),
            ..idea.clone()
        };
        self.swap_in(&idea, &variant, (from, to), id);
        (self.hooks.on_idea)(&variant);
        let mut view = self.shared.view();
        view.last_ms_per_token = generated.ms_per_token;
        view.bars_done = bars.1 - bars.0;
        view.history.push_front(variant);
        view.history.truncate(HISTORY_LEN);
        Ok(())
    }

    /// Puts back the bars `variant` replaced, from the idea it was made from (if that is
    /// still in the history), and makes that idea the newest again.
    fn undo(&mut self, variant: Idea) {
        let Some(v) = variant.variant_of else { return };
        // The request's id before the history changes: whoever sees the parent come back
        // sees a request at least this new.
        let id = self.shared.new_id();
        let parent = {
            let mut view = self.shared.view();
            let Some(i) = view.history.iter().position(|i| i.id == v.parent) else {
                view.last_error =
                    Some("the idea before this one is no longer in the history".into());
                return;
            };
            let Some(parent) = view.history.remove(i) else {
                return;
            };
            view.history.push_front(parent.clone());
            parent
        };
        let (parent, _) = parent.validated();
        self.swap_in(&variant, &parent, v.beats(parent.beats_per_bar), id);
        (self.hooks.on_idea)(&parent);
    }

    /// Replaces the notes of `old` in `[from, to)` by `new`'s, in the phrase that plays, at
    /// the audio thread's next bar line outside those bars; if `old` is not what plays,
    /// `new` plays as a recalled idea.
    fn swap_in(&mut self, old: &Idea, new: &Idea, (from, to): (f64, f64), request: u64) {
        match self.playing {
            Some((idea, phrase)) if idea == old.id => {
                let swap = BarSwap {
                    target: phrase,
                    from,
                    to,
                };
                let length_beats = new.bars as f64 * new.beats_per_bar;
                let bars: Vec<Note> = new
                    .notes
                    .iter()
                    .filter(|n| swap.holds(n.start))
                    .copied()
                    .collect();
                send_notes(&self.chunks, &self.shared, &bars, || {
                    PhraseChunk::for_swap(request, length_beats, swap)
                });
                self.playing = Some((new.id, phrase));
            }
            _ => self.recall(new.clone()),
        }
    }
}

/// Sends `notes` in chunks made by `chunk`, the last one marked finished.
fn send_notes(
    chunks: &Sender<PhraseChunk>,
    shared: &Shared,
    notes: &[Note],
    chunk: impl Fn() -> PhraseChunk,
) {
    let mut c = chunk();
    for n in notes {
        c.push(*n);
        if c.is_full() {
            send_chunk(chunks, shared, c);
            c = chunk();
        }
    }
    c.finished = true;
    send_chunk(chunks, shared, c);
}

/// The sampling options of the plugin's settings; `primer` is what *Key lock: from primer*
/// listens to.
pub fn generate_options(
    settings: &GenerationSettings,
    primer: &Phrase,
    copy_guard: Option<std::sync::Arc<CopyGuard>>,
) -> GenerateOptions {
    let key = match settings.key_lock {
        KeyLock::Off => None,
        KeyLock::FromPrimer => detect_key(&primer.notes),
        KeyLock::Fixed(i) => Some(Key::from_index(i as usize)),
    };
    GenerateOptions {
        bars: settings.bars,
        temperature: settings.temperature,
        top_p: settings.top_p,
        seed: settings.seed,
        variations: 1,
        candidates: settings.candidates.max(1) as usize,
        pitch_range: (
            settings.low.min(settings.high),
            settings.high.max(settings.low),
        ),
        key,
        // The model always hears the key: the lock's, else the primer's.
        key_prefix: KeyPrefix::Detect,
        texture: settings.texture,
        rhythm: settings.rhythm,
        variation: settings.variation,
        steer_texture: true,
        beats_per_bar: primer.beats_per_bar,
        start_on_downbeat: true,
        copy_guard,
    }
}

/// Sends without ever blocking the audio thread: retries while the queue is full and the
/// phrase is still the newest.
fn send_chunk(chunks: &Sender<PhraseChunk>, shared: &Shared, mut chunk: PhraseChunk) {
    loop {
        match chunks.try_send(chunk) {
            Ok(()) => return,
            Err(TrySendError::Full(c)) => {
                if !shared.is_current(c.id) {
                    return;
                }
                chunk = c;
                std::thread::sleep(POLL);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// What a caught panic says.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panic")
}
