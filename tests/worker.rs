//! The worker thread: streams a phrase in chunks, and a newer request supersedes an older one.

mod common;

use continuo::audio::messages::{GenerationSettings, PhraseChunk, PrimerSnapshot};
use continuo::music::Note;
use continuo::shared::Shared;
use continuo::worker::{command_channel, Hooks, ModelSource, Worker};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn primer(shared: &Shared, bars: u32) -> PrimerSnapshot {
    let settings = GenerationSettings {
        bars,
        seed: 5,
        ..Default::default()
    };
    let mut p = PrimerSnapshot::empty(settings);
    for (i, pitch) in [60, 64, 67].into_iter().enumerate() {
        p.notes[i] = Note {
            start: 0.0,
            duration: 4.0,
            pitch,
            velocity: 100,
        };
    }
    p.len = 3;
    p.id = shared.new_id();
    p
}

fn spawn() -> (Arc<Shared>, Worker, continuo::worker::AudioEnds) {
    let shared = Arc::new(Shared::default());
    let hooks = Hooks {
        on_model_loaded: Box::new(|_| {}),
        on_idea: Box::new(|_| {}),
    };
    let source = ModelSource::Folder(common::tiny_model_dir().to_owned());
    let (worker, ends) = Worker::spawn(shared.clone(), source, hooks, command_channel());
    let t = Instant::now();
    while !shared.model_ready.load(Ordering::Acquire) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "model not loaded: {:?}",
            shared.view().model
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Training wrote a copy guard beside the weights, and the worker generates with it.
    assert!(shared.view().model.guarded_runs > 0);
    (shared, worker, ends)
}

/// Collects chunks until one with `id` is finished (or 60 s pass).
fn collect_until_finished(ends: &continuo::worker::AudioEnds, id: u64) -> Vec<PhraseChunk> {
    let mut got = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        match ends.chunks.try_recv() {
            Ok(c) => {
                let done = c.id == id && c.finished;
                got.push(c);
                if done {
                    return got;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    panic!("phrase {id} never finished");
}

#[test]
fn a_phrase_streams_back_in_chunks_and_lands_in_the_history() {
    let (shared, _worker, ends) = spawn();
    let p = primer(&shared, 4);
    ends.requests.try_send(p).unwrap();
    let chunks = collect_until_finished(&ends, p.id);
    let notes: usize = chunks.iter().map(|c| c.len).sum();
    assert!(notes > 0);
    assert!(chunks
        .iter()
        .all(|c| c.id == p.id && c.length_beats == 16.0));
    let view = shared.view();
    assert_eq!(
        view.history.front().map(|i| (i.id, i.notes.len())),
        Some((p.id, notes))
    );
}

#[test]
fn a_newer_request_supersedes_the_one_in_flight() {
    let (shared, _worker, ends) = spawn();
    let old = primer(&shared, 64);
    ends.requests.try_send(old).unwrap();
    // Let the long phrase start, then ask again.
    let t = Instant::now();
    while !shared.view().generating && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let new = primer(&shared, 1);
    ends.requests.try_send(new).unwrap();
    let chunks = collect_until_finished(&ends, new.id);
    assert!(
        !chunks.iter().any(|c| c.id == old.id && c.finished),
        "the superseded phrase was finished anyway"
    );
    assert!(shared.view().history.iter().all(|i| i.id != old.id));
}
