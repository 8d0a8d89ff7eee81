"""Tiled SR equals untiled SR when the margin covers the receptive field; dtype handling."""

from __future__ import annotations

import numpy as np
import torch

from adasr.nn.registry import build_model
from adasr.upscale import sr_array, sr_tensor


def test_tiles_have_no_seams():
    torch.manual_seed(0)
    model = build_model("fsrcnn", scale=2, d=8, s=4, m=1).eval()  # receptive field < 16 LR px
    x = torch.rand(1, 3, 45, 70)
    whole = sr_tensor(model, x, 2, tile=None)
    tiled = sr_tensor(model, x, 2, tile=16, overlap=12)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-5
    no_margin = sr_tensor(model, x, 2, tile=16, overlap=0)
    assert float((no_margin - whole).abs().max()) > 1e-3  # without the margin the seams show


def test_sr_array_keeps_dtype():
    model = build_model("bicubic", scale=2)
    for dtype, peak in ((np.uint8, 255), (np.uint16, 65535)):
        img = (np.random.default_rng(1).random((9, 11, 3)) * peak).astype(dtype)
        out = sr_array(model, img, 2)
        assert out.dtype == dtype and out.shape == (18, 22, 3)


# -- issue 19: quality first, an estimate up front, time budgets, real time --------------------------------

import json  # noqa: E402

import pytest  # noqa: E402

from adasr.errors import ConfigError  # noqa: E402
from adasr.estimate import (  # noqa: E402
    LevelCosts,
    RunningEstimate,
    estimate_seconds,
    format_seconds,
    package_costs,
    parse_time_budget,
    pick_level,
    quality_order,
)

SECONDS = (0.01, 0.1)  # per 16x16 LR frame: level 0 and level 1 of the tiny test package


def _profile(family, seconds, key, lr_hw=(16, 16), columns=("0.00",)):
    measured = {lv.config.id: {"median_s": s, "p90_s": s, "mean_s": s, "std_s": 0.0, "repeats": 1, "threads": 1,
                               "device": "cpu"} for lv, s in zip(family, seconds)}
    return {"schema_version": 1, "kind": "adasr-device-profile", "device": key, "lr_hw": list(lr_hw),
            "levels": {c: {"share": float(c), "measured": measured} for c in columns}, "latency_table": None}


def _tiny_package(path, profiles=None):
    from adasr.family import Family, Level
    from adasr.package import save_package
    from adasr.space import SearchSpace
    from tests.helpers import make_net

    space = SearchSpace.named("tiny")
    net = make_net(space).eval()
    levels = [Level(cfg, 30.0 + i, *net.cost(cfg, lr_hw=(16, 16)), {"0.00": 1e-3 * (i + 1)}, None)
              for i, cfg in enumerate((space.smallest(), space.largest()))]
    family = Family(tuple(levels), space.scale, (16, 16))
    profiles = {k: _profile(family, s, k) for k, s in (profiles or {}).items()}
    return save_package(path, net, family, profiles=profiles)


@pytest.fixture(autouse=True)
def _machine_as_profiled(monkeypatch):
    """The timing that calibrates a profile to the machine now says exactly what the profile says
    (the fake's numbers are the profile's), so no test depends on wall time."""
    import adasr.estimate

    def fake(package, level, hw, **kw):
        return SECONDS[level] * hw[0] * hw[1] / 256

    monkeypatch.setattr(adasr.estimate, "time_level", fake)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """The tiny package with a profile for this device: level 0 = 10 ms, level 1 = 100 ms per 16x16 frame."""
    from adasr.runtime.profile import device_key

    return _tiny_package(tmp_path_factory.mktemp("pkg") / "tiny.adasr", {device_key(): SECONDS}).path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from tests.video.test_video import make_clip_with_audio

    return make_clip_with_audio(tmp_path_factory.mktemp("clip") / "in.mp4", frames=12, size=(32, 24))


