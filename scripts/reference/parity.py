"""Training parity (issue 35): the same recipe trained by PyTorch (this script,
torchvision's transforms) and by Augur (experiments/parity-cifar10.toml),
evaluated by the same weighted kNN, 3 seeds each. docs/benchmarks.md,
"Training parity with PyTorch", has the table and the commands:

    scripts/get-cifar10.sh
    scripts/tch.sh python scripts/reference/parity.py prepare --data data/cifar10 --out data/parity
    for m in simclr byol; do for s in 0 1 2; do
        scripts/tch.sh python scripts/reference/parity.py train --method $m --seed $s --folder data/parity
    done; done
    target/release/augur run experiments/parity-cifar10.toml --store parity.db

`prepare` writes a CIFAR-10 subset as PNG (lossless, so both sides decode the
same pixels): the first 250 training images of each class (file names
sorted) and the first 100 test images of each class. Both sides train on
all of train/ and evaluate on test/ with train/ as the kNN bank.

What `train` mirrors of Augur, point by point (each Augur item named):
- backbone: torchvision's resnet18 layout with the CIFAR stem (3x3 conv1,
  no max-pool) at half width (`--width 32`: 32-64-128-256 channels, 2.8M
  parameters; `--width 64` is resnet18 itself, four times the compute, which
  a 2-core CPU cannot spend on 12 runs), torchvision's init
  (`model.init = "torchvision"`), no zero-initialised residuals;
- SimCLR: the authors' head (`heads::simclr_projector`: bias-free Linear
  drawn from N(0, 0.01^2), BN, ReLU, bias-free Linear, BN that scales only),
  NT-Xent over the 2n views at temperature 0.2;
  BYOL: `heads::byol_projector` / `byol_predictor` (Linear-BN-ReLU-Linear),
  target copied at the first step and moved after each step with momentum
  1 - (1 - 0.99) (cos(pi k / K) + 1) / 2, loss 2 - 2 cos summed over both
  directions;
- augmentations: solo-learn's recipes as Augur names them, `solo-symmetric`
  for SimCLR and `solo-asymmetric` for BYOL (bicubic RandomResizedCrop
  0.08-1, jitter, grayscale, PIL's GaussianBlur, PIL's solarize, flip),
  normalised by the training images' per-channel mean and population std;
- SGD (momentum 0.9, weight decay 5e-4 on every parameter), linear warmup
  over 10 steps to lr 0.3 then cosine to zero, per step; batch 128, last
  partial batch dropped, a new permutation each epoch; 4 epochs (76 steps);
- kNN as Augur's `knn` protocol: eval-mode features, L2-normalised, the
  k = 20 most similar bank images vote with weight exp(sim / 0.1).
"""
import argparse
import copy
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from PIL import Image, ImageFilter, ImageOps

from common import files_of, nt_xent, weighted_knn, write_png_subset  # scripts/reference/common.py


def prepare(data, out, train_per_class, test_per_class):
    write_png_subset(data, out, {"train": train_per_class, "test": test_per_class})
    print(f"wrote {out}: {train_per_class} train and {test_per_class} test images per class")


def load_split(split_dir):
    classes, files = files_of(split_dir)
    images, labels = [], []
    for label, c in enumerate(classes):
        for f in files[c]:
            images.append(Image.open(f).convert("RGB"))
            labels.append(label)
    return images, torch.tensor(labels)


class PilBlur:
    """solo-learn's GaussianBlur: PIL's filter with the radius drawn in [0.1, 2]."""

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


class Solarize:
    def __call__(self, img):
        return ImageOps.solarize(img)


