"""PyTorch reference for `augur bench --pytorch`: the same SimCLR pretraining
step as Augur's (same ResNet, projector, NT-Xent, SGD with momentum and weight
decay, batch), timed the same way, printed as one JSON line.

The model mirrors core/src/backbone/resnet.rs and the simclr plugin: a CIFAR
stem (3x3 conv, BN, ReLU, no max-pool) or the ImageNet stem (7x7 stride 2,
BN, ReLU, 3x3 stride 2 max-pool), basic or bottleneck blocks (torchvision's
v1.5: stride on the 3x3) with a 1x1 conv + BN shortcut where the shape
changes, global average pooling; projector Linear-BN-ReLU-Linear.

    python scripts/reference/bench_step.py --device cpu --width 64 --blocks 2 2 2 2 --batch 128
    python scripts/reference/bench_step.py --block bottleneck --stem imagenet --blocks 3 4 6 3 --image-size 224 --batch 16
    python scripts/reference/bench_step.py --arch vit --width 384 --depth 12 --heads 6 --patch 16 --image-size 224 --batch 8

`--arch vit` trains timm's `VisionTransformer` (class-token features, no
head) in place of the ResNet, as core/src/backbone/vit.rs mirrors it.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class DecomposedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm out of tensor operations, the way burn 0.22 computes it on
    backends without a fused kernel (burn-tch among them): channels moved to
    the front and flattened (a copy), mean, centre, variance, normalise. For
    attributing the Augur/PyTorch gap (`--bn decomposed`), not for training."""

    def forward(self, x):
        c = x.shape[1]
        mean = x.transpose(0, 1).reshape(c, -1).mean(1).view(1, c, 1, 1)
        centered = x - mean
        var = (centered * centered).transpose(0, 1).reshape(c, -1).mean(1).view(1, c, 1, 1)
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(mean.flatten(), alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var.flatten(), alpha=self.momentum)
        scale = (self.weight.view(1, c, 1, 1) / torch.sqrt(var + self.eps))
        return centered * scale + self.bias.view(1, c, 1, 1)


BatchNorm2d = nn.BatchNorm2d


def projection(cin, cout, stride):
    """The shortcut's 1x1 conv + BN where the shape changes, else None."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.shortcut = projection(cin, width, stride)

    def residual(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.residual(x) + identity)


class Bottleneck(BasicBlock):
    """torchvision's v1.5 bottleneck: 1x1 down, 3x3 with the stride, 1x1 up to 4x."""
    expansion = 4

    def __init__(self, cin, width, stride):
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(cin, width, 1, 1, 0, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, 1, 0, bias=False)
        self.bn3 = BatchNorm2d(width * 4)
        self.shortcut = projection(cin, width * 4, stride)

    def residual(self, x):
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.bn3(self.conv3(out))



class ResNet(nn.Module):
    def __init__(self, width, blocks, block="basic", stem="cifar"):
        super().__init__()
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), BatchNorm2d(width), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), BatchNorm2d(width), nn.ReLU())
        kind = Bottleneck if block == "bottleneck" else BasicBlock
        layers, cin = [], width
        for i, n in enumerate(blocks):
            for b in range(n):
                layers.append(kind(cin, width << i, 2 if i > 0 and b == 0 else 1))
                cin = (width << i) * kind.expansion
        self.layers = nn.Sequential(*layers)
        self.feature_dim = cin

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)


def vision_transformer(a):
    """timm's ViT of the given shape, its features the class token after the final norm."""
    from timm.models.vision_transformer import VisionTransformer
    net = VisionTransformer(img_size=a.image_size, patch_size=a.patch, embed_dim=a.width, depth=a.depth,
                            num_heads=a.heads, num_classes=0, global_pool="token")
    net.feature_dim = a.width
    return net


def nt_xent(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    p.add_argument("--arch", choices=["resnet", "vit"], default="resnet")
    p.add_argument("--width", type=int, default=64, help="a ResNet's first stage width, a ViT's embedding width")
    p.add_argument("--depth", type=int, default=12, help="ViT blocks")
    p.add_argument("--heads", type=int, default=6, help="ViT attention heads")
    p.add_argument("--patch", type=int, default=16, help="ViT patch side")
    p.add_argument("--blocks", type=int, nargs="+", default=[2, 2, 2, 2])
    p.add_argument("--block", choices=["basic", "bottleneck"], default="basic")
    p.add_argument("--stem", choices=["cifar", "imagenet"], default="cifar")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--proj-hidden", type=int, default=0, help="0: the backbone's feature dimension")
    p.add_argument("--proj-out", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--bn", choices=["fused", "decomposed"], default="fused",
                   help="decomposed: batch norm out of tensor ops, as burn computes it (for attribution)")
    p.add_argument("--sync-loss", action="store_true",
                   help="read the loss before backward every step (as Augur did before it moved the read)")
    a = p.parse_args()
    global BatchNorm2d
    if a.bn == "decomposed":
        BatchNorm2d = DecomposedBatchNorm2d
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    backbone = vision_transformer(a) if a.arch == "vit" else ResNet(a.width, a.blocks, a.block, a.stem)
    hidden = a.proj_hidden or backbone.feature_dim
    projector = nn.Sequential(nn.Linear(backbone.feature_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, a.proj_out))
    model = nn.ModuleDict({"backbone": backbone, "projector": projector}).to(device)
    params = sum(p.numel() for p in backbone.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    views = [torch.randn(a.batch, 3, a.image_size, a.image_size, device=device) for _ in range(2)]

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.amp):
            z1 = model["projector"](model["backbone"](views[0]))
            z2 = model["projector"](model["backbone"](views[1]))
            loss = nt_xent(z1.float(), z2.float(), a.temperature)
        if a.sync_loss:
            loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up, as Augur's bench does
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss.item()
    sync()
    elapsed = time.perf_counter() - t
    print(json.dumps({
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "params": params,
        "batch": a.batch,
        "bn": a.bn,
        "amp": a.amp,
        "images_per_s": 2 * a.batch * a.steps / elapsed,
    }))


if __name__ == "__main__":
    main()
