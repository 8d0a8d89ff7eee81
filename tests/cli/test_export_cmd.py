"""`adasr export` and `adasr bench browser` on the command line: bad options are one-line errors
with exit 5, a folder adasr did not write is never replaced (exit 3), an export replaces its own."""

from __future__ import annotations

import json

import pytest

from adasr.paths import bundled_package
from tests.cli.test_cli import _one_line_error, run_cli


@pytest.mark.parametrize("args, words", [
    (["--format", "tflite"], ["--format", "onnx"]),
    (["--lr-size", "4x4"], ["--lr-size"]),
    (["--levels", "99"], ["--levels"]),
    (["--calibration", "clip.mp4"], ["--calibration", "--int8"]),
])
def test_export_refuses_bad_options(monkeypatch, capsys, tmp_path, args, words):
    code, _, err = run_cli(monkeypatch, capsys, "export", bundled_package(2), "--out", tmp_path / "x", *args)
    _one_line_error(code, err, *words)
    assert code == 5 and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_export_writes_and_replaces_only_its_own(monkeypatch, capsys, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, err = run_cli(monkeypatch, capsys, "export", bundled_package(2), "--out", foreign, "--levels", "0")
    _one_line_error(code, err, "refusing")
    assert code == 3 and (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "onnx"
    for levels in ("0", "0,1"):  # the second run replaces the first export
        code, text, err = run_cli(monkeypatch, capsys, "export", bundled_package(2), "--out", out, "--levels", levels,
                                  "--lr-size", "32x24")
        assert code == 0, err
    side = json.loads((out / "manifest.json").read_text())
    assert [lv["index"] for lv in side["levels"]] == [0, 1] and side["lr_width"] == 32 and side["lr_height"] == 24
    assert sorted(p.name for p in out.iterdir()) == ["level-0.onnx", "level-1.onnx", "manifest.json", "weights.bin"]
    assert "sharing weights.bin" in text


@pytest.mark.parametrize("args, words", [
    (["--lr-size", "8x8"], ["--lr-size"]),
    (["--seconds", "1"], ["--seconds"]),
    (["--threads", "0"], ["--threads"]),
    (["--fps", "0"], ["--fps"]),
    (["--variants", "plain,fast"], ["--variants"]),
    (["--quality-frames", "0"], ["--quality-frames"]),
    (["--levels", "all,d9-w16"], ["--levels", "d9-w16"]),
])
def test_bench_browser_refuses_bad_options(monkeypatch, capsys, tmp_path, args, words):
    code, _, err = run_cli(monkeypatch, capsys, "bench", "browser", "--out", tmp_path / "b", *args)
    _one_line_error(code, err, *words)
    assert code == 5 and not (tmp_path / "b").exists()
