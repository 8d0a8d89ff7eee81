"""int8 levels (PyTorch oneDNN kernels) and `adasr bench backends` on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adasr.errors import ConfigError
from adasr.metrics import psnr
from adasr.nn.supernet import SubNet
from adasr.paths import MODELS_DIR
from adasr.runtime.engine import frame_to_tensor, phases_to_frame, tensor_to_frame
from adasr.runtime.int8 import quantize_level
from adasr.space import SubnetConfig
from tests.cli.test_cli import run_cli
from tests.conftest import random_image


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random image (natural frames are smooth; pure noise saturates every range)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, h // 4, w // 4, generator=g)
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return (big[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("upsampler", ["bic", "ps"])
def test_int8_level_matches_float(upsampler):
    torch.manual_seed(0)
    net = SubNet(SubnetConfig(2, 8, 1, 3, ("r", "r"), True, upsampler)).eval()
    for p in net.parameters():
        p.data.mul_(0.5)
    q = quantize_level(net, [_smooth(24, 24, s) for s in range(3)])
    frame = _smooth(24, 24, 7)
    with torch.inference_mode():
        ref = tensor_to_frame(net(frame_to_tensor(frame, False)))
        out = phases_to_frame(q.phases(frame_to_tensor(frame)), 2)
        assert torch.is_tensor(q.head.weight()) and q.head.weight().is_quantized
    assert out.shape == ref.shape == (48, 48, 3)
    assert psnr(out.astype(np.float64), ref.astype(np.float64), 255.0) > 35.0
    assert q.int8_bytes() > 0


def test_int8_refuses_unsupported_levels():
    net = SubNet(SubnetConfig(2, 8, 1, 3, ("c",), True, "tc"))
    with pytest.raises(ConfigError, match="int8 levels support"):
        quantize_level(net, [random_image(16, 16)])
    ok = SubNet(SubnetConfig(2, 8, 1, 3, ("r",), True, "bic"))
    with pytest.raises(ConfigError, match="at least one frame"):
        quantize_level(ok, [])


@pytest.mark.slow
def test_backends_bench_runs_every_level_through_each_backend(monkeypatch, capsys, tmp_path, data_root):
    out = tmp_path / "bb"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "bench", "backends", MODELS_DIR / "sr_x2.adasr",
                                   "--lr-size", "24x16", "--data", "none", "--calib-frames", "1", "--rounds", "1",
                                   "--repeats", "1", "--out", out, "--threads", "1")
    assert code == 0, stderr
    result = json.loads((out / "backends.json").read_text())
    from adasr.threads import native_bf16

    bf16 = ["torch-bf16"] if native_bf16() else []  # a row only where bf16 is native, not emulated
    assert result["backends"] == ["torch-fp32", "runtime-onnx", *bf16, "torch-int8"] and result["peak_gflops"] > 0
    rows = result["sizes"][0]["rows"]
    # torch float32 and int8 (and bf16), the torch-free runtime
    assert len(rows) == (3 + len(bf16)) * len(result["levels"]) >= 24
    for r in rows:
        assert r["ms"] > 0 and r["gflops"] > 0
        # int8 matches the float output closely on a real frame; fp32 against itself is exact, and the
        # torch-free runtime is float32 through other kernels: a uint8 step on a pixel at most (>= 48 dB);
        # bf16 perturbs only the residual (the skip is float32): a grey level here and there (>= 45 dB)
        assert r["psnr_vs_fp32"] > {"torch-fp32": 90, "runtime-onnx": 48, "torch-bf16": 45}.get(r["backend"], 35)
    assert (out / "backends.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args", [["--rounds", "0"], ["--lr-size", "5000x16"], ["--calib-frames", "0"]])
def test_backends_bench_refuses_bad_options(monkeypatch, capsys, tmp_path, args):
    code, _, stderr = run_cli(monkeypatch, capsys, "bench", "backends", MODELS_DIR / "sr_x2.adasr",
                              *args, "--out", tmp_path / "b")
    assert code == 5 and stderr.count("\n") <= 2


def test_engine_int8_precision_switches_between_quantized_levels():
    from adasr.nn.supernet import subnet_cost
    from adasr.runtime.engine import Engine
    from adasr.search.family_search import Family, Level
    from adasr.space import SearchSpace
    from tests.helpers import make_net

    space = SearchSpace.named("lite-x2")
    net = make_net(space)
    for p in net.parameters():
        p.data.mul_(0.3)
    cfgs = [space.smallest(), space.largest()]
    fam = Family(tuple(Level(c, 30.0 + i, *subnet_cost(c, (16, 16)), {"0.00": 0.01 * (i + 1)})
                       for i, c in enumerate(cfgs)), 2, (16, 16))
    calib = [_smooth(16, 16, s) for s in range(2)]
    fp32, int8 = Engine(net, fam), Engine(net, fam, precision="int8", calibration=calib)
    assert all(q is not None for q in int8.int8_levels) and int8.resident_bytes() > fp32.resident_bytes()
    frame = _smooth(16, 16, 5)
    ptrs = int8.data_ptrs()
    for i in (1, 0, 1):
        fp32.switch(i)
        int8.switch(i)
        a, b = fp32.process(frame), int8.process(frame)
        assert b.shape == a.shape == (32, 32, 3)
        assert psnr(a.astype(np.float64), b.astype(np.float64), 255.0) > 35.0
    assert int8.data_ptrs() == ptrs
    with pytest.raises(ConfigError, match="calibration"):
        Engine(net, fam, precision="int8")
    with pytest.raises(ConfigError, match="precision"):
        Engine(net, fam, precision="fp16")


def test_int8_kernels_are_exact_after_the_saturation_check():
    """Every quantized conv returns what the float conv of its dequantized input and weights,
    requantized, gives (within rounding), on its input and on a worst case of codes 0 / 255:
    where oneDNN's kernel saturates, the check moved it to 7-bit weights."""
    from adasr.runtime.int8 import _exact

    torch.manual_seed(1)
    net = SubNet(SubnetConfig(2, 16, 1, 3, ("r",), True, "bic")).eval()
    frames = [random_image(24, 24, seed=s) for s in range(2)]
    q = quantize_level(net, frames)
    bits = q.weight_bits()
    assert len(bits) == 5 and set(bits) <= {7, 8}
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append((m, a[0]))) for m in q.modules()
             if hasattr(m, "weight_qmax")]
    with torch.inference_mode():
        q.phases(frame_to_tensor(frames[1]))
    for h in hooks:
        h.remove()
    assert len(seen) == 5
    g = torch.Generator().manual_seed(5)
    for m, qx in seen:
        codes = (torch.randint(0, 2, qx.shape, generator=g) * 255).to(torch.uint8)
        worst = torch._make_per_tensor_quantized_tensor(codes, qx.q_scale(), qx.q_zero_point())
        for inp in (qx, worst):  # the frame's own input, and the worst case for 16-bit pair sums
            with torch.inference_mode():
                d = (m(inp).int_repr().int() - _exact(m, inp).int_repr().int()).abs().max()
            assert int(d) <= 2


