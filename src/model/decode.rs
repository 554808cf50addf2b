//! Cached decoding steps of the transformer on plain f32 buffers, without candle.
//!
//! Why our own: a decoding step reads every weight once for a handful of multiply-adds per
//! weight, so it is bound by memory and by overhead, not arithmetic. Through candle a step
//! was about 25 tensor ops per layer, each allocating its output and dispatching through
//! the backend (copies for the head split and the cache write included): at context 256
//! that cost as much as reading the 13 MB of weights. Here a step writes into buffers
//! allocated once, reads each weight row once for every sequence of the batch, and keeps
//! the keys and values laid out for the dot products of the next step.
//!
//! The prefill before the steps (many tokens at once) is `prefill.rs`, which writes this
//! cache; the arithmetic of a step (LayerNorm, softmax, GELU) is the training kernels' own
//! ([`ops::moments`], [`row_math::softmax_in_place`], [`ops::gelu_value`]).
//!
//! The steps read their matrices as 8-bit integers with a scale per row by default
//! ([`StepPrecision`]): a step at batch 1 is bound by reading the 13 MB of f32 weights
//! (from memory on the AVX-512 machine with an 8 MB L3 where this was measured; from a
//! shared L3 at best on today's 32 MB one, whose two cores hold 1 MB of L2 each), and a
//! quarter of the bytes (3.4 MB) is most of the time saved (f16, half the bytes, is kept as
//! a choice; `continuo bench`: i8 steps 0.15 ms, f32 0.24 ms at ctx 256). Arithmetic stays
//! f32 (each weight widened as it is loaded); the held-out NLL moves by far less than the
//! 0.01 nats/token the speed issue allows (`continuo eval --step-precisions`: +0.0002 for
//! i8, figures in BENCHMARKS.md). The prefill keeps f32: it is bound by arithmetic, not bytes.

use super::phases::run_phases;
use super::spare_buffers::SPARE;
use super::step_products::Columns;
pub(crate) use super::step_products::Dense;
use super::{ops, row_math, smeared_keys};
use candle_core::Result;
use std::ops::Range;

/// The precision of the weight matrices a decoding step reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepPrecision {
    /// As trained.
    F32,
    /// Rounded to f16 once, widened to f32 as they are read: half the bytes per step.
    F16,
    /// Each row rounded to 8-bit integers times one f32 scale (its largest magnitude / 127),
    /// widened to f32 as they are read: a quarter of the bytes per step.
    #[default]
    I8,
}

impl StepPrecision {
    pub const ALL: [StepPrecision; 3] = [Self::F32, Self::F16, Self::I8];

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::I8 => "i8",
        }
    }
}

impl std::str::FromStr for StepPrecision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("{s:?} is not a step precision (f32, f16 or i8)"))
    }
}

/// One block's weights.
pub(crate) struct BlockWeights {
    pub ln1: (Vec<f32>, Vec<f32>),
    pub qkv: Dense,
    pub out: Dense,
    pub ln2: (Vec<f32>, Vec<f32>),
    pub up: Dense,
    pub down: Dense,
    /// The keys' smear (`smeared_keys.rs`), empty for a model that does not smear.
    pub key_smear: Vec<f32>,
}

/// The transformer's weights read out of candle once, for decoding steps.
pub(crate) struct DecodeWeights {
    pub d_model: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub vocab: usize,
    pub max_seq_len: usize,
    /// (vocab, d): the token embedding, also the output head (tied; no bias).
    pub tokens: Dense,
    /// (max_seq_len, d).
    pub positions: Vec<f32>,
    pub blocks: Vec<BlockWeights>,
    pub ln_f: (Vec<f32>, Vec<f32>),
}

