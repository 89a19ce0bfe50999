"""torchvision's RandomResizedCrop sampler, drawn N times, for
runner/tests/crops.rs to compare Augur's `sample_crop` with:

    python scripts/reference/crop_params.py HEIGHT WIDTH N OUT.json [--scale A B] [--ratio A B]

Writes {"heights": [...], "widths": [...], "tops": [...], "lefts": [...]}
of the boxes `RandomResizedCrop.get_params` returns (ten tries, then the
central fallback) for an image of that size.
"""
import argparse
import json

import torch
from torchvision.transforms import RandomResizedCrop


def main():
    p = argparse.ArgumentParser()
    p.add_argument("height", type=int)
    p.add_argument("width", type=int)
    p.add_argument("n", type=int)
    p.add_argument("out")
    p.add_argument("--scale", type=float, nargs=2, default=[0.08, 1.0])
    p.add_argument("--ratio", type=float, nargs=2, default=[3 / 4, 4 / 3])
    a = p.parse_args()
    torch.manual_seed(0)
    image = torch.empty(3, a.height, a.width)
    boxes = [RandomResizedCrop.get_params(image, a.scale, a.ratio) for _ in range(a.n)]
    with open(a.out, "w") as f:
        json.dump({"tops": [b[0] for b in boxes], "lefts": [b[1] for b in boxes],
                   "heights": [b[2] for b in boxes], "widths": [b[3] for b in boxes]}, f)


if __name__ == "__main__":
    main()
