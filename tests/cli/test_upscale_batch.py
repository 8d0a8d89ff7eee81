"""`adasr upscale` as a batch tool: folders and several inputs, outputs that exist, --version, URLs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adasr.images import read_image, write_image
from adasr.video import probe
from tests.cli.test_cli import run_cli
from tests.conftest import random_image
from tests.video.test_video import make_clip_with_audio


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from adasr.modelfile import ModelSpec, save_model
    from adasr.nn.registry import build_model

    path = tmp_path_factory.mktemp("model") / "tiny_x2.safetensors"
    args = {"scale": 2, "d": 8, "s": 4, "m": 1}
    save_model(path, build_model("fsrcnn", **args), ModelSpec("fsrcnn", args, 2))
    return path


@pytest.fixture()
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        write_image(src / f"img{i}.png", random_image(6 + i, 8, seed=i))
    make_clip_with_audio(src / "a.mp4", frames=3, size=(16, 12))
    make_clip_with_audio(src / "b.mp4", frames=2, size=(16, 12))
    (src / "notes.txt").write_text("not media")
    return src


@pytest.mark.slow
def test_a_folder_of_images_and_clips_in_one_command(monkeypatch, capsys, tmp_path, folder, tiny_model):
    outdir = tmp_path / "out"
    code, out, err = run_cli(monkeypatch, capsys, "upscale", folder, outdir, "--model", tiny_model, "--quiet",
                             "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["done"], s["skipped"], s["failed"]) == (7, 0, 0)
    assert sorted(p.name for p in outdir.iterdir()) == ["a.mp4", "b.mp4"] + [f"img{i}.png" for i in range(5)]
    assert read_image(outdir / "img4.png").rgb.shape == (20, 16, 3)
    a = probe(outdir / "a.mp4")
    assert (a.width, a.height, a.frame_count, a.has_audio) == (32, 24, 3, True)
    # again: every output exists, so every file is skipped and nothing is rewritten
    before = {p.name: p.stat().st_mtime_ns for p in outdir.iterdir()}
    code, out, err = run_cli(monkeypatch, capsys, "upscale", folder, outdir, "--model", tiny_model, "--quiet")
    assert code == 0, err
    assert "7 skipped" in out and "--overwrite" in out
    assert {p.name: p.stat().st_mtime_ns for p in outdir.iterdir()} == before
    # -y: done again
    code, out, err = run_cli(monkeypatch, capsys, "upscale", folder / "img0.png", folder / "img1.png", outdir,
                             "--model", tiny_model, "--quiet", "-y", "--json")
    assert code == 0, err
    assert json.loads(out)["done"] == 2


def test_an_existing_output_is_refused_without_overwrite(monkeypatch, capsys, tmp_path, tiny_model):
    src = tmp_path / "a.png"
    write_image(src, random_image(8, 8))
    dst = tmp_path / "b.png"
    dst.write_bytes(b"keep me")
    code, _, err = run_cli(monkeypatch, capsys, "upscale", src, dst, "--model", tiny_model)
    assert code == 3 and "exists; add --overwrite (or -y)" in err and len(err.strip().splitlines()) == 1
    assert dst.read_bytes() == b"keep me"
    code, _, err = run_cli(monkeypatch, capsys, "upscale", src, dst, "--model", tiny_model, "--overwrite", "--quiet")
    assert code == 0, err
    assert read_image(dst).rgb.shape == (16, 16, 3)


def test_batch_refusals(monkeypatch, capsys, tmp_path, tiny_model):
    a, b = tmp_path / "x" / "same.png", tmp_path / "y" / "same.png"
    for p in (a, b):
        p.parent.mkdir()
        write_image(p, random_image(8, 8))
    code, _, err = run_cli(monkeypatch, capsys, "upscale", a, b, tmp_path / "out", "--model", tiny_model)
    assert code == 2 and "would both be written to" in err
    code, _, err = run_cli(monkeypatch, capsys, "upscale", a.parent, a.parent, "--model", tiny_model)
    assert code == 3 and "is the input folder" in err
    assert sorted(p.name for p in a.parent.iterdir()) == ["same.png"]


def test_version_and_url(monkeypatch, capsys):
    from adasr import __version__

    code, out, _ = run_cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"adasr {__version__}"
    code, _, err = run_cli(monkeypatch, capsys, "upscale", "https://example.com/clip.mp4", "out.mp4")
    assert code == 2 and "URL inputs are not supported (https://example.com/clip.mp4)" in err


def test_start_and_duration_are_checked(monkeypatch, capsys, tmp_path, tiny_model):
    clip = make_clip_with_audio(tmp_path / "c.mp4", frames=3, size=(16, 12))
    code, _, err = run_cli(monkeypatch, capsys, "upscale", clip, tmp_path / "o.mp4", "--model", tiny_model,
                           "--duration", "0")
    assert code == 5 and "duration" in err
    code, _, err = run_cli(monkeypatch, capsys, "upscale", clip, tmp_path / "o.mp4", "--model", tiny_model,
                           "--start", "30")
    assert code == 2 and "time range" in err
    assert not (tmp_path / "o.mp4").exists()
    np.testing.assert_equal(sorted(p.name for p in tmp_path.iterdir()), ["c.mp4"])
