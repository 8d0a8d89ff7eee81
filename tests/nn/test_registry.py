"""The model registry: every registered architecture builds at a tiny size, saves, loads and
shows in `adasr info`; built-in names are discovered without their modules imported first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adasr.modelfile import ModelSpec, load_model, save_model
from adasr.nn.dlsr import chain_genotype
from adasr.nn.registry import BUILTIN_MODULES, build_model, model_names, resolve_args
from tests.cli.test_cli import run_cli

# Tiny arguments for every registered architecture; a new one must add its entry here.
TINY = {
    "bicubic": {"scale": 2},
    "fsrcnn": {"scale": 2, "d": 8, "s": 4, "m": 1},
    "espcn": {"scale": 3, "f1": 8, "f2": 4},
    "imdn": {"scale": 2, "channels": 8, "blocks": 1},
    "dlsr": {"scale": 2, "genotype": chain_genotype([("c3",) * 3], 4).to_dict()},
    "supernet": {"space": "tiny"},
    "subnet": {"config": "x2-d1-w8-e1-k3-s1-b:r-up:ps"},
    "srvc": {"scale": 2, "features": 2, "hidden": 4, "patch": 3, "body": 4},
}


def test_every_registered_architecture_has_tiny_args():
    assert set(model_names()) == set(TINY) == set(BUILTIN_MODULES)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.slow
def test_builds_saves_loads_and_shows_in_info(name, tmp_path, monkeypatch, capsys):
    args = resolve_args(name, TINY[name])
    model = build_model(name, **args).eval()
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        y = model(x)
    scale = args.get("scale", 2)
    assert y.shape == (1, 3, 7 * scale, 9 * scale)
    path = tmp_path / f"{name}.safetensors"
    save_model(path, model, ModelSpec(name, args, scale))
    loaded, spec = load_model(path)
    assert spec.arch == name and spec.args == args
    with torch.no_grad():
        assert torch.equal(loaded(x), y)
    code, out, err = run_cli(monkeypatch, capsys, "info", path)
    assert code == 0, err
    assert f"architecture  {name}" in out and f"x{scale}" in out


@pytest.mark.integration
def test_srvc_model_file_loads_in_a_fresh_interpreter(tmp_path):
    # `adasr info` once said "unknown architecture 'srvc'": the registry never imported its module.
    path = tmp_path / "srvc.safetensors"
    args = TINY["srvc"]
    save_model(path, build_model("srvc", **args), ModelSpec("srvc", args, 2))
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "adasr", "info", str(path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "architecture  srvc" in done.stdout
