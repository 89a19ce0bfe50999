#!/usr/bin/env bash
# The test suite, exactly as CI runs it (.ci/run calls this script).
# Builds the whole workspace first: the end-to-end tests load the built
# plugins from target/release, as a user's `augur` does.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --locked
cargo test --release --workspace --locked
