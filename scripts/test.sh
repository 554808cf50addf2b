#!/usr/bin/env bash
# Set up, then run every test. The plugin tests load the bundle built here with
# `assert_process_allocs`, which aborts on any allocation inside process().
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo xtask bundle continuo --features assert_process_allocs
# The host tests mostly wait in real time for the worker, so run more of them at once.
cargo test --no-fail-fast --features assert_process_allocs -- --test-threads=8
