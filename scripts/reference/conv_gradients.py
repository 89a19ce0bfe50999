"""A convolution's gradients on libtorch three ways, on ResNet-18's (CIFAR
stem) layers at batch 256, fp32, as many intra-op threads as given (default
2), ms per forward + backward:

- native: autograd's own backward (aten::convolution_backward: oneDNN on the
  CPU, cuDNN on CUDA), what PyTorch runs, and what Augur's libtorch path
  calls directly since session 10 (core/src/fused/native.cpp);
- burn generic: what burn 0.22's generic gradients ask of libtorch (the input
  gradient as a transposed convolution, the weight gradient as a convolution
  of the batch-transposed input with the batch-transposed output gradient);
- tape: Augur's libtorch path of session 9 (core/src/fused/tape.rs, gone
  since): the forward on tracking leaves, the backward seeded through the dot
  product <output, grad>.

    ~/.cache/augur/torch-2.9.0/bin/python scripts/reference/conv_gradients.py [threads]
"""
import sys

import torch
import torch.nn.functional as F

import timing  # scripts/reference/timing.py

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
BATCH, REPEATS = 256, 3
# (cin, cout, input size, kernel, stride): ResNet-18's distinct layers, CIFAR stem, 32 px.
LAYERS = [(64, 64, 32, 3, 1), (64, 128, 32, 3, 2), (128, 128, 16, 3, 1), (128, 256, 16, 3, 2),
          (256, 256, 8, 3, 1), (256, 512, 8, 3, 2), (512, 512, 4, 3, 1), (64, 128, 32, 1, 2)]


def millis(f):
    return timing.millis(f, REPEATS)


print(f"PyTorch {torch.__version__}: batch {BATCH}, {torch.get_num_threads()} threads, ms per forward + backward")
print("layer                      native  burn generic  tape   generic/native  tape/native")
totals = [0.0, 0.0, 0.0]
for cin, cout, size, k, stride in LAYERS:
    x, w, pad = torch.randn(BATCH, cin, size, size), torch.randn(cout, cin, k, k) * 0.1, k // 2
    y = F.conv2d(x, w, stride=stride, padding=pad)
    dy = torch.randn_like(y)

    def native():
        xl, wl = x.detach().requires_grad_(), w.detach().requires_grad_()
        torch.autograd.grad(F.conv2d(xl, wl, stride=stride, padding=pad), (xl, wl), dy)

    def generic():
        F.conv2d(x, w, stride=stride, padding=pad)
        output_padding = (size + 2 * pad - k) - (y.shape[2] - 1) * stride
        F.conv_transpose2d(dy, w, stride=stride, padding=pad, output_padding=output_padding)
        F.conv2d(x.transpose(0, 1), dy.transpose(0, 1), padding=pad, dilation=stride).transpose(0, 1)

    def tape():
        xl, wl = x.detach().requires_grad_(), w.detach().requires_grad_()
        out = F.conv2d(xl, wl, stride=stride, padding=pad)
        torch.autograd.grad(out.flatten().dot(dy.flatten()), (xl, wl))

    t = [millis(native), millis(generic), millis(tape)]
    totals = [a + b for a, b in zip(totals, t)]
    name = f"{cin}->{cout} {size}px k{k} s{stride}"
    print(f"{name:<26} {t[0]:7.1f} {t[1]:12.1f} {t[2]:7.1f} {t[1] / t[0]:12.2f}x {t[2] / t[0]:11.2f}x", flush=True)
t = totals
print(f"{'all eight':<26} {t[0]:7.1f} {t[1]:12.1f} {t[2]:7.1f} {t[1] / t[0]:12.2f}x {t[2] / t[0]:11.2f}x")
