"""DySR's two baselines (section 3, 5.4), behind the same interface as the `Engine`.

- `StaticRunner`: one standalone static model resident at a time. At set-up every level is
  extracted once and written as its own model file (`adasr.modelfile.save_model`, arch
  "subnet") to a temporary folder; a switch drops the resident model, reads the new level's
  file (`load_model`: parse, build, load weights) and initialises it (eval mode and one warm-up
  forward on a tiny input, as a real player must before the next frame), so a switch costs real
  time: DySR's interruption of service while a model is reloaded.
- `AssembledRunner`: every level resident as its own extracted model; a switch is a reference
  change, but memory is the sum of all levels (no weight sharing).

Both: `levels`, `level`, `process(frame)`, `process_tensor(x)`, `switch(level) -> ns`,
`switch_latencies` (ns), `resident_bytes()`; `run_stream` drives them like the Engine.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from adasr.errors import ConfigError
from adasr.family import Family, Level
from adasr.modelfile import ModelSpec, load_model, save_model
from adasr.nn.supernet import SuperNet
from adasr.runtime.engine import frame_to_tensor, module_bytes, tensor_to_frame
from adasr.runtime.pipeline import Streams, check_level_index

if TYPE_CHECKING:
    from adasr.package import Package

__all__ = ["AssembledRunner", "StaticRunner"]


def _source(source: Package | SuperNet, family: Family | None,
            device_key: str | None) -> tuple[SuperNet, Family, Callable[[Level], nn.Module]]:
    """The supernet, the family, and what makes a level's static module (a package's level with
    its own weights gets those; `Package.level_model`)."""
    if isinstance(source, SuperNet):
        if family is None:
            raise ConfigError("a supernet needs its family of levels")
        return source, family.validate(source.space), lambda lv: source.extract(lv.config).eval()
    if family is None:
        family = source.family_for(device_key) if device_key is not None else source.family
    return source.supernet, family.validate(source.supernet.space), source.level_model


class _Runner(Streams):
    """Shared frame plumbing of the baselines."""

    levels: Family
    level: int
    scale: int
    channels_last: bool

    def _model(self) -> nn.Module:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.levels)

    @torch.inference_mode()
    def process_tensor(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._model()(x)

    def process(self, frame: np.ndarray) -> np.ndarray:
        return tensor_to_frame(self.process_tensor(frame_to_tensor(frame, self.channels_last)))

    def _resident_models(self) -> list[nn.Module]:
        return [self._model()]

    @torch.inference_mode()
    def warmup(self, lr_hw: tuple[int, int], repeats: int = 1) -> None:
        """Run every resident model `repeats` times on a frame of `lr_hw` (H, W), as
        `Engine.warmup` does (Static: only its loaded level; a level it loads later starts cold,
        which is part of a reload's cost)."""
        x = torch.zeros(1, 3, int(lr_hw[0]), int(lr_hw[1]))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for model in self._resident_models():
            for _ in range(max(1, int(repeats))):
                model(x)


class AssembledRunner(_Runner):
    """Every level resident as its own extracted static model; a switch is a reference change."""

    def __init__(self, source: Package | SuperNet, family: Family | None = None, *, device_key: str | None = None,
                 level: int = 0, channels_last: bool = True) -> None:
        supernet, self.levels, make = _source(source, family, device_key)
        self.scale = supernet.scale
        self.channels_last = channels_last
        self.models = [make(lv) for lv in self.levels]
        self.level = check_level_index(level, len(self.levels))
        self._active = self.models[self.level]
        self.switch_latencies: list[int] = []

    def _model(self) -> nn.Module:
        return self._active

    def switch(self, level: int) -> int:
        level = check_level_index(level, len(self.levels))
        start = time.perf_counter_ns()
        self._active = self.models[level]
        ns = time.perf_counter_ns() - start
        self.level = level
        self.switch_latencies.append(ns)
        return ns

    def resident_bytes(self) -> int:
        return sum(module_bytes(m) for m in self.models)

    def _resident_models(self) -> list[nn.Module]:
        return list(self.models)


class StaticRunner(_Runner):
    """One static model resident; a switch reloads the new level from its file (real cost).

    folder: where the per-level model files go (default: a fresh temporary folder, removed by
    `close()`, on exit of a `with` block, or when the runner is garbage-collected).
    """

    def __init__(self, source: Package | SuperNet, family: Family | None = None, *, device_key: str | None = None,
                 level: int = 0, channels_last: bool = True, folder: str | Path | None = None,
                 warmup_hw: tuple[int, int] = (8, 8)) -> None:
        supernet, self.levels, make = _source(source, family, device_key)
        self.scale = supernet.scale
        self.channels_last = channels_last
        self.device = supernet.head.weight.device
        self.warmup_hw = warmup_hw
        own = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="adasr-static-")) if own else Path(folder)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.folder), True) if own else None
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        for i, lv in enumerate(self.levels):  # written once at set-up
            path = self.folder / f"level-{i:02d}.safetensors"
            save_model(path, make(lv), ModelSpec("subnet", {"config": lv.config.id}, self.scale,
                                                                     {"level": i, "psnr": lv.psnr}))
            self.paths.append(path)
        self.level = check_level_index(level, len(self.levels))
        self._active: nn.Module | None = None
        self._active = self._load(self.level)
        self.switch_latencies: list[int] = []

    def _load(self, level: int) -> nn.Module:
        model, _ = load_model(self.paths[level], device=self.device)
        model.eval()
        with torch.inference_mode():  # initialise: first-run allocations happen now, not on a frame
            model(torch.zeros(1, 3, *self.warmup_hw, device=self.device))
        return model

    def _model(self) -> nn.Module:
        return self._active

    def switch(self, level: int) -> int:
        level = check_level_index(level, len(self.levels))
        start = time.perf_counter_ns()
        self._active = None  # unload first: only one model is ever resident
        self._active = self._load(level)
        ns = time.perf_counter_ns() - start
        self.level = level
        self.switch_latencies.append(ns)
        return ns

    def resident_bytes(self) -> int:
        return module_bytes(self._active) if self._active is not None else 0

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> StaticRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