@pytest.mark.slow
def test_backends_bench_saves_the_int8_entry_that_auto_reads(monkeypatch, capsys, tmp_path, data_root):
    import shutil

    from adasr.package import load_package
    from adasr.runtime.int8_rule import int8_choice
    from adasr.timing import device_key

    pkg_path = tmp_path / "x2.adasr"
    shutil.copy(MODELS_DIR / "sr_x2.adasr", pkg_path)
    pkg = load_package(pkg_path)
    key = device_key("cpu", 1)
    pkg.add_profile(key, next(iter(pkg.profiles.values())))
    args = ["bench", "backends", pkg_path, "--lr-size", "24x16", "--max-images", "1", "--calib-frames", "1",
            "--rounds", "1", "--repeats", "1", "--levels", "0", "--threads", "1", "--out", tmp_path / "bb"]
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args, "--save-profile", "--tolerance-db", "0.5")
    assert code == 0, stderr
    section = load_package(pkg_path).profiles[key]["int8"]
    first = pkg.family[0].config.id
    assert list(section["levels"]) == [first] and section["tolerance_db"] == 0.5
    entry = section["levels"][first]
    assert entry["fp32_s"] > 0 and entry["int8_s"] > 0 and abs(entry["psnr_change_db"]) < 0.5
    assert int8_choice(pkg.family, section) == ([0] if entry["int8_s"] < entry["fp32_s"] else [])
    code, _, stderr = run_cli(monkeypatch, capsys, *args, "--save-profile", "--data", "none")
    assert code == 5 and "--save-profile needs --data" in stderr
    load_package(pkg_path).set_precision("fp32")
    code, _, stderr = run_cli(monkeypatch, capsys, *args, "--set-precision", "auto")
    assert code == 5 and "goes with --save-profile" in stderr
    code, _, stderr = run_cli(monkeypatch, capsys, *args, "--save-profile", "--set-precision", "int4")
    assert code == 5 and "precision must be one of" in stderr and load_package(pkg_path).precision == "fp32"
    code, _, stderr = run_cli(monkeypatch, capsys, *args, "--save-profile", "--set-precision", "auto")
    assert code == 0, stderr
    assert load_package(pkg_path).precision == "auto" and key in load_package(pkg_path).profiles


