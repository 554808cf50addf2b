"""Prints the peers table for BENCHMARKS.md from three JSON objects (continuo, Keras, ONNX
Runtime) and, optionally, a JSON list of alternated prefill rounds, each [continuo's, ONNX
Runtime's]."""

import json
import statistics
import sys

ours, keras, onnx = (json.loads(a) for a in sys.argv[1:4])
rounds = json.loads(sys.argv[4]) if len(sys.argv) > 4 else []
# (label, our figure, peer, the peer's figure (None: same key), higher is better)
rows = [
    ("training tokens/s, batch 32 × 256", "train_tokens_per_s", keras, None, True),
    ("batch-1 ms/token, ctx 256, no cache", "infer_ms_per_token_nocache_ctx256", keras, None, False),
    ("batch-1 ms/token, ctx 64, KV cache", "infer_ms_per_token_ctx64", onnx, None, False),
    ("batch-1 ms/token, ctx 256, KV cache", "infer_ms_per_token_ctx256", onnx, None, False),
]
# The decoding steps in every precision they can read (f32 is the peer's), beside the default.
by_precision = ours["infer_ms_per_token_ctx256_by_step_precision"]
for name, ms in sorted(by_precision.items()):
    if name != ours["step_precision"]:
        ours[f"steps_{name}"] = ms
        rows.append((f"the same, continuo's steps reading {name} weights", f"steps_{name}", onnx, "infer_ms_per_token_ctx256", False))
rows.append(("prefill of 256 tokens, ms", "prefill_ms_256", onnx, None, False))
print(f"continuo: {ours['threads']} threads; peers: {keras['peer']}; {onnx['peer']}")
print(f"continuo's cached decoding steps read {ours['step_precision']} weights (f32 arithmetic); ONNX Runtime's f32")
print("| figure | continuo | peer | ours / peer | continuo is |")
print("|---|---|---|---|---|")
for label, key, peer, peer_key, higher_is_better in rows:
    a, b = ours[key], peer[peer_key or key]
    ratio = a / b
    faster = ratio if higher_is_better else 1 / ratio
    verdict = f"{faster:.2f}× as fast" if faster >= 1 else f"{1 / faster:.2f}× slower"
    name = peer["peer"].split(" on ")[0].split()[0]
    print(f"| {label} | {a:.4g} | {b:.4g} ({name}) | {ratio:.2f} | {verdict} |")
if rounds:
    a = statistics.median(r[0]["prefill_ms_256"] for r in rounds)
    b = statistics.median(r[1]["prefill_ms_256"] for r in rounds)
    # Each round's ratio is of two runs seconds apart; the median of those ratios.
    faster = statistics.median(r[1]["prefill_ms_256"] / r[0]["prefill_ms_256"] for r in rounds)
    verdict = f"{faster:.2f}× as fast" if faster >= 1 else f"{1 / faster:.2f}× slower"
    label = f"prefill of 256 tokens, ms, {len(rounds)} rounds alternated (medians)"
    print(f"| {label} | {a:.4g} | {b:.4g} (onnxruntime) | {1 / faster:.2f} | {verdict} |")
