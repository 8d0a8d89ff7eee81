"""Where adasr finds its bundled models and the project's shared data."""

from __future__ import annotations

import os
from pathlib import Path

from adasr.errors import InputError

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR / "models"


def data_root() -> Path:
    """$ADASR_DATA, else the `shared/data` folder beside the checkout, else ./shared/data."""
    env = os.environ.get("ADASR_DATA")
    if env:
        return Path(env)
    for candidate in (PACKAGE_DIR.parent.parent / "shared" / "data", Path.cwd().parent / "shared" / "data",
                      Path.cwd() / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return PACKAGE_DIR.parent.parent / "shared" / "data"


def benchmark_dir(name: str) -> Path:
    """A benchmark set by name (Set5, Set14) under the data root, or a folder path as given."""
    path = Path(name)
    if path.is_dir():
        return path
    candidate = data_root() / "benchmarks" / name
    if candidate.is_dir():
        return candidate
    raise InputError(f"benchmark set not found: {name} (looked in {data_root() / 'benchmarks'}; set ADASR_DATA)")


def bundled_model(scale: int) -> Path:
    """The default model file shipped for `scale`."""
    path = MODELS_DIR / f"default_x{scale}.safetensors"
    if not path.is_file():
        known = sorted(p.stem for p in MODELS_DIR.glob("default_x*.safetensors"))
        raise InputError(f"no bundled model for x{scale} (bundled: {', '.join(known) or 'none'}); pass --model")
    return path


def bundled_package(scale: int) -> Path:
    """The default adaptive package (supernet + profiled family) shipped for `scale`."""
    path = MODELS_DIR / f"sr_x{scale}.adasr"
    if not path.is_file():
        known = sorted(p.stem for p in MODELS_DIR.glob("sr_x*.adasr"))
        raise InputError(f"no bundled package for x{scale} (bundled: {', '.join(known) or 'none'}); pass --model")
    return path
