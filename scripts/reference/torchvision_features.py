"""Loads an `augur export` file into a ResNet with torchvision's layout, by
PyTorch's `load_state_dict(strict=True)`, and writes its eval-mode features
on a batch, for runner/tests/interop.rs to compare with Augur's own:

    python scripts/reference/torchvision_features.py WEIGHTS.safetensors BATCH_DIR

BATCH_DIR holds `images.f32` (float32, little-endian, row-major) and
`images.json` (`{"shape": [n, 3, h, w]}`); the features go to
`torch_features.f32` there, and the loaded weights back out as PyTorch
checkpoints for `augur import` to read: `torch.pth` (the state dict) and
`solo.ckpt` (solo-learn's form: `state_dict` with `backbone.` keys beside a
projector's). A file whose `arch` torchvision names (`resnet18` ...
`resnet152`) loads into torchvision's own model (`fc` replaced by the
identity; the CIFAR stem as solo-learn makes it: a 3x3 stride-1 `conv1`, no
max-pool); another shape is built from the metadata (`width`, `blocks`,
`block`, `stem`) out of torchvision's `BasicBlock` or `Bottleneck`.
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from common import features_on_batch  # scripts/reference/common.py


class TorchvisionLayoutResNet(nn.Module):
    """torchvision's ResNet (BasicBlock or Bottleneck) with any width and blocks per stage."""

    def __init__(self, width, blocks, cifar_stem, block=BasicBlock):
        super().__init__()
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = width
        self.stages = len(blocks)
        for i, n in enumerate(blocks):
            planes = width << i
            out = planes * block.expansion
            layers = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                downsample = None
                if stride != 1 or inplanes != out:
                    downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
                layers.append(block(inplanes, planes, stride, downsample))
                inplanes = out
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)


def main(weights, batch_dir):
    with safe_open(weights, framework="pt") as f:
        meta = f.metadata()
    state = load_file(weights)
    width, blocks = int(meta["width"]), json.loads(meta["blocks"])
    cifar = meta["stem"].startswith("cifar")
    if meta["arch"] in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        net = getattr(torchvision.models, meta["arch"])()
        net.fc = nn.Identity()
        if cifar:
            net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
    else:
        block = Bottleneck if meta.get("block") == "bottleneck" else BasicBlock
        net = TorchvisionLayoutResNet(width, blocks, cifar, block)
    net.load_state_dict(state, strict=True)
    batch_dir = Path(batch_dir)
    features = features_on_batch(net, batch_dir)
    solo = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    solo["projector.0.weight"] = torch.zeros(8, features.shape[1])
    torch.save({"state_dict": solo, "epoch": 1}, batch_dir / "solo.ckpt")
    print(f"{meta['arch']} ({meta['stem'].split(':')[0]} stem), {len(state)} tensors loaded strictly; features {tuple(features.shape)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
