//! Steering: what limits and leans each row's next token beside the grammar, at every step
//! of an answer. The bar positions the primer's rhythm allows, a start on the downbeat, the
//! user's range and key, the texture's register, chord sizes and onsets per bar, the copy
//! guard, and the lean toward the told key and register. The decoding loop (`sampler.rs`)
//! asks it for each row's mask and lean, and tells it each token a row takes (`RowCounts`).

use super::sampler::GenerateOptions;
use crate::music::texture::{Rhythm, TextureTargets};
use crate::music::{Note, Phrase};
use crate::tokens::{Decoder, Grammar, Token, Vocab, MAX_BAR_TICKS, MAX_FILL_BARS, TICKS_PER_BEAT};

/// When steering, each pitch's logit moves by this times the log of its weight in the told
/// key's probe-tone profile ([`Key::profile_weight`](crate::music::Key::profile_weight)): the
/// tonic is untouched, the fifth loses 0.2, chromatic notes about 1. The model was trained
/// mostly on fiddle tunes in D, G and A and drifts there (or to the relative minor) from a C
/// major chord progression; a hard key lock stays the user's choice (*Key lock*), this only
/// leans. Twice this kept 99 % of answers' note time in the primer's scale where real
/// continuations keep 94 % (overlap of the two distributions 0.74, `eval --continuations` on
/// the development set); this keeps 97 % (overlap 0.84).
pub const KEY_LEAN: f32 = 1.0;
/// When steering, a pitch this many semitones or fewer from the register it is steered toward
/// is free; each semitone further costs [`REGISTER_LEAN`] in its logit.
pub const REGISTER_FREE_SEMITONES: f32 = 4.0;
pub const REGISTER_LEAN: f32 = 0.35;

/// One answer's steering, made once from its primer and options.
pub(super) struct Steering<'a> {
    opts: &'a GenerateOptions,
    /// The bar positions an onset may take ([`allowed_positions`]).
    positions: [bool; MAX_BAR_TICKS as usize],
    targets: TextureTargets,
    /// Logit offsets of the 128 pitches toward the told key and the register steered toward.
    pitch_lean: Option<Vec<f32>>,
    /// The gap markers (a gap's length, its middle, what comes before it), masked in a
    /// continuation: after them the decoder would go back before the answer's first bar line
    /// (the grammar allows them after any bar).
    gap_markers: Vec<u32>,
    /// Bars the prompt opened: a row that has opened no other is in the answer's first bar.
    prompt_bars: u32,
    /// Where the answer starts, in the primer's beats (the copy guard compares from there).
    start_beat: f64,
}

impl<'a> Steering<'a> {
    /// For an answer to `primer` whose prompt left `grammar`, starting at `start_beat`.
    pub(super) fn new(
        primer: &Phrase,
        opts: &'a GenerateOptions,
        grammar: &Grammar,
        start_beat: f64,
    ) -> Self {
        let targets = if opts.steer_texture {
            let bpb = crate::tokens::quantize(primer).beats_per_bar;
            opts.texture.targets_for(&primer.notes, bpb)
        } else {
            TextureTargets::default()
        };
        let told_key = opts.steer_texture.then(|| opts.told_key(primer)).flatten();
        let pitch_lean = (told_key.is_some() || targets.register_centre.is_some()).then(|| {
            (0..=127u8)
                .map(|p| {
                    let key =
                        told_key.map_or(0.0, |k| KEY_LEAN * (k.profile_weight(p) as f32).ln());
                    let register = targets.register_centre.map_or(0.0, |c| {
                        let far = (p as f32 - c as f32).abs() - REGISTER_FREE_SEMITONES;
                        -REGISTER_LEAN * far.max(0.0)
                    });
                    key + register
                })
                .collect()
        });
        let vocab = Vocab;
        let gap_markers = if grammar.in_middle() {
            Vec::new()
        } else {
            (1..=MAX_FILL_BARS)
                .map(Token::Suffix)
                .chain([Token::Middle, Token::Before])
                .map(|t| vocab.id(t))
                .collect()
        };
        Steering {
            opts,
            positions: allowed_positions(primer, opts.rhythm, grammar.bar_ticks()),
            targets,
            pitch_lean,
            gap_markers,
            prompt_bars: grammar.bars_opened(),
            start_beat,
        }
    }

    /// Fills `mask` with the tokens a row may take next: the row's `decoder` after its notes
    /// `out` so far, and its `counts`.
    pub(super) fn mask(
        &self,
        mask: &mut [bool],
        decoder: &Decoder,
        out: &[Note],
        counts: &RowCounts,
    ) {
        let (vocab, opts, g) = (Vocab, self.opts, decoder.grammar());
        g.fill_mask(mask);
        mask[vocab.id(Token::Eos) as usize] = false;
        for &id in &self.gap_markers {
            mask[id as usize] = false;
        }
        for (tick, &ok) in self.positions.iter().enumerate() {
            mask[vocab.id(Token::Position(tick as u8)) as usize] &= ok;
        }
        let downbeat = vocab.id(Token::Position(0));
        if opts.start_on_downbeat
            && out.is_empty()
            && g.allows(downbeat)
            && self.positions[0]
            && g.bars_opened() == self.prompt_bars
        {
            mask.iter_mut().for_each(|m| *m = false);
            mask[downbeat as usize] = true;
        }
        apply_pitch_masks(mask, g, opts, self.targets.pitches);
        if let Some(sizes) = self.targets.chord_size {
            steer_chord_size(mask, g, counts.at_onset, sizes);
        }
        if let Some(range) = self.targets.onsets_per_bar {
            steer_onsets_per_bar(mask, counts.onsets_in_bar, range);
        }
        if let Some(guard) = &opts.copy_guard {
            guard.mask_copying_durations(mask, decoder, out, self.start_beat);
        }
    }

