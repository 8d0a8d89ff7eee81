"""Model files: safetensors + JSON config; refusals are clear; no pickle."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from adasr.errors import ModelError
from adasr.modelfile import ModelSpec, load_model, read_spec, save_model
from adasr.nn.baselines import PUBLISHED
from adasr.nn.cost import count_macs, count_params
from adasr.nn.registry import build_model, model_names


@pytest.mark.parametrize("name", ["bicubic", "fsrcnn", "espcn", "imdn"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reference_models_shapes(name, scale):
    kwargs = {"channels": 8, "blocks": 1} if name == "imdn" else {}
    model = build_model(name, scale=scale, **kwargs)
    y = model(torch.rand(1, 3, 11, 7))
    assert y.shape == (1, 3, 11 * scale, 7 * scale)


def test_published_sizes_match_architectures():
    # IMDN as published: 694K params and 158.8 G MACs at 1280x720 output for x2.
    imdn = build_model("imdn", scale=2)
    assert count_params(imdn) == pytest.approx(694e3, rel=0.01)
    assert count_macs(imdn, (360, 640)) / 1e9 == pytest.approx(158.8, rel=0.01)
    assert ("fsrcnn", 2) in PUBLISHED and {"bicubic", "fsrcnn", "espcn", "imdn"} <= set(model_names())


def test_macs_counter_on_a_known_conv():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    assert count_macs(conv, (10, 20)) == 10 * 20 * 8 * 3 * 9


def test_roundtrip_and_info(tmp_path):
    model = build_model("espcn", scale=3)
    spec = ModelSpec("espcn", {"scale": 3}, 3, {"note": "x"})
    save_model(tmp_path / "m.safetensors", model, spec)
    loaded, got = load_model(tmp_path / "m.safetensors")
    assert got == spec and read_spec(tmp_path / "m.safetensors") == spec
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
    assert not list(tmp_path.glob("*.part*"))


def _raw_file(path, tensors, meta):
    save_file(tensors, str(path), metadata=meta)


def test_refusals(tmp_path):
    model = build_model("fsrcnn", scale=2)
    good = tmp_path / "good.safetensors"
    save_model(good, model, ModelSpec("fsrcnn", {"scale": 2}, 2))
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    bad = tmp_path / "version.safetensors"
    meta = json.loads(read_spec(good).to_json())
    _raw_file(bad, {"x": torch.zeros(1)}, {"adasr": json.dumps({**meta, "schema_version": 99})})
    with pytest.raises(ModelError, match="schema version 99"):
        load_model(bad)
    foreign = tmp_path / "foreign.safetensors"
    _raw_file(foreign, {"x": torch.zeros(1)}, {"format": "pt"})
    with pytest.raises(ModelError, match="not an adasr model"):
        load_model(foreign)
    wrong_arch = tmp_path / "wrong.safetensors"
    save_model(wrong_arch, build_model("espcn", scale=2), ModelSpec("fsrcnn", {"scale": 2}, 2))
    with pytest.raises(ModelError, match="do not match"):
        load_model(wrong_arch)
    wrong_shape = tmp_path / "shape.safetensors"
    save_model(wrong_shape, build_model("fsrcnn", scale=2, d=32), ModelSpec("fsrcnn", {"scale": 2}, 2))
    with pytest.raises(ModelError, match="shape"):
        load_model(wrong_shape)
    unknown = tmp_path / "unknown.safetensors"
    save_model(unknown, model, ModelSpec("nope", {"scale": 2}, 2))
    with pytest.raises(ModelError, match="unknown architecture"):
        load_model(unknown)
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ModelError, match="damaged"):
        load_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(ModelError):
        load_model(garbage)
