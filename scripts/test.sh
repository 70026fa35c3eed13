#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end tests (train -> export ->
# runtime inspect) on the embedded data.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
say "building and running the test suite (first build takes ~15 min on 2 cores)"
cargo test --workspace -- --test-threads=1 "$@"
