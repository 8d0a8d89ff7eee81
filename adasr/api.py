"""The library's entry points, as `adasr` exports them (see `adasr/__init__.py`).

`upscale_image` and `upscale_video` accept what the other entry points return: a model file's
path, the `(module, spec)` pair of `load_model`, a package's path or an `Engine`. A video with a
package's path (or None, the bundled package) runs exactly what `adasr upscale` runs
(`adasr.upscale_run.upscale_file`: time budgets, realtime, the thread rule, resume); the other
forms run `adasr.upscale`'s file functions with the thread rule. Nothing here holds state.
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

    Without torch (or with $ADASR_BACKEND=onnx) this is an `OnnxEngine`: the same levels run by
    ONNX Runtime in fp32 (`adasr.runtime.onnx_engine`).
    """
    from adasr.runtime.onnx_engine import open_runtime_engine

    return open_runtime_engine(package, scale, profile=profile, on_progress=on_progress, precision=precision,
                               calibration_video=calibration_video, family=family)


def _runner(model: Any, scale: int | None, level: int | None) -> tuple[Callable[[Any], Any], int]:
    """(callable on (1, 3, H, W) float tensors, scale) for anything `upscale_image` accepts."""
    from torch import nn

    from adasr.runtime.engine import Engine

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        from adasr.package import is_package_path

        if is_package_path(path):
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
    from adasr.package import is_package_path
    from adasr.runtime.onnx_engine import backend

    if isinstance(model, (str, os.PathLike)) and is_package_path(model) and backend() == "onnx" and not kw:
        from adasr.upscale_run import upscale_file  # without torch: the package's level through ONNX Runtime

        done = upscale_file(src, dst, scale=scale or 2, model=model, level="best" if level is None else level)
        return done.summary["width"], done.summary["height"]
    import torch

    from adasr.upscale import upscale_image_file

    run, s = _runner(model, scale, level)
    with torch.inference_mode():
        return upscale_image_file(run, s, src, dst, **kw)


def upscale_video(model: Any, src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                  scale: int | None = None, level: int | str | None = None, time_budget: str | None = None,
                  strict: bool = False, realtime: bool = False, target_fps: float | None = None,
                  precision: str | None = None, start: float | None = None, duration: float | None = None,
                  **kw: Any) -> VideoSummary:
    """Upscale the video file `src` into `dst`, keeping frame times, rotation, bit depth, colour
    tags and every audio, subtitle and attachment stream (written atomically); returns a
    `VideoSummary` (frames, seconds, sr_fps; level, mode and the estimate for a package).

    model: a package's path or None (the bundled package for `scale`): exactly what `adasr
    upscale` runs (`adasr.upscale_run.upscale_file`): the best level, `level`, the best level that
    fits `time_budget` ("90s", "2m", "1x"; `strict` refuses when none does), or `realtime` /
    `target_fps` (the adaptive runtime), with the runtime's thread rule. An `Engine`: its active
    level (or `level`) through the same runtime. A model file's path, `load_model`'s `(module,
    spec)` or an `nn.Module`: one frame at a time with the thread rule for the load now.
    kw: `codec`, `crf`, `preset`, `max_frames`, `tile`, `resume`, `chunk_frames` and `family` (the
    bundled levels for None: "auto", "codec" or "clean") for a package path
    (`adasr.upscale_run.upscale_file`); `codec`, `crf`, `preset`, `max_frames` for an Engine; and
    `on_frame`, `tile`, `overlap` for a single model.
    """
    from adasr.package import is_package_path

    if model is None or (isinstance(model, (str, os.PathLike)) and is_package_path(model)):
        from adasr.upscale import VideoSummary
        from adasr.upscale_run import upscale_file

        unknown = set(kw) - {"codec", "crf", "preset", "max_frames", "tile", "resume", "chunk_frames", "family"}
        if unknown:
            raise ConfigError(f"upscale_video with a package does not take {', '.join(sorted(unknown))}")
        result = upscale_file(src, dst, scale=scale or 2, model=model, level=level, time_budget=time_budget,
                              strict=strict, realtime=realtime, target_fps=target_fps, precision=precision,
                              start=start, duration=duration, **kw)
        s = result.summary
        return VideoSummary(s["frames"], s["seconds"], s["out_size"][0], s["out_size"][1], float(s["source_fps"]),
                            level=s.get("level"), mode=s.get("mode"), estimated_s=s.get("estimated_s"), details=s)
    if time_budget is not None or realtime or target_fps is not None or strict:
        raise ConfigError("time_budget, strict, realtime and target_fps choose levels of a package: pass the "
                          "package's path (or None for the bundled one)")
    from adasr.runtime.engine import Engine

    if isinstance(model, Engine):
        return _engine_video(model, src, dst, scale, level, precision, start, duration, **kw)
    import torch

    from adasr.estimate import sample_load_share
    from adasr.upscale import upscale_video_file
    from adasr.upscale_run import _rule_threads

    run, s = _runner(model, scale, level)
    with _rule_threads(sample_load_share()), torch.inference_mode():
        return upscale_video_file(run, s, src, dst, start_s=start, duration_s=duration, **kw)


def _engine_video(engine: Any, src: Any, dst: Any, scale: int | None, level: int | str | None, precision: Any,
                  start: float | None, duration: float | None, **kw: Any) -> VideoSummary:
    """An engine's level (or `level`) through the runtime (`play`, fixed policy, unpaced)."""
    from adasr.runtime.player import PlayOptions, play
    from adasr.upscale import VideoSummary
    from adasr.video import probe

    if precision is not None:
        raise ConfigError("precision is chosen when an engine is built (load_engine(..., precision=...))")
    if scale is not None and scale != engine.scale:
        raise ConfigError(f"scale {scale} does not match the package's x{engine.scale}")
    unknown = set(kw) - {"codec", "crf", "preset", "max_frames"}
    if unknown:
        raise ConfigError(f"upscale_video with an Engine does not take {', '.join(sorted(unknown))}")
    lv = engine.level if level is None else int(level)
    info = probe(src)
    result = play(engine, src, PlayOptions(policy="fixed", level=lv, out=dst, pace=False, info=info,
                                           start_s=start, duration_s=duration, **kw))
    s = result.summary()
    return VideoSummary(s["frames"], s["seconds"], s["out_size"][0], s["out_size"][1], float(s["source_fps"]),
                        level=lv, mode="level", details=s)
