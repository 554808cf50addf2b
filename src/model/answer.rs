//! Answering a primer: the entry point of generation. *New* is the decoding loop alone
//! ([`continue_freely`]); *Develop* and *Loop* answer by a plan over it
//! ([`answer_by_plan`]). Kept apart from both so that the policy and the loop import
//! downward only.

use super::sampler::{
    continue_freely, GenerateOptions, Generated, ModelScorer, Scorer, StreamedNote,
};
use super::variation::answer_by_plan;
use super::Model;
use crate::music::variation::Variation;
use crate::music::Phrase;
use candle_core::{Device, Result};

/// Generates without streaming; see [`generate_streaming`].
pub fn generate(
    model: &Model,
    device: &Device,
    primer: &Phrase,
    opts: &GenerateOptions,
) -> Result<Generated> {
    generate_streaming(model, device, primer, opts, |_| true)
}

/// Continues `primer`, calling `on_note` with each note as soon as it is decoded; stops
/// early when `on_note` returns false (a newer request superseded this one).
pub fn generate_streaming(
    model: &Model,
    device: &Device,
    primer: &Phrase,
    opts: &GenerateOptions,
    on_note: impl FnMut(StreamedNote) -> bool,
) -> Result<Generated> {
    generate_with(&mut ModelScorer::new(model, device), primer, opts, on_note)
}

/// Continues `primer` by `opts.bars` bars over any [`Scorer`]: the decoding loop alone for
/// [`Variation::New`], else the answer planned from the primer's bars
/// ([`answer_by_plan`]).
pub fn generate_with(
    scorer: &mut dyn Scorer,
    primer: &Phrase,
    opts: &GenerateOptions,
    on_note: impl FnMut(StreamedNote) -> bool,
) -> Result<Generated> {
    match opts.variation {
        Variation::New => continue_freely(scorer, primer, opts, on_note),
        Variation::Loop | Variation::Develop => answer_by_plan(scorer, primer, opts, on_note),
    }
}
