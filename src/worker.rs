//! The generation thread: owns the model and its device, turns primers into phrases and
//! streams them back in chunks while it is still generating.
//!
//! Neither side ever parks on a channel the audio thread touches: the audio thread only
//! `try_send`s and `try_recv`s, and the worker polls with short sleeps, so the audio thread
//! never has to wake a sleeping thread (which would take a lock inside crossbeam).

use crate::audio::messages::{KeyLock, PhraseChunk, PrimerSnapshot};
use crate::device::{best_device, device_name};
use crate::model::files::{load_model, load_model_from_bytes, LoadedModel};
use crate::model::{generate_streaming, GenerateOptions, KeyPrefix};
use crate::music::{detect_key, Key, Note, Phrase};
use crate::shared::{Idea, ModelStatus, Shared, HISTORY_LEN};
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
                    hooks,
                };
                state.load(source);
                state.run(req_rx, cmd_rx);
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
        self.shared
            .model_ready
            .store(status.loaded(), Ordering::Release);
        (self.hooks.on_model_loaded)(&status);
        self.shared.view().model = status;
    }

    /// Generation behind a panic guard: a panic becomes a status line, and the worker goes on.
    fn guarded_generate(&mut self, p: PrimerSnapshot) {
        let result = catch_unwind(AssertUnwindSafe(|| self.generate(p)));
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
        let key = match p.settings.key_lock {
            KeyLock::Off => None,
            KeyLock::FromPrimer => detect_key(&primer.notes),
            KeyLock::Fixed(i) => Some(Key::from_index(i as usize)),
        };
        let opts = GenerateOptions {
            bars: p.settings.bars,
            temperature: p.settings.temperature,
            top_p: p.settings.top_p,
            seed: p.settings.seed,
            variations: 1,
            candidates: p.settings.candidates.max(1) as usize,
            pitch_range: (
                p.settings.low.min(p.settings.high),
                p.settings.high.max(p.settings.low),
            ),
            key,
            // The model always hears the key: the lock's, else the primer's.
            key_prefix: KeyPrefix::Detect,
            texture: p.settings.texture,
            rhythm: p.settings.rhythm,
            steer_texture: true,
            beats_per_bar: p.beats_per_bar,
            start_on_downbeat: true,
            copy_guard: loaded.copy_guard.clone(),
        };
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
        chunk.finished = true;
        send_chunk(&self.chunks, &self.shared, chunk);
        let notes: Vec<Note> = generated.variations[0].notes.clone();
        let idea = Idea {
            id: p.id,
            seed: p.settings.seed,
            primer: primer.notes.clone(),
            notes,
            beats_per_bar: generated.variations[0].beats_per_bar,
            bars: p.settings.bars,
            key: opts.told_key(&primer).map(|k| k.name()),
        };
        (self.hooks.on_idea)(&idea);
        let mut view = self.shared.view();
        view.last_ms_per_token = generated.ms_per_token;
        view.bars_done = p.settings.bars;
        view.history.push_front(idea);
        view.history.truncate(HISTORY_LEN);
        Ok(())
    }

    fn recall(&mut self, idea: Idea) {
        let (idea, _) = idea.validated();
        let id = self.shared.new_id();
        let length_beats = idea.bars as f64 * idea.beats_per_bar;
        let mut chunk = PhraseChunk::new(id, length_beats);
        for n in &idea.notes {
            chunk.push(*n);
            if chunk.is_full() {
                send_chunk(&self.chunks, &self.shared, chunk);
                chunk = PhraseChunk::new(id, length_beats);
            }
        }
        chunk.finished = true;
        send_chunk(&self.chunks, &self.shared, chunk);
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
