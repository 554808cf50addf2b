#!/usr/bin/env bash
# Installs the Debian packages Continuo builds and tests with (idempotent; needs root or sudo).
#   bash scripts/setup.sh            # build, test, bundle
#   bash scripts/setup.sh --corpus   # also what scripts/corpus.py needs: Debian's abcmidi,
#                                    # freedoom, pianobooster, and music21 in target/corpus-venv
#   bash scripts/setup.sh --windows  # also what scripts/windows.sh needs: mingw-w64, wine64,
#                                    # and the Rust targets for Windows and macOS
#   bash scripts/setup.sh --cuda     # also what scripts/cuda_build.sh needs: python3-venv for
#                                    # NVIDIA's PyPI wheels, g++ as nvcc's host compiler
set -euo pipefail
corpus=false
windows=false
cuda=false
[ "${1:-}" = "--corpus" ] && corpus=true
[ "${1:-}" = "--windows" ] && windows=true
[ "${1:-}" = "--cuda" ] && cuda=true
packages=(
  # nice-plug (standalone, VST3/CLAP) and nice-plug-egui
  pkg-config libasound2-dev libjack-jackd2-dev libx11-dev libx11-xcb-dev libxcb1-dev
  libxcb-dri2-0-dev libxcb-icccm4-dev libxcursor-dev libxkbcommon-dev libxcb-shape0-dev
  libxcb-xfixes0-dev libgl1-mesa-dev
  # headless editor screenshots
  xvfb x11-utils libgl1-mesa-dri
  # the real-host check: Ardour 7 headless (ardour7-lua) with the VST3, scripts/ardour_check.py
  ardour
)
$corpus && packages+=(abcmidi freedoom pianobooster python3-venv)
$windows && packages+=(gcc-mingw-w64-x86-64-win32 wine64)
$cuda && packages+=(python3-venv g++)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
if $windows; then
  installed=$(rustup target list --installed)
  for t in x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
fi
if $corpus && [ ! -x target/corpus-venv/bin/python ]; then
  python3 -m venv target/corpus-venv
  target/corpus-venv/bin/pip install -q music21
fi
