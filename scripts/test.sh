#!/usr/bin/env bash
# Set up, then run every test. The plugin tests load the bundle built here with
# `assert_process_allocs`, which aborts on any allocation inside process().
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
exit $status
