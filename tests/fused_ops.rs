//! Every fused kernel against the plain candle composition it replaces, on random inputs:
//! values and gradients agree to a relative error of 1e-4 (f32).

mod common;

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::Linear;
use continuo::model::ops;
use std::sync::Mutex;

// `set_fused` is process-wide: these tests take turns.
static LOCK: Mutex<()> = Mutex::new(());

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    common::max_abs(&(a - b).unwrap()) / common::max_abs(b).max(1e-6)
}

/// Runs `f` with fused kernels and with compositions; returns (value, grads) of both.
fn both(vars: &[Var], f: impl Fn() -> Tensor) -> [(Tensor, Vec<Tensor>); 2] {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // A random projection (the same for both) makes the gradient depend on every output.
    let shape = f().shape().clone();
    let w = Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap();
    let run = |fused: bool| {
        ops::set_fused(fused);
        let y = f();
        let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g = vars
            .iter()
            .map(|v| grads.get(v).expect("no gradient").clone())
            .collect();
        (y, g)
    };
    let out = [run(true), run(false)];
    ops::set_fused(true);
    out
}

fn check(what: &str, vars: &[Var], f: impl Fn() -> Tensor) {
    let [(yf, gf), (ys, gs)] = both(vars, f);
    let e = rel_err(&yf, &ys);
    assert!(e <= 1e-4, "{what}: value rel err {e}");
    for (i, (a, b)) in gf.iter().zip(&gs).enumerate() {
        let e = rel_err(a, b);
        assert!(e <= 1e-4, "{what}: gradient {i} rel err {e}");
    }
}

#[test]
fn layer_norm_matches_the_composition() {
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 2.0, (3, 17, 64), &dev).unwrap();
    let w = Var::randn(1f32, 0.3, 64, &dev).unwrap();
    let b = Var::randn(0f32, 0.3, 64, &dev).unwrap();
    check("layer norm", &[x.clone(), w.clone(), b.clone()], || {
        ops::layer_norm(&x, &w, &b).unwrap()
    });
}

#[test]
fn causal_attention_matches_the_composition_in_training_and_with_a_cache() {
    let dev = Device::Cpu;
    // Head sizes 8 and 12 (not a multiple of the products' vector width); 150 and 70 queries
    // span several of the kernel's 64-query tiles, the last one partial.
    let shapes = [
        (16, 16, 8),
        (1, 9, 8),
        (4, 12, 8),
        (16, 16, 12),
        (5, 7, 12),
        (150, 150, 8),
        (70, 140, 12),
    ];
    for (tq, tk, hd) in shapes {
        let q = Var::randn(0f32, 1.0, (2, 3, tq, hd), &dev).unwrap();
        let k = Var::randn(0f32, 1.0, (2, 3, tk, hd), &dev).unwrap();
        let v = Var::randn(0f32, 1.0, (2, 3, tk, hd), &dev).unwrap();
        check(
            &format!("attention {tq}×{tk}, head {hd}"),
            &[q.clone(), k.clone(), v.clone()],
            || ops::causal_attention(&q, &k, &v).unwrap(),
        );
    }
}

#[test]
fn gelu_matches_the_composition() {
    let x = Var::randn(0f32, 2.0, (7, 33), &Device::Cpu).unwrap();
    check("gelu", std::slice::from_ref(&x), || ops::gelu(&x).unwrap());
}

/// 50 rows of random logits over 303 ids, and a target for each.
fn logits_and_targets() -> (Var, Tensor) {
    let dev = Device::Cpu;
    let logits = Var::randn(0f32, 3.0, (50, 303), &dev).unwrap();
    let targets = (0..50u32).map(|i| (i * 37) % 303).collect::<Vec<_>>();
    (logits, Tensor::from_vec(targets, 50, &dev).unwrap())
}

#[test]
fn cross_entropy_matches_the_composition() {
    let (logits, targets) = logits_and_targets();
    check("cross-entropy", std::slice::from_ref(&logits), || {
        ops::cross_entropy(&logits, &targets).unwrap()
    });
}

#[test]
fn weighted_cross_entropy_matches_the_composition() {
    let (logits, targets) = logits_and_targets();
    let weights: Vec<f32> = (0..50).map(|i| if i % 7 < 2 { 4.0 } else { 1.0 }).collect();
    check(
        "weighted cross-entropy",
        std::slice::from_ref(&logits),
        || ops::weighted_cross_entropy(&logits, &targets, &weights).unwrap(),
    );
    // Equal weights give the plain mean.
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let plain = ops::cross_entropy(&logits, &targets).unwrap();
    let equal = ops::weighted_cross_entropy(&logits, &targets, &[2.5; 50]).unwrap();
    assert!(rel_err(&equal, &plain) < 1e-5);
}

