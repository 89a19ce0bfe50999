"""PyTorch's convolution on the quickstart model's layers, forward and both
gradients, fp32 eager on as many intra-op threads as given (default 2): the
reference for `cargo bench --workspace --bench conv`.

    ~/.cache/augur/torch-2.9.0/bin/python scripts/reference/bench_conv.py [threads]
"""
import sys

import torch

import timing  # scripts/reference/timing.py

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
BATCH, REPEATS = 256, 5
# (cin, cout, input size, kernel, stride): as core/benches/conv.rs.
LAYERS = [(3, 16, 24, 3, 1), (16, 16, 24, 3, 1), (16, 32, 24, 3, 2), (32, 32, 12, 3, 1), (16, 32, 24, 1, 2),
          (32, 64, 12, 3, 2), (64, 64, 6, 3, 1), (64, 128, 6, 3, 2), (128, 128, 3, 3, 1)]


def millis(f):
    return timing.millis(f, REPEATS)


def backward(x, w, dy, stride, pad, mask):
    # What autograd calls for a convolution's input / weight gradient.
    return torch.ops.aten.convolution_backward(dy, x, w, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, mask)


print(f"PyTorch {torch.__version__} conv: batch {BATCH}, {torch.get_num_threads()} threads, ms per call")
total = [0.0, 0.0, 0.0]
for cin, cout, size, k, stride in LAYERS:
    x, w = torch.randn(BATCH, cin, size, size), torch.randn(cout, cin, k, k)
    pad = k // 2
    dy = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
    times = [
        millis(lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)),
        millis(lambda: backward(x, w, dy, stride, pad, [True, False, False])),
        millis(lambda: backward(x, w, dy, stride, pad, [False, True, False])),
    ]
    total = [t + v for t, v in zip(total, times)]
    print(f"{cin:>3}->{cout:<3} {size:>2}px k{k} s{stride}  forward {times[0]:6.2f}  input grad {times[1]:6.2f}  weight grad {times[2]:6.2f}")
print(f"all layers        forward {total[0]:6.1f}  input grad {total[1]:6.1f}  weight grad {total[2]:6.1f}")
