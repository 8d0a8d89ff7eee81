"""Where adasr finds its bundled models and the project's shared data."""

from __future__ import annotations

import os
from pathlib import Path

from adasr.errors import InputError

__all__ = ["MODELS_DIR", "PACKAGE_DIR", "benchmark_dir", "bundled_model", "bundled_package", "data_root"]

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


def _bundled(name: str, pattern: str, what: str, scale: int) -> Path:
    path = MODELS_DIR / name
    if not path.is_file():
        known = sorted(p.stem for p in MODELS_DIR.glob(pattern))
        raise InputError(f"no bundled {what} for x{scale} (bundled: {', '.join(known) or 'none'}); pass --model")
    return path


def bundled_model(scale: int) -> Path:
    """The default single model file shipped for `scale`."""
    return _bundled(f"default_x{scale}.safetensors", "default_x*.safetensors", "model", scale)


def bundled_package(scale: int) -> Path:
    """The default adaptive package (supernet + profiled family) shipped for `scale`."""
    return _bundled(f"sr_x{scale}.adasr", "sr_x*.adasr", "package", scale)
