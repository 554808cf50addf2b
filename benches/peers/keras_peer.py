"""Keras 3 peer (the seeds' stack, TensorFlow CPU backend): the same transformer as
`continuo bench` (4 pre-norm blocks, d256, 4 heads, ff 1024 with tanh GELU, learned
positions, output tied to the token embedding), the same batch shape (32 × 256) and AdamW.

Times training steps (after one warm-up step) and batch-1 next-token inference at context 256
the way the seeds generate: the whole window re-read for every token (Keras has no KV cache).
Prints one JSON object.
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402


class TiedHead(layers.Layer):
    """Logits from the token embedding's transpose."""

    def __init__(self, embedding, **kw):
        super().__init__(**kw)
        self.embedding = embedding

    def call(self, x):
        return ops.matmul(x, ops.transpose(self.embedding.embeddings))


class Positions(layers.Layer):
    def __init__(self, n, d, **kw):
        super().__init__(**kw)
        self.table = layers.Embedding(n, d)

    def call(self, x):
        return x + self.table(ops.arange(ops.shape(x)[1]))


def build(vocab, d, n_layers, heads, d_ff, ctx):
    ids = keras.Input((None,), dtype="int32")
    tokens = layers.Embedding(vocab, d)
    x = Positions(ctx, d)(tokens(ids))
    for _ in range(n_layers):
        h = layers.LayerNormalization(epsilon=1e-5)(x)
        h = layers.MultiHeadAttention(heads, d // heads)(h, h, use_causal_mask=True)
        x = x + h
        h = layers.LayerNormalization(epsilon=1e-5)(x)
        h = layers.Dense(d_ff, activation=lambda v: keras.activations.gelu(v, approximate=True))(h)
        x = x + layers.Dense(d)(h)
    x = layers.LayerNormalization(epsilon=1e-5)(x)
    return keras.Model(ids, TiedHead(tokens)(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    vocab, ctx = 279, 512
    model = build(vocab, 256, 4, 4, 1024, ctx)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.01, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(1)
    x = rng.integers(4, vocab, (args.batch, args.seq_len + 1)).astype("int32")
    inputs, targets = x[:, :-1], x[:, 1:]
    model.train_on_batch(inputs, targets)  # warm-up (traces and compiles the step)
    t = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(inputs, targets)
    step_s = (time.perf_counter() - t) / args.steps

    @tf.function(reduce_retracing=True)
    def next_logits(window):
        return model(window, training=False)[:, -1]

    window = tf.constant(rng.integers(4, vocab, (1, 256)).astype("int32"))
    next_logits(window).numpy()
    n = 8
    t = time.perf_counter()
    for _ in range(n):
        next_logits(window).numpy()
    infer_ms = (time.perf_counter() - t) * 1e3 / n
    print(json.dumps({
        "peer": f"keras {keras.__version__} on tensorflow-cpu {tf.__version__}",
        "threads": args.threads,
        "parameters": int(model.count_params()),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "train_tokens_per_s": args.batch * args.seq_len / step_s,
        "infer_ms_per_token_nocache_ctx256": infer_ms,
    }))


if __name__ == "__main__":
    main()