def test_parse_time_budget():
    cases = {"90s": 90, "90": 90, "2m": 120, "2 min": 120, "1h": 3600, "1h30m": 5400, "2.5min": 150, "1m30s": 90,
             "0.5s": 0.5}
    for text, seconds in cases.items():
        assert parse_time_budget(text).seconds(None) == pytest.approx(seconds), text
    assert parse_time_budget("1x").seconds(8.0) == 8.0
    assert parse_time_budget("0.5x").seconds(10.0) == 5.0
    with pytest.raises(ConfigError, match="needs a video"):
        parse_time_budget("1x").seconds(None)
    for bad in ("", "soon", "0s", "0", "-1m", "2 parsecs", "1xx", "x", "1m30", "s", "nanx", "infs"):
        with pytest.raises(ConfigError, match="--time-budget") as err:
            parse_time_budget(bad)
        assert "\n" not in str(err.value)


def test_costs_scale_by_pixels_and_pick_the_best_that_fits():
    costs = LevelCosts((0.01, 0.1), (16, 16), "given", "test")
    assert costs.frame_seconds(1, (32, 24)) == pytest.approx(0.3)  # 3x the pixels
    assert costs.seconds_for(0, (32, 24), 12) == pytest.approx(0.36)
    assert costs.fps(0, (16, 16)) == pytest.approx(100.0)
    psnr = [30.0, 31.0]
    assert pick_level(costs, psnr, 10.0, (32, 24), 12).level == 1
    choice = pick_level(costs, psnr, 1.0, (32, 24), 12)
    assert (choice.level, choice.fits) == (0, True) and choice.estimate_s == pytest.approx(0.36)
    choice = pick_level(costs, psnr, 0.1, (32, 24), 12)
    assert (choice.level, choice.fits) == (0, False)  # nothing fits: the fastest, said so
    # measured latencies need not follow the level order: a faster, better level wins
    odd = LevelCosts((0.02, 0.05, 0.01, None), (16, 16), "given", "test")
    assert odd.fastest() == 2
    assert pick_level(odd, [30.0, 32.0, 31.0, 33.0], 0.3, (16, 16), 10).level == 2  # level 3: unknown latency
    assert quality_order([30.0, float("nan"), 31.0]) == [2, 0, 1]
    with pytest.raises(ConfigError):
        pick_level(costs, [30.0], 1.0, (32, 24), 12)


@pytest.mark.slow
def test_package_costs_sources(tmp_path, monkeypatch):
    from adasr.runtime.profile import device_key, profile_cache_path

    here = device_key()
    pkg = _tiny_package(tmp_path / "a.adasr", {here: SECONDS, "cuda-some-gpu": (1e-4, 2e-4)})
    costs = package_costs(pkg)
    assert costs.kind == "profile" and costs.seconds == SECONDS and here in costs.source
    assert estimate_seconds(pkg, 1, (32, 24), 12) == pytest.approx(3.6)
    other = _tiny_package(tmp_path / "b.adasr", {"cpu-other-cpu-4t": (0.02, 0.2), "cuda-some-gpu": (1e-4, 2e-4)})
    assert package_costs(other, others=False) is None
    costs = package_costs(other)
    assert costs.kind == "other" and costs.seconds == (0.02, 0.2)  # a CPU profile is closer than a GPU one
    bare = _tiny_package(tmp_path / "c.adasr")
    costs = package_costs(bare)
    assert costs.kind == "predicted" and costs.seconds == pytest.approx((1e-3, 2e-3))
    path = profile_cache_path(bare, here)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_profile(bare.family, (0.03, 0.3), here)))
    costs = package_costs(bare, others=False)
    assert costs.kind == "cache" and costs.seconds == (0.03, 0.3)
    columns = _profile(bare.family, (0.03, 0.3), here, columns=("0.00", "0.50"))
    columns["levels"]["0.50"]["measured"] = _profile(bare.family, (0.06, 0.6), here)["levels"]["0.00"]["measured"]
    path.write_text(json.dumps(columns))
    assert package_costs(bare, load_share=0.9).seconds == (0.06, 0.6)  # the column nearest the load now
    assert "50% background load" in package_costs(bare, load_share=0.9).source


