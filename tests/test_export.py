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
LEVELS = [0, 3, 5]  # smallest, middle and largest of the bundled (codec) x2 package
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


def _torch(net, cfg, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x), cfg=cfg).numpy()


def test_each_level_matches_torch_from_one_buffer(exported, data_root):
    pkg, folder = exported
    side = json.loads((folder / "manifest.json").read_text())
    assert [lv["index"] for lv in side["levels"]] == LEVELS and side["weights"]["shared"] == side["weights"]["count"]
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
        want = _torch(pkg.supernet, pkg.family[i].config, x)
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
        want = _torch(net, pkg.family[i].config, x)
        before = _torch(pkg.supernet, pkg.family[i].config, x)
        got = levels.run(k, x)
        assert float(np.abs(want - before).max()) > 10 * TOL  # the update changes the output
        assert float(np.abs(got - want).max()) <= TOL
