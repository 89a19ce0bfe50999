"""Loads an `augur export` file of a ViT into timm's `VisionTransformer`, by
PyTorch's `load_state_dict(strict=True)`, and writes its eval-mode features
(the class token after the final norm) on a batch, for
runner/tests/interop.rs to compare with Augur's own:

    python scripts/reference/timm_features.py WEIGHTS.safetensors BATCH_DIR

BATCH_DIR holds `images.f32` (float32, little-endian, row-major) and
`images.json` (`{"shape": [n, 3, h, w]}`); the features go to
`torch_features.f32` there and the loaded weights back out as `torch.pth`
for `augur import` to read. The model is built from the file's metadata
(width, depth, heads, patch, image_size); a timm size in `arch`
(`vit_small_patch16_224`, `vit_tiny_patch4_16`) is checked to have the
names and shapes of timm's own model of that size at that patch and side.
"""
import sys
from pathlib import Path

import timm
from safetensors import safe_open
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

from common import features_on_batch  # scripts/reference/common.py


def main(weights, batch_dir):
    with safe_open(weights, framework="pt") as f:
        meta = f.metadata()
    assert meta["pool"] == "cls", "timm's mean pool puts its norm after the mean (fc_norm): compare class-token models"
    state = load_file(weights)
    net = VisionTransformer(img_size=int(meta["image_size"]), patch_size=int(meta["patch"]), embed_dim=int(meta["width"]),
                            depth=int(meta["depth"]), num_heads=int(meta["heads"]), num_classes=0, global_pool="token")
    if meta["arch"] != "vit":
        # timm's own model of that size, at the file's patch and side.
        size = meta["arch"].split("_")[1]
        named = timm.create_model(f"vit_{size}_patch16_224", pretrained=False, num_classes=0,
                                  img_size=int(meta["image_size"]), patch_size=int(meta["patch"]))
        want = {k: tuple(v.shape) for k, v in named.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert got == want, f"not timm's {meta['arch']}: {sorted(set(got.items()) ^ set(want.items()))}"
    net.load_state_dict(state, strict=True)
    batch_dir = Path(batch_dir)
    features = features_on_batch(net, batch_dir)
    print(f"{meta['arch']}, {len(state)} tensors loaded strictly; features {tuple(features.shape)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