def recipe(method, mean, std):
    """solo-learn's pipeline (solo/data/pretrain_dataloader.py) for the
    method's recipe: one transform per view."""
    def view(jitter, blur_p, solarize_p):
        steps = [
            T.RandomResizedCrop(32, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomApply([T.ColorJitter(*jitter)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
        if blur_p:
            steps.append(T.RandomApply([PilBlur()], p=blur_p))
        if solarize_p:
            steps.append(T.RandomApply([Solarize()], p=solarize_p))
        steps += [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
        return T.Compose(steps)

    if method == "simclr":  # solo-symmetric
        v = view((0.8, 0.8, 0.8, 0.2), 0.5, 0.0)
        return v, v
    # byol: solo-asymmetric
    return view((0.4, 0.4, 0.2, 0.1), 0.0, 0.0), view((0.4, 0.4, 0.2, 0.1), 0.0, 0.2)


class ResNet18(torchvision.models.resnet.ResNet):
    """torchvision's ResNet-18 with its stage widths scaled: `width` 64 is
    resnet18 itself."""

    def __init__(self, width):
        self.width = width
        super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # layer1: the stem gives `width` channels, not 64
            self.inplanes = self.width
        return super()._make_layer(block, planes * self.width // 64, blocks, stride, dilate)


def backbone(width):
    net = ResNet18(width)
    net.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def simclr_head(dim, hidden, out):
    layers = [nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out)]
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
    layers[-1].bias.requires_grad_(False)  # the last norm scales only
    return nn.Sequential(*layers)


def mlp(dim, hidden, out):
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out))


def byol_loss(p, z):
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def learning_rate(peak, step, warmup, total):
    """Augur's `pretrain::learning_rate`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def train(method, images, mean, std, epochs, batch, lr, seed, width, at_init):
    """The trained backbone; `at_init(net)` is called on the initial one
    first (eval mode draws nothing, so the training that follows is the same)."""
    torch.manual_seed(seed)
    random.seed(seed)
    t1, t2 = recipe(method, mean, std)
    net = backbone(width)
    at_init(net)
    if epochs == 0:
        return net
    dim = 8 * width
    if method == "simclr":
        projector, predictor = simclr_head(dim, 2048, 128), None
        modules = [net, projector]
    else:
        projector, predictor = mlp(dim, 4096, 256), mlp(256, 4096, 256)
        modules = [net, projector, predictor]
        target_net, target_projector = copy.deepcopy(net), copy.deepcopy(projector)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    per_epoch = len(images) // batch
    total = epochs * per_epoch
    for m in modules:
        m.train()
    start, step = time.time(), 0
    for _ in range(epochs):
        order = torch.randperm(len(images)).tolist()
        for b in range(per_epoch):
            idx = order[b * batch:(b + 1) * batch]
            x1 = torch.stack([t1(images[i]) for i in idx])
            x2 = torch.stack([t2(images[i]) for i in idx])
            for g in opt.param_groups:
                g["lr"] = learning_rate(lr, step, 10, total)
            if method == "simclr":
                loss = nt_xent(projector(net(x1)), projector(net(x2)), 0.2)
            else:
                p1, p2 = predictor(projector(net(x1))), predictor(projector(net(x2)))
                with torch.no_grad():
                    z1, z2 = target_projector(target_net(x1)), target_projector(target_net(x2))
                loss = byol_loss(p1, z2) + byol_loss(p2, z1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if method == "byol":
                tau = 1 - (1 - 0.99) * (math.cos(math.pi * step / total) + 1) / 2
                with torch.no_grad():
                    for online, target in ((net, target_net), (projector, target_projector)):
                        # Parameters only: the target's batch-norm statistics are its own (train mode).
                        for po, pt in zip(online.parameters(), target.parameters()):
                            pt.mul_(tau).add_(po, alpha=1 - tau)
            step += 1
            if step % 20 == 0 or step == total:
                print(f"step {step}/{total} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    return net


def features(net, images, mean, std, batch=256):
    to_tensor = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(net(torch.stack([to_tensor(im) for im in images[i:i + batch]])))
    return torch.cat(out)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("prepare")
    pre.add_argument("--data", type=Path, required=True)
    pre.add_argument("--out", type=Path, required=True)
    pre.add_argument("--train-per-class", type=int, default=250)
    pre.add_argument("--test-per-class", type=int, default=100)
    tr = sub.add_parser("train")
    tr.add_argument("--method", choices=["simclr", "byol"], required=True)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--folder", type=Path, required=True)
    tr.add_argument("--epochs", type=int, default=4, help="0: only the random-init figure")
    tr.add_argument("--width", type=int, default=32)
    tr.add_argument("--batch", type=int, default=128)
    tr.add_argument("--lr", type=float, default=0.3)
    a = p.parse_args()
    if a.command == "prepare":
        prepare(a.data, a.out, a.train_per_class, a.test_per_class)
        return
    train_images, train_y = load_split(a.folder / "train")
    test_images, test_y = load_split(a.folder / "test")
    pixels = torch.stack([T.functional.to_tensor(im) for im in train_images])
    # Per-channel mean and population std of the training images, as Augur's data loader computes them.
    mean = pixels.mean(dim=(0, 2, 3))
    std = (pixels.pow(2).mean(dim=(0, 2, 3)) - mean.pow(2)).clamp_min(1e-8).sqrt()
    mean, std = mean.tolist(), std.tolist()
    start = time.time()

    def knn(net):
        return 100 * weighted_knn(features(net, train_images, mean, std), train_y, features(net, test_images, mean, std), test_y, int(train_y.max()) + 1, 20, 0.1)

    def at_init(net):
        print(f"parity {a.method} seed {a.seed}: random init kNN (k 20, T 0.1) {knn(net):.2f}%", flush=True)

    net = train(a.method, train_images, mean, std, a.epochs, a.batch, a.lr, a.seed, a.width, at_init)
    if a.epochs > 0:
        print(f"parity {a.method} seed {a.seed}: kNN (k 20, T 0.1) {knn(net):.2f}% top-1 on {len(test_y)} test images, bank {len(train_y)}; {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
