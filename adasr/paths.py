"""Where adasr finds its bundled models and the project's shared data."""

from __future__ import annotations

import os
from pathlib import Path

from adasr.errors import InputError

__all__ = ["FAMILIES", "MODELS_DIR", "PACKAGE_DIR", "benchmark_dir", "bundled_model", "bundled_package", "cache_dir",
           "data_root", "family_for_input"]

# The two bundled families of levels: "codec" trained on codec-compressed LR (what streams and
# almost every video carry), "clean" on the SR protocol's clean bicubic LR (lossless images).
FAMILIES = ("codec", "clean")
_LOSSLESS_IMAGES = (".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR / "models"


def cache_dir() -> Path:
    """Where derived data lives: $ADASR_CACHE, else ~/.cache/adasr."""
    root = os.environ.get("ADASR_CACHE") or Path.home() / ".cache" / "adasr"
    return Path(root)


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


def bundled_package(scale: int, family: str = "codec") -> Path:
    """The adaptive package (supernet + profiled family) shipped for `scale`: the codec-trained
    family (`sr_x{scale}-codec.adasr`, the default) or the clean one (`sr_x{scale}.adasr`)."""
    if family not in FAMILIES:
        from adasr.errors import ConfigError

        raise ConfigError(f"family must be one of {', '.join(FAMILIES)} (or auto), got {family!r}")
    name = f"sr_x{scale}-codec.adasr" if family == "codec" else f"sr_x{scale}.adasr"
    return _bundled(name, "sr_x*.adasr", f"{family} package", scale)


def family_for_input(path: str | os.PathLike[str] | None, family: str | None = "auto") -> str:
    """The bundled family for an input: `family` when given ("codec" or "clean"); "auto" picks
    "clean" for a lossless image (PNG, BMP, TIFF, PPM) and "codec" for everything else (video
    files, streams, JPEG and WebP images: their LR went through a lossy codec)."""
    if family not in (None, "auto"):
        if family not in FAMILIES:
            from adasr.errors import ConfigError

            raise ConfigError(f"--family must be auto, codec or clean, got {family!r}")
        return family
    if path is not None and Path(str(path)).suffix.lower() in _LOSSLESS_IMAGES:
        return "clean"
    return "codec"
