"""Known answers for core/src/augment/resample.rs's tests, computed once with
the venv scripts/tch.sh makes and written into the tests:

    scripts/tch.sh python scripts/reference/resample_known_answers.py

The image is the tests' `test_image(16, 14)` (planar RGB bytes
`(i * 37 + i / 7) % 256`, scaled to [0, 1]): a texture with detail at every
scale, where an unfiltered resize and a filtered one differ.

- the crop `(top 1, left 2, height 13, width 11)` resized to 6 x 6 by
  torchvision's `resized_crop` with `antialias=True`, bilinear and bicubic
  (the bicubic clamped to [0, 1], as PIL's 8-bit output is), and the same
  bilinear crop without antialiasing (Augur's earlier resize);
- torchvision's `GaussianBlur(9, sigma=1.3)` (reflect padding), the kernel
  AugSelf's STL-10 recipe uses;
- PIL's `ImageFilter.GaussianBlur(radius=1.3)` on the 8-bit image, as
  solo-learn blurs (PIL rounds to 8 bits after each of its six box passes,
  so Augur's float version lands within a few 1/255 of it).
"""
import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F

from common import rust_const  # scripts/reference/common.py
from PIL import Image, ImageFilter

h, w = 16, 14
raw = torch.tensor([(i * 37 + i // 7) % 256 for i in range(3 * h * w)], dtype=torch.float32)
img = (raw / 255.0).reshape(3, h, w)

crop = dict(top=1, left=2, height=13, width=11, size=[6, 6])
bilinear = F.resized_crop(img, **crop, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
bicubic = F.resized_crop(img, **crop, interpolation=F.InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
plain = F.resized_crop(img, **crop, interpolation=F.InterpolationMode.BILINEAR, antialias=False)
blurred = F.gaussian_blur(img, [9, 9], [1.3, 1.3])

pil = Image.fromarray(raw.reshape(3, h, w).permute(1, 2, 0).numpy().astype(np.uint8))
pil_blurred = torch.from_numpy(np.array(pil.filter(ImageFilter.GaussianBlur(radius=1.3)))).permute(2, 0, 1).float() / 255.0



import PIL
print(f"// torch {torch.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}")
rust_const("TORCHVISION_BILINEAR_AA", bilinear)
rust_const("TORCHVISION_BICUBIC_AA", bicubic)
rust_const("TORCHVISION_BILINEAR_PLAIN", plain)
rust_const("TORCHVISION_BLUR_9", blurred)
rust_const("PIL_BLUR_1_3", pil_blurred)
print(f"// antialiased vs plain bilinear: max |difference| {(bilinear - plain).abs().max().item():.3g}")