/// Keys and values of every past position of every sequence, per layer, laid out
/// (batch, heads, max_seq_len, head_dim), and the scratch rows of a step. The prompt that
/// every sequence shares (candidates and variations read one) is held once.
pub struct FastCache {
    batch: usize,
    pub(super) len: usize,
    /// Per layer: keys, then values; a sequence's positions before `shared_len` are unused.
    pub(super) kv: Vec<(Vec<f32>, Vec<f32>)>,
    /// Per layer: keys, then values of the first `shared_len` positions, which every
    /// sequence holds alike, (heads, max_seq_len, head_dim). Read by every sequence instead
    /// of copied into each: a step of four candidates then reads the prompt's keys once from
    /// memory rather than four times, and the prefill copies nothing.
    shared: Vec<(Vec<f32>, Vec<f32>)>,
    shared_len: usize,
    /// Per layer: each sequence's last key before its smear, (batch, d).
    pub(super) last_raw_keys: Vec<Vec<f32>>,
    /// The sequences a step computes, in order: a finished one ([`Self::finish`]) is left
    /// out, so that four candidates of which one has ended cost a step of three.
    live: Vec<usize>,
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attended: Vec<f32>,
    projected: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
}

impl FastCache {
    /// A cache of `batch` sequences holding no position yet.
    pub(crate) fn empty(w: &DecodeWeights, batch: usize) -> Self {
        let d = w.d_model;
        // Positions are written before they are read, so a spare's old values never show.
        let layer = || SPARE.take(batch * w.max_seq_len * d);
        Self {
            batch,
            len: 0,
            kv: w.blocks.iter().map(|_| (layer(), layer())).collect(),
            shared: Vec::new(),
            shared_len: 0,
            last_raw_keys: w.blocks.iter().map(|_| vec![0.0; batch * d]).collect(),
            live: (0..batch).collect(),
            x: vec![0.0; batch * d],
            // One LayerNorm output per chunk of a product phase (`StepBuffers::normed`).
            normed: vec![0.0; CHUNKS * batch * d],
            qkv: vec![0.0; batch * 3 * d],
            attended: vec![0.0; batch * d],
            projected: vec![0.0; batch * d],
            hidden: vec![0.0; batch * w.d_ff],
            // One run per chunk of a step's attention (`StepBuffers::scores`).
            scores: vec![0.0; CHUNKS * w.max_seq_len],
        }
    }

    /// A cache of `batch` sequences, each holding what this one-sequence cache holds: its
    /// keys and values become the shared prefix.
    pub(crate) fn into_repeated(mut self, w: &DecodeWeights, batch: usize) -> Self {
        let mut out = Self::empty(w, batch);
        out.len = self.len;
        out.shared_len = self.len;
        out.shared = std::mem::take(&mut self.kv);
        for (raw, raw1) in out.last_raw_keys.iter_mut().zip(&self.last_raw_keys) {
            for r in raw.chunks_exact_mut(w.d_model) {
                r.copy_from_slice(raw1);
            }
        }
        out
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Sequence `row` is finished: the steps after this leave it out (its logits come back
    /// as zeros) and its keys and values stay as they are, never read again.
    pub fn finish(&mut self, row: usize) {
        self.live.retain(|&r| r != row);
    }
}

impl Drop for FastCache {
    /// The keys and values go back to the spares, for the next answer's cache.
    fn drop(&mut self) {
        for (k, v) in self.kv.drain(..).chain(self.shared.drain(..)) {
            SPARE.give(k);
            SPARE.give(v);
        }
    }
}

/// One of a step's buffers, (rows, width) row-major, as a pointer: the chunks of a phase
/// (`phases.rs`), on either thread, each take their own rows or their own outputs of it.
#[derive(Clone, Copy)]
struct Shared {
    ptr: *mut f32,
    rows: usize,
    width: usize,
}

// SAFETY: a step's chunks share these buffers, each writing only its own rows or its own
// outputs of every row (`DecodeWeights::step_chunk`); they end inside the call that made
// the pointers, while the buffers stay borrowed mutably.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn of(buf: &mut [f32], rows: usize) -> Self {
        Shared {
            ptr: buf.as_mut_ptr(),
            rows,
            width: buf.len() / rows,
        }
    }