#[test]
fn bias_add_in_linear_matches_the_composition() {
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1.0, (3, 19, 24), &dev).unwrap();
    let w = Var::randn(0f32, 0.3, (40, 24), &dev).unwrap();
    let b = Var::randn(0f32, 0.3, 40, &dev).unwrap();
    let layer = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    check("linear", &[x.clone(), w.clone(), b.clone()], || {
        ops::linear(&x, &layer).unwrap()
    });
}

#[test]
fn linear_as_one_matmul_matches_candles_linear() {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ops::set_fused(true);
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1.0, (4, 9, 16), &dev).unwrap();
    let w = Var::randn(0f32, 0.3, (12, 16), &dev).unwrap();
    let b = Var::randn(0f32, 0.3, 12, &dev).unwrap();
    let layer = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let proj = Tensor::randn(0f32, 1.0, (4, 9, 12), &dev).unwrap();
    let run = |y: Tensor| {
        let grads = (&y * &proj).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Tensor> = [&x, &w, &b]
            .iter()
            .map(|v| grads.get(v).expect("no gradient").clone())
            .collect();
        (y, g)
    };
    let (ours, g_ours) = run(ops::linear(&x, &layer).unwrap());
    let (theirs, g_theirs) = run(layer.forward(&x).unwrap());
    assert_eq!(ours.dims(), theirs.dims());
    assert!(rel_err(&ours, &theirs) <= 1e-4);
    for (i, (a, b)) in g_ours.iter().zip(&g_theirs).enumerate() {
        let e = rel_err(a, b);
        assert!(e <= 1e-4, "gradient {i} rel err {e}");
    }
}

#[test]
fn fused_gradients_match_finite_differences() {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ops::set_fused(true);
    let dev = Device::Cpu;
    let x0: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
    let w = Tensor::from_vec(
        (0..8).map(|i| 0.5 + i as f32 * 0.1).collect::<Vec<f32>>(),
        8,
        &dev,
    )
    .unwrap();
    let b = Tensor::zeros(8, candle_core::DType::F32, &dev).unwrap();
    let proj = Tensor::from_vec(
        (0..24)
            .map(|i| (i as f32 * 0.37).sin())
            .collect::<Vec<f32>>(),
        (3, 8),
        &dev,
    )
    .unwrap();
    let loss = |x: &Tensor| -> f64 {
        let y = ops::layer_norm(x, &w, &b).unwrap();
        let a = ops::causal_attention(
            &y.reshape((1, 1, 3, 8)).unwrap(),
            &y.reshape((1, 1, 3, 8)).unwrap(),
            &y.reshape((1, 1, 3, 8)).unwrap(),
        )
        .unwrap();
        (a.reshape((3, 8)).unwrap() * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let x = Var::from_tensor(&Tensor::from_vec(x0.clone(), (3, 8), &dev).unwrap()).unwrap();
    let y = ops::layer_norm(x.as_tensor(), &w, &b).unwrap();
    let y4 = y.reshape((1, 1, 3, 8)).unwrap();
    let a = ops::causal_attention(&y4, &y4, &y4).unwrap();
    let grads = (a.reshape((3, 8)).unwrap() * &proj)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let analytic: Vec<f32> = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let h = 1e-2f32;
    for i in 0..24 {
        let mut p = x0.clone();
        p[i] += h;
        let mut m = x0.clone();
        m[i] -= h;
        let fd = (loss(&Tensor::from_vec(p, (3, 8), &dev).unwrap())
            - loss(&Tensor::from_vec(m, (3, 8), &dev).unwrap()))
            / (2.0 * h as f64);
        assert!(
            (fd - analytic[i] as f64).abs() <= 2e-2 * (1.0 + fd.abs()),
            "element {i}: finite difference {fd} vs analytic {}",
            analytic[i]
        );
    }
}

#[test]
fn decoding_steps_match_candles_ops() {
    use candle_nn::{VarBuilder, VarMap};
    use continuo::model::transformer::{Config, KvCache, Transformer};
    let dev = Device::Cpu;
    // Head size 12: the dot products' vector loop has a tail.
    let cfg = Config {
        vocab_size: 29,
        d_model: 48,
        n_layers: 2,
        n_heads: 4,
        d_ff: 80,
        max_seq_len: 20,
        smeared_keys: true,
    };
    let vm = VarMap::new();
    let mut model = Transformer::new(
        &cfg,
        VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
    )
    .unwrap();
    // The composition is f32: so are the steps here (their f16 weights are tested against
    // the f32 steps in the transformer's unit tests).
    model.set_step_precision(continuo::model::StepPrecision::F32);
    set_key_smears(&vm);
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 11 + 5) % 29).collect();
    let ids = Tensor::from_vec(ids, (2, 20), &dev).unwrap();
    let run = |fused: bool| {
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        ops::set_fused(fused);
        let mut cache = KvCache::default();
        let mut out = vec![model
            .forward_cached(&ids.narrow(1, 0, 6).unwrap(), &mut cache)
            .unwrap()];
        for t in 6..20 {
            let step = ids.narrow(1, t, 1).unwrap();
            out.push(model.forward_cached(&step, &mut cache).unwrap());
        }
        ops::set_fused(true);
        Tensor::stack(&out, 0).unwrap()
    };
    let (steps, composition) = (run(true), run(false));
    let e = rel_err(&steps, &composition);
    assert!(e <= 1e-4, "decoding steps: rel err {e}");
}

