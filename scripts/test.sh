#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end tests (train -> export ->
# runtime inspect) on the embedded data. Extra arguments go to the test binaries.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/install.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
say "building and running the test suite (first build takes 15-25 min on 2 cores)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# With the optional ONNX Runtime engine (cargo feature `onnxruntime`, off in a plain cargo build)
# so that its parity test against tract runs, with the library of the onnxruntime wheel in .venv/
# (ORT_DYLIB_PATH, env.sh). demo.sh and cross.sh's host build use the same features: one build.
cargo test --workspace --features runtime/onnxruntime --no-fail-fast -- --test-threads=1 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries (cargo prints one per binary, doc-tests last).
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "total: $passed passed, $failed failed"
exit "$status"