    /// Rows `rs`.
    ///
    /// # Safety
    /// No other thread may touch them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, rs: Range<usize>) -> &mut [f32] {
        assert!(rs.end <= self.rows);
        std::slice::from_raw_parts_mut(self.ptr.add(rs.start * self.width), rs.len() * self.width)
    }

    /// Every row, to read.
    ///
    /// # Safety
    /// No thread may write them while the slice lives.
    unsafe fn all(&self) -> &[f32] {
        std::slice::from_raw_parts(self.ptr, self.rows * self.width)
    }

    /// Every row, to write.
    ///
    /// # Safety
    /// No other thread may touch them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn all_mut(&self) -> &mut [f32] {
        self.rows(0..self.rows)
    }

    /// Outputs `js` of row `r`.
    ///
    /// # Safety
    /// As [`Self::rows`], for those values.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row_part(&self, r: usize, js: Range<usize>) -> &mut [f32] {
        assert!(r < self.rows && js.end <= self.width);
        std::slice::from_raw_parts_mut(self.ptr.add(r * self.width + js.start), js.len())
    }

    /// Where a product writes outputs `js` of every row.
    fn columns(&self, js: &Range<usize>) -> Columns {
        assert!(js.end <= self.width);
        Columns {
            // SAFETY: `js.start` is inside the first row (asserted), so the pointer stays in
            // the buffer.
            ptr: unsafe { self.ptr.add(js.start) },
            stride: self.width,
        }
    }
}

/// A step's buffers: the cache's rows of every sequence, and the logits.
struct StepBuffers<'a> {
    /// The rows the step computes: row `r` of its buffers is sequence `sequences[r]` of
    /// the cache.
    rows: usize,
    sequences: &'a [usize],
    pos: usize,
    /// Per layer: keys, then values, (sequences, heads, max_seq_len, head_dim).
    kv: Vec<(Shared, Shared)>,
    /// The cache's shared prefix (every row's), and its length.
    shared: &'a [(Vec<f32>, Vec<f32>)],
    shared_len: usize,
    /// Per layer, (sequences, d).
    last_raw_keys: Vec<Shared>,
    x: Shared,
    /// The LayerNorm of every row before a product, one per chunk of the product: each
    /// chunk normalizes the rows itself (a few hundred values each), which saves the two
    /// phases a shared one would cost per layer.
    normed: [Shared; 2],
    qkv: Shared,
    attended: Shared,
    projected: Shared,
    hidden: Shared,
    /// One run of attention scores per chunk of the attention phase.
    scores: Shared,
    logits: Shared,
}

impl<'a> StepBuffers<'a> {
    fn of(cache: &'a mut FastCache, logits: &'a mut [f32]) -> Self {
        let (b, n) = (cache.batch, cache.live.len());
        let width = cache.x.len() / b;
        let (normed_a, normed_b) = cache.normed.split_at_mut(cache.x.len());
        let rows = |buf: &'a mut Vec<f32>| {
            let width = buf.len() / b;
            Shared::of(&mut buf[..n * width], n)
        };
        StepBuffers {
            rows: n,
            sequences: &cache.live,
            pos: cache.len,
            kv: cache
                .kv
                .iter_mut()
                .map(|(k, v)| (Shared::of(k, b), Shared::of(v, b)))
                .collect(),
            last_raw_keys: cache
                .last_raw_keys
                .iter_mut()
                .map(|r| Shared::of(r, b))
                .collect(),
            x: rows(&mut cache.x),
            normed: [
                Shared::of(&mut normed_a[..n * width], n),
                Shared::of(&mut normed_b[..n * width], n),
            ],
            qkv: rows(&mut cache.qkv),
            attended: rows(&mut cache.attended),
            projected: rows(&mut cache.projected),
            hidden: rows(&mut cache.hidden),
            scores: Shared::of(&mut cache.scores, CHUNKS),
            logits: Shared::of(logits, n),
            shared: &cache.shared,
            shared_len: cache.shared_len,
        }
    }
}

/// Chunks of a step's product and attention phases: one per core of the decode pool (four,
/// so that the faster core takes more, measured no faster). The per-chunk buffers (the
/// LayerNorm's rows, the attention's scores) are sized by it.
const CHUNKS: usize = 2;

/// The phases of one layer in a step, in order. Products split by their outputs (every
/// row's), attention by heads: each weight is then read and widened on one core only, for
/// every row at once, and each core reads only its heads' keys (the shared prompt's among
/// them). The queries, keys and values split by heads too, so that the chunk that attends
/// with a head has computed its channels itself, without a phase between.
const LAYER_PHASES: [Part; 4] = [Part::Attention, Part::Out, Part::Up, Part::Down];

