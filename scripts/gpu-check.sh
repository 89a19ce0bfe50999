#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md, on a machine with a CUDA GPU and PyTorch:
#
#   scripts/gpu-check.sh BIN_DIR PYTHON [TRAIN_SECONDS] [CIFAR_TARBALL]
#
# BIN_DIR: a tch build of augur (`augur`, libaugur_core.so, the plugins and
# the Rust libstd next to each other), linked against the libtorch of
# PYTHON's torch (scripts/tch.sh builds one; AUGUR_LIBTORCH for another
# PyTorch version). It prints the GPU, then `augur bench` on cuda:0 against
# the PyTorch reference on the same GPU, then pretrains SimCLR on CIFAR-10 for
# about TRAIN_SECONDS (default 240; the epochs follow from the measured
# throughput) and prints the run's evaluations and wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "$1" && pwd); python=$2; budget=${3:-240}; tarball=${4:-../shared/datasets/cifar10-jpg.tar.gz}
torch_lib=$("$python" -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH="$torch_lib:$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
augur() { "$bin/augur" --plugins "$bin" "$@"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c "import torch; print('PyTorch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())"
nproc

echo "== augur bench on cuda:0 against PyTorch on the same GPU (fp32 paths, then bf16 under autocast)"
augur bench --device cuda:0 --pytorch "$python" --steps 20 --bf16 | tee /tmp/gpu-bench.txt
echo "== the same at batch 256 (issue 14's second CUDA case), default path and bf16"
augur bench --device cuda:0 --pytorch "$python" --steps 20 --bf16 --batch 256 --default-only
augur bench --device tch-cpu --skip-resnet18 --pytorch "$python" --steps 10

echo "== SimCLR on CIFAR-10 (ResNet-18, batch 256) for about ${budget}s of training"
[ -d data/cifar10/train ] || scripts/get-cifar10.sh "$tarball"
# The default path's step images/s: case, "+sgd", "(default)", params, batch, step img/s.
ips=$(awk '$1 == "resnet18-cifar" && $3 == "(default)" {print $6}' /tmp/gpu-bench.txt)
epochs=$(awk -v ips="$ips" -v s="$budget" 'BEGIN { e = int(s * ips / 100000); print (e < 1 ? 1 : e) }')
echo "ResNet-18 step throughput ${ips} img/s: ${epochs} epochs"
sed "s/^epochs = .*/epochs = $epochs/" experiments/cifar10-simclr-gpu-short.toml > /tmp/cifar10-simclr-gpu-short.toml
store=${GPU_CHECK_STORE:-/tmp/gpu-check.db}
rm -f "$store" "$store"-wal "$store"-shm
start=$(date +%s)
augur run /tmp/cifar10-simclr-gpu-short.toml --store "$store"
echo "wall time $(( $(date +%s) - start )) s for ${epochs} epochs, evaluations included"
