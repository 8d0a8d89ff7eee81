"""The torch-free runtime: a package's levels as ONNX Runtime graphs (`adasr.runtime.onnx_engine`).

Tolerance: the ONNX graphs and torch compute the same level with different convolution kernels,
so a value at a rounding boundary may land one uint8 step either side: at most one step, and
such pixels the exception (`assert_frames_close`: PSNR of at least 50 dB against torch's frame).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adasr import threads
from adasr._digest import tensors_sha256
from adasr.errors import ConfigError, ModelError
from adasr.package import check_profile, load_package, read_package_arrays
from adasr.paths import MODELS_DIR
from adasr.runtime.engine import Engine
from adasr.runtime.onnx_engine import (
    OnnxEngine,
    backend,
    graphs_folder,
    onnx_device_key,
    open_onnx_engine,
    profile_onnx,
)
from tests.helpers import assert_frames_close

BUNDLED = sorted(MODELS_DIR.glob("sr_x*.adasr"))
ROOT = Path(__file__).resolve().parents[2]


def _frame(h: int = 36, w: int = 52, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_every_bundled_level_matches_the_torch_engine(path):
    """The committed graphs of every bundled package, fed its own weights, give torch's frames
    (levels with their own weights included: the clean x3 package and the codec x3 package)."""
    engine = OnnxEngine(read_package_arrays(path))
    ref = Engine(load_package(path), tile=None)
    frame = _frame()
    assert len(engine) == len(ref)
    for i in range(len(ref)):
        engine.switch(i)
        ref.switch(i)
        with torch.inference_mode():
            want = ref.process(frame)
        assert_frames_close(engine.process(frame), want)


def test_switch_threads_and_frames():
    path = MODELS_DIR / "sr_x2-codec.adasr"
    engine = OnnxEngine(read_package_arrays(path), level=1)
    assert engine.level == 1 and engine.scale == 2
    frame = _frame(20, 24)
    before = threads.get_num_threads()
    engine.warmup((20, 24), levels=[0, 1])
    # sessions for the count now and for one thread (the thread rule's two choices), nothing switched
    assert {(0, 1), (1, 1)} <= set(engine._sessions)
    assert threads.get_num_threads() == before and engine.level == 1 and engine.switch_latencies == []
    out = engine.process(frame)
    assert out.shape == (40, 48, 3) and out.dtype == np.uint8
    assert engine.switch(0) >= 0 and engine.level == 0 and len(engine.switch_latencies) == 1
    with pytest.raises(ConfigError, match="10-bit frames need the torch runtime"):
        engine.process(frame.astype(np.uint16))
    with pytest.raises(ConfigError, match="uint8 HxWx3"):
        engine.process(frame[..., 0])
    with pytest.raises(ConfigError, match="level"):
        engine.switch(len(engine))
    # every level reads the package's arrays: resident once, not once per level
    assert 0 < engine.resident_bytes() <= engine.supernet_bytes() + sum(len(g) for g in engine._graphs)


def _copy_package(tmp_path: Path) -> Path:
    src = MODELS_DIR / "sr_x2-codec.adasr"
    dst = tmp_path / "p.adasr"
    shutil.copy(src, dst)
    shutil.copytree(graphs_folder(src), graphs_folder(dst))
    return dst


def test_missing_or_damaged_graphs_are_refused(tmp_path):
    path = _copy_package(tmp_path)
    pkg = read_package_arrays(path)
    OnnxEngine(pkg)  # intact
    folder = graphs_folder(path)
    graph = folder / "level-2.onnx"
    intact = graph.read_bytes()
    data = bytearray(intact)
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged"):
        OnnxEngine(pkg)
    graph.write_bytes(intact)
    side = json.loads((folder / "manifest.json").read_text())
    side["levels"] = side["levels"][:-1]
    (folder / "manifest.json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match="no runtime graph for level"):
        OnnxEngine(pkg)
    shutil.rmtree(folder)
    with pytest.raises(ModelError, match="export .* --format runtime"):
        OnnxEngine(pkg)


def test_package_arrays_are_checked_as_load_package_checks_them(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = _copy_package(tmp_path)
    pkg = read_package_arrays(path)
    ref = load_package(path)
    assert pkg.family.to_json() == ref.family.to_json() and pkg.precision == ref.precision
    assert sorted(pkg.profiles) == sorted(ref.profiles)
    # what `adasr info` shows is the same without torch (the own-weights level included)
    assert pkg.summary() == ref.summary() and pkg.summary()["own_levels"] == [ref.family[3].config.id]
    # the digest of NumPy arrays is the digest of the same torch tensors
    from adasr.package import _state

    assert tensors_sha256(pkg.tensors) == tensors_sha256(_state(ref.supernet, ref.own))
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, str(tmp_path / "bad.adasr"), metadata=meta)
    with pytest.raises(ModelError, match="checksum mismatch"):
        read_package_arrays(tmp_path / "bad.adasr")


@pytest.mark.slow
def test_profile_on_first_use_then_from_the_cache(tmp_path, monkeypatch):
    import functools

    from adasr.runtime import onnx_engine

    monkeypatch.setenv("ADASR_CACHE", str(tmp_path / "cache"))
    # the measurement itself is profile_onnx's (tested below); small frames keep this test short
    # (the idle column only: a column under load is profile_onnx's own test below)
    monkeypatch.setattr(onnx_engine, "profile_onnx", functools.partial(onnx_engine.profile_onnx, repeats=1,
                                                                       warmup=0, lr_hw=(18, 32), loads=(0.0,)))
    path = _copy_package(tmp_path)
    seen = []
    engine = open_onnx_engine(path, 2, on_progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert engine.profile_source == "measured" and seen and seen[-1][1] == seen[-1][2]
    profile = engine.package.profiles[onnx_device_key()]
    check_profile(profile, "onnx profile")
    assert profile["device"].endswith("-onnx") and profile["backend"] == "onnxruntime"
    # the engine's family carries the measured seconds, in the order of the levels
    assert all(lv.measured_s for lv in engine.levels)
    again = open_onnx_engine(path, 2)
    assert again.profile_source == "cache"
    assert not list(tmp_path.glob("*.adasr.tmp*"))  # the package file is never rewritten
    with pytest.raises(ConfigError, match="int8 levels need the torch runtime"):
        open_onnx_engine(path, 2, precision="int8")
    with pytest.raises(ConfigError, match="x2 package"):
        open_onnx_engine(path, 3)


@pytest.mark.slow
def test_profile_onnx_measures_every_level_under_each_load():
    engine = OnnxEngine(read_package_arrays(MODELS_DIR / "sr_x2-codec.adasr"))
    profile = profile_onnx(engine, loads=(0.0, 0.5), repeats=2, warmup=1, lr_hw=(18, 32))
    check_profile(profile, "onnx profile")
    assert list(profile["levels"]) == ["0.00", "0.50"]
    for column in profile["levels"].values():
        assert set(column["measured"]) == {lv.config.id for lv in engine.levels}
    # the loaded column as the thread rule runs it: one thread
    assert {s["threads"] for s in profile["levels"]["0.50"]["measured"].values()} == {1}
    with pytest.raises(ConfigError, match="repeats"):
        profile_onnx(engine, repeats=0)


def test_backend_choice(monkeypatch):
    monkeypatch.delenv("ADASR_BACKEND", raising=False)
    assert backend() == "torch"  # torch is installed here: auto picks it
    assert backend("onnx") == "onnx"
    monkeypatch.setenv("ADASR_BACKEND", "onnx")
    assert backend() == "onnx"
    with pytest.raises(ConfigError, match="backend must be one of"):
        backend("tensorflow")


@pytest.mark.slow
def test_upscale_through_either_runtime_gives_the_same_image(tmp_path, monkeypatch):
    """`adasr upscale` of an image with a package: ONNX Runtime's output is torch's, to one step."""
    from adasr.images import read_image, write_image
    from adasr.upscale_run import upscale_file

    monkeypatch.setenv("ADASR_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "in.png"
    write_image(src, _frame(30, 40, seed=3))
    outs = {}
    for name in ("torch", "onnx"):
        monkeypatch.setenv("ADASR_BACKEND", name)
        upscale_file(src, tmp_path / f"{name}.png", scale=2, level="2")
        outs[name] = read_image(tmp_path / f"{name}.png").rgb
    assert_frames_close(outs["onnx"], outs["torch"])


# -- without torch at all (what `make run` installs) ------------------------------------------------

# One interpreter in which torch cannot be imported runs several commands in turn (each one's exit
# code, stdout and stderr captured), so the interpreter starts once.
_NO_TORCH = """
import io, json, sys
sys.modules["torch"] = None
from adasr._cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr, sys.argv = out, err, ["adasr", *argv]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def _adasr_without_torch(tmp_path: Path, *commands: list[str]) -> list[dict]:
    env = {**os.environ, "ADASR_CACHE": str(tmp_path / "cache")}
    env.pop("ADASR_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, json.dumps(commands)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_play_and_upscale_run_without_torch(tmp_path):
    from adasr.paths import data_root

    clip = data_root() / "video" / "bikes_640x272.mp4"
    assert clip.is_file(), f"shared clip missing: {clip} (set ADASR_DATA)"
    play, up, prof, info, train = _adasr_without_torch(
        tmp_path,
        ["play", str(clip), "--lr-size", "160x68", "--max-frames", "8", "--policy", "fixed", "--level", "1",
         "--reference-every", "4", "--quiet", "--json", str(tmp_path / "play.json"),
         "--out", str(tmp_path / "play.mp4")],
        ["upscale", str(clip), str(tmp_path / "up.mkv"), "--max-frames", "3", "--level", "0"],
        ["profile", str(MODELS_DIR / "sr_x2-codec.adasr"), "--loads", "0", "--repeats", "1"],
        ["info", str(MODELS_DIR / "sr_x2-codec.adasr")],
        ["train", "--out", str(tmp_path / "run")])
    assert play["code"] == 0, play["err"]
    summary = json.loads((tmp_path / "play.json").read_text())
    assert summary["frames"] == 8 and summary["out_size"] == [320, 136] and summary["level_histogram"] == {"1": 8}
    assert summary["psnr"]["frames"] == 2 and summary["psnr"]["gain"] > 0
    assert (tmp_path / "play.mp4").stat().st_size > 0
    assert up["code"] == 0 and "wrote" in up["out"] and (tmp_path / "up.mkv").stat().st_size > 0, up["err"]
    assert prof["code"] == 0 and "(ONNX Runtime) stored in" in prof["out"], prof["err"]
    assert len(list((tmp_path / "cache" / "profiles").glob("*/cpu-*-onnx.json"))) == 1  # the cache, keyed by -onnx
    assert info["code"] == 0 and "level 3" in info["out"] and "(own weights)" in info["out"], info["err"]
    # a command that trains needs torch: one line naming the extra, no traceback
    assert train["code"] == ConfigError.exit_code and "Traceback" not in train["err"]
    assert "pip install 'adasr[torch]'" in train["err"].strip() and train["err"].strip().count("\n") == 0
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_export_format_runtime_writes_the_graphs_beside_the_package(tmp_path, monkeypatch, capsys):
    from tests.cli.test_cli import _one_line_error, run_cli

    path = tmp_path / "p.adasr"
    shutil.copy(MODELS_DIR / "sr_x3-codec.adasr", path)
    code, out, err = run_cli(monkeypatch, capsys, "export", path, "--format", "runtime")
    assert code == 0, err
    kept = json.loads((graphs_folder(MODELS_DIR / "sr_x3-codec.adasr") / "manifest.json").read_text())
    fresh = json.loads((graphs_folder(path) / "manifest.json").read_text())
    assert [lv["sha256"] for lv in fresh["levels"]] == [lv["sha256"] for lv in kept["levels"]]  # deterministic
    OnnxEngine(read_package_arrays(path))  # and the runtime finds them there
    _one_line_error(*run_cli(monkeypatch, capsys, "export", path, "--format", "runtime", "--int8")[::2],
                    "--format onnx")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    code, _, err = run_cli(monkeypatch, capsys, "export", path, "--format", "runtime", "--out", tmp_path / "mine")
    _one_line_error(code, err, "refus")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
