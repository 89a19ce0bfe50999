#!/usr/bin/env bash
# The one way to build or run Augur with the libtorch (tch) backend.
#
#   scripts/tch.sh cargo build --release --workspace --features augur/tch
#   scripts/tch.sh target/tch/release/augur run sweep.toml      # device = "tch-cpu" / "cuda:0" / "auto"
#   scripts/tch.sh python scripts/reference/bench_step.py ...   # PyTorch from the same venv
#
# It makes (once) a venv with PyTorch 2.9.0 from PyPI, the version burn-tch
# 0.22.1 links against, then runs the command with what torch-sys needs:
# LIBTORCH_USE_PYTORCH=1 (take libtorch from that venv; without it a cargo
# call tries to download libtorch and fails) and torch/lib on the library
# path for the built binaries. Cargo builds go to target/tch unless
# CARGO_TARGET_DIR is set, so flex and tch builds do not invalidate each other.
#
# AUGUR_TORCH_VENV: where the venv lives (default ~/.cache/augur/torch-2.9.0,
# outside the clone, so CI reuses it; a cold run creates it: ~4 GB, the CUDA
# build of PyTorch, which also serves the CPU).
#
# AUGUR_LIBTORCH: instead of the venv, an unpacked libtorch (a folder with
# include/ and lib/, e.g. the torch/ folder of another PyTorch wheel) to build
# against, for a machine whose PyTorch is another version (its libraries are
# the ones the binary loads there). tch 0.22 is written for 2.9.0, so the
# version check is bypassed; what is measured that way says which version ran.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${AUGUR_LIBTORCH:-}" ]; then
    [ -d "$AUGUR_LIBTORCH/include" ] && [ -d "$AUGUR_LIBTORCH/lib" ] \
        || { echo "error: AUGUR_LIBTORCH=$AUGUR_LIBTORCH has no include/ and lib/ folders" >&2; exit 1; }
    export LIBTORCH=$AUGUR_LIBTORCH LIBTORCH_BYPASS_VERSION_CHECK=1 LIBTORCH_CXX11_ABI=1
    export LD_LIBRARY_PATH="$AUGUR_LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/tch-libtorch}
    exec "$@"
fi

torch_version=2.9.0
torchvision_version=0.24.0
# safetensors: the round-trip test and the README's snippet load `augur export`'s files with it.
safetensors_version=0.8.0
# timm: the ViT parity reference (its vit_small_patch16_224 on Augur's exported weights).
timm_version=1.0.31
venv=${AUGUR_TORCH_VENV:-$HOME/.cache/augur/torch-$torch_version}

if [ $# -eq 0 ]; then
    echo "usage: scripts/tch.sh COMMAND [ARGS...]   (e.g. cargo build --release --workspace --features augur/tch)" >&2
    exit 2
fi

installed() {
    "$venv/bin/python" -c "import torch, torchvision, safetensors, timm, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version' or timm.__version__ != '$timm_version')" 2> /dev/null
}
if ! installed; then
    echo "scripts/tch.sh: installing PyTorch $torch_version, torchvision $torchvision_version, safetensors $safetensors_version and timm $timm_version from PyPI into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "torch==$torch_version" "torchvision==$torchvision_version" "safetensors==$safetensors_version" "timm==$timm_version"
    installed || { echo "error: PyTorch $torch_version did not install into $venv" >&2; exit 1; }
fi

torch_lib=$("$venv/bin/python" -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LIBTORCH_USE_PYTORCH=1
export PATH="$venv/bin:$PATH"                       # torch-sys asks `python3` where torch is
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/tch}
exec "$@"
