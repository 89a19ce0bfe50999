"""Known answers for core/src/affine.rs's `the_matrix_is_torchvisions_and_keeps_the_area`:
torchvision's inverse affine matrix for three (angle, scale, shear) cases,
computed once with the venv scripts/tch.sh makes and written into the test:

    scripts/tch.sh python scripts/reference/affine_matrix.py

The official affine-prediction code keeps a copy of this function
(DavidTorpey/homography-estimation-v0 he/data/functional.py
`_get_inverse_affine_matrix`); Augur's `AffineMatrix::Torchvision` is the
forward matrix whose inverse this is (centre and translation at zero).
"""
import torchvision
from torchvision.transforms.functional import _get_inverse_affine_matrix

cases = [(30.0, 1.2, 25.0, -10.0), (-75.0, 0.8, -20.0, 25.0), (0.0, 1.0, 25.0, 25.0)]
print(f"// torchvision {torchvision.__version__}")
for angle, scale, sx, sy in cases:
    m = _get_inverse_affine_matrix([0.0, 0.0], angle, [0.0, 0.0], scale, [sx, sy])
    a, b, _, c, d, _ = m
    print(f"({angle}, {scale}, {sx}, {sy}, [{a:.7f}, {b:.7f}, {c:.7f}, {d:.7f}]),".replace(":?", ""))
