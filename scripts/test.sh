#!/usr/bin/env bash
# The test suite, exactly as CI runs it (.ci/run calls this script).
# Builds the whole workspace first: the end-to-end tests load the built
# plugins from the target folder, as a user's `augur` does.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --release --workspace --locked

# The plugin author's kit, end to end: `augur plugin new` scaffolds a crate
# that builds with the workspace, is listed by `augur plugins` and trains in
# a sweep. The scaffold (and the lock file entry it adds) is removed after.
scaffold=plugins/scaffold_check
work=$(mktemp -d)
cp Cargo.lock "$work/Cargo.lock"
cleanup() {
    rm -rf "$scaffold" "$target_dir"/release/libaugur_plugin_scaffold_check.so \
        "$target_dir"/release/deps/libaugur_plugin_scaffold_check.so
    cp "$work/Cargo.lock" Cargo.lock
    rm -rf "$work"
}
trap cleanup EXIT
"$target_dir/release/augur" plugin new scaffold_check
cargo build --release --workspace
# (Into a file first: `augur plugins | grep -q` would stop augur mid-listing.)
"$target_dir/release/augur" plugins > "$work/plugins.txt"
grep -q "method scaffold_check:" "$work/plugins.txt" \
    || { echo "error: the scaffolded plugin is not listed by augur plugins" >&2; cat "$work/plugins.txt" >&2; exit 1; }
cat > "$work/sweep.toml" <<'TOML'
name = "scaffold-check"
[base.data]
dataset = "synthetic"
image_size = 16
train_size = 64
test_size = 32
[base.model]
width = 4
blocks = [1, 1]
[base.method]
name = "scaffold_check"
proj_hidden = 32
proj_out = 16
[base.train]
steps = 4
batch_size = 16
lr = 0.1
[base.eval]
knn_k = 5
linear_epochs = 2
sensitivity_images = 16
TOML
"$target_dir/release/augur" run "$work/sweep.toml" --store "$work/runs.db" > "$work/run.log"
"$target_dir/release/augur" runs --store "$work/runs.db" --format json > "$work/runs.json"
grep -q '"status": "finished"' "$work/runs.json" \
    || { echo "error: the scaffolded plugin's run did not finish" >&2; cat "$work/run.log" >&2; exit 1; }
echo "scaffold check: augur plugin new -> build -> listed -> trained"
cleanup
trap - EXIT

# Tests that need a service skip where it cannot be had, saying so, and list
# themselves in this file, printed at the end; under CI (CI=true) a missing
# service fails the suite instead (store/src/services.rs).
export AUGUR_SKIP_LOG=$(mktemp)
under_ci() { [ "${CI:-}" = true ]; }
skipped_summary() {
    if [ -s "$AUGUR_SKIP_LOG" ]; then
        echo "skipped tests (a service they need was missing):"
        sed 's/^/  /' "$AUGUR_SKIP_LOG"
    else
        echo "skipped tests: none"
    fi
}
# Chromium is found on PATH by the names the browser test looks for
# (chromium, chromium-browser).
has_chromium() { command -v chromium > /dev/null || command -v chromium-browser > /dev/null; }

# The dashboard's browser test uses Debian's Chromium; install it where we can
# (root with apt), else that test skips, saying so.
if ! has_chromium && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing Debian's chromium for the dashboard's browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium > /tmp/augur-apt-chromium.log 2>&1 \
        || { apt-get update -q >> /tmp/augur-apt-chromium.log 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >> /tmp/augur-apt-chromium.log 2>&1; } \
        || echo "chromium could not be installed (see /tmp/augur-apt-chromium.log): the browser test will skip" >&2
fi
if under_ci && ! has_chromium; then
    echo "error: CI=true and no chromium on PATH (apt-get install chromium failed: /tmp/augur-apt-chromium.log); the browser test cannot run" >&2
    exit 1
fi

# Start a service with its script (scripts/postgres.sh, scripts/slurm.sh)
# in a fresh folder: export VARIABLE=what the script prints; where it cannot
# start, fail under CI, else let its tests skip, saying so.
start_service() { # NAME VARIABLE SCRIPT DIR
    local value
    if value=$("$3" start "$4"); then
        export "$2=$value"
        echo "$1: $value"
    elif under_ci; then
        echo "error: CI=true and $1 could not be started (the reason is above); its tests cannot run" >&2
        exit 1
    else
        echo "$1 could not be started: its tests will skip" >&2
    fi
}
# The store's PostgreSQL tests run against a throwaway server on loopback;
# `augur slurm`'s end-to-end test on a single-node Slurm on this machine.
pg=$(mktemp -d)
slurm=$(mktemp -d)
trap 'scripts/postgres.sh stop "$pg"; scripts/slurm.sh stop "$slurm"' EXIT
start_service PostgreSQL AUGUR_TEST_POSTGRES scripts/postgres.sh "$pg"
start_service Slurm SLURM_CONF scripts/slurm.sh "$slurm"

# The PyTorch venv (scripts/tch.sh makes it once, in ~/.cache/augur): the
# export round-trip test loads `augur export` files into PyTorch with it.
if python=$(scripts/tch.sh python -c "import sys; print(sys.executable)"); then
    export AUGUR_TEST_PYTHON=$python
elif under_ci; then
    echo "error: CI=true and the PyTorch venv could not be made (scripts/tch.sh, above); the export round-trip test cannot run" >&2
    exit 1
fi

cargo test --release --workspace --locked || { skipped_summary; exit 1; }
skipped_summary

# The libtorch (tch) build, last: it replaces the flex binaries in the target
# folder. scripts/tch.sh makes the PyTorch 2.9.0 venv on first use (outside the
# clone, ~/.cache/augur, so later runs reuse it); its devices test trains a
# sweep that names device = "tch-cpu" through `augur run`.
export CARGO_TARGET_DIR=$target_dir
scripts/tch.sh cargo build --release --workspace --locked --features augur/tch
scripts/tch.sh cargo test --release -p augur -p augur-train --locked --features augur/tch --test devices --lib
