#!/usr/bin/env bash
# Windows, cross-built here and checked under Wine (CI runs this from scripts/test.sh):
#   target/windows/Continuo.clap, target/windows/Continuo.vst3/, target/windows/continuo.exe
# then, under Wine 8 (headless): continuo.exe continues a bundled primer to the same notes as
# the Linux build for the same seed, and the CLAP host tests (tests/plugin_host.rs,
# cross-built) load the Windows Continuo.clap and play the scenarios that matter most.
# Needs what `bash scripts/setup.sh --windows` installs (mingw-w64, wine64, the Rust target).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --windows
target=x86_64-pc-windows-gnu
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
out=target/windows
mkdir -p "$out"

# The bundles (the xtask writes them to target/bundled/, where the Linux ones live: move them).
cargo xtask bundle continuo --release --target "$target"
rm -rf "$out/Continuo.clap" "$out/Continuo.vst3"
mv target/bundled/Continuo.clap "$out/Continuo.clap"
mkdir -p "$out/Continuo.vst3/Contents"
mv target/bundled/Continuo.vst3/Contents/x86_64-win "$out/Continuo.vst3/Contents/"
rm -f target/bundled/Continuo.exe  # the xtask also bundles the CLI as a "standalone"
cargo build --release --target "$target" --bin continuo
cp "target/$target/release/continuo.exe" "$out/continuo.exe"

# A Wine prefix of our own, with the ProcessPrng shim Wine 8.0 lacks (scripts/wine/).
export WINEPREFIX="$PWD/target/wine-prefix" WINEDEBUG=-all WINEDLLOVERRIDES="bcryptprimitives=n"
wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
if [ ! -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
  "$wine" wineboot --init >/dev/null 2>&1 || true
  x86_64-w64-mingw32-gcc -O2 -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c -ladvapi32
fi

# The CLI: same primer, model and seed → the same notes as the Linux build.
cargo build --release --bin continuo
args=(generate --model models/default --primer examples/primers/c-major-triad.mid --bars 4
      --seed 7 --temperature 0.9 --on-downbeat)
./target/release/continuo "${args[@]}" --out "$out/linux-idea.mid"
"$wine" "$out/continuo.exe" "${args[@]}" --out "$out/windows-idea.mid"
if ! cmp "$out/linux-idea.mid" "$out/windows-idea.mid"; then
  echo "continuo.exe under Wine wrote other notes than the Linux build for the same seed" >&2
  exit 1
fi
echo "continuo.exe under Wine: the same idea as the Linux build ($(wc -c <"$out/windows-idea.mid") bytes)"

# The CLAP host scenarios that matter most, on the Windows plugin: tests/plugin_host.rs
# cross-built (release: assert_process_allocs is a debug-build check, run on Linux).
cargo test --release --target "$target" --test plugin_host --no-run
host=$(ls -t target/$target/release/deps/plugin_host-*.exe | head -1)
CONTINUO_CLAP="Z:$PWD/$out/Continuo.clap" "$wine" "$host" --test-threads=1 \
  a_triad_is_answered_on_the_next_bar_line_and_every_note_is_closed \
  a_tempo_change_mid_phrase_keeps_every_note_on_its_beat \
  a_loop_jump_releases_every_sounding_note_in_that_block \
  a_transport_stop_releases_every_sounding_note_in_that_block \
  deactivating_releases_sounding_notes_at_the_next_block \
  saved_state_restores_parameters_seed_and_last_phrase_in_a_fresh_instance