#[derive(Clone, Copy)]
enum Part {
    /// The first LayerNorm, the queries, keys and values of the chunk's heads, their keys'
    /// smear, the cache's new keys and values, attention.
    Attention,
    /// The attention's projection, added to the residual.
    Out,
    /// The second LayerNorm, then the feed-forward's first product and its GELU.
    Up,
    /// The feed-forward's second product, added to the residual.
    Down,
}

impl Part {
    /// Chunks of the phase: [`CHUNKS`], attention at most one per head.
    fn chunks(self, heads: usize) -> usize {
        match self {
            Part::Attention => heads.min(CHUNKS),
            _ => CHUNKS,
        }
    }
}

/// Chunk `chunk` of `n` values split in `chunks` parts, each split at a multiple of `align`
/// (where the products' blocks of four outputs fall anyway, so every output is the same sum
/// however the outputs split).
fn chunk_range(n: usize, chunks: usize, chunk: usize, align: usize) -> Range<usize> {
    let at = |c: usize| (n * c / chunks).next_multiple_of(align).min(n);
    at(chunk)..at(chunk + 1)
}

impl DecodeWeights {
    /// Feeds one token per sequence after what `cache` holds; the logits of each sequence,
    /// (batch, vocab) row-major. Finished sequences ([`FastCache::finish`]) are left out:
    /// their tokens are not read and their logits are zeros.
    ///
    /// The step runs in phases ([`run_phases`]) on the calling thread and, with a second
    /// core, the phases' helper thread: each product's outputs split between the
    /// two cores, for every row at once, so that each weight is read and widened once per
    /// step and serves all the rows (four candidates: each core widens half the weights for
    /// four rows, where splitting the rows had each core widen all of them for two), each
    /// chunk with its own LayerNorm of the rows before it; attention split by heads. A
    /// chunk's phases are a few µs to 20 µs, which is why the threads meet on counters
    /// ([`run_phases`]) instead of a rayon hand-off each. A row's numbers do not depend on the rows
    /// beside it nor on which thread ran which chunk (the products' kernels take rows in
    /// fours, threes, twos or alone, with each row's sums in one order), so a row decodes the
    /// same alone, in a batch, or on either thread.
    pub(crate) fn step(&self, cache: &mut FastCache, next: &[u32]) -> Result<Vec<f32>> {
        let b = cache.batch;
        if next.len() != b {
            candle_core::bail!("{} tokens for a cache of {b} sequences", next.len());
        }
        let pos = cache.len;
        if pos >= self.max_seq_len {
            candle_core::bail!(
                "context {} exceeds the model's {} positions",
                pos + 1,
                self.max_seq_len
            );
        }
        if let Some(&id) = next.iter().find(|&&id| id as usize >= self.vocab) {
            candle_core::bail!("token {id} is outside the model's {} ids", self.vocab);
        }
        let live = cache.live.len();
        let mut logits = vec![0f32; live * self.vocab];
        if live == 0 {
            cache.len += 1;
            return Ok(vec![0f32; b * self.vocab]);
        }
        let buffers = StepBuffers::of(cache, &mut logits);
        let by_rows = live.min(2);
        let parts = LAYER_PHASES.iter().map(|p| p.chunks(self.n_heads));
        // The embedding, each layer's phases, the final LayerNorm and the output head.
        let chunks: Vec<usize> = std::iter::once(by_rows)
            .chain(self.blocks.iter().flat_map(|_| parts.clone()))
            .chain(std::iter::once(CHUNKS))
            .collect();
        let last = chunks.len() - 1;
        run_phases(&chunks, |phase, chunk| {
            let (n, rows) = (chunks[phase], chunk_range(live, by_rows, chunk, 1));
            // SAFETY: each chunk writes only its own rows, or its own outputs of every row,
            // of the buffers its phase writes, and reads only what earlier phases wrote
            // (`run_phases` runs a phase once every earlier one is done).
            unsafe {
                if phase == 0 {
                    self.embed(&buffers, next, rows);
                } else if phase == last {
                    let js = chunk_range(self.vocab, n, chunk, 4);
                    let normed = buffers.normed[chunk].all_mut();
                    layer_norm_rows(buffers.x.all(), &self.ln_f, normed);
                    let out = buffers.logits.columns(&js);
                    self.tokens.apply_columns(js, normed, out, self.d_model);
                } else {
                    let phases = LAYER_PHASES.len();
                    let (layer, part) = ((phase - 1) / phases, LAYER_PHASES[(phase - 1) % phases]);
                    self.step_chunk(&buffers, layer, part, (n, chunk));
                }
            }
        });
        drop(buffers);
        cache.len += 1;
        if live == b {
            return Ok(logits);
        }
        // Finished sequences' rows stay zeros.
        let mut all = vec![0f32; b * self.vocab];
        for (&s, row) in cache.live.iter().zip(logits.chunks_exact(self.vocab)) {
            all[s * self.vocab..][..self.vocab].copy_from_slice(row);
        }
        Ok(all)
    }

