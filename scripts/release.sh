#!/usr/bin/env bash
# Release packages for Linux and Windows (CI builds both from scripts/test.sh):
#   target/release-packages/Continuo-<version>-{linux,windows}-x86_64.zip and SHA256SUMS
# Builds the Linux release bundles and CLI, the Windows ones (scripts/windows.sh, which also
# checks them under Wine) unless target/windows/ holds them already, then zips
# (scripts/package.py lists each zip's contents).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo xtask bundle continuo --release
cargo build --release --bin continuo
if [ ! -f target/windows/Continuo.clap ] || [ ! -f target/windows/continuo.exe ]; then
  bash scripts/windows.sh
fi
python3 scripts/package.py --version "$version"
