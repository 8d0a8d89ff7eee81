"""`adasr eval --degradation` (adasr.bench.streaming) on a tiny clip and a tiny image set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from adasr.bench.peers import Upscaler, _torch_fn
from adasr.bench.streaming import gain_png, run_streaming, summary_lines
from adasr.errors import ConfigError


@pytest.fixture()
def tiny_clip(tmp_path):
    from adasr.video import VideoWriter

    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)  # 96x160 blocks
    path = tmp_path / "tiny.mp4"
    with VideoWriter(path, 144, 96, 10, crf=10) as writer:
        for t in range(4):
            writer.write(np.ascontiguousarray(base[:, t * 2:t * 2 + 144]))
    return path


@pytest.mark.slow  # a real codec round trip and SSIM over a small grid: seconds
def test_grid_over_a_clip_and_an_image_set_reports_gains_against_bicubic(tiny_clip, tmp_path, data_root):
    from adasr.nn.registry import build_model

    sets = tmp_path / "set"
    sets.mkdir()
    from adasr.images import read_image, write_image

    write_image(sets / "bird.png", np.ascontiguousarray(read_image(data_root / "benchmarks" / "Set5" / "bird.png")
                                                        .rgb[:96, :144]))
    model = build_model("espcn", scale=2)  # untrained: a real module with its own (poor) output
    ups = [Upscaler("espcn", "adasr-model", _torch_fn(model), 1)]
    result = run_streaming(ups, 2, grid=["h264:crf=30,kernel=area", "clean:kernel=bicubic"], clips=[tiny_clip],
                           sets=[str(sets)], frames=3, max_hr=(96, 128))
    json.loads(json.dumps(result), parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert result["grid"] == ["h264-crf30-area", "bicubic"]
    assert [s["kind"] for s in result["sources"]] == ["clip", "image"]
    assert result["sources"][0]["hr"] == [96, 128]  # centre crop to max_hr, a multiple of 2 x scale
    rows = {(r["upscaler"], r["setting"]): r for r in result["rows"]}
    assert set(rows) == {(u, g) for u in ("bicubic", "Lanczos", "espcn") for g in result["grid"]}
    for (name, _), row in rows.items():
        assert math.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1 and row["ms"] >= 0
        if name == "bicubic":
            assert row["gain_bicubic"] == 0.0
    # the codec lowers bicubic's PSNR against the same HR: the grid really degrades
    assert rows[("bicubic", "h264-crf30-area")]["psnr"] < rows[("bicubic", "bicubic")]["psnr"] + 3
    assert len(summary_lines(result)) == 2 + 3
    gain_png(result, tmp_path / "gain.png")
    assert (tmp_path / "gain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_grid_and_frame_counts_are_config_errors(tiny_clip):
    with pytest.raises(ConfigError):
        run_streaming([], 2, grid=["vp8:crf=3"], clips=[tiny_clip], frames=2)
    with pytest.raises(ConfigError):
        run_streaming([], 2, grid=["h264:crf=28"], clips=[tiny_clip], frames=0)


def test_a_source_psnr_is_that_of_its_mean_mse_and_never_infinite():
    from adasr.metrics import PSNR_CAP, psnr_of_mean_mse

    assert psnr_of_mean_mse([30.0, 30.0]) == pytest.approx(30.0)
    assert psnr_of_mean_mse([math.inf, 30.0]) == pytest.approx(30.0 + 10 * math.log10(2))  # half the MSE
    assert psnr_of_mean_mse([math.inf, math.inf]) == PSNR_CAP


@pytest.mark.slow  # two models through a real codec round trip on a tiny clip: seconds
def test_two_runs_with_one_folder_name_get_rows_of_their_own(tiny_clip, tmp_path, monkeypatch, capsys):
    """`adasr eval runs/a/own/model.safetensors runs/b/own/model.safetensors --degradation ...`: both
    run folders are named own; each model keeps rows of its own (a/own, b/own), and the same file
    given twice is counted, not merged (it was an internal error)."""
    import shutil
    import sys

    from adasr._cli.main import main
    from adasr.paths import bundled_model

    src = bundled_model(2)
    runs = [tmp_path / "runs" / r / "own" / "model.safetensors" for r in ("a", "b")]
    for p in runs:
        p.parent.mkdir(parents=True)
        shutil.copy(src, p)
    out = tmp_path / "eval.json"
    monkeypatch.setattr(sys, "argv", ["adasr", "eval", *map(str, runs), str(runs[0]), "--degradation",
                                      "h264:crf=30,kernel=area", "--clip", str(tiny_clip), "--frames", "2",
                                      "--max-hr", "128x96", "--no-peers", "--json", str(out)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None), capsys.readouterr().err
    rows = json.loads(out.read_text())["rows"]
    names = {r["upscaler"] for r in rows}
    assert {"a/own", "b/own", "a/own #2"} <= names
    # the same weights give the same score whatever the label
    psnr = {r["upscaler"]: r["psnr"] for r in rows}
    assert psnr["a/own"] == psnr["b/own"] == psnr["a/own #2"]