def test_calibration_scales_a_profile_to_the_machine_now(monkeypatch, profiled):
    import adasr.estimate
    from adasr.estimate import calibrate_costs
    from adasr.package import load_package

    seen = []

    def busy(package, level, hw, *, threads=None, repeats=3, channels_last=None, min_s=0.0):
        seen.append((level, hw, threads))
        return 3 * SECONDS[level] * hw[0] * hw[1] / 256  # the machine runs 3x slower than profiled

    monkeypatch.setattr(adasr.estimate, "time_level", busy)
    costs = LevelCosts((0.05, 0.1), (16, 16), "profile", "p")  # level 0 profiled at 50 ms, times 30 ms now
    out = calibrate_costs(load_package(profiled), costs, (600, 800), threads=1)
    assert seen == [(0, (256, 256), 1)]  # the fastest level, on the capped frame, with the run's threads
    assert out.seconds == pytest.approx((0.03, 0.06)) and "x0.6" in out.source

    monkeypatch.setattr(adasr.estimate, "time_level", lambda *a, **k: 1e6)
    assert calibrate_costs(load_package(profiled), costs, (16, 16)).seconds == pytest.approx((2.5, 5.0))  # clamped


def test_a_timed_stretch_averages_frames_over_min_s(profiled, monkeypatch):
    """time_level with min_s: one frame sizes the stretch, then the mean of enough frames to fill
    min_s (bounded by max_repeats), not the median of a few."""
    import sys

    import adasr.estimate
    from adasr.package import load_package
    from adasr.timing import LatencySample

    monkeypatch.undo()  # the real time_level (the module's fixture fakes it), over a fake frame timer
    time_level = adasr.estimate.time_level
    calls = []

    def fake(model, cfg, hw, *, warmup, repeats, threads, channels_last):
        calls.append(repeats)
        times = [0.1] * repeats if repeats == 1 else [0.1] * (repeats - 1) + [0.1 + 0.4 * repeats]
        return LatencySample.from_times(times, 1, "cpu")

    monkeypatch.setattr(sys.modules["adasr.runtime.profile"], "measure_latency", fake)
    package = load_package(profiled)
    mean = time_level(package, 0, (16, 16), min_s=1.5)
    assert calls == [1, 15] and mean == pytest.approx(0.1 + 0.4)  # the slow frame counts in the mean
    calls.clear()
    assert time_level(package, 0, (16, 16), min_s=100.0, max_repeats=7) > 0 and calls == [1, 7]
    calls.clear()
    assert time_level(package, 0, (16, 16)) == pytest.approx(0.1) and calls == [3]  # the median of 3


def test_running_estimate_follows_the_frames():
    run = RunningEstimate(0.1, 100)
    assert run.remaining_s == pytest.approx(10.0)
    run.update(5, 1.5)  # frames take 0.3 s: half the weight after 5 frames (prior counts as 5)
    assert run.frame_s == pytest.approx(0.2) and run.remaining_s == pytest.approx(19.0)
    run.update(95, 28.5)
    assert run.frame_s == pytest.approx((0.5 + 28.5) / 100) and run.total_s == pytest.approx(28.5 + 5 * 0.29)
    blind = RunningEstimate(None, 10)
    assert blind.remaining_s == 0.0
    blind.update(2, 1.0)
    assert blind.remaining_s == pytest.approx(4.0)
    assert format_seconds(4.04) == "4.0 s" and format_seconds(125) == "2 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"


def test_tiles_and_their_margins_count_in_the_estimate():
    from adasr.upscale import tiled_pixels

    assert tiled_pixels((100, 200), tile=256) == 100 * 200  # one tile: the frame itself
    assert tiled_pixels((100, 200), tile=None) == 100 * 200
    # 2 x 2 tiles of 64 with 16-pixel margins inside a 128 x 128 frame: each tile runs on 80 x 80
    assert tiled_pixels((128, 128), tile=64, overlap=16) == 4 * 80 * 80
    costs = LevelCosts((0.01,), (16, 16), "given", "test")
    assert costs.frame_seconds(0, (128, 128), tile=64) == pytest.approx(0.01 * 4 * 80 * 80 / 256)


