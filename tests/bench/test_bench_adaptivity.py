"""bench adaptivity: a tiny package, a tiny video, a 1 s stable trace, all three runners.

Timing is never asserted: only structure, counts and clean shutdown.
"""

from __future__ import annotations

import json
import math

import numpy as np
import psutil
import pytest
import torch

from adasr.bench.adaptivity import PNGS, AdaptivityOptions, load_trace, run_adaptivity, summary_rows
from adasr.errors import ConfigError, InputError
from adasr.family import Family, Level
from adasr.nn.supernet import SuperNet, subnet_cost
from adasr.package import save_package
from adasr.runtime.stats import fps_per_frame, fps_windows
from adasr.space import SearchSpace, SubnetConfig
from adasr.video import VideoWriter

TINY = SearchSpace.named("tiny")
HW = (12, 16)  # (H, W) of the LR frames



@pytest.fixture(scope="module")
def package(tmp_path_factory):
    cfgs = [TINY.smallest(), SubnetConfig(2, 8, 1, 3, ("c", "c"), True, "tc"), TINY.largest()]
    levels = []
    for i, cfg in enumerate(cfgs):
        params, macs = subnet_cost(cfg, HW)
        levels.append(Level(cfg, 30.0 + i, params, macs, {"0.00": 1e-3 * (i + 1), "0.50": 2e-3 * (i + 1)}))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SuperNet(TINY).eval()
    return save_package(tmp_path_factory.mktemp("pkg") / "pkg", net, Family(tuple(levels), 2, HW)).path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    yy, xx = np.mgrid[0:48, 0:64]
    with VideoWriter(path, 64, 48, 10, preset="ultrafast") as vw:
        for k in range(8):
            frame = np.stack([(xx * 4 + k * 9) % 256, (yy * 5) % 256, ((xx + yy) * 3 + k * 20) % 256], axis=-1)
            vw.write(frame.astype(np.uint8))
    return path