    /// Leans a row's `logits` toward the told key and register where its grammar `g`
    /// expects a pitch next.
    pub(super) fn lean(&self, logits: &mut [f32], g: &Grammar) {
        if let (Some(lean), true) = (&self.pitch_lean, g.expects_pitch()) {
            let vocab = Vocab;
            for (p, offset) in lean.iter().enumerate() {
                logits[vocab.pitch_id(p as u8) as usize] += offset;
            }
        }
    }
}

/// What the steering counts of a row as it decodes: the notes at its current onset (the
/// chord so far) and the onsets in its bar.
#[derive(Debug, Clone, Default)]
pub(super) struct RowCounts {
    at_onset: usize,
    onsets_in_bar: usize,
}

impl RowCounts {
    /// After the row took `id`.
    pub(super) fn after(&mut self, id: u32) {
        match Vocab.token(id) {
            Some(Token::Position(_)) => {
                self.at_onset = 0;
                self.onsets_in_bar += 1;
            }
            Some(Token::Bar) => {
                self.at_onset = 0;
                self.onsets_in_bar = 0;
            }
            Some(Token::Pitch(_)) => self.at_onset += 1,
            _ => {}
        }
    }
}

/// Which positions of a bar of `bar_ticks` the primer's onsets fall on (all of them when the
/// rhythm is free or the primer is empty).
fn allowed_positions(
    primer: &Phrase,
    rhythm: Rhythm,
    bar_ticks: u32,
) -> [bool; MAX_BAR_TICKS as usize] {
    let mut allowed = [rhythm == Rhythm::Free || primer.notes.is_empty(); MAX_BAR_TICKS as usize];
    if rhythm == Rhythm::LikePrimer && !primer.notes.is_empty() {
        for n in &crate::tokens::quantize(primer).notes {
            let tick = (n.start * TICKS_PER_BEAT as f64).round() as u32 % bar_ticks.max(1);
            allowed[tick as usize] = true;
        }
    }
    allowed
}

/// Masks pitches outside the user's range and key, and outside the register steered toward
/// (`register`, dropped where it leaves no pitch of the range).
fn apply_pitch_masks(
    mask: &mut [bool],
    g: &Grammar,
    opts: &GenerateOptions,
    register: Option<(u8, u8)>,
) {
    if !g.expects_pitch() {
        return;
    }
    let vocab = Vocab;
    let saved: Vec<bool> = (0..=127u8)
        .map(|p| mask[vocab.pitch_id(p) as usize])
        .collect();
    let (mut lo, mut hi) = opts.pitch_range;
    if let Some((rlo, rhi)) = register {
        if rlo.max(lo) <= rhi.min(hi) {
            (lo, hi) = (rlo.max(lo), rhi.min(hi));
        }
    }
    for p in 0..=127u8 {
        let in_range = p >= lo && p <= hi;
        let in_key = opts.key.is_none_or(|k| k.contains(p));
        if !(in_range && in_key) {
            mask[vocab.pitch_id(p) as usize] = false;
        }
    }
    if !mask.iter().any(|&m| m) {
        // Range and key exclude every pitch the grammar allows: fall back to the grammar alone.
        for p in 0..=127u8 {
            mask[vocab.pitch_id(p) as usize] = saved[p as usize];
        }
    }
}

/// After a note, the grammar lets the model add a higher note to the chord or move on: with
/// fewer than `sizes.0` notes at this onset it must add one (if any pitch is still allowed),
/// with `sizes.1` it must move on (if it can).
fn steer_chord_size(mask: &mut [bool], g: &Grammar, at_onset: usize, sizes: (usize, usize)) {
    if at_onset == 0 || !g.expects_pitch() {
        return;
    }
    let vocab = Vocab;
    let is_pitch = |id: usize| vocab.pitch_of(id as u32).is_some();
    let any_pitch = mask.iter().enumerate().any(|(id, &m)| m && is_pitch(id));
    let any_other = mask.iter().enumerate().any(|(id, &m)| m && !is_pitch(id));
    let keep_pitches = if at_onset < sizes.0 && any_pitch {
        true
    } else if at_onset >= sizes.1 && any_other {
        false
    } else {
        return;
    };
    for (id, m) in mask.iter_mut().enumerate() {
        if is_pitch(id) != keep_pitches {
            *m = false;
        }
    }
}

/// Where the grammar lets the model start another onset or close the bar: with fewer than
/// `range.0` onsets in the bar it may not close it (while a position is left), with
/// `range.1` it may not start another.
fn steer_onsets_per_bar(mask: &mut [bool], onsets: usize, range: (usize, usize)) {
    let vocab = Vocab;
    let bar = vocab.id(Token::Bar) as usize;
    let position = |id: usize| matches!(vocab.token(id as u32), Some(Token::Position(_)));
    if !mask[bar] && !mask.iter().enumerate().any(|(id, &m)| m && position(id)) {
        return;
    }
    if onsets < range.0 && mask.iter().enumerate().any(|(id, &m)| m && position(id)) {
        mask[bar] = false;
    } else if onsets >= range.1 {
        let other = mask.iter().enumerate().any(|(id, &m)| m && !position(id));
        if other {
            for (id, m) in mask.iter_mut().enumerate() {
                if position(id) {
                    *m = false;
                }
            }
        }
    }
}
