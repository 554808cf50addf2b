#!/usr/bin/env bash
# Set up, then run every test. The plugin tests load the bundle built here with
# `assert_process_allocs`, which aborts on any allocation inside process(). Then the Windows
# build under Wine, the macOS checks, the release packages and the CUDA build
# (scripts/windows.sh, scripts/macos_check.sh, scripts/release.sh, scripts/cuda_build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo xtask bundle continuo --features assert_process_allocs
# The host tests mostly wait in real time for the worker, so run more of them at once.
status=0
cargo test --no-fail-fast --features assert_process_allocs -- --test-threads=8 || status=$?
# A real host: Ardour 7 headless with the same VST3 bundle (bar-line start, 3/4, loops, every
# note-off), after the cargo tests so that a failure of either still runs the other.
python3 scripts/ardour_check.py --bundle target/bundled/Continuo.vst3 || status=$?
# Other platforms, after the Linux checks (the Windows bundle shares target/bundled/ while it
# is built): Windows cross-built and checked under Wine, macOS type-checked, then the release
# zips for Linux and Windows.
bash scripts/windows.sh || status=$?
bash scripts/macos_check.sh || status=$?
bash scripts/release.sh || status=$?
# The GPU build, without a GPU: candle's CUDA kernels compiled by nvcc from PyPI, the binary
# linked against the CUDA 13.0 libraries (scripts/cuda_build.sh).
bash scripts/cuda_build.sh || status=$?
exit $status
