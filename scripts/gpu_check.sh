#!/usr/bin/env bash
# The GPU check, for a lent GPU machine (about 8 minutes on one GPU): writes its results to a
# folder (default: $OUT if set, else target/gpu-check):
#   device.json   the shipped model's logits on the device against the CPU on a fixed prompt
#                 (max |difference|), and 8-bar answers of 1 and 4 candidates on each (median ms)
#   train.log     `continuo train` for 60 s on the device (tokens/s in its last lines)
#   nvidia-smi.txt, summary.txt
# It runs the binary in $CONTINUO_BIN (default target/release/continuo): build it here with
# `--features cuda` and carry it (the GPU machines have no Rust toolchain). Without a GPU, or
# with a CPU-only build, it says so and measures the CPU path.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-target/gpu-check}}
bin=${CONTINUO_BIN:-target/release/continuo}
mkdir -p "$out"
[ -x "$bin" ] || { echo "$bin is missing: cargo build --release --bin continuo [--features cuda]" >&2; exit 1; }
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
else
  echo "no nvidia-smi: no NVIDIA GPU on this machine" | tee "$out/nvidia-smi.txt"
fi
timeout 300 "$bin" device-check --model models/default --runs 5 --json > "$out/device.json"
timeout 150 "$bin" train --data tests/fixtures --out "$out/train-model" --minutes 1 \
  --eval-every 1000 --quiet > "$out/train.log" 2>&1 || echo "train exited $?" >> "$out/train.log"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("device:", d["device"], "| GPU present:", d["gpu_present"]); print("max |logit difference| vs CPU:", d["max_abs_logit_difference"]); [print(k+":", round(v,1)) for k,v in d["answer_8_bars_median_ms"].items()]' "$out/device.json"
  grep -iE "tokens/s|tok/s" "$out/train.log" | tail -2
} | tee "$out/summary.txt"
