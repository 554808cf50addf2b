//! Candidates are compared halfway through the answer and only the kept one goes on: the
//! answer is then exactly one of the candidates as they would have been written to the end
//! (each row's random stream and scores do not depend on the rows beside it), the one most
//! in kind over the half that was heard. An n-gram scorer, counted on a real primer, stands
//! in for the model so that the test is about the choice, not the network.

use continuo::midi_file::read_midi;
use continuo::model::candidates::HEARD_SHARE;
use continuo::model::sampler::{continue_freely, GenerateOptions, Scorer};
use continuo::music::in_kind::check_in_kind_so_far;
use continuo::music::variation::Variation;
use continuo::music::Phrase;
use continuo::tokens::Vocab;
use continuo::train::baselines::NGram;
use std::path::Path;

/// The n-gram model, noting the rows it is told are finished.
struct Counting {
    ngram: NGram,
    finished: Vec<usize>,
}

impl Scorer for Counting {
    fn start(&mut self, prompts: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        self.ngram.start(prompts)
    }

    fn step(&mut self, next: &[u32], fed: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        self.ngram.step(next, fed)
    }

    fn finish(&mut self, row: usize) {
        self.finished.push(row);
    }

    fn max_context(&self) -> Option<usize> {
        None
    }
}

#[test]
fn the_kept_candidate_is_one_written_to_the_end_and_the_others_stop_halfway() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let song = read_midi(&root.join("examples/dev-primers/riff--house-piano-G.mid"))
        .expect("primer")
        .melodic;
    let bpb = song.beats_per_bar;
    let primer = song.slice(0.0, 2.0 * bpb);
    let stream = Vocab.encode(&song, true);
    let opts = |candidates: usize, variations: usize, seed: u64| GenerateOptions {
        bars: 4,
        seed,
        candidates,
        variations,
        variation: Variation::New,
        temperature: 1.2,
        ..GenerateOptions::default()
    };
    let mut kept_other_than_first = false;
    for seed in 0..24 {
        let mut scorer = Counting {
            ngram: NGram::count(&stream, 4),
            finished: Vec::new(),
        };
        let mut streamed = Vec::new();
        let answer = continue_freely(&mut scorer, &primer, &opts(4, 1, seed), |s| {
            streamed.push(s.note);
            true
        })
        .unwrap();
        // Streamed from the comparison on: the kept one's notes so far, then each as decoded.
        assert_eq!(
            Phrase::new(streamed, bpb).notes,
            answer.variations[0].notes,
            "seed {seed}"
        );
        // One candidate and four variations: the same four rows, random streams 0..4,
        // each written to its end.
        let written = continue_freely(
            &mut Counting {
                ngram: NGram::count(&stream, 4),
                finished: Vec::new(),
            },
            &primer,
            &opts(1, 4, seed),
            |_| true,
        )
        .unwrap();
        // A continuation never opens a gap, after which it would go back in time.
        assert!(
            written
                .variations
                .iter()
                .flat_map(|v| &v.notes)
                .all(|n| n.start >= 0.0),
            "seed {seed}: a candidate went back before the answer's first bar line"
        );
        let kept = (0..4)
            .find(|&c| written.ids[c] == answer.ids[0])
            .expect("the answer is one of the candidates written to the end");
        kept_other_than_first |= kept != 0;
        assert_eq!(
            written.variations[kept].notes, answer.variations[0].notes,
            "seed {seed}"
        );
        // The kept one passed the most checks over the half heard, and is the first of those.
        let heard = HEARD_SHARE * 4.0 * bpb;
        let score = |c: usize| {
            check_in_kind_so_far(
                &primer.notes,
                primer.bar_count(),
                &written.variations[c].notes,
                heard,
                bpb,
            )
            .passed()
        };
        let best = (0..4).map(score).max().unwrap();
        assert_eq!(
            kept,
            (0..4).find(|&c| score(c) == best).unwrap(),
            "seed {seed}"
        );
        // The three others stopped, before their end unless the kept one is the longest.
        let mut stopped = scorer.finished.clone();
        stopped.retain(|&r| r != kept);
        stopped.sort();
        stopped.dedup();
        assert_eq!(stopped.len(), 3, "seed {seed}: {:?}", scorer.finished);
        let longest = (0..4).max_by_key(|&c| written.ids[c].len()).unwrap();
        assert!(
            answer.tokens < written.tokens || written.ids[kept].len() == written.ids[longest].len(),
            "seed {seed}: the others were written to their end"
        );
    }
    assert!(
        kept_other_than_first,
        "every seed kept the first candidate: the choice was never tested"
    );
}