def test_timed_costs_time_only_what_is_asked(profiled):
    from adasr.estimate import timed_costs
    from adasr.package import load_package

    costs = timed_costs(load_package(profiled), [1], (600, 800), cap=16)
    assert costs.kind == "timed" and costs.ref_hw == (16, 16) and costs.known(1) and not costs.known(0)


def _cli(monkeypatch, capsys, *args):
    from tests.cli.test_cli import run_cli

    return run_cli(monkeypatch, capsys, "upscale", *args, "-y")  # the tests below reuse output names


def _err_lines(err):
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.slow
def test_upscale_default_is_the_best_level_with_an_estimate(monkeypatch, capsys, profiled, tiny_clip, tmp_path):
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "best.mp4", "--model", profiled, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["mode"] == "best" and s["level"] == 1 and s["level_histogram"] == {"1": 12}
    assert s["estimated_s"] == pytest.approx(12 * 0.3) and "this device's profile" in s["estimate_source"]
    assert s["seconds"] > 0 and "deadlines_met" not in s and "stalls" not in s  # no deadline bookkeeping
    line = [ln for ln in _err_lines(err) if "level 1 of 0..1" in ln]
    assert len(line) == 1 and "12 frames 32x24 -> 64x48" in line[0] and "3.6 s" in line[0]
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "q.mp4", "--model", profiled, "--quiet")
    assert code == 0 and err.strip() == "" and "level 1" in out  # --quiet: no estimate line


@pytest.mark.slow
def test_a_long_run_says_its_estimate_from_its_own_first_frames(monkeypatch, capsys, profiled, tiny_clip, tmp_path):
    import adasr.upscale_run as ur

    # the profile's 3.6 s counts as a long run here; the estimate is said once two frames are done
    monkeypatch.setattr(ur, "FIRST_FRAMES_FROM_S", 1.0)
    monkeypatch.setattr(ur, "FIRST_FRAMES_S", 0.0)
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "first.mp4", "--model", profiled, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["prior_estimate_s"] == pytest.approx(12 * 0.3) and "first 2 frames" in s["estimate_source"]
    # measured on this run's frames (milliseconds each), not the profile's 0.3 s a frame
    assert 0 < s["estimated_s"] < 12 * 0.3 and s["estimated_s"] != pytest.approx(s["prior_estimate_s"])
    lines = _err_lines(err)
    before = [ln for ln in lines if "level 1 of 0..1" in ln]
    assert len(before) == 1 and "the estimate follows from the first frames" in before[0] and "3.6 s" not in before[0]
    assert sum("estimate from the first 2 frames: about" in ln for ln in lines) == 1
    # a short run still says it before the first frame
    monkeypatch.setattr(ur, "FIRST_FRAMES_FROM_S", 10.0)
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "short.mp4", "--model", profiled, "--json")
    s = json.loads(out)
    assert s["estimated_s"] == pytest.approx(12 * 0.3) and "first" not in s["estimate_source"]


@pytest.mark.slow
def test_upscale_time_budget_picks_a_smaller_level(monkeypatch, capsys, profiled, tiny_clip, tmp_path):
    # the clip lasts 0.48 s: level 1 needs 3.6 s, level 0 0.36 s
    for budget in ("1x", "2s"):
        code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "b.mp4", "--model", profiled,
                              "--time-budget", budget, "--json", "--quiet")
        assert code == 0, err
        s = json.loads(out)
        assert s["mode"] == "budget" and s["level_histogram"] == {"0": 12}
        assert s["estimated_s"] == pytest.approx(0.36) and s["estimated_s"] <= s["budget_s"]
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "b.mp4", "--model", profiled,
                          "--time-budget", "10s", "--json", "--quiet")
    assert json.loads(out)["level"] == 1
    # out of reach: one line with the estimate, then the fastest level runs ...
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "tight.mp4", "--model", profiled,
                          "--time-budget", "0.1s", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["level_histogram"] == {"0": 12}
    lines = _err_lines(err)
    assert len(lines) == 1 and "out of reach" in lines[0] and "0.4 s" in lines[0] and "running it anyway" in lines[0]
    # ... or --strict refuses: an option error, nothing written
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "strict.mp4", "--model", profiled,
                          "--time-budget", "0.1s", "--strict", "--quiet")
    assert code == 5 and "Traceback" not in err and len(_err_lines(err)) == 1 and "--strict refuses" in err
    assert not (tmp_path / "strict.mp4").exists()


