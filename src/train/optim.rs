//! AdamW with global-norm gradient clipping and a warm-up + cosine learning-rate schedule.
//! Candle's own AdamW keeps its moments private; ours saves them, so `--resume` continues
//! exactly where a run stopped.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

pub struct AdamW {
    /// (name, parameter, first moment, second moment)
    params: Vec<(String, Var, Tensor, Tensor)>,
    pub step: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The learning rate of a parameter against the run's: the key smears' is
/// [`KEY_SMEAR_LR_SCALE`] times it, every other parameter's the run's own.
fn lr_scale(name: &str) -> f64 {
    if name.ends_with("key_smear") {
        KEY_SMEAR_LR_SCALE
    } else {
        1.0
    }
}

/// Why faster: a key smear starts at zero in a run warm-started from a model without it, and
/// AdamW moves a parameter about one learning rate per step, so at a fine-tuning rate of
/// 3e-4 a thousand steps could take it no further than 0.3 of the previous key, too little
/// to test whether copying needs it. Its 256 values per block are a sliver of the model.
pub const KEY_SMEAR_LR_SCALE: f64 = 10.0;

impl AdamW {
    /// `vars` by name, as `VarMap::data()` holds them.
    pub fn new(mut vars: Vec<(String, Var)>, weight_decay: f64) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                Ok((name, var, m, v))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            step: 0,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// An optimizer for every variable of a `VarMap`.
    pub fn for_varmap(varmap: &candle_nn::VarMap, weight_decay: f64) -> Result<Self> {
        let vars = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self::new(vars, weight_decay)
    }

    /// Global L2 norm of all gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0f64;
        for (_, var, _, _) in &self.params {
            if let Some(g) = grads.get(var) {
                total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(total.sqrt())
    }

    /// One update with learning rate `lr`, gradients scaled so their global norm is at most
    /// `clip`. Returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        let scale = if norm > clip { clip / norm } else { 1.0 };
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2 = 1.0 - b2.powi(self.step as i32);
        for (name, var, m, v) in self.params.iter_mut() {
            let Some(g) = grads.get(var) else { continue };
            let g = (g * scale)?;
            *m = ((&*m * b1)? + (&g * (1.0 - b1))?)?;
            *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&*m / bias1)? / ((&*v / bias2)?.sqrt()? + self.eps)?)?;
            // No weight decay on biases, norms and embeddings' positions: only on matrices.
            let decay = if var.rank() >= 2 && !name.contains("positions") {
                self.weight_decay
            } else {
                0.0
            };
            let rate = lr * lr_scale(name);
            let next = ((var.as_tensor() * (1.0 - lr * decay))? - (update * rate)?)?;
            var.set(&next)?;
        }
        Ok(norm)
    }

    /// Writes the moments to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (name, _, m, v) in &self.params {
            map.insert(format!("m.{name}"), m.clone());
            map.insert(format!("v.{name}"), v.clone());
        }
        candle_core::safetensors::save(&map, path)
    }

    /// Restores moments written by [`AdamW::save`].
    pub fn load(&mut self, path: &Path, step: usize) -> Result<()> {
        let map = candle_core::safetensors::load(path, &self.params[0].1.device().clone())?;
        for (name, _, m, v) in self.params.iter_mut() {
            if let (Some(lm), Some(lv)) =
                (map.get(&format!("m.{name}")), map.get(&format!("v.{name}")))
            {
                *m = lm.clone();
                *v = lv.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Learning rate at `progress` ∈ [0, 1] of the run: linear warm-up over `warmup` of the
/// progress, then cosine decay to a tenth of the peak.
pub fn learning_rate(peak: f64, progress: f64, warmup: f64) -> f64 {
    let p = progress.clamp(0.0, 1.0);
    if p < warmup {
        return peak * (p / warmup).max(0.01);
    }
    let t = (p - warmup) / (1.0 - warmup).max(1e-9);
    let floor = peak * 0.1;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        assert!(learning_rate(1.0, 0.0, 0.1) < 0.02);
        assert!((learning_rate(1.0, 0.1, 0.1) - 1.0).abs() < 1e-9);
        assert!((learning_rate(1.0, 1.0, 0.1) - 0.1).abs() < 1e-9);
        assert!(learning_rate(1.0, 0.5, 0.1) < learning_rate(1.0, 0.3, 0.1));
    }

    #[test]
    fn clipping_bounds_the_update() {
        use candle_core::{Device, Var};
        let dev = Device::Cpu;
        let w = Var::new(&[[1f32, 2.0], [3.0, 4.0]], &dev).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], 0.0).unwrap();
        let loss = (w.as_tensor() * 1000.0).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let norm = opt.step(&grads, 0.1, 1.0).unwrap();
        assert!((norm - 2000.0).abs() < 1e-3);
        // Adam's first step moves every weight by about lr, whatever the gradient's size.
        let after: Vec<Vec<f32>> = w.as_tensor().to_vec2().unwrap();
        assert!((after[0][0] - 0.9).abs() < 1e-3, "{after:?}");
    }
}
