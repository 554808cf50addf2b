#!/usr/bin/env bash
# The main job: set up, build the CLAP and VST3 bundles (target/bundled/), and continue a
# bundled primer with the shipped model (writes idea.mid and idea.png in the repository root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo xtask bundle continuo --release
cargo build --release --bin continuo
./target/release/continuo generate --model models/default \
  --primer examples/primers/c-major-triad.mid --bars 4 --seed 7 --temperature 0.9 \
  --on-downbeat --out idea.mid --png idea.png
