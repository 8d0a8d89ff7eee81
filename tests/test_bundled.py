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
            got = evaluate(pkg.level_model(level), pairs, scale, with_ssim=False).psnr
            assert got > bicubic, (index, got, bicubic)
            if pkg.has_own(level):  # a level with its own weights beats its config inside the supernet
                shared = evaluate(pkg.supernet.extract(level.config).eval(), pairs, scale, with_ssim=False).psnr
                assert got > shared, (index, got, shared)


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
    from adasr.runtime.int8_rule import int8_choice

    pkg = load_package(bundled_package(scale))
    assert pkg.precision == "auto"
    section = next(iter(pkg.profiles.values()))["int8"]
    assert set(section["levels"]) == {lv.config.id for lv in pkg.family}  # every level was measured
    chosen = int8_choice(pkg.family, section)
    for i, lv in enumerate(pkg.family):
        entry = section["levels"][lv.config.id]
        ok = entry["int8_s"] < entry["fp32_s"] and -entry["psnr_change_db"] <= section["tolerance_db"]
        assert (i in chosen) == ok


def test_bundled_x3_level_with_its_own_weights_runs_them_in_both_precisions(data_root):
    # the x3 package's level trained alone runs its own weights in the engine, float32 and int8
    import numpy as np

    from adasr.images import read_image
    from adasr.metrics import psnr_y
    from adasr.runtime.engine import Engine, frame_to_tensor, tensor_to_frame

    pkg = load_package(bundled_package(3))
    own = [i for i in range(len(pkg.family)) if pkg.has_own(i)]
    assert own, "the x3 package ships a level with its own weights"
    i = own[0]
    frame = np.ascontiguousarray(read_image(data_root / "benchmarks" / "Set5" / "butterfly.png").rgb[:64, :64])
    with torch.inference_mode():
        mine = tensor_to_frame(pkg.level_model(i)(frame_to_tensor(frame, False)))
        shared = tensor_to_frame(pkg.supernet.extract(pkg.family[i].config).eval()(frame_to_tensor(frame, False)))
        for precision in ("fp32", "int8"):
            engine = Engine(pkg, level=i, precision=precision, calibration=[frame], int8_only=[i])
            out = engine.process(frame)
            close, far = psnr_y(out, mine, border=3), psnr_y(out, shared, border=3)
            assert close > 40 and close > far + 3, (precision, close, far)
