"""The evaluation cross-check of issue 20: a backbone trained in PyTorch,
evaluated by this script's own kNN and by Augur's, on the same images.

    scripts/tch.sh python scripts/reference/simclr_knn.py --data data/cifar10 --out /tmp/xcheck
    target/release/augur import /tmp/xcheck/simclr_resnet18.pth --arch resnet18 --stem cifar --name torch-simclr --store xcheck.db
    target/release/augur eval torch-simclr --protocol knn --k 200 --temperature 0.1 --dataset /tmp/xcheck/eval --store xcheck.db

1. Writes the evaluation folder OUT/eval as PNG (lossless, so both sides
   decode the same pixels): train/ holds the first --bank-per-class images
   of each class of DATA/train (sorted by file name), test/ all of DATA/test.
2. Trains SimCLR (torchvision's ResNet-18 with the CIFAR stem: 3x3 conv1,
   no max-pool; a 512-2048-128 projector; NT-Xent at temperature 0.2; the
   SimCLR CIFAR augmentations; SGD, cosine) on --train-images images of
   DATA/train for --epochs epochs, and saves the backbone's state dict
   (torchvision's names, no fc) as OUT/simclr_resnet18.pth.
3. Evaluates it as Augur's `knn` protocol does, with solo-learn's weighted
   kNN: eval-mode features of images normalised by the per-channel mean
   and std of the evaluation folder's train images, L2-normalised; for each
   test image the k = 200 most cosine-similar train images vote for their
   class with weight exp(similarity / 0.1); top-1 accuracy.
"""
import argparse
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
from PIL import Image

from common import files_of, nt_xent, weighted_knn, write_png_subset  # scripts/reference/common.py


def backbone():
    net = torchvision.models.resnet18()
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def write_eval_folder(data, out, per_class):
    write_png_subset(data, out, {"train": per_class, "test": None})


def load_folder(split_dir):
    classes, files = files_of(split_dir)
    images, labels = [], []
    for label, c in enumerate(classes):
        for f in files[c]:
            images.append(np.asarray(Image.open(f).convert("RGB")))
            labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0, torch.tensor(labels)


def train(data, n_images, epochs, batch, seed):
    torch.manual_seed(seed)
    random.seed(seed)
    _, files = files_of(data / "train")
    pool = [f for fs in files.values() for f in fs]
    chosen = random.sample(pool, n_images)
    pil = [Image.open(f).convert("RGB") for f in chosen]
    augment = T.Compose([
        T.RandomResizedCrop(32, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
    ])
    net = backbone()
    projector = nn.Sequential(nn.Linear(512, 2048), nn.BatchNorm1d(2048), nn.ReLU(), nn.Linear(2048, 128))
    params = list(net.parameters()) + list(projector.parameters())
    steps = epochs * (n_images // batch)
    opt = torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    projector.train()
    start, step = time.time(), 0
    for epoch in range(epochs):
        order = torch.randperm(n_images).tolist()
        for b in range(n_images // batch):
            idx = order[b * batch:(b + 1) * batch]
            v1 = torch.stack([augment(pil[i]) for i in idx])
            v2 = torch.stack([augment(pil[i]) for i in idx])
            loss = nt_xent(projector(net(v1)), projector(net(v2)), 0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 10 == 0 or step == steps:
                print(f"step {step}/{steps} loss {loss.item():.3f} ({time.time() - start:.0f} s)", flush=True)
    return net


def features(net, images, mean, std, batch=256):
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = (images[i:i + batch] - mean[None, :, None, None]) / std[None, :, None, None]
            out.append(net(x))
    return torch.cat(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-images", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--bank-per-class", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    eval_dir = a.out / "eval"
    if not (eval_dir / "test").exists():
        write_eval_folder(a.data, eval_dir, a.bank_per_class)
    weights = a.out / "simclr_resnet18.pth"
    if weights.exists():
        net = backbone()
        net.load_state_dict(torch.load(weights), strict=True)
    else:
        net = train(a.data, a.train_images, a.epochs, a.batch, a.seed)
        torch.save(net.state_dict(), weights)
    train_x, train_y = load_folder(eval_dir / "train")
    test_x, test_y = load_folder(eval_dir / "test")
    # Per-channel mean and population std of the train images, as Augur's data loader computes them.
    mean = train_x.mean(dim=(0, 2, 3))
    std = (train_x.pow(2).mean(dim=(0, 2, 3)) - mean.pow(2)).clamp_min(1e-8).sqrt()
    acc = weighted_knn(features(net, train_x, mean, std), train_y, features(net, test_x, mean, std), test_y, int(train_y.max()) + 1, 200, 0.1)
    print(f"PyTorch kNN (k 200, T 0.1): {100 * acc:.2f}% top-1 on {len(test_y)} test images, bank of {len(train_y)}; weights {weights}")


if __name__ == "__main__":
    main()