/// Every block's key smear (zero at the start of training, where a wrong smear gradient
/// and a wrong cache would both hide) drawn at random, both signs.
fn set_key_smears(vm: &candle_nn::VarMap) {
    let vars = vm.data().lock().unwrap();
    let smears = vars.iter().filter(|(name, _)| name.ends_with("key_smear"));
    for (_, var) in smears {
        let s = Tensor::randn(0f32, 0.5, var.elem_count(), &Device::Cpu).unwrap();
        var.set(&s).unwrap();
    }
}

/// A small transformer whose query tiles (64 queries) do not divide its context.
fn small_transformer(seq: usize) -> (candle_nn::VarMap, continuo::model::transformer::Transformer) {
    use candle_nn::{VarBuilder, VarMap};
    use continuo::model::transformer::{Config, Transformer};
    let cfg = Config {
        vocab_size: 23,
        d_model: 24,
        n_layers: 2,
        n_heads: 2,
        d_ff: 40,
        max_seq_len: seq,
        smeared_keys: true,
    };
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &Device::Cpu);
    let model = Transformer::new(&cfg, vb).unwrap();
    set_key_smears(&vm);
    // LayerNorms start at weight 1 and bias 0, where a wrong weight gradient can hide.
    for (name, var) in vm.data().lock().unwrap().iter() {
        if name.contains("ln") {
            let n = var.elem_count();
            let v: Vec<f32> = (0..n).map(|i| 0.8 + ((i * 7) % 5) as f32 * 0.1).collect();
            var.set(&Tensor::from_vec(v, n, &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    (vm, model)
}

#[test]
fn the_fused_block_matches_the_composition_in_values_and_every_gradient() {
    let (vm, model) = small_transformer(70);
    let ids: Vec<u32> = (0..140u32).map(|i| (i * 13 + 3) % 23).collect();
    let ids = Tensor::from_vec(ids, (2, 70), &Device::Cpu).unwrap();
    let vars = vm.all_vars();
    assert_eq!(vars.len(), 2 + 2 * 13 + 2, "every parameter is compared");
    check("transformer blocks", &vars, || model.forward(&ids).unwrap());
}

#[test]
fn the_fused_blocks_gradients_match_finite_differences() {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ops::set_fused(true);
    let (vm, model) = small_transformer(5);
    let ids = Tensor::from_vec(vec![1u32, 7, 3, 19, 4], (1, 5), &Device::Cpu).unwrap();
    let proj = Tensor::randn(0f32, 1.0, (1, 5, 23), &Device::Cpu).unwrap();
    let loss = || -> f64 {
        (model.forward(&ids).unwrap() * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let grads = (model.forward(&ids).unwrap() * &proj)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let data = vm.data().lock().unwrap().clone();
    let mut checked = 0;
    for (name, var) in data
        .iter()
        .filter(|(n, _)| n.starts_with("blocks.0") || n.starts_with("positions"))
    {
        let analytic: Vec<f32> = grads
            .get(var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let x0: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
        // Small: the embeddings start at σ = 0.02, where LayerNorm is far from linear.
        let h = 2e-3f32;
        // A few elements of each parameter, spread over it.
        for i in (0..x0.len()).step_by(x0.len().div_ceil(4)) {
            let at = |v: f32| {
                let mut p = x0.clone();
                p[i] = v;
                var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss()
            };
            let fd = (at(x0[i] + h) - at(x0[i] - h)) / (2.0 * h as f64);
            at(x0[i]);
            assert!(
                (fd - analytic[i] as f64).abs() <= 2e-2 * (1.0 + fd.abs()),
                "{name}[{i}]: finite difference {fd} vs analytic {}",
                analytic[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 12 * 3, "{checked} elements checked");
}
