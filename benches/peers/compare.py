"""Prints the peers table for BENCHMARKS.md from three JSON objects: continuo, Keras, ONNX Runtime."""

import json
import sys

ours, keras, onnx = (json.loads(a) for a in sys.argv[1:4])
rows = [
    ("training tokens/s, batch 32 × 256", "train_tokens_per_s", keras, True),
    ("batch-1 ms/token, ctx 256, no cache", "infer_ms_per_token_nocache_ctx256", keras, False),
    ("batch-1 ms/token, ctx 64, KV cache", "infer_ms_per_token_ctx64", onnx, False),
    ("batch-1 ms/token, ctx 256, KV cache", "infer_ms_per_token_ctx256", onnx, False),
    ("prefill of 256 tokens, ms", "prefill_ms_256", onnx, False),
]
print(f"continuo: {ours['threads']} threads; peers: {keras['peer']}; {onnx['peer']}")
print("| figure | continuo | peer | ours / peer | continuo is |")
print("|---|---|---|---|---|")
for label, key, peer, higher_is_better in rows:
    a, b = ours[key], peer[key]
    ratio = a / b
    faster = ratio if higher_is_better else 1 / ratio
    verdict = f"{faster:.2f}× as fast" if faster >= 1 else f"{1 / faster:.2f}× slower"
    name = peer["peer"].split(" on ")[0].split()[0]
    print(f"| {label} | {a:.4g} | {b:.4g} ({name}) | {ratio:.2f} | {verdict} |")
