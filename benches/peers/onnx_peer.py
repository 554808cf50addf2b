"""ONNX Runtime peer: the shipped model's weights as an ONNX graph with a KV cache, batch 1.

Builds the graph with the `onnx` helper API (no PyTorch), checks it against a NumPy forward of
the same architecture, then times prefill and cached decoding the way `continuo bench` does:
prefill ctx − 32 tokens, then 32 tokens one at a time (ms per token), and a 256-token prefill.
Prints one JSON object.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

GELU_C = np.float32(0.7978846)
GELU_A = np.float32(0.044715)


class Graph:
    """Collects nodes and initializers; every call returns the new node's output name."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, kind, *inputs, **attrs):
        self.n += 1
        out = f"{kind.lower()}_{self.n}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def linear(self, x, w, b, name):
        # (…, in) · (in, out) + b, with the weight stored transposed once.
        wt = self.const(name + ".wt", w.T.copy())
        return self.op("Add", self.op("MatMul", x, wt), self.const(name + ".b", b))


def build(weights, cfg):
    d, h = cfg["d_model"], cfg["n_heads"]
    hd, layers = d // h, cfg["n_layers"]
    g = Graph()
    emb = g.const("tokens", weights["tokens.weight"])
    x = g.op(
        "Add",
        g.op("Gather", emb, "ids"),
        g.op("Gather", g.const("positions", weights["positions.weight"]), "pos"),
    )
    shape_qkv = g.const("shape_qkv", np.array([1, -1, 3, h, hd], np.int64))
    shape_y = g.const("shape_y", np.array([1, -1, d], np.int64))
    scale = g.const("scale", np.float32(1.0 / np.sqrt(hd)))
    half, one = g.const("half", np.float32(0.5)), g.const("one", np.float32(1.0))
    c, a = g.const("gelu_c", GELU_C), g.const("gelu_a", GELU_A)
    idx = [g.const(f"idx{i}", np.array(i, np.int64)) for i in range(3)]
    presents = []
    for i in range(layers):
        p = f"blocks.{i}."
        ln1 = g.op(
            "LayerNormalization", x, g.const(p + "ln1.w", weights[p + "ln1.weight"]),
            g.const(p + "ln1.b", weights[p + "ln1.bias"]), axis=-1, epsilon=1e-5,
        )
        qkv = g.linear(ln1, weights[p + "attn.qkv.weight"], weights[p + "attn.qkv.bias"], p + "qkv")
        qkv = g.op("Transpose", g.op("Reshape", qkv, shape_qkv), perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, idx[j], axis=0) for j in range(3))
        k = g.op("Concat", f"past_k{i}", k, axis=2)
        v = g.op("Concat", f"past_v{i}", v, axis=2)
        presents += [k, v]
        s = g.op("Add", g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), scale), "mask")
        y = g.op("MatMul", g.op("Softmax", s, axis=-1), v)
        y = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), shape_y)
        x = g.op("Add", x, g.linear(y, weights[p + "attn.out.weight"], weights[p + "attn.out.bias"], p + "out"))
        ln2 = g.op(
            "LayerNormalization", x, g.const(p + "ln2.w", weights[p + "ln2.weight"]),
            g.const(p + "ln2.b", weights[p + "ln2.bias"]), axis=-1, epsilon=1e-5,
        )
        u = g.linear(ln2, weights[p + "mlp.up.weight"], weights[p + "mlp.up.bias"], p + "up")
        inner = g.op("Mul", c, g.op("Add", u, g.op("Mul", a, g.op("Mul", u, g.op("Mul", u, u)))))
        u = g.op("Mul", g.op("Mul", half, u), g.op("Add", one, g.op("Tanh", inner)))
        x = g.op("Add", x, g.linear(u, weights[p + "mlp.down.weight"], weights[p + "mlp.down.bias"], p + "down"))
    x = g.op(
        "LayerNormalization", x, g.const("ln_f.w", weights["ln_f.weight"]),
        g.const("ln_f.b", weights["ln_f.bias"]), axis=-1, epsilon=1e-5,
    )
    logits = g.op("MatMul", x, g.const("head", weights["tokens.weight"].T.copy()))
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("ids", i64, [1, "t"]),
        helper.make_tensor_value_info("pos", i64, [1, "t"]),
        helper.make_tensor_value_info("mask", f32, ["t", "total"]),
    ]
    outputs = [helper.make_tensor_value_info(logits, f32, [1, "t", cfg["vocab_size"]])]
    for i in range(layers):
        for kv in "kv":
            inputs.append(helper.make_tensor_value_info(f"past_{kv}{i}", f32, [1, h, "past", hd]))
    for name in presents:
        outputs.append(helper.make_tensor_value_info(name, f32, [1, h, "total", hd]))
    graph = helper.make_graph(g.nodes, "continuo", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def numpy_forward(weights, cfg, ids):
    """Logits of every position, no cache: the reference the graph must match."""
    d, h = cfg["d_model"], cfg["n_heads"]
    hd, t = d // h, len(ids)

    def ln(x, w, b):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-5) * w + b

    x = weights["tokens.weight"][ids] + weights["positions.weight"][:t]
    mask = np.triu(np.full((t, t), -np.inf, np.float32), 1)
    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}."
        qkv = ln(x, weights[p + "ln1.weight"], weights[p + "ln1.bias"]) @ weights[p + "attn.qkv.weight"].T
        qkv = (qkv + weights[p + "attn.qkv.bias"]).reshape(t, 3, h, hd).transpose(1, 2, 0, 3)
        s = qkv[0] @ qkv[1].transpose(0, 2, 1) / np.sqrt(hd) + mask
        e = np.exp(s - s.max(-1, keepdims=True))
        y = (e / e.sum(-1, keepdims=True)) @ qkv[2]
        y = y.transpose(1, 0, 2).reshape(t, d)
        x = x + y @ weights[p + "attn.out.weight"].T + weights[p + "attn.out.bias"]
        u = ln(x, weights[p + "ln2.weight"], weights[p + "ln2.bias"]) @ weights[p + "mlp.up.weight"].T
        u = u + weights[p + "mlp.up.bias"]
        u = 0.5 * u * (1 + np.tanh(GELU_C * (u + GELU_A * u**3)))
        x = x + u @ weights[p + "mlp.down.weight"].T + weights[p + "mlp.down.bias"]
    x = ln(x, weights["ln_f.weight"], weights["ln_f.bias"])
    return x @ weights["tokens.weight"].T


