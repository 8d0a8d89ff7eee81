"""The bundled packages stay what the README promises: profiled adaptive families that beat bicubic."""

from __future__ import annotations

import pytest
import torch

from adasr.data.datasets import load_image_pairs
from adasr.evaluation import evaluate
from adasr.nn.registry import build_model
from adasr.package import load_package
from adasr.paths import bundled_package


@pytest.mark.parametrize("scale", (2, 3, 4))
def test_bundled_package_is_a_profiled_family_that_beats_bicubic(scale, data_root):
    path = bundled_package(scale)
    assert path.stat().st_size < 4 * 2**20  # small enough to ship inside the Python package
    pkg = load_package(path)
    assert pkg.scale == scale and len(pkg.family) >= (8 if scale == 2 else 6)
    assert pkg.profiles, "a profile of the reference machine ships with the package"
    family = pkg.family_for(next(iter(pkg.profiles)))
    idle = [1.0 / lv.measured_s["0.00"] for lv in family]
    assert max(idle) / min(idle) > (6 if scale == 2 else 2)  # x3/x4: HR-sized fixed cost
    # Every level beats bicubic on Set5 crops (the top-left 96x96 LR corner of three images).
    pairs = load_image_pairs(data_root / "benchmarks" / "Set5", scale, limit=3)
    pairs = [type(p)(p.name, p.hr[:96 * scale, :96 * scale], p.lr[:96, :96], p.gray) for p in pairs]
    with torch.inference_mode():
        bicubic = evaluate(build_model("bicubic", scale=scale), pairs, scale, with_ssim=False).psnr
        for index, level in enumerate(family):
            got = evaluate(pkg.supernet.extract(level.config).eval(), pairs, scale, with_ssim=False).psnr
            assert got > bicubic, (index, got, bicubic)


@pytest.mark.parametrize("scale", (2, 3, 4))
def test_bundled_levels_get_better_as_they_get_slower(scale):
    family = load_package(bundled_package(scale)).family
    psnrs = [lv.psnr for lv in family]
    params = [lv.params for lv in family]
    assert psnrs == sorted(psnrs) and params[0] < params[-1]


@pytest.mark.parametrize("scale", (2, 3, 4))
def test_bundled_packages_choose_int8_from_their_measured_profile(scale):
    # precision auto: a level runs in int8 only where the shipped profile measured it faster and
    # within the tolerance (the rule is tested in test_precision; here, that what ships is consistent)
    from adasr.runtime.precision import int8_choice

    pkg = load_package(bundled_package(scale))
    assert pkg.precision == "auto"
    section = next(iter(pkg.profiles.values()))["int8"]
    assert set(section["levels"]) == {lv.config.id for lv in pkg.family}  # every level was measured
    chosen = int8_choice(pkg.family, section)
    for i, lv in enumerate(pkg.family):
        entry = section["levels"][lv.config.id]
        ok = entry["int8_s"] < entry["fp32_s"] and -entry["psnr_change_db"] <= section["tolerance_db"]
        assert (i in chosen) == ok
