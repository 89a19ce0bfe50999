"""Known answers for core/src/augment.rs's colour jitter and blur tests,
computed once with torchvision 0.24 (the venv scripts/tch.sh makes) and
written into the tests:

    scripts/tch.sh python scripts/reference/augment_known_answers.py

The image is the tests' `test_image(4, 5)` (planar RGB bytes
`(i * 37 + i / 7) % 256`, scaled to [0, 1]); the jitter applies
contrast 0.6, hue 0.12, saturation 1.5, brightness 1.3 in that order
(torchvision's `ColorJitter` applies its drawn factors in a drawn order, each
through these functionals); the blur is torchvision's 3x3 gaussian with
sigma 0.8 and reflect padding (Augur's kernel side for a 4 px image is 3).

Augur's grayscale (contrast and saturation blend with it) weighs red 0.299,
as PIL does; torchvision's tensor path weighs it 0.2989, which moves the
jittered values by up to 2.3e-5. The script prints that gap, and how far
the same factors applied in another order land, for the test's tolerance.
"""
import torch
import torchvision
import torchvision.transforms.functional as F

from common import rust_const  # scripts/reference/common.py

h, w = 4, 5
raw = torch.tensor([(i * 37 + i // 7) % 256 for i in range(3 * h * w)], dtype=torch.float32)
img = (raw / 255.0).reshape(3, h, w)

jittered = F.adjust_contrast(img, 0.6)
jittered = F.adjust_hue(jittered, 0.12)
jittered = F.adjust_saturation(jittered, 1.5)
jittered = F.adjust_brightness(jittered, 1.3)
blurred = F.gaussian_blur(img, [3, 3], [0.8, 0.8])
swapped = F.adjust_saturation(F.adjust_brightness(F.adjust_hue(F.adjust_contrast(img, 0.6), 0.12), 1.3), 1.5)

tensor_gray = torchvision.transforms._functional_tensor.rgb_to_grayscale


def pil_weighted_gray(img, num_output_channels=1):
    r, g, b = img.unbind(dim=-3)
    gray = (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(dim=-3)
    return gray.expand(img.shape) if num_output_channels == 3 else gray


torchvision.transforms._functional_tensor.rgb_to_grayscale = pil_weighted_gray
pil_weighted = F.adjust_brightness(F.adjust_saturation(F.adjust_hue(F.adjust_contrast(img, 0.6), 0.12), 1.5), 1.3)
torchvision.transforms._functional_tensor.rgb_to_grayscale = tensor_gray



print(f"// torch {torch.__version__}, torchvision {torchvision.__version__}")
rust_const("TORCHVISION_JITTERED", jittered)
rust_const("TORCHVISION_BLURRED", blurred)
print(f"// red weighed 0.299 (PIL) instead of 0.2989: max |change| {(pil_weighted - jittered).abs().max().item():.2g}")
print(f"// saturation and brightness swapped: max |change| {(swapped - jittered).abs().max().item():.2g}")
