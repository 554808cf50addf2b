#!/usr/bin/env bash
# Builds the real-continuation development set of `continuo eval --continuations`
# (data/continuations/{primers,real}/ROLE--name.mid and SOURCES.md) from held-out material
# only: the held-out split of the default model's corpus (Bach chorale voices, Freedoom,
# PianoBooster) and the held-out LMMS projects of the style corpus (Artistic-2.0/BSD).
# Builds the two corpora first when they are missing (Debian packages and music21, ~5 min).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f data/corpus/SOURCES.md ]; then
  bash scripts/setup.sh --corpus
  target/corpus-venv/bin/python scripts/corpus.py
fi
if [ ! -d data/style/heldout ]; then
  dpkg-query -W -f='${Status}' lmms-common 2>/dev/null | grep -q "install ok installed" || {
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq lmms-common
  }
  python3 scripts/style_corpus.py
fi
cargo build --release --bin continuo
./target/release/continuo continuation-set --data data/corpus \
  --whole data/style/heldout --out data/continuations "$@"
