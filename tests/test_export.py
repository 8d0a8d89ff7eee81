"""`adasr export --format onnx`: each level's graph, fed from the one shared weight buffer,
computes what the torch level computes; a model update to the buffer reaches every level."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adasr.export import OnnxLevels, export_onnx, write_export
from adasr.package import load_package
from adasr.paths import bundled_package
from adasr.stream.codec import model_vector

# Float32 through two conv kernels (torch's and ONNX Runtime's) differs in summation order only:
# a few 1e-7 on outputs in [0, 1]. 2e-4 is 1/20 of a uint8 step: far from the one step a
# viewer could see, far above what reordering sums can produce.
TOL = 2e-4
LEVELS = [0, 3, 5]  # smallest, middle (its own weights) and largest of the bundled (codec) x2 package
pytestmark = pytest.mark.slow  # three levels exported: several seconds


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_root):
    pkg = load_package(bundled_package(2))
    folder = tmp_path_factory.mktemp("onnx") / "x2"
    write_export(export_onnx(pkg, (36, 64), LEVELS), folder)
    return pkg, folder


def _frame(data_root) -> np.ndarray:
    from adasr.serve.media import LiveSource

    src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(72, 128), max_frames=1)
    return next(src.frames())[::2, ::2].copy()  # 36 x 64 LR


def _torch(pkg, i: int, x: np.ndarray, net=None) -> np.ndarray:
    """Level `i` in torch: its own weights where it has them, else `net` (default: the package's
    supernet) run as the level's sub-network."""
    with torch.no_grad():
        if pkg.has_own(i):
            return pkg.level_model(i)(torch.from_numpy(x)).numpy()
        return (net or pkg.supernet)(torch.from_numpy(x), cfg=pkg.family[i].config).numpy()


