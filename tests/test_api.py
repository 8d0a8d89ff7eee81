"""The public face: `import adasr` is cheap and its entry points work on real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import adasr
from adasr.images import read_image, write_image
from adasr.modelfile import ModelSpec, save_model
from adasr.nn.registry import build_model
from adasr.package import save_package
from adasr.runtime.engine import Engine
from adasr.upscale import sr_array
from adasr.video import probe
from tests.conftest import random_image
from tests.helpers import make_net
from tests.runtime.test_player import TINY, _family
from tests.video.test_video import make_clip_with_audio

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_import_is_cheap_and_every_entry_point_resolves():
    code = ("import sys, adasr; assert 'torch' not in sys.modules and 'av' not in sys.modules; "
            "names = [n for n in adasr.__all__ if not getattr(adasr, n).__doc__]; assert not names, names")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {"load_model", "load_package", "Engine", "upscale_image", "upscale_video", "play",
            "AdasrError"} <= set(adasr.__all__) <= set(dir(adasr))
    with pytest.raises(AttributeError):
        adasr.no_such_entry_point  # noqa: B018


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    args = {"scale": 2, "d": 8, "s": 4, "m": 1}
    save_model(path, build_model("fsrcnn", **args), ModelSpec("fsrcnn", args, 2))
    return path


def test_upscale_image_takes_a_path_a_loaded_pair_or_a_module(tmp_path, model_file):
    src = tmp_path / "in.png"
    write_image(src, random_image(12, 10))
    pair = adasr.load_model(model_file)
    expected = sr_array(pair[0], read_image(src).rgb, 2)
    for i, model in enumerate((model_file, str(model_file), pair)):
        assert adasr.upscale_image(model, src, tmp_path / f"o{i}.png") == (20, 24)
        assert np.array_equal(read_image(tmp_path / f"o{i}.png").rgb, expected)
    assert adasr.upscale_image(pair[0], src, tmp_path / "o.png", scale=2) == (20, 24)
    with pytest.raises(adasr.ConfigError, match="scale"):
        adasr.upscale_image(torch.nn.Identity(), src, tmp_path / "x.png")
    with pytest.raises(adasr.ConfigError, match="does not match"):
        adasr.upscale_image(pair, src, tmp_path / "x.png", scale=3)
    with pytest.raises(adasr.ConfigError, match="cannot upscale"):
        adasr.upscale_image(42, src, tmp_path / "x.png")
    with pytest.raises(adasr.ModelError):
        adasr.upscale_image(tmp_path / "missing.safetensors", src, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_upscale_with_a_package_or_an_engine_and_a_video(tmp_path):
    net = make_net(TINY).eval()
    pkg = tmp_path / "tiny.adasr"
    save_package(pkg, net, _family(net))
    src = tmp_path / "in.png"
    write_image(src, random_image(16, 16))
    adasr.upscale_image(pkg, src, tmp_path / "best.png")  # a package: its best level
    engine = Engine.load(str(pkg))
    engine.switch(len(engine) - 1)
    # bit-exact: the same engine level on the same channels-last input of the same shape (process
    # rounds before the pixel shuffle, which commutes with it)
    assert np.array_equal(read_image(tmp_path / "best.png").rgb, engine.process(read_image(src).rgb))
    assert adasr.upscale_image(engine, src, tmp_path / "l0.png", level=0) == (32, 32) and engine.level == 0
    clip = make_clip_with_audio(tmp_path / "in.mp4", frames=3, size=(32, 24))
    summary = adasr.upscale_video(engine, clip, tmp_path / "out.mp4")
    assert summary.frames == 3 and (summary.width, summary.height) == (64, 48)
    assert (probe(tmp_path / "out.mp4").width, probe(tmp_path / "out.mp4").height) == (64, 48)
    with pytest.raises(adasr.ConfigError, match="level"):
        adasr.upscale_image(build_model("bicubic", scale=2), src, tmp_path / "x.png", scale=2, level=1)


def test_load_engine_opens_a_package_and_refuses_what_is_not_one(tmp_path, model_file):
    net = make_net(TINY).eval()
    pkg = tmp_path / "tiny.adasr"
    save_package(pkg, net, _family(net))
    engine = adasr.load_engine(pkg, TINY.scale, profile=False)  # no profile here: cached or as predicted
    assert isinstance(engine, Engine) and len(engine) == 2 and engine.package.scale == TINY.scale
    assert engine.profile_source in ("cache", "predicted")
    with pytest.raises(adasr.InputError, match="not found"):
        adasr.load_engine(tmp_path / "none.adasr", 2)
    with pytest.raises(adasr.ConfigError, match="single model file"):
        adasr.load_engine(model_file, 2)
    with pytest.raises(adasr.ConfigError, match="x2 package"):
        adasr.load_engine(pkg, 3)


def test_upscale_video_runs_with_the_thread_rule_and_restores_threads(monkeypatch, tmp_path):
    """A single model through the library gets the runtime's thread rule (one thread under load),
    as the CLI does; torch's own setting is back afterwards."""
    import adasr.estimate

    clip = make_clip_with_audio(tmp_path / "in.mp4", frames=2, size=(16, 12))
    model = build_model("bicubic", scale=2)
    keep = torch.get_num_threads()
    torch.set_num_threads(2)  # what torch would use on two idle cores
    try:
        seen: list[int] = []
        for load, want in ((0.9, 1), (0.0, 2)):
            monkeypatch.setattr(adasr.estimate, "sample_load_share", lambda seconds=0.25, v=load: v)
            seen.clear()
            adasr.upscale_video(model, clip, tmp_path / f"o{load}.mp4", scale=2,
                                on_frame=lambda done, total: seen.append(torch.get_num_threads()))
            assert seen == [want, want] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(keep)
    with pytest.raises(adasr.ConfigError, match="package"):
        adasr.upscale_video(model, clip, tmp_path / "x.mp4", scale=2, time_budget="1m")
