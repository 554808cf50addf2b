#!/usr/bin/env bash
# Continuo against its peers, measured back to back in one run on this machine; prints a
# table of ratios (ours / peer). Only run when asked: CI does not (it needs PyPI and ~1 GB).
#   bash benches/peers/run.sh            # venv in target/peers-venv (override: PEERS_VENV)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${PEERS_VENV:-target/peers-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r benches/peers/requirements.txt
fi
cargo build --release --quiet
ours=$(./target/release/continuo bench --json --steps "${STEPS:-3}")
keras=$("$venv/bin/python" benches/peers/keras_peer.py --steps "${STEPS:-3}" 2>/dev/null)
# The ONNX graph is the transformer of `continuo bench` (no smeared keys): it reads the v4
# default's weights, the last shipped without them, from git history.
v4=$(mktemp -d)
trap 'rm -rf "$v4"' EXIT
for f in config.json model.safetensors; do
    git show "70dced1:models/default/$f" > "$v4/$f"
done
onnx=$("$venv/bin/python" benches/peers/onnx_peer.py --model "$v4")
# The prefills again, ours and ONNX Runtime's alternated a few seconds apart: on a shared
# machine the runs above lie minutes apart, and the same binary's prefill varies by a third
# between them.
rounds=""
for _ in $(seq "${PREFILL_ROUNDS:-5}"); do
    a=$(./target/release/continuo bench --prefill --json)
    b=$("$venv/bin/python" benches/peers/onnx_peer.py --model "$v4" --prefill-only)
    rounds="${rounds:+$rounds,}[$a,$b]"
done
"$venv/bin/python" benches/peers/compare.py "$ours" "$keras" "$onnx" "[$rounds]"
printf '\nraw figures:\n%s\n%s\n%s\n[%s]\n' "$ours" "$keras" "$onnx" "$rounds"
