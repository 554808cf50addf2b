//! Count-based baselines for the model card: a unigram and an n-gram model over the same
//! tokens, counted from the training split, with Witten–Bell interpolation so that every
//! token keeps a probability. They implement [`Scorer`], so their continuations go through
//! exactly the sampler (grammar, masks, seeds) the neural model uses.

use crate::model::sampler::Scorer;
use crate::tokens::Vocab;
use candle_core::Result;
use std::collections::HashMap;

/// Bits per token id in packed context keys (the vocabulary has fewer than 512 ids).
const ID_BITS: u32 = 9;

pub struct NGram {
    order: usize,
    vocab: usize,
    /// (context key, next) → count, for every context length 1..order.
    counts: HashMap<(u64, u32), u32>,
    /// context key → (total count, distinct followers).
    contexts: HashMap<u64, (u32, u32)>,
    unigram: Vec<f64>,
}

fn context_key(ctx: &[u32]) -> u64 {
    ctx.iter()
        .fold(ctx.len() as u64, |k, &id| (k << ID_BITS) | id as u64)
}

impl NGram {
    /// Counts n-grams of `order` (1 = unigram) over a token stream.
    pub fn count(stream: &[u32], order: usize) -> Self {
        let vocab = Vocab.size();
        let mut uni = vec![1.0f64; vocab]; // add-one
        for &id in stream {
            uni[id as usize] += 1.0;
        }
        let total: f64 = uni.iter().sum();
        uni.iter_mut().for_each(|c| *c /= total);
        let mut counts: HashMap<(u64, u32), u32> = HashMap::new();
        for i in 0..stream.len() {
            for len in 1..order {
                if i >= len {
                    *counts
                        .entry((context_key(&stream[i - len..i]), stream[i]))
                        .or_default() += 1;
                }
            }
        }
        let mut contexts: HashMap<u64, (u32, u32)> = HashMap::new();
        for (&(ctx, _), &c) in &counts {
            let e = contexts.entry(ctx).or_default();
            e.0 += c;
            e.1 += 1;
        }
        Self {
            order,
            vocab,
            counts,
            contexts,
            unigram: uni,
        }
    }

    /// P(next | history), interpolating from the unigram up to the longest context.
    pub fn prob(&self, history: &[u32], next: u32) -> f64 {
        let mut p = self.unigram[next as usize];
        for len in 1..self.order.min(history.len() + 1) {
            let ctx = &history[history.len() - len..];
            let key = context_key(ctx);
            if let Some(&(total, distinct)) = self.contexts.get(&key) {
                let c = self.counts.get(&(key, next)).copied().unwrap_or(0) as f64;
                p = (c + distinct as f64 * p) / (total as f64 + distinct as f64);
            }
        }
        p
    }

    /// Log-probabilities of every token after `history`.
    pub fn log_probs(&self, history: &[u32]) -> Vec<f32> {
        (0..self.vocab as u32)
            .map(|id| self.prob(history, id).ln() as f32)
            .collect()
    }

    /// Sum of −log P over `stream[1..]` (each token given the ones before it) and the count.
    pub fn nll(&self, stream: &[u32]) -> (f64, usize) {
        let total: f64 = (1..stream.len())
            .map(|i| {
                -self
                    .prob(&stream[i.saturating_sub(self.order - 1)..i], stream[i])
                    .ln()
            })
            .sum();
        (total, stream.len().saturating_sub(1))
    }
}

impl Scorer for NGram {
    fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        Ok(prompts.iter().map(|p| self.log_probs(p)).collect())
    }

    fn step(&mut self, _next: &[u32], fed: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        Ok(fed
            .iter()
            .map(|h| self.log_probs(&h[h.len().saturating_sub(self.order - 1)..]))
            .collect())
    }

    fn max_context(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_sum_to_one_and_follow_the_counts() {
        let stream: Vec<u32> = [5, 6, 7, 5, 6, 7, 5, 6, 8].to_vec();
        let m = NGram::count(&stream, 3);
        let total: f64 = (0..Vocab.size() as u32).map(|id| m.prob(&[5, 6], id)).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!(m.prob(&[5, 6], 7) > m.prob(&[5, 6], 8));
        assert!(m.prob(&[5, 6], 8) > m.prob(&[5, 6], 9));
    }

    #[test]
    fn a_longer_context_fits_repetitive_data_better() {
        let stream: Vec<u32> = (0..300).map(|i| 10 + (i % 4) as u32).collect();
        let (uni, n) = NGram::count(&stream, 1).nll(&stream);
        let (four, _) = NGram::count(&stream, 4).nll(&stream);
        assert!(four < uni * 0.2, "{four} vs {uni} over {n} tokens");
    }
}
