//! Causal attention of one (sequence, head) in tiles of queries, each tile a few packed
//! matrix products (`matmul.rs`): the kernel of training's fused attention op
//! (`ops::CausalAttention`, forward and backward) and of the prefill (`prefill.rs`).
//!
//! Why tiles: row by row (one query's dot products against every key, then axpys) the
//! backward ran at about 18 GFLOP/s, most of it re-reading and re-writing the key and value
//! gradient rows for every query. A tile of 64 queries turns each step of the arithmetic into
//! one product of 64 × (keys seen) × head_dim that the `gemm` crate packs and blocks for the
//! caches, and multiplies only the keys the tile can see (about half of the square). The
//! scores of a tile live in a scratch of 64 × tk floats; the (T, T) scores and probabilities
//! of a head are never stored, and the backward recomputes a tile's probabilities.

use super::matmul::{product, View};
use super::row_math;
use gemm::Parallelism;

/// Queries per tile: a tile's scores (64 × up to 256 keys, 64 KB) stay in L2 beside the keys.
pub(crate) const QUERY_TILE: usize = 64;

/// One head's inputs: `tq` queries that are the last of `tk` positions. Row i of the queries
/// starts at `i · q_stride` of `q`; keys and values are rows of `head_dim`, at least `tk`.
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub q: &'a [f32],
    pub q_stride: usize,
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub tq: usize,
    pub tk: usize,
    pub head_dim: usize,
}

/// The scratch of one task's tiles, allocated once per task.
pub(crate) struct Scratch {
    probs: Vec<f32>,
    grads: Vec<f32>,
}

impl Scratch {
    /// For heads of up to `tk` keys.
    pub fn new(tk: usize) -> Self {
        Self {
            probs: vec![0.0; QUERY_TILE * tk],
            grads: vec![0.0; QUERY_TILE * tk],
        }
    }
}

/// One tile: its first query, its number of queries, and the keys its last query sees.
#[derive(Clone, Copy)]
struct Tile {
    first: usize,
    len: usize,
    seen: usize,
}

impl<'a> Head<'a> {
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    fn tiles(&self) -> impl Iterator<Item = Tile> {
        let (tq, tk) = (self.tq, self.tk);
        (0..tq).step_by(QUERY_TILE).map(move |first| {
            let len = (tq - first).min(QUERY_TILE);
            Tile {
                first,
                len,
                seen: row_math::visible_keys(tq, tk, first + len - 1),
            }
        })
    }

    fn queries(&self, t: Tile) -> View {
        let q = &self.q[t.first * self.q_stride..];
        View::rows(q, t.len, self.head_dim, self.q_stride)
    }

    fn keys(&self, t: Tile) -> View {
        View::rows(self.k, t.seen, self.head_dim, self.head_dim)
    }

    fn values(&self, t: Tile) -> View {
        View::rows(self.v, t.seen, self.head_dim, self.head_dim)
    }

    /// The tile's probabilities into `p` (len × seen, row-major): scaled scores, the softmax
    /// over the keys each query may see, zeros after them.
    fn probs(&self, t: Tile, p: &mut [f32]) {
        assert!(p.len() >= t.len * t.seen);
        // SAFETY: bounds-checked views; `p` holds the len × seen destination and is ours.
        unsafe {
            product(
                (t.len, t.seen, self.head_dim),
                p.as_mut_ptr(),
                t.seen,
                false,
                self.queries(t),
                self.keys(t).t(),
                self.scale(),
                Parallelism::None,
            )
        }
        for (r, row) in p[..t.len * t.seen].chunks_exact_mut(t.seen).enumerate() {
            let visible = row_math::visible_keys(self.tq, self.tk, t.first + r);
            row_math::softmax_in_place(&mut row[..visible]);
            row[visible..].fill(0.0);
        }
    }
}

/// The attention output of every query, row i at `out + i · out_stride`.
///
/// # Safety
/// `out` must address `tq` rows of `head_dim` values, `out_stride` apart, in a live buffer
/// that nothing else reads or writes during the call.
pub(crate) unsafe fn forward(h: Head, out: *mut f32, out_stride: usize, scratch: &mut Scratch) {
    for t in h.tiles() {
        let p = &mut scratch.probs[..t.len * t.seen];
        h.probs(t, p);
        product(
            (t.len, h.head_dim, t.seen),
            out.add(t.first * out_stride),
            out_stride,
            false,
            View::rows(p, t.len, t.seen, t.seen),
            h.values(t),
            1.0,
            Parallelism::None,
        )
    }
}

/// [`forward`] into rows of `head_dim` laid end to end.
pub(crate) fn forward_rows(h: Head, out: &mut [f32], scratch: &mut Scratch) {
    assert!(out.len() >= h.tq * h.head_dim);
    // SAFETY: `out` holds the tq rows and is borrowed mutably.
    unsafe { forward(h, out.as_mut_ptr(), h.head_dim, scratch) }
}

/// The gradients of one head's queries, keys and values (each overwritten, rows of head_dim
/// end to end) from the output `o` and its gradient `g` (tq × head_dim each). With P the
/// probabilities and D = rowsum(dO ∘ O): dV = Pᵀ·dO, dS = P ∘ (dO·Vᵀ − D), dQ = scale·dS·K,
/// dK = scale·dSᵀ·Q.
pub(crate) fn backward(
    h: Head,
    o: &[f32],
    g: &[f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    scratch: &mut Scratch,
) {
    let hd = h.head_dim;
    assert!(o.len() >= h.tq * hd && g.len() >= h.tq * hd && dq.len() >= h.tq * hd);
    assert!(dk.len() >= h.tk * hd && dv.len() >= h.tk * hd);
    dk.fill(0.0);
    dv.fill(0.0);
    let scale = h.scale();
    for t in h.tiles() {
        let n = t.len * t.seen;
        let (p, ds) = (&mut scratch.probs[..n], &mut scratch.grads[..n]);
        h.probs(t, p);
        let g_tile = View::rows(&g[t.first * hd..], t.len, hd, hd);
        // SAFETY (all four products): bounds-checked views; the destinations are rows of
        // dv, ds, dq and dk inside their (asserted) lengths, borrowed mutably here.
        unsafe {
            product(
                (t.seen, hd, t.len),
                dv.as_mut_ptr(),
                hd,
                true,
                View::rows(p, t.len, t.seen, t.seen).t(),
                g_tile,
                1.0,
                Parallelism::None,
            );
            product(
                (t.len, t.seen, hd),
                ds.as_mut_ptr(),
                t.seen,
                false,
                g_tile,
                h.values(t).t(),
                1.0,
                Parallelism::None,
            );
        }
        for (r, (ds_row, p_row)) in ds
            .chunks_exact_mut(t.seen)
            .zip(p.chunks_exact(t.seen))
            .enumerate()
        {
            let i = t.first + r;
            let d_i = row_math::dot(&g[i * hd..(i + 1) * hd], &o[i * hd..(i + 1) * hd]);
            for (s, &pj) in ds_row.iter_mut().zip(p_row) {
                *s = pj * (*s - d_i);
            }
        }
        let ds = View::rows(ds, t.len, t.seen, t.seen);
        // SAFETY: as above.
        unsafe {
            product(
                (t.len, hd, t.seen),
                dq[t.first * hd..].as_mut_ptr(),
                hd,
                false,
                ds,
                h.keys(t),
                scale,
                Parallelism::None,
            );
            product(
                (t.seen, hd, t.len),
                dk.as_mut_ptr(),
                hd,
                true,
                ds.t(),
                h.queries(t),
                scale,
                Parallelism::None,
            );
        }
    }
}
