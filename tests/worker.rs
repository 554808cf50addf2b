//! The worker thread: streams a phrase in chunks, and a newer request supersedes an older one.

mod common;

use continuo::audio::messages::{GenerationSettings, PhraseChunk, PrimerSnapshot};
use continuo::music::Note;
use continuo::shared::Shared;
use continuo::worker::{command_channel, Command, Hooks, ModelSource, Worker};
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

/// Waits until the history's newest idea is not `than` (or 60 s pass).
fn newest_idea_after(shared: &Shared, than: u64) -> continuo::shared::Idea {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if let Some(i) = shared.view().history.front().filter(|i| i.id != than) {
            return i.clone();
        }
        if let Some(e) = &shared.view().last_error {
            panic!("the worker failed: {e}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no new idea");
}

#[test]
fn regenerating_a_bar_swaps_only_that_bar_into_the_playing_phrase_and_undo_puts_it_back() {
    let (shared, worker, ends) = spawn();
    assert!(
        shared.view().model.can_infill,
        "a model of vocabulary v4 or later fills gaps"
    );
    let p = primer(&shared, 4);
    ends.requests.try_send(p).unwrap();
    collect_until_finished(&ends, p.id);
    let idea = shared.view().history.front().cloned().unwrap();

    worker.send(Command::RegenerateBars {
        idea: idea.clone(),
        bars: (2, 3),
        seed: 11,
    });
    let variant = newest_idea_after(&shared, idea.id);
    let v = variant
        .variant_of
        .expect("a variant says what it came from");
    assert_eq!((v.parent, v.bars), (idea.id, (2, 3)));
    let (from, to) = v.beats(idea.beats_per_bar);
    let outside = |notes: &[Note]| -> Vec<Note> {
        notes
            .iter()
            .filter(|n| n.start < from || n.start >= to)
            .copied()
            .collect()
    };
    assert_eq!(outside(&variant.notes), outside(&idea.notes));
    assert!(variant
        .notes
        .iter()
        .filter(|n| (from..to).contains(&n.start))
        .all(|n| n.end() <= to + 1e-9));
    // The playing phrase gets the new bar as a swap, not as a new phrase.
    let chunks = collect_until_finished(&ends, variant.id);
    let swap = chunks[0].swap.expect("a bar swap");
    assert_eq!((swap.target, swap.from, swap.to), (p.id, from, to));
    let swapped: Vec<Note> = chunks.iter().flat_map(|c| c.notes().to_vec()).collect();
    let inside: Vec<Note> = variant
        .notes
        .iter()
        .filter(|n| (from..to).contains(&n.start))
        .copied()
        .collect();
    assert_eq!(swapped, inside);

    worker.send(Command::Undo {
        idea: variant.clone(),
    });
    let back = newest_idea_after(&shared, variant.id);
    assert_eq!(back, idea, "Undo makes the idea before the newest again");
    let id = shared.latest_id.load(Ordering::Relaxed);
    let chunks = collect_until_finished(&ends, id);
    assert_eq!(chunks[0].swap.map(|s| s.target), Some(p.id));
    let restored: Vec<Note> = chunks.iter().flat_map(|c| c.notes().to_vec()).collect();
    let old: Vec<Note> = idea
        .notes
        .iter()
        .filter(|n| (from..to).contains(&n.start))
        .copied()
        .collect();
    assert_eq!(restored, old);
    assert_eq!(
        shared.view().history.len(),
        2,
        "the variant stays in the history"
    );
}