def _load_children() -> list[psutil.Process]:
    """Live CpuLoad workers (python -I -S -c <busy loop>) among this process's children (not, e.g.,
    multiprocessing's resource tracker, which is also a `python -c` child)."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = child.cmdline()
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE and cmd[1:4] == ["-I", "-S", "-c"]:
                out.append(child)
        except psutil.Error:
            continue
    return out


@pytest.mark.slow
def test_run_adaptivity_all_runners(tmp_path, package, video):
    progress = []
    out = tmp_path / "out"
    opts = AdaptivityOptions(trace="stable", seconds=1.0, target_fps=15.0, policy="lookup", load_workers=1)
    result = run_adaptivity(package, video, opts, out_dir=out, on_progress=lambda *a: progress.append(a))
    assert result["max_frames"] == 15 and result["lr_size"] == [16, 12] and result["scale"] == 2
    assert progress[-1] == ("runner", 3, 3)
    data = json.loads((out / "adaptivity.json").read_text())
    assert set(data["runners"]) == {"adasr", "static", "assembled"}
    assert data["trace"]["steps"] and len(data["levels"]) == 3
    assert all(math.isfinite(lv["content_psnr"]) for lv in data["levels"])
    for name, r in data["runners"].items():
        assert r["frames"] == r["max_frames"] == 15, name
        assert 0.0 <= r["deadlines_met"] <= 1.0
        assert isinstance(r["psnr_mean"], float)
        assert r["resident_bytes_max"] >= r["resident_bytes"] > 0 and r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0
        sw = r["switch_ms"]
        assert isinstance(sw["p50"], float) and isinstance(sw["p99"], float) and sw["p99"] >= sw["p50"] >= 0
        assert sw["n_probe"] == 4 and sw["n_run"] == r["switches"]
        assert len(r["level_over_time"]["level"]) == len(r["psnr_per_frame"]) == 15
        assert r["fps_over_time"]["fps"] and all(f >= 0 for f in r["fps_over_time"]["fps"])
        assert r["trace_applied"]
    # one level resident vs all of them (the tiny supernet's extra options make adasr vs assembled
    # depend on the family, so that ratio is the benchmark's to report, not this test's)
    assert data["runners"]["static"]["resident_bytes"] < data["runners"]["assembled"]["resident_bytes"]
    for png in PNGS:
        assert (out / png).stat().st_size > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no leftover temp files
    rows = summary_rows(result)
    assert [r["runner"] for r in rows] == ["adasr", "static", "assembled"]
    assert set(rows[0]) == {"runner", "deadlines met %", "stalls", "mean PSNR", "resident MB", "peak RSS MB",
                            "switch p50 ms", "switch p99 ms", "switches"}
    assert not _load_children()


@pytest.mark.slow
def test_default_target_and_reactive(tmp_path, package, video):
    # default target: the median level's idle FPS (1 / 2 ms) at the family's LR size; a shorter run
    opts = AdaptivityOptions(trace="random", seconds=0.02, policy="reactive", runners=("adasr",), lr_hw=(12, 16),
                             load_workers=1)
    result = run_adaptivity(package, video, opts, out_dir=tmp_path)
    assert result["target_fps"] == pytest.approx(500.0)
    assert result["runners"]["adasr"]["frames"] == 10
    assert not _load_children()


def test_bad_inputs(tmp_path, package, video):
    with pytest.raises(ConfigError):
        run_adaptivity(package, video, AdaptivityOptions(trace="spiky", seconds=1.0, target_fps=5.0), out_dir=tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,load\n0,0.5\n1,2.0\n")
    with pytest.raises(InputError):
        run_adaptivity(package, video, AdaptivityOptions(trace=str(bad), seconds=1.0, target_fps=5.0), out_dir=tmp_path)
    with pytest.raises(InputError):
        load_trace(tmp_path / "missing.csv", 1.0)
    for kw in ({"policy": "greedy"}, {"runners": ("adasr", "adasr")}, {"runners": ("fancy",)},
               {"lr_hw": (4, 0)}, {"seconds": -1.0}):
        with pytest.raises(ConfigError):
            run_adaptivity(package, video, AdaptivityOptions(**{"trace": "stable", "target_fps": 5.0, "seconds": 1.0,
                                                                **kw}), out_dir=tmp_path)
    with pytest.raises(InputError):
        run_adaptivity(package, tmp_path / "nope.mp4", AdaptivityOptions(trace="stable", seconds=1.0, target_fps=5.0),
                       out_dir=tmp_path)
    assert not _load_children()


def test_fps_helpers():
    t, fps = fps_windows([0.1, 0.2, 0.9, 1.5])
    assert t == [0.0, 1.0] and fps == [3.0, pytest.approx(2.0)]
    assert fps_windows([]) == ([], [])
    assert fps_per_frame([0.5, 1.0, 1.6]) == [2.0, 2.0, 2.0]


@pytest.mark.slow
def test_int8_adasr_runner(tmp_path, video):
    # precision applies to the adasr runner: calibrated on the clip, its levels' PSNR is its own
    lite = SearchSpace.named("lite-x2")
    cfgs = [lite.smallest(), SubnetConfig(2, 12, 1, 3, ("r", "r"), True, "bic"), lite.largest()]
    levels = [Level(c, 30.0 + i, *subnet_cost(c, HW), {"0.00": 1e-3 * (i + 1)}) for i, c in enumerate(cfgs)]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SuperNet(lite).eval()
    package = save_package(tmp_path / "lite", net, Family(tuple(levels), 2, HW)).path
    opts = AdaptivityOptions(trace="stable", seconds=0.02, target_fps=500.0, runners=("adasr",), precision="int8",
                             load_workers=1)
    result = run_adaptivity(package, video, opts, out_dir=tmp_path)
    r = result["runners"]["adasr"]
    assert result["precision"] == "int8" and r["frames"] == 10 and len(r["content_psnr"]) == 3
    assert r["int8_levels"] == [0, 1, 2]
    assert all(math.isfinite(p) for p in r["content_psnr"])
    with pytest.raises(ConfigError, match="precision"):
        run_adaptivity(package, video, AdaptivityOptions(trace="stable", seconds=0.02, precision="int4"),
                       out_dir=tmp_path)
