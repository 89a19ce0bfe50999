"""torchvision reference for `augur bench --pytorch`: Augur's simclr-cifar view
pipeline written with torchvision's v2 transforms (random resized crop, flip,
colour jitter with probability, grayscale), on uint8 images, one thread, two
views per image; prints views per second as one JSON line.

    python scripts/reference/bench_augment.py --image-size 32 --images 512
"""
import argparse
import json
import time

import torch
from torchvision.transforms import v2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--crop-scale", type=float, nargs=2, default=[0.2, 1.0])
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    s = a.image_size
    pipeline = v2.Compose([
        v2.RandomResizedCrop(s, scale=tuple(a.crop_scale), ratio=(3 / 4, 4 / 3), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(0.2),
        v2.ToDtype(torch.float32, scale=True),
    ])
    images = [torch.randint(0, 256, (3, s, s), dtype=torch.uint8) for _ in range(a.images)]
    for img in images[:16]:
        pipeline(img)
    t = time.perf_counter()
    for _ in range(a.rounds):
        for img in images:
            pipeline(img)
            pipeline(img)
    elapsed = time.perf_counter() - t
    print(json.dumps({"torch": torch.__version__, "views_per_s": 2 * a.images * a.rounds / elapsed}))


if __name__ == "__main__":
    main()
