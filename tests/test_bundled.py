"""The bundled packages stay what the README promises: profiled adaptive families that beat bicubic."""

from __future__ import annotations

import pytest
import torch

from adasr.data.datasets import load_image_pairs
from adasr.evaluation import evaluate
from adasr.nn.registry import build_model
from adasr.package import load_package
from adasr.paths import bundled_package


@pytest.mark.parametrize("scale", (2, 4))
def test_bundled_package_is_a_profiled_family_that_beats_bicubic(scale, data_root):
    path = bundled_package(scale)
    assert path.stat().st_size < 4 * 2**20  # small enough to ship inside the Python package
    pkg = load_package(path)
    assert pkg.scale == scale and len(pkg.family) >= 6
    assert pkg.profiles, "a profile of the reference machine ships with the package"
    family = pkg.family_for(next(iter(pkg.profiles)))
    idle = [1.0 / lv.measured_s["0.00"] for lv in family]
    assert max(idle) / min(idle) > 4  # a real range of speeds to switch between
    pairs = load_image_pairs(data_root / "benchmarks" / "Set5", scale, limit=3)
    with torch.inference_mode():
        bicubic = evaluate(build_model("bicubic", scale=scale), pairs, scale, with_ssim=False).psnr
        for index in (0, len(family) - 1):
            got = evaluate(pkg.supernet.extract(family[index].config).eval(), pairs, scale, with_ssim=False).psnr
            assert got > bicubic, (index, got, bicubic)
