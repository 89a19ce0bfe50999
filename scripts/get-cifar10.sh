#!/usr/bin/env bash
# Unpack the CIFAR-10 image folder shipped beside the project (../shared/datasets)
# into data/cifar10 (git-ignored), for experiments/cifar10-cpu.toml.
# A user with the official cifar-10-batches-bin can point data.path at it instead.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/datasets/cifar10-jpg.tar.gz}
if [ ! -f "$src" ]; then
    echo "error: $src not found; pass the path of cifar10-jpg.tar.gz, or point data.path at your own CIFAR-10" >&2
    exit 1
fi
mkdir -p data/cifar10
tar xzf "$src" -C data/cifar10
echo "CIFAR-10 unpacked into data/cifar10 ($(find data/cifar10/train -name '*.jpg' | wc -l) train images)"
