//! A model's first weights drawn from `--seed`, so that one command trains the same model twice.
//!
//! candle draws a new variable's random start from its CPU device's unseeded generator (the CPU
//! device cannot be seeded), so two runs of one `continuo train` command began from different
//! weights and ended as different models: a test that trained a tiny model passed on one run and
//! failed on another. This backend keeps candle's `VarMap` (what the optimizer and the
//! checkpoints use) and its initialisation rules, and draws only the random numbers itself.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A `VarBuilder` over `varmap` whose new variables start from numbers drawn from `seed` and the
/// variable's name: the same seed gives the same weights, whatever order a model makes them in.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap {
            varmap: varmap.clone(),
            seed,
        }),
        dtype,
        device.clone(),
    )
}

struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

/// The distribution one random start draws from.
enum Draw {
    Uniform { lo: f64, up: f64 },
    Normal { mean: f64, stdev: f64 },
}

impl Draw {
    /// `None` for a constant start, which needs no random numbers.
    fn of(init: Init, shape: &Shape) -> Option<Draw> {
        match init {
            Init::Const(_) => None,
            Init::Uniform { lo, up } => Some(Draw::Uniform { lo, up }),
            Init::Randn { mean, stdev } => Some(Draw::Normal { mean, stdev }),
            // candle's own Kaiming rule (candle_nn::Init::var), with our numbers.
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let stdev = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                Some(match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * stdev;
                        Draw::Uniform {
                            lo: -bound,
                            up: bound,
                        }
                    }
                    NormalOrUniform::Normal => Draw::Normal { mean: 0.0, stdev },
                })
            }
        }
    }

    fn sample(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        match *self {
            Draw::Uniform { lo, up } => (0..n).map(|_| rng.gen_range(lo..up) as f32).collect(),
            Draw::Normal { mean, stdev } => (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    (mean + stdev * z) as f32
                })
                .collect(),
        }
    }
}

/// FNV-1a: a hash of the name that is the same in every process (std's is randomised).
fn stable_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let Some(draw) = Draw::of(init, &shape) else {
            return self.varmap.get(shape, name, init, dtype, dev);
        };
        let mut data = self.varmap.data().lock().unwrap();
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ stable_hash(name));
        let values = draw.sample(shape.elem_count(), &mut rng);
        let start = Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&start)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.varmap.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.contains_tensor(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{linear, Module};

    /// (name, values) of every variable made by linear layers named `names`, sorted by name.
    fn weights(seed: u64, names: &[&str]) -> Vec<(String, Vec<f32>)> {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu);
        for n in names {
            linear(64, 32, vb.pp(*n)).unwrap();
        }
        let data = vm.data().lock().unwrap();
        let mut all: Vec<_> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    #[test]
    fn the_same_seed_gives_the_same_weights_in_any_order_and_another_seed_others() {
        let a = weights(1, &["x", "y"]);
        assert_eq!(a, weights(1, &["y", "x"]));
        assert_ne!(a, weights(2, &["x", "y"]));
        assert_ne!(a[1].1, a[3].1, "two layers start apart");
        // candle's rules for a linear layer: Kaiming-normal weights (standard deviation
        // √2/√fan_in), a bias uniform within ±1/√fan_in.
        for (name, w) in &a {
            if name.ends_with("bias") {
                assert!(w.iter().all(|b| b.abs() <= 0.125), "{name}: {w:?}");
            } else {
                let sd = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
                assert!(
                    (sd / (2f32 / 64.0).sqrt() - 1.0).abs() < 0.1,
                    "{name}: sd {sd}"
                );
            }
        }
    }

    #[test]
    fn a_constant_start_and_a_layer_built_twice_are_candles() {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, 3, DType::F32, &Device::Cpu);
        let ln = candle_nn::layer_norm(4, 1e-5, vb.pp("ln")).unwrap();
        let x = Tensor::new(&[[1f32, 2.0, 3.0, 4.0]], &Device::Cpu).unwrap();
        let y = ln.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert!(
            (y[0].iter().sum::<f32>()).abs() < 1e-4,
            "a fresh layer norm's output has mean 0"
        );
        let first = linear(8, 4, vb.pp("l"))
            .unwrap()
            .weight()
            .to_vec2::<f32>()
            .unwrap();
        let again = linear(8, 4, vb.pp("l"))
            .unwrap()
            .weight()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(
            first, again,
            "the second build reads the variable the first made"
        );
    }
}
