#!/usr/bin/env bash
# macOS, type-checked here (CI runs this from scripts/test.sh): the plugin library and the CLI
# for Apple silicon, with and without the `metal` feature, and for Intel Macs. No Apple SDK is
# needed to check (frameworks are only linked at link time); linking, bundling and signing
# need a Mac (README, "Windows and macOS").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --windows   # the Rust targets (and the Windows tools, used beside this)
for check in "aarch64-apple-darwin" "aarch64-apple-darwin --features metal" "x86_64-apple-darwin"; do
  echo "cargo check --target $check"
  # shellcheck disable=SC2086
  cargo check --release --lib --bin continuo --target $check
done