    /// The embedding of rows `rows`: their sequences' tokens in `next`, plus the position.
    ///
    /// # Safety
    /// No other thread may touch those rows of `x` meanwhile.
    unsafe fn embed(&self, c: &StepBuffers<'_>, next: &[u32], rows: Range<usize>) {
        let d = self.d_model;
        let p = &self.positions[c.pos * d..(c.pos + 1) * d];
        let x = c.x.rows(rows.clone());
        for (x, &s) in x.chunks_exact_mut(d).zip(&c.sequences[rows]) {
            let id = next[s];
            let tok = &self.tokens.w[id as usize * d..(id as usize + 1) * d];
            for ((o, t), p) in x.iter_mut().zip(tok).zip(p) {
                *o = t + p;
            }
        }
    }

    /// Chunk `chunk` of `chunks` of `part` of layer `layer`: its outputs of every row for a
    /// product, its heads of every row for attention.
    ///
    /// # Safety
    /// No other thread may touch what this chunk writes meanwhile, nor write what it reads.
    unsafe fn step_chunk(
        &self,
        c: &StepBuffers<'_>,
        layer: usize,
        part: Part,
        (chunks, chunk): (usize, usize),
    ) {
        let (d, block) = (self.d_model, &self.blocks[layer]);
        let product = |dense: &Dense, x: &[f32], out: Shared, inp: usize| {
            let js = chunk_range(out.width, chunks, chunk, 4);
            dense.apply_columns(js.clone(), x, out.columns(&js), inp);
            js
        };
        // This chunk's LayerNorm of every row (the other chunk computes the same values).
        let normed = |ln| {
            let normed = c.normed[chunk].all_mut();
            layer_norm_rows(c.x.all(), ln, normed);
            &*normed
        };
        let add_to_residual = |js: Range<usize>| {
            for r in 0..c.rows {
                add_into(
                    c.x.row_part(r, js.clone()),
                    c.projected.row_part(r, js.clone()),
                );
            }
        };
        match part {
            Part::Attention => {
                let heads = chunk_range(self.n_heads, chunks, chunk, 1);
                let hd = d / self.n_heads;
                let normed = normed(&block.ln1);
                // The heads' channels of the queries, then the keys, then the values.
                for run in 0..3 {
                    let js = run * d + heads.start * hd..run * d + heads.end * hd;
                    block
                        .qkv
                        .apply_columns(js.clone(), normed, c.qkv.columns(&js), d);
                }
                let shared = c
                    .shared
                    .get(layer)
                    .map(|(k, v)| (k.as_slice(), v.as_slice()));
                let shape = Shape {
                    heads: self.n_heads,
                    head_dim: d / self.n_heads,
                    max: self.max_seq_len,
                    pos: c.pos,
                    shared: if shared.is_some() { c.shared_len } else { 0 },
                };
                attend(c, layer, &block.key_smear, shared, heads, chunk, shape);
            }
            Part::Out => add_to_residual(product(&block.out, c.attended.all(), c.projected, d)),
            Part::Up => {
                let js = product(&block.up, normed(&block.ln2), c.hidden, d);
                for r in 0..c.rows {
                    ops::bias_gelu_rows(c.hidden.row_part(r, js.clone()), &[]);
                }
            }
            Part::Down => {
                let js = product(&block.down, c.hidden.all(), c.projected, self.d_ff);
                add_to_residual(js)
            }
        }
    }
}