@pytest.mark.parametrize("command", [["upscale", "in.mp4", "out.mp4"], ["play", "in.mp4"]])
def test_precision_option_refuses_unknown_values(monkeypatch, capsys, tmp_path, command):
    (tmp_path / "in.mp4").write_bytes(b"not read: the option is checked first")
    cmd = [str(tmp_path / c) if c.endswith(".mp4") else c for c in command]
    code, _, stderr = run_cli(monkeypatch, capsys, *cmd, "--precision", "fp16")
    assert code == 5 and "precision must be one of fp32, int8, auto" in stderr


def test_onnx_runtime_backends_match_the_float_level(tmp_path):
    """A level exported at one size: fp32 equals torch's output, static int8 stays close, and a
    frame of another size runs in padded tiles."""
    from adasr.bench.ort import ort_backends

    torch.manual_seed(0)
    net = SubNet(SubnetConfig(2, 8, 1, 3, ("r", "r"), True, "bic")).eval()
    for p in net.parameters():
        p.data.mul_(0.5)
    calib = [_smooth(32, 32, s) for s in range(3)]
    fns = ort_backends(net, (32, 32), calib, tmp_path)
    assert sorted(fns) == ["ort-fp32", "ort-int8"] and (tmp_path / f"{net.config.id}-int8.onnx").is_file()
    for frame in (_smooth(32, 32, 7), _smooth(40, 56, 8)):  # the export size, and tiles
        with torch.inference_mode():
            ref = tensor_to_frame(net(frame_to_tensor(frame, False)))
        fp32, int8 = fns["ort-fp32"](frame), fns["ort-int8"](frame)
        assert fp32.shape == int8.shape == ref.shape
        same = psnr(fp32.astype(np.float64), ref.astype(np.float64), 255.0)
        assert same > (60 if frame.shape[0] == 32 else 35)
        assert psnr(int8.astype(np.float64), ref.astype(np.float64), 255.0) > 30


def test_calibration_frames_are_never_enlarged(tmp_path):
    # a clip smaller than the timed size calibrates at its own size (an enlarged frame is smoother
    # than real content, and ranges taken on it clip real detail)
    from adasr.bench.backends import clip_frames
    from adasr.video import VideoWriter

    path = tmp_path / "c.mp4"
    with VideoWriter(path, 32, 24, 10, preset="ultrafast") as vw:
        for k in range(3):
            vw.write(_smooth(24, 32, k))
    assert [f.shape for f in clip_frames(path, (12, 16), 2, stride=1, enlarge=False)] == [(12, 16, 3)] * 2
    assert [f.shape for f in clip_frames(path, (48, 64), 2, stride=1, enlarge=False)] == [(24, 32, 3)] * 2
    assert [f.shape for f in clip_frames(path, (48, 64), 2, stride=1)] == [(48, 64, 3)] * 2


@pytest.mark.slow
def test_luma_bound_is_timed_but_not_scored(monkeypatch, capsys, tmp_path, data_root):
    from adasr.bench.luma import _RGB_TO_YCC

    # the shortcut the bound takes is exact: YCbCr -> RGB adds a Y change to R, G and B alike
    assert torch.allclose(torch.linalg.inv(_RGB_TO_YCC)[:, 0], torch.ones(3), atol=1e-6)
    out = tmp_path / "bb"
    code, _, stderr = run_cli(monkeypatch, capsys, "bench", "backends", MODELS_DIR / "sr_x2.adasr",
                              "--lr-size", "24x16",
                              "--max-images", "1", "--calib-frames", "1", "--rounds", "1", "--repeats", "1",
                              "--levels", "0", "--threads", "1", "--no-onnx", "--no-peers", "--luma", "--tile", "16",
                              "--out", out)
    assert code == 0, stderr
    result = json.loads((out / "backends.json").read_text())
    assert "luma-bound" in result["backends"]
    luma = [r for r in result["sizes"][0]["rows"] if r["backend"] == "luma-bound"]
    assert len(luma) == 1 and luma[0]["ms"] > 0 and luma[0]["psnr_vs_fp32"] is None
    from adasr.threads import native_bf16

    bf16 = {"torch-bf16"} if native_bf16() else set()  # a row only where bf16 is native
    assert set(result["levels"][0]["Set5"]) == {"torch-fp32", "torch-int8", "runtime-onnx", *bf16}
    # in tiles, as the engine runs frames larger than its tile: int8 still matches float32
    assert result["tile"] == 16
    int8 = [r for r in result["sizes"][0]["rows"] if r["backend"] == "torch-int8"]
    assert int8[0]["psnr_vs_fp32"] > 35