@pytest.mark.slow
def test_upscale_realtime_says_once_when_the_target_is_out_of_reach(monkeypatch, capsys, profiled, tiny_clip,
                                                                      tmp_path):
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "rt.mp4", "--model", profiled, "--realtime",
                          "--target-fps", "500", "--json", "--quiet")
    assert code == 0, err
    s = json.loads(out)
    assert s["mode"] == "realtime" and s["target_reachable"] is False and s["frames"] == 12
    lines = _err_lines(err)
    assert len(lines) == 1 and "smallest level runs about 33.3 FPS at 32x24 here; target 500" in lines[0]
    code, out, err = _cli(monkeypatch, capsys, tiny_clip, tmp_path / "rt2.mp4", "--model", profiled, "--level", "auto",
                          "--target-fps", "5", "--json", "--quiet")
    assert code == 0, err
    s = json.loads(out)
    assert s["mode"] == "realtime" and s["target_reachable"] is True and _err_lines(err) == []
    assert s["estimated_s"] == pytest.approx(12 / 5)


@pytest.mark.slow
def test_upscale_image_best_and_budget(monkeypatch, capsys, profiled, tmp_path):
    from adasr.images import read_image, write_image
    from tests.conftest import random_image

    write_image(tmp_path / "a.png", random_image(24, 32))
    code, out, err = _cli(monkeypatch, capsys, tmp_path / "a.png", tmp_path / "a_x2.png", "--model", profiled,
                          "--json", "--quiet")
    assert code == 0, err
    s = json.loads(out)
    assert s["mode"] == "best" and s["level"] == 1 and s["estimated_s"] == pytest.approx(0.3)
    assert read_image(tmp_path / "a_x2.png").rgb.shape == (48, 64, 3)
    code, out, err = _cli(monkeypatch, capsys, tmp_path / "a.png", tmp_path / "b_x2.png", "--model", profiled,
                          "--json", "--time-budget", "0.1s")
    assert code == 0, err
    s = json.loads(out)
    assert s["mode"] == "budget" and s["level"] == 0 and s["budget_s"] == 0.1
    assert any("level 0 of 0..1" in ln for ln in _err_lines(err))


@pytest.mark.slow
def test_upscale_option_errors_are_one_line(monkeypatch, capsys, profiled, tiny_clip, tmp_path):
    from adasr.images import write_image
    from tests.cli.test_cli import _one_line_error
    from tests.conftest import random_image

    write_image(tmp_path / "a.png", random_image(8, 8))
    cases = [((tiny_clip, "--time-budget", "soon"), "--time-budget"),
             ((tiny_clip, "--time-budget", "0s"), "--time-budget"),
             ((tmp_path / "a.png", "--time-budget", "1x"), "needs a video"),
             ((tiny_clip, "--realtime", "--time-budget", "2m"), "choose one"),
             ((tiny_clip, "--level", "0", "--realtime"), "drop --level"),
             ((tiny_clip, "--level", "0", "--time-budget", "2m"), "drop --level"),
             ((tiny_clip, "--strict"), "--time-budget"),
             ((tmp_path / "a.png", "--realtime"), "for videos")]
    for args, words in cases:
        dst = tmp_path / ("o.png" if str(args[0]).endswith(".png") else "o.mp4")
        code, _, err = _cli(monkeypatch, capsys, args[0], dst, "--model", profiled, *args[1:])
        _one_line_error(code, err, words)
        assert code == 5 and not dst.exists()
