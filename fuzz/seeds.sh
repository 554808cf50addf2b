#!/usr/bin/env bash
# Writes starting inputs for the fuzz targets into fuzz/corpus/ (not committed): the MIDI
# fixtures, a saved session state, and a tiny model folder packed as model_folder reads it
# ([config length u16 LE][guard length u16 LE][config][guard][weights]). Needs a release build
# of `continuo` (cargo build --release --bin continuo).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/corpus/midi_file fuzz/corpus/session_state fuzz/corpus/model_folder
cp tests/fixtures/*.mid fuzz/corpus/midi_file/
cat > fuzz/corpus/session_state/one_idea.json <<'JSON'
{"model_path":null,"last_primer":[{"start":0.0,"duration":1.0,"pitch":60,"velocity":90}],"last_phrase":{"id":3,"seed":7,"primer":[{"start":0.0,"duration":1.0,"pitch":60,"velocity":90}],"notes":[{"start":0.0,"duration":0.5,"pitch":64,"velocity":100},{"start":0.5,"duration":0.5,"pitch":67,"velocity":100}],"beats_per_bar":4.0,"bars":2,"key":"C major"},"model_status":""}
JSON
tiny=$(mktemp -d)
./target/release/continuo train --data tests/fixtures --out "$tiny" --d-model 8 --layers 1 \
  --heads 1 --ff 16 --seq-len 16 --batch 2 --steps 2 --quiet
python3 - "$tiny" <<'PY'
import struct, sys
d = sys.argv[1]
config = open(f"{d}/config.json", "rb").read()
weights = open(f"{d}/model.safetensors", "rb").read()
guard = open(f"{d}/copy_guard.safetensors", "rb").read()
for name, g in [("tiny_unguarded", b""), ("tiny_guarded", guard[:65535] if len(guard) < 65536 else b"")]:
    with open(f"fuzz/corpus/model_folder/{name}", "wb") as f:
        f.write(struct.pack("<HH", len(config), len(g)) + config + g + weights)
PY
rm -rf "$tiny"
echo "seeds in fuzz/corpus/"