def test_each_level_matches_torch_from_one_buffer(exported, data_root):
    pkg, folder = exported
    side = json.loads((folder / "manifest.json").read_text())
    own = sum(p.numel() for sub in pkg.own.values() for p in sub.parameters())
    assert [lv["index"] for lv in side["levels"]] == LEVELS and own > 0  # the middle level has its own weights
    assert side["weights"]["shared"] + own == side["weights"]["count"]  # its tensors follow the shared ones
    assert [lv["own_weights"] for lv in side["levels"]] == [pkg.has_own(i) for i in LEVELS]
    # the buffer's shared part is the model stream's vector (what updates change)
    levels = OnnxLevels(folder)
    assert np.array_equal(levels.buffer[: side["weights"]["shared"]], model_vector(pkg.supernet).numpy())
    # no weight lives in a graph: every level is small next to the buffer and reads views of it
    for lv in side["levels"]:
        assert (folder / lv["file"]).stat().st_size < (folder / "weights.bin").stat().st_size / 4
        for arr in levels.inputs[LEVELS.index(lv["index"])].values():
            assert np.shares_memory(arr, levels.buffer)
    x = np.ascontiguousarray(_frame(data_root).transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    for k, i in enumerate(LEVELS):
        want = _torch(pkg, i, x)
        got = levels.run(k, x)
        assert got.shape == want.shape == (1, 3, 72, 128)
        assert float(np.abs(got - want).max()) <= TOL, (i, float(np.abs(got - want).max()))


def test_an_update_to_the_buffer_reaches_every_level(exported, data_root):
    pkg, folder = exported
    levels = OnnxLevels(folder)
    vec = model_vector(pkg.supernet)
    rng = np.random.default_rng(0)
    idx = rng.choice(vec.numel(), size=vec.numel() // 20, replace=False)
    new = vec.clone()
    new[idx] += torch.from_numpy(rng.normal(0, 0.05, idx.size).astype(np.float32))
    levels.buffer[: vec.numel()] = new.numpy()  # in place: the sessions' inputs are views
    net = load_package(bundled_package(2)).supernet
    torch.nn.utils.vector_to_parameters(new, net.parameters())
    x = np.ascontiguousarray(_frame(data_root).transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    for k, i in enumerate(LEVELS):
        want = _torch(pkg, i, x, net)
        before = _torch(pkg, i, x)
        got = levels.run(k, x)
        if pkg.has_own(i):  # its own weights: the shared vector does not reach them
            assert float(np.abs(want - before).max()) == 0.0
        else:
            assert float(np.abs(want - before).max()) > 10 * TOL  # the update changes the output
        assert float(np.abs(got - want).max()) <= TOL


def test_residual_only_graphs_output_the_learned_branch(tmp_path, data_root):
    """--residual-only: the graph's output r is the level's image before the pixel shuffle minus
    the exact bicubic skip; r plus bicubic is the torch level within TOL; the skip's ops (the
    replicate pad and its conv) are not in the graph."""
    import onnx

    from adasr.export import residual_to_image
    from adasr.nn.upsample import bicubic_phases

    pkg = load_package(bundled_package(2))
    folder = tmp_path / "res"
    write_export(export_onnx(pkg, (36, 64), [0, 5], residual=True), folder)
    side = json.loads((folder / "manifest.json").read_text())
    assert side["output"]["name"] == "r" and side["output"]["layout"] == "residual-phases"
    assert side["output"]["shape"] == [1, 12, 36, 64] and side["precision"] == "float32"
    levels = OnnxLevels(folder)
    x = np.ascontiguousarray(_frame(data_root).transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    for k, i in enumerate([0, 5]):
        ops = {n.op_type for n in onnx.load(folder / side["levels"][k]["file"]).graph.node}
        assert "Pad" not in ops and "DepthToSpace" not in ops, ops
        cfg = pkg.family[i].config
        with torch.no_grad():
            phases = pkg.supernet(torch.from_numpy(x), cfg=cfg, phases=True)
            want_r = (phases - bicubic_phases(torch.from_numpy(x), 2)).numpy()
        r = levels.run(k, x)
        assert r.shape == (1, 12, 36, 64) and float(np.abs(r - want_r).max()) <= TOL
        assert float(np.abs(residual_to_image(r, x, 2) - _torch(pkg, i, x)).max()) <= TOL
        assert float(np.abs(levels.image(k, x) - _torch(pkg, i, x)).max()) <= TOL


def test_int8_export_is_close_to_float_and_holds_its_weights(tmp_path, data_root):
    """--int8: per-channel int8 weights and uint8 activations (calibrated on real frames) inside
    the graph. Against float32 torch on a real frame, within INT8_PSNR_DB: 8-bit activations
    with per-tensor ranges add about a third of a uint8 step of noise per quantized tensor (a
    handful here), well under the 2-3 steps RMS that 40 dB allows; a broken quantization
    (wrong scale, clipped range, the skip rounded) lands far below."""
    import onnx

    from adasr.serve.media import LiveSource

    src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(72, 128), max_frames=40)
    frames = [f[::2, ::2].copy() for i, f in enumerate(src.frames()) if i % 10 == 0]
    pkg = load_package(bundled_package(2))
    folder = tmp_path / "int8"
    write_export(export_onnx(pkg, (36, 64), [0], calibration=frames[:3]), folder)
    side = json.loads((folder / "manifest.json").read_text())
    assert side["precision"] == "int8" and side["weights_in_graphs"] and side["levels"][0]["inputs"] == []
    ops = [n.op_type for n in onnx.load(folder / "level-0.onnx").graph.node]
    assert ops.count("QuantizeLinear") >= 5, ops
    levels = OnnxLevels(folder)
    x = np.ascontiguousarray(frames[3].transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    got = np.clip(levels.run(0, x), 0, 1)
    want = np.clip(_torch(pkg, 0, x), 0, 1)
    psnr = 10 * np.log10(1 / float(np.mean((got - want) ** 2)))
    assert psnr >= INT8_PSNR_DB, psnr


INT8_PSNR_DB = 40.0