class Runner:
    def __init__(self, session, cfg):
        self.s, self.cfg = session, cfg
        h, hd = cfg["n_heads"], cfg["d_model"] // cfg["n_heads"]
        self.empty = np.zeros((1, h, 0, hd), np.float32)

    def run(self, ids, past=None):
        layers = self.cfg["n_layers"]
        past = past or [self.empty] * (2 * layers)
        p, t = past[0].shape[2], len(ids)
        mask = np.zeros((t, p + t), np.float32)
        mask[:, p:] = np.triu(np.full((t, t), -np.inf, np.float32), 1)
        feed = {
            "ids": np.array([ids], np.int64),
            "pos": np.arange(p, p + t, dtype=np.int64)[None],
            "mask": mask,
        }
        for i in range(layers):
            feed[f"past_k{i}"], feed[f"past_v{i}"] = past[2 * i], past[2 * i + 1]
        out = self.s.run(None, feed)
        return out[0][0], out[1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill-only", action="store_true",
                    help="time the prefill of 256 tokens alone (run.sh alternates it with continuo's)")
    args = ap.parse_args()
    cfg = json.loads((Path(args.model) / "config.json").read_text())["architecture"]
    if cfg.get("smeared_keys"):
        # This graph has no key smear (each key plus a learned share of the key before it):
        # it would time and check a model other than the one given.
        raise SystemExit(
            f"{args.model}: smeared keys, which this ONNX graph does not build; give a model "
            "without them (run.sh uses the v4 default from git history)"
        )
    weights = load_file(str(Path(args.model) / "model.safetensors"))
    model = build(weights, cfg)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    runner = Runner(ort.InferenceSession(model.SerializeToString(), opts), cfg)

    rng = np.random.default_rng(2)
    vocab = cfg["vocab_size"]
    ids = rng.integers(4, vocab, 40).tolist()
    ref = numpy_forward(weights, cfg, np.array(ids))
    full, _ = runner.run(ids)
    _, past = runner.run(ids[:-8])
    for j in range(8, 0, -1):
        step, past = runner.run([ids[-j]], past)
    err_full = float(np.abs(full - ref).max() / np.abs(ref).max())
    err_cached = float(np.abs(step[-1] - ref[-1]).max() / np.abs(ref[-1]).max())
    assert err_full < 1e-4 and err_cached < 1e-4, (err_full, err_cached)

    def decode_ms(ctx, n=32, repeats=3):
        times = []
        for _ in range(repeats):
            prompt = rng.integers(4, vocab, ctx - n).tolist()
            _, past = runner.run(prompt)
            t = time.perf_counter()
            for _ in range(n):
                _, past = runner.run([int(rng.integers(4, vocab))], past)
            times.append((time.perf_counter() - t) * 1e3 / n)
        return float(np.median(times))

    def prefill_ms():
        prompt = rng.integers(4, vocab, 256).tolist()
        runner.run(prompt)
        # The median of 9, as `continuo bench` times its prefill.
        times = []
        for _ in range(9):
            t = time.perf_counter()
            runner.run(prompt)
            times.append((time.perf_counter() - t) * 1e3)
        return float(np.median(times))

    if args.prefill_only:
        print(json.dumps({"peer": f"onnxruntime {ort.__version__}", "prefill_ms_256": prefill_ms()}))
        return
    decode_ms(64)  # warm-up
    prefill = prefill_ms()
    print(json.dumps({
        "peer": f"onnxruntime {ort.__version__}",
        "threads": args.threads,
        "rel_err_vs_numpy": max(err_full, err_cached),
        "infer_ms_per_token_ctx64": decode_ms(64),
        "infer_ms_per_token_ctx256": decode_ms(256),
        "prefill_ms_256": prefill,
    }))


if __name__ == "__main__":
    main()
