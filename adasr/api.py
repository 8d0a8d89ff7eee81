"""The library's entry points, as `adasr` exports them (see `adasr/__init__.py`).

`upscale_image` and `upscale_video` are thin wrappers over `adasr.upscale`'s file functions that
also accept what the other entry points return: a model file's path, the `(module, spec)` pair
of `load_model`, a package's path or an `Engine`. Nothing here holds state.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adasr.errors import ConfigError

if TYPE_CHECKING:
    from adasr.upscale import VideoSummary

__all__ = ["load_engine", "upscale_image", "upscale_video"]


def load_engine(package: str | os.PathLike[str] | None = None, scale: int = 2, *, profile: bool = True,
                on_progress: Callable[[str, int, int], None] | None = None, precision: str | None = None,
                calibration_video: str | os.PathLike[str] | None = None, family: str = "codec") -> Any:
    """An `Engine` over `package` (a folder or ``.adasr`` file; default: the bundled package for
    `scale` of `family`, "codec" (trained on codec-compressed LR, what video carries) or "clean")
    with its family's latencies for this device: the package's own profile, a cached
    one, or (with `profile`) one measured now and cached (`adasr.runtime.profile.resolve_family`).

    The engine carries `profile_source` ("package", "cache", "measured" or "predicted") and
    `package`. InputError for a missing path; ConfigError for a model file or another scale.
    precision: "fp32", "int8" or "auto" (`adasr.runtime.precision`; None: the package's own);
    int8 levels are calibrated on the first frames of `calibration_video`.
    """
    from adasr.errors import InputError
    from adasr.package import is_package_path, load_package
    from adasr.paths import bundled_package
    from adasr.runtime.precision import build_engine, check_precision
    from adasr.runtime.profile import resolve_family

    if precision is not None:
        check_precision(precision)
    path = Path(package) if package is not None else bundled_package(scale, family)
    if not path.exists():
        raise InputError(f"model package not found: {path}")
    if not is_package_path(path):
        raise ConfigError(f"{path} is a single model file; adaptive mode needs a package (folder or .adasr) "
                          f"with a family of levels (pass --level to upscale with a plain model)")
    pkg = load_package(path)
    if pkg.scale != scale:
        raise ConfigError(f"{path} is a x{pkg.scale} package; --scale {scale} asked for x{scale}")
    family, source = resolve_family(pkg, profile_if_missing=profile, on_progress=on_progress)
    engine = build_engine(pkg, family, precision=precision, calibration_video=calibration_video)
    engine.profile_source = source
    engine.package = pkg
    return engine


def _runner(model: Any, scale: int | None, level: int | None) -> tuple[Callable[[Any], Any], int]:
    """(callable on (1, 3, H, W) float tensors, scale) for anything `upscale_image` accepts."""
    from torch import nn

    from adasr.runtime.engine import Engine

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.is_dir() or path.suffix == ".adasr":
            engine = Engine.load(str(path))
            model = engine
            level = len(engine) - 1 if level is None else level  # a package: its best level
        else:
            from adasr.modelfile import load_model

            model = load_model(path)
    if isinstance(model, Engine):
        if level is not None:
            model.switch(level)
        if scale is not None and scale != model.scale:
            raise ConfigError(f"scale {scale} does not match the package's x{model.scale}")
        return model.process_tensor, model.scale
    if level is not None:
        raise ConfigError("level applies to a package or an Engine, not to a single model")
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nn.Module):
        module, spec = model
        if scale is not None and scale != spec.scale:
            raise ConfigError(f"scale {scale} does not match the model's x{spec.scale}")
        return module.eval(), spec.scale
    if isinstance(model, nn.Module):
        if scale is None:
            scale = getattr(model, "scale", None)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ConfigError("pass scale= with a bare nn.Module (its upscaling factor)")
        return model.eval(), scale
    raise ConfigError(f"cannot upscale with a {type(model).__name__}: pass a model file or package path, "
                      f"load_model's (module, spec), an Engine or an nn.Module")


def upscale_image(model: Any, src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                  scale: int | None = None, level: int | None = None, **kw: Any) -> tuple[int, int]:
    """Upscale the image file `src` into `dst` (written atomically); returns the output (width, height).

    model: a model file's path, `load_model`'s `(module, spec)`, a package's path (its best
    level unless `level` says otherwise), an `Engine` (its active level, or `level`), or an
    `nn.Module` mapping (B, 3, H, W) in [0, 1] to (B, 3, sH, sW) with `scale` given.
    kw: `tile`, `overlap` of `adasr.upscale.sr_array`. Alpha is upscaled with bicubic, grayscale
    stays grayscale; errors are `adasr.AdasrError` subclasses.
    """
    import torch

    from adasr.upscale import upscale_image_file

    run, s = _runner(model, scale, level)
    with torch.inference_mode():
        return upscale_image_file(run, s, src, dst, **kw)


def upscale_video(model: Any, src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                  scale: int | None = None, level: int | None = None, **kw: Any) -> VideoSummary:
    """Upscale the video file `src` into `dst` at one level, frame by frame, keeping frame rate,
    rotation and audio (written atomically); returns a `VideoSummary` (frames, seconds, sr_fps).

    model: as for `upscale_image`. kw: `codec`, `crf`, `preset`, `max_frames`, `on_frame`,
    `tile`, `overlap` of `adasr.upscale.upscale_video_file`. To adapt the level to the device's
    load while a video plays, use `play` with an `Engine` instead.
    """
    import torch

    from adasr.upscale import upscale_video_file

    run, s = _runner(model, scale, level)
    with torch.inference_mode():
        return upscale_video_file(run, s, src, dst, **kw)
