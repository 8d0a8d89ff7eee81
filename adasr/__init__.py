"""adasr: adaptive neural super-resolution of video on constrained devices.

The entry points a user needs, in the style of timm's `create_model`::

    import adasr

    adasr.upscale_image("adasr/models/default_x2.safetensors", "photo.png", "photo_x2.png")
    engine = adasr.Engine.load("adasr/models/sr_x2.adasr")   # a package: supernet + levels
    result = adasr.play(engine, "clip.mp4", adasr.PlayOptions(target_fps=20, out="clip_x2.mp4"))

- `load_model(path)`: a model file -> `(nn.Module, ModelSpec)`.
- `load_package(path)`: a package (folder or `.adasr` file) -> `Package` (supernet, family, profiles).
- `Engine`: a package's supernet kept resident, switching levels between frames.
- `load_engine(path)`: an `Engine` whose levels carry this device's latencies (profiled once, cached).
- `upscale_image`, `upscale_video`: upscale a file with a model, a package or an engine.
- `play`: play a video through an engine, adapting the level to the device's load; its settings
  are one frozen `PlayOptions`.
- the errors (`AdasrError` and its kinds), each with its exit code.

Importing `adasr` is cheap: heavy dependencies (torch, PyAV) load with the first entry point used.
"""

from __future__ import annotations

import importlib
from typing import Any

from adasr.errors import AdasrError as AdasrError
from adasr.errors import ConfigError as ConfigError
from adasr.errors import InputError as InputError
from adasr.errors import ModelError as ModelError
from adasr.errors import OutputError as OutputError

__version__ = "0.1.0"

# Entry point -> the module that defines it (imported on first access).
_LAZY = {
    "load_model": "adasr.modelfile",
    "load_package": "adasr.package",
    "Engine": "adasr.runtime.engine",
    "load_engine": "adasr.api",
    "upscale_image": "adasr.api",
    "upscale_video": "adasr.api",
    "play": "adasr.runtime.player",
    "PlayOptions": "adasr.runtime.player",
}

__all__ = [
    "AdasrError",
    "ConfigError",
    "Engine",
    "InputError",
    "ModelError",
    "OutputError",
    "PlayOptions",
    "load_engine",
    "load_model",
    "load_package",
    "play",
    "upscale_image",
    "upscale_video",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adasr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