/// Where one step's attention reads.
#[derive(Clone, Copy)]
struct Shape {
    heads: usize,
    head_dim: usize,
    max: usize,
    /// The step's position: its key and value go there, and it attends to 0..=pos.
    pos: usize,
    /// Positions read from the shared prefix rather than the sequence's own keys.
    shared: usize,
}

/// Heads `heads` of every sequence's attention in layer `layer`: the keys' smear (if
/// `smear` is not empty), each sequence's key and value for `s.pos` into the cache, then
/// the attention output into `c.attended`. Keys before `s.shared` are the shared prefix's
/// (`shared`: keys and values, (heads, max, head_dim)), the rest each sequence's own.
/// Scores go to run `run` of `c.scores`.
///
/// # Safety
/// No other thread may touch those heads' channels of `c.qkv`'s keys, `c.attended` and
/// `c.last_raw_keys[layer]`, their slots of the cache, or the run of scores meanwhile.
unsafe fn attend(
    c: &StepBuffers<'_>,
    layer: usize,
    smear: &[f32],
    shared: Option<(&[f32], &[f32])>,
    heads: Range<usize>,
    run: usize,
    s: Shape,
) {
    let (d, hd) = (s.heads * s.head_dim, s.head_dim);
    let channels = heads.start * hd..heads.end * hd;
    if !smear.is_empty() {
        for r in 0..c.rows {
            let key = c.qkv.row_part(r, d + channels.start..d + channels.end);
            let previous = c.last_raw_keys[layer].row_part(c.sequences[r], channels.clone());
            smeared_keys::smear_key(key, &smear[channels.clone()], previous);
        }
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let scores = c.scores.rows(run..run + 1);
    let (keys, values) = c.kv[layer];
    // Head by head, each sequence in turn: the sequences read one head's shared keys while
    // they are in L2.
    for h in heads {
        let head = h * hd..(h + 1) * hd;
        let (shared_k, shared_v) = match shared {
            Some((k, v)) => (
                &k[h * s.max * hd..][..s.shared * hd],
                &v[h * s.max * hd..][..s.shared * hd],
            ),
            None => (&[][..], &[][..]),
        };
        let slot = h * s.max * hd..(h + 1) * s.max * hd;
        for r in 0..c.rows {
            let sequence = c.sequences[r];
            let (keys, values) = (
                keys.row_part(sequence, slot.clone()),
                values.row_part(sequence, slot.clone()),
            );
            let at = s.pos * hd;
            keys[at..at + hd].copy_from_slice(c.qkv.row_part(r, d + head.start..d + head.end));
            values[at..at + hd]
                .copy_from_slice(c.qkv.row_part(r, 2 * d + head.start..2 * d + head.end));
            let q = &*c.qkv.row_part(r, head.clone());
            let own = s.shared * hd..(s.pos + 1) * hd;
            let (k, v) = ((shared_k, &keys[own.clone()]), (shared_v, &values[own]));
            let y = c.attended.row_part(r, head.clone());
            let sc = &mut scores[..=s.pos];
            #[cfg(target_arch = "x86_64")]
            if hd.is_multiple_of(8)
                && hd <= 64
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above; the check is cached).
                unsafe { simd::attend_head_avx2(q, k, v, scale, sc, y) };
                continue;
            }
            let key_rows = k.0.chunks_exact(hd).chain(k.1.chunks_exact(hd));
            for (o, kr) in sc.iter_mut().zip(key_rows) {
                *o = dot(q, kr) * scale;
            }
            row_math::softmax_in_place(sc);
            y.fill(0.0);
            let value_rows = v.0.chunks_exact(hd).chain(v.1.chunks_exact(hd));
            for (&p, vr) in sc.iter().zip(value_rows) {
                axpy(p, vr, y);
            }
        }
    }
}

/// LayerNorm of rows with a block's `(weight, bias)`.
pub(super) fn layer_norm_rows(x: &[f32], (w, b): &(Vec<f32>, Vec<f32>), out: &mut [f32]) {
    ops::layer_norm_rows(x, (w, b), out)
}

fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// `out[r] = W · x[r] + bias` for every row `r` of `x` (rows of `inp`); `W` is (out, inp)
/// row-major, `bias` empty or one value per output. Each weight row is read once, for every
/// row of `x` while it is in L1.
pub(super) fn matvec_rows(w: &[f32], bias: &[f32], x: &[f32], out: &mut [f32], inp: usize) {
    let outs = w.len() / inp;
    let rows = x.len() / inp;
    for (j, wr) in w.chunks_exact(inp).enumerate() {
        let b = bias.get(j).copied().unwrap_or(0.0);
        for r in 0..rows {
            out[r * outs + j] = dot(wr, &x[r * inp..(r + 1) * inp]) + b;
        }
    }
}

/// Dot product of two equal-length rows.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above; the check is cached).
        return unsafe { simd::dot_avx2(a, b) };
    }
    row_math::dot(a, b)
}

/// `y += a · x`.
#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: as in `dot`.
        return unsafe { simd::axpy_avx2(a, x, y) };
    }
    y.iter_mut().zip(x).for_each(|(o, &v)| *o += a * v);
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! The release build targets baseline x86-64 (SSE2); these kernels are compiled for
    //! AVX2 + FMA (+ F16C for narrow weights) and chosen at run time, since a decoding step
    //! is nearly all dot products.
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, s) in acc.iter_mut().enumerate() {
                let off = i + 8 * k;
                *s = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(off)),
                    _mm256_loadu_ps(pb.add(off)),
                    *s,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), s);
        let mut total: f32 = lanes.iter().sum();
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }

    /// One head's attention of one step: the scores of `q` against every key (each exactly
    /// [`dot_avx2`]`(q, key) × scale`), their softmax, and the values summed by them into `y`
    /// (each exactly a run of [`axpy_avx2`]). The query and the sum stay in registers across
    /// the keys instead of a call, a load and a store per key: the same numbers, a third of
    /// the step's time at long contexts. `head_dim` is a multiple of 8, at most 64. Keys and
    /// values come in two runs, the shared prefix's and then the sequence's own, read as one.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend_head_avx2(
        q: &[f32],
        (shared_keys, keys): (&[f32], &[f32]),
        (shared_values, values): (&[f32], &[f32]),
        scale: f32,
        scores: &mut [f32],
        y: &mut [f32],
    ) {
        let hd = q.len();
        let blocks = hd / 8;
        assert!(hd.is_multiple_of(8) && blocks <= 8 && y.len() == hd);
        let ns = shared_keys.len() / hd;
        assert!(shared_values.len() == ns * hd && ns <= scores.len());
        assert!(keys.len() >= (scores.len() - ns) * hd && values.len() >= (scores.len() - ns) * hd);
        let key_at = |t: usize| {
            if t < ns {
                shared_keys.as_ptr().add(t * hd)
            } else {
                keys.as_ptr().add((t - ns) * hd)
            }
        };
        let mut qv = [_mm256_setzero_ps(); 8];
        for (b, v) in qv.iter_mut().enumerate().take(blocks) {
            *v = _mm256_loadu_ps(q.as_ptr().add(8 * b));
        }
        // dot_avx2's order: blocks of 32 over four sums, then blocks of 8 into the first; the
        // four sums added pairwise. Its eight lanes are then summed in order.
        let lanes_of = |t: usize| {
            let pk = key_at(t);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= hd {
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(qv[i / 8 + k], _mm256_loadu_ps(pk.add(i + 8 * k)), *a);
                }
                i += 32;
            }
            while i + 8 <= hd {
                acc[0] = _mm256_fmadd_ps(qv[i / 8], _mm256_loadu_ps(pk.add(i)), acc[0]);
                i += 8;
            }
            _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))
        };
        let n = scores.len();
        let vscale = _mm256_set1_ps(scale);
        let mut t = 0;
        while t + 8 <= n {
            // Eight keys at once: their lane vectors transposed, so that adding the eight
            // vectors in lane order is each key's sum in lane order, eight keys a time.
            let mut l = [_mm256_setzero_ps(); 8];
            for (k, v) in l.iter_mut().enumerate() {
                *v = lanes_of(t + k);
            }
            let l = transpose8(l);
            let mut total = l[0];
            for v in &l[1..] {
                total = _mm256_add_ps(total, *v);
            }
            _mm256_storeu_ps(scores.as_mut_ptr().add(t), _mm256_mul_ps(total, vscale));
            t += 8;
        }
        for (t, o) in scores.iter_mut().enumerate().skip(t) {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), lanes_of(t));
            let total: f32 = lanes.iter().sum();
            *o = total * scale;
        }
        crate::model::row_math::softmax_in_place(scores);
        let mut acc = [_mm256_setzero_ps(); 8];
        for (t, &p) in scores.iter().enumerate() {
            let pv = if t < ns {
                shared_values.as_ptr().add(t * hd)
            } else {
                values.as_ptr().add((t - ns) * hd)
            };
            let vp = _mm256_set1_ps(p);
            for (b, a) in acc.iter_mut().enumerate().take(blocks) {
                *a = _mm256_fmadd_ps(vp, _mm256_loadu_ps(pv.add(8 * b)), *a);
            }
        }
        for (b, a) in acc.iter().enumerate().take(blocks) {
            _mm256_storeu_ps(y.as_mut_ptr().add(8 * b), *a);
        }
    }

    /// Rows become columns: lane j of output i is lane i of input j.
    #[target_feature(enable = "avx2")]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), v);
            i += 8;
        }
        while i < n {
            y[i] += a * x[i];
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn one_heads_attention_in_registers_is_bit_for_bit_the_call_per_key() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        for (hd, keys) in [(8, 1), (32, 7), (64, 300), (48, 5), (24, 2)] {
            let val = |i: usize, m: usize| ((i * m) % 17) as f32 * 0.07 - 0.5;
            let q: Vec<f32> = (0..hd).map(|i| val(i, 3)).collect();
            let k: Vec<f32> = (0..keys * hd).map(|i| val(i, 5)).collect();
            let v: Vec<f32> = (0..keys * hd).map(|i| val(i, 7)).collect();
            let scale = 1.0 / (hd as f32).sqrt();
            let mut sc = vec![0f32; keys];
            for (o, kr) in sc.iter_mut().zip(k.chunks_exact(hd)) {
                *o = dot(&q, kr) * scale;
            }
            row_math::softmax_in_place(&mut sc);
            let mut y = vec![0f32; hd];
            for (&p, vr) in sc.iter().zip(v.chunks_exact(hd)) {
                axpy(p, vr, &mut y);
            }
            let (mut sc2, mut y2) = (vec![0f32; keys], vec![0f32; hd]);
            // SAFETY: AVX2 and FMA checked above.
            unsafe { simd::attend_head_avx2(&q, (&[], &k), (&[], &v), scale, &mut sc2, &mut y2) };
            assert_eq!((&sc, &y), (&sc2, &y2), "head_dim {hd}, {keys} keys");
            // The same keys and values split into a shared prefix and a sequence's own.
            let cut = keys / 3 * hd;
            let (mut sc3, mut y3) = (vec![0f32; keys], vec![0f32; hd]);
            // SAFETY: as above.
            unsafe {
                simd::attend_head_avx2(
                    &q,
                    (&k[..cut], &k[cut..]),
                    (&v[..cut], &v[cut..]),
                    scale,
                    &mut sc3,
                    &mut y3,
                )
            };
            assert_eq!(
                (sc, y),
                (sc3, y3),
                "head_dim {hd}, {keys} keys, split at {cut}"
            );
        }
    }

    #[test]
    fn the_kernels_agree_with_plain_sums_on_every_length() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 256] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5) % 11) as f32 * 0.2 - 1.0).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "dot {n}"
            );
            assert!((row_math::dot(&a, &b) - want).abs() <= 1e-4 * (1.0 + want.abs()));
            // f16 rounding moves a sum by little (the f16 products: their own test).
            let a16: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
            let want16: f32 = a16.iter().zip(&b).map(|(x, y)| x.to_f32() * y).sum();
            assert!(
                (want16 - want).abs() <= 1e-2 * (1.0 + want.abs()),
                "f16 rounding {n}"
            );
            let mut y = b.clone();
            axpy(0.5, &a, &mut y);
            for ((o, x), v) in y.iter().zip(&a).zip(&b) {
                assert!((o - (v + 0.5 * x)).abs() < 1e-6, "axpy {n}");
            }
        }
    }
}
