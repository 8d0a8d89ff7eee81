"""The bundled packages stay what the README promises: profiled adaptive families that beat bicubic,
the clean family on clean LR and the codec family on codec-compressed LR."""

from __future__ import annotations

import pytest
import torch

from adasr.data.datasets import load_image_pairs
from adasr.data.degrade import Setting, degrade_clip
from adasr.evaluation import evaluate
from adasr.nn.registry import build_model
from adasr.package import load_package
from adasr.paths import bundled_package

FAMILY_SIZE = {("clean", 2): 8, ("clean", 3): 6, ("clean", 4): 6, ("codec", 2): 5, ("codec", 3): 4, ("codec", 4): 4}


@pytest.mark.parametrize("family", ("clean", "codec"))
@pytest.mark.parametrize("scale", (2, 3, 4))
def test_bundled_package_is_a_profiled_family_that_beats_bicubic(scale, family, data_root):
    kind, path = family, bundled_package(scale, family)
    assert path.stat().st_size < 4 * 2**20  # small enough to ship inside the Python package
    pkg = load_package(path)
    assert pkg.scale == scale and len(pkg.family) >= FAMILY_SIZE[family, scale]
    assert pkg.profiles, "a profile of the reference machine ships with the package"
    family = pkg.family_for(next(iter(pkg.profiles)))
    idle = [1.0 / lv.measured_s["0.00"] for lv in family]
    assert max(idle) / min(idle) > (6 if scale == 2 else 2)  # x3/x4: HR-sized fixed cost
    # Every level beats bicubic on Set5 crops (the top-left 96x96 LR corner of three images): clean
    # LR for the clean family, the same crops through x264 CRF 28 (area downscale) for the codec one.
    pairs = load_image_pairs(data_root / "benchmarks" / "Set5", scale, limit=3)
    side = [min(96, p.lr.shape[0], p.lr.shape[1]) // 2 * 2 for p in pairs]  # even: the codec's 4:2:0 needs it
    pairs = [type(p)(p.name, p.hr[:n * scale, :n * scale], p.lr[:n, :n], p.gray) for p, n in zip(pairs, side)]
    if kind == "codec":
        pairs = [type(p)(p.name, p.hr, degrade_clip([p.hr], scale, Setting("area", "h264", 28))[0], p.gray)
                 for p in pairs]
    with torch.inference_mode():
        bicubic = evaluate(build_model("bicubic", scale=scale), pairs, scale, with_ssim=False).psnr
        for index, level in enumerate(family):
            got = evaluate(pkg.level_model(level), pairs, scale, with_ssim=False).psnr
            assert got > bicubic, (index, got, bicubic)
            if pkg.has_own(level):  # a level with its own weights beats its config inside the supernet
                # codec levels: on streaming frames (held-out clips through x264 CRF 28, P-frames included),
                # what they were trained and chosen for; three Set5 crops coded as single I-frames are not
                judged = pairs if kind == "clean" else _clip_pairs(scale, pairs[0])
                own = evaluate(pkg.level_model(level), judged, scale, with_ssim=False).psnr
                shared = evaluate(pkg.supernet.extract(level.config).eval(), judged, scale, with_ssim=False).psnr
                assert own > shared, (index, own, shared)


def _clip_pairs(scale, like):
    """8 frames of three held-out clips, a centre crop of 192 LR pixels, through x264 CRF 28 (area)."""
    import numpy as np

    from adasr.paths import data_root
    from adasr.video import read_frames

    pairs = []
    for clip in ("bigbuckbunny_720p.mp4", "vtest_768x576.avi", "megamind_720x528.avi"):
        c, frames = 192 * scale, []
        for i, f in enumerate(read_frames(data_root() / "video" / clip)):
            if i >= 8:
                break
            h, w = f.shape[:2]
            frames.append(np.ascontiguousarray(f[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]))
        lr = degrade_clip(frames, scale, Setting("area", "h264", 28))
        pairs += [type(like)(f"{clip}:{i}", hr, lo, False) for i, (hr, lo) in enumerate(zip(frames, lr))]
    return pairs


@pytest.mark.parametrize("family", ("clean", "codec"))
@pytest.mark.parametrize("scale", (2, 3, 4))
def test_bundled_levels_get_better_as_they_get_slower(scale, family):
    family = load_package(bundled_package(scale, family)).family
    psnrs = [lv.psnr for lv in family]
    params = [lv.params for lv in family]
    assert psnrs == sorted(psnrs) and params[0] < params[-1]


@pytest.mark.parametrize("family", ("clean", "codec"))
@pytest.mark.parametrize("scale", (2, 3, 4))
def test_bundled_packages_choose_int8_from_their_measured_profile(scale, family):
    # precision auto: a level runs in int8 only where the shipped profile measured it faster and
    # within the tolerance (the rule is tested in test_precision; here, that what ships is consistent)
    from adasr.runtime.int8_rule import int8_choice

    pkg = load_package(bundled_package(scale, family))
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

    pkg = load_package(bundled_package(3, "clean"))
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


def test_inputs_pick_their_family_and_an_option_overrides_it():
    from adasr.errors import ConfigError
    from adasr.paths import family_for_input

    assert family_for_input("clip.mp4") == "codec" and family_for_input("photo.JPG") == "codec"
    assert family_for_input("scan.png") == "clean" and family_for_input(None) == "codec"
    assert family_for_input("clip.mp4", "clean") == "clean" and family_for_input("scan.png", "codec") == "codec"
    with pytest.raises(ConfigError):
        family_for_input("clip.mp4", "fancy")
