//! The tensor operations the models are built from, in one place so that faster
//! implementations can replace them without touching the model code.

use candle_core::{DType, Result, Tensor, D};

const LAYER_NORM_EPS: f32 = 1e-5;

/// LayerNorm over the last dimension; differentiable.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    candle_nn::ops::layer_norm_slow(x, weight, bias, LAYER_NORM_EPS)
}

/// Causal scaled dot-product attention. `q`: (b, h, tq, d); `k`, `v`: (b, h, tk, d) with
/// tk ≥ tq: the queries are the last tq of the tk positions.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (_, _, tq, hd) = q.dims4()?;
    let tk = k.dim(2)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if tq > 1 {
        scores = scores.broadcast_add(&causal_mask(tq, tk, q.device())?)?;
    }
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
    probs.matmul(v)
}

/// (tq, tk) additive mask: query i sits at absolute position tk − tq + i.
pub fn causal_mask(tq: usize, tk: usize, device: &candle_core::Device) -> Result<Tensor> {
    let offset = tk - tq;
    let data: Vec<f32> = (0..tq)
        .flat_map(|i| {
            (0..tk).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(data, (tq, tk), device)?.to_dtype(DType::F32)
}
