"""`adasr bench peers`: runs on a tiny input with the real peers, scores with the protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adasr.bench.peers import bicubic_upscaler, opencv_upscalers, score
from adasr.data.datasets import load_pairs
from adasr.paths import MODELS_DIR
from tests.cli.test_cli import run_cli


@pytest.mark.slow
def test_peers_bench_runs_on_a_tiny_input(monkeypatch, capsys, tmp_path, data_root):
    out = tmp_path / "peers"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "bench", "peers", MODELS_DIR / "sr_x2.adasr",
                                   "--data", "Set5", "--max-images", "1", "--crop", "24", "--lr-size", "16x16",
                                   "--rounds", "1", "--repeats", "1", "--out", out, "--threads", "1",
                                   "--model", MODELS_DIR / "default_x2.safetensors")
    assert code == 0, stderr
    result = json.loads((out / "peers.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert "bicubic" in names and "OpenCV FSRCNN" in names and "OpenCV ESPCN" in names
    assert any(n.startswith("Anime4K") for n in names)
    levels = [r for r in result["rows"] if r["kind"] == "adasr-level"]
    assert len(levels) >= 8
    for r in result["rows"]:
        assert 10 < r["Set5"]["psnr"] < 99 and 0 < r["Set5"]["ssim"] <= 1 and r["fps"] > 0
    assert (out / "peers.png").read_bytes()[:4] == b"\x89PNG"
    # one timing each: nothing to trust, so no comparison at equal speed (the PSNR verdict stands)
    assert "no comparison at equal speed" in result["verdict_withheld"]
    assert all("models" not in v for v in result["verdict"].values()) and "every level" in stdout
    assert all(r["timing_trusted"] is False for r in result["rows"])
    assert "cannot be trusted" in stdout and "at least as fast" not in stdout
    from adasr.bench.peers import _verdict

    (against,) = _verdict(result)["Set5"]["models"]  # the generic model against the family at equal speed
    generic = next(r for r in result["rows"] if r["kind"] == "adasr-model")
    assert generic["name"] == "adasr subnet (default_x2)"
    assert against["model"] == generic["name"] and against["model_psnr"] == generic["Set5"]["psnr"]
    assert generic["name"] in stdout and "FPS" in stdout


def test_own_models_are_judged_against_the_best_level_at_least_as_fast():
    from adasr.bench.peers import _verdict

    def row(name, kind, psnr, fps):
        return {"name": name, "kind": kind, "params": 1, "Set5": {"psnr": psnr, "ssim": 0.9}, "fps": fps}

    rows = [row("bicubic", "bicubic", 30.0, 100), row("L0", "adasr-level", 32.0, 50),
            row("L1", "adasr-level", 33.0, 20), row("L2", "adasr-level", 34.0, 10),
            row("fast", "adasr-model", 32.5, 40), row("slow", "adasr-model", 33.5, 15),
            row("fastest", "adasr-model", 31.0, 80)]
    got = {m["model"]: m for m in _verdict({"sets": ["Set5"], "rows": rows})["Set5"]["models"]}
    assert got["fast"]["level"] == "L0" and not got["fast"]["at_or_above"]
    assert got["fast"]["margin_db"] == pytest.approx(-0.5)
    assert got["slow"]["level"] == "L1" and not got["slow"]["at_or_above"]  # L2 is better but slower
    assert got["fastest"]["level"] == "L0" and not got["fastest"]["as_fast"] and not got["fastest"]["at_or_above"]
    rows[4]["Set5"]["psnr"] = 32.01
    assert _verdict({"sets": ["Set5"], "rows": rows})["Set5"]["models"][0]["at_or_above"] is False
    rows[4]["Set5"]["psnr"] = 32.0
    assert _verdict({"sets": ["Set5"], "rows": rows})["Set5"]["models"][0]["at_or_above"] is True


def test_opencv_peer_scores_like_published_on_set5_crop(data_root):
    # FSRCNN x2 is a real SR model: on a Set5 image it must beat bicubic clearly.
    pairs = load_pairs(str(data_root / "benchmarks" / "Set5"), 2, limit=2)
    ups, notes = opencv_upscalers(2, data_root / "peers")
    assert not notes, notes
    fsrcnn = next(u for u in ups if u.name == "OpenCV FSRCNN")
    gain = score(fsrcnn, pairs, 2)["psnr"] - score(bicubic_upscaler(2), pairs, 2)["psnr"]
    assert gain > 0.3


def test_opencv_peers_run_on_torchs_thread_count(tmp_path):
    """Peers and levels are timed on the same threads: OpenCV's pool (every core by default) follows torch."""
    import cv2
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        opencv_upscalers(2, tmp_path)
        assert cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before)


def test_missing_peer_graphs_are_reported_not_dropped(tmp_path):
    ups, notes = opencv_upscalers(3, tmp_path)
    assert ups == [] and len(notes) == 3 and all("no " in n for n in notes)


@pytest.mark.parametrize("args", [["--rounds", "0"], ["--crop", "2"], ["--lr-size", "4x4"]])
def test_peers_bench_refuses_bad_options(monkeypatch, capsys, tmp_path, args):
    code, _, stderr = run_cli(monkeypatch, capsys, "bench", "peers", MODELS_DIR / "sr_x2.adasr", *args,
                              "--out", tmp_path / "p")
    assert code == 5 and stderr.count("\n") <= 2


def test_upscalers_keep_shape_and_type():
    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = bicubic_upscaler(3).fn(rgb)
    assert out.shape == (27, 33, 3) and out.dtype == np.uint8
