"""`adasr upscale`: an image or a video in, an upscaled file out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from adasr.errors import ConfigError, InputError


def load_for_scale(model_path: Path | None, scale: int):
    from adasr.modelfile import load_model
    from adasr.paths import bundled_model

    model, spec = load_model(model_path or bundled_model(scale))
    if spec.scale != scale and model_path is not None:
        raise ConfigError(f"{model_path} is a x{spec.scale} model; --scale {scale} asked for x{scale}")
    return model, spec


def _use_package(model_path: Path | None, scale: int) -> bool:
    """A package (given, or the bundled one for `scale`) rather than a single model file."""
    from adasr._cli.play_cmd import is_package_path
    from adasr.paths import MODELS_DIR

    if model_path is not None:
        return is_package_path(model_path)
    return (MODELS_DIR / f"sr_x{scale}.adasr").is_file()


def _package_level_model(model_path: Path | None, scale: int, level: str):
    """(static model of one package level, a spec-like label) for images."""
    from adasr._cli.play_cmd import parse_level
    from adasr.package import load_package
    from adasr.paths import bundled_package

    path = model_path or bundled_package(scale)
    if not path.exists():
        raise InputError(f"model package not found: {path}")
    package = load_package(path)
    if package.scale != scale:
        raise ConfigError(f"{path} is a x{package.scale} package; --scale {scale} asked for x{scale}")
    index = parse_level(level, len(package.family))
    index = len(package.family) - 1 if index is None else index
    return package.supernet.extract(package.family[index].config).eval(), f"level {index} of {path.name}"


def run_upscale(src: Path, dst: Path, scale: int, model_path: Path | None, codec: str, crf: int, preset: str | None,
                tile: int, max_frames: int | None, quiet: bool, out: Console, console: Console, *,
                level: str = "auto", target_fps: float | None = None, json_summary: bool = False) -> None:
    import json

    from adasr._atomic import check_not_input, check_writable
    from adasr.images import is_image_path
    from adasr.upscale import upscale_image_file, upscale_video_file

    if not src.exists():
        raise InputError(f"input not found: {src}")
    if src.is_dir():
        raise InputError(f"input is a folder, not a file: {src}")
    check_writable(dst)
    check_not_input([dst], [src, model_path])
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {max_frames}")
    if target_fps is not None and not target_fps > 0:
        raise ConfigError(f"--target-fps must be positive, got {target_fps}")
    if _use_package(model_path, scale):
        if is_image_path(src):
            model, label = _package_level_model(model_path, scale, level)
            w, h = upscale_image_file(model, scale, src, dst, tile=tile)
            if json_summary:
                out.print_json(json.dumps({"output": str(dst), "width": w, "height": h, "model": label}))
            else:
                out.print(f"wrote {dst} ({w}x{h}, x{scale} with {label})")
            return
        from adasr._cli.play_cmd import run_adaptive_upscale
        from adasr.video import codec_for_suffix

        codec_for_suffix(dst, codec)
        run_adaptive_upscale(src, dst, model=model_path, scale=scale, level=level, target_fps=target_fps,
                             codec=codec, crf=crf, preset=preset, max_frames=max_frames, json_summary=json_summary,
                             quiet=quiet, out=out, console=console)
        return
    if level not in ("auto", "best"):
        raise ConfigError("--level picks a level of a package; a single model file has one")
    model, spec = load_for_scale(model_path, scale)
    if is_image_path(src):
        w, h = upscale_image_file(model, spec.scale, src, dst, tile=tile)
        out.print(f"wrote {dst} ({w}x{h}, x{spec.scale} with {spec.arch})")
        return
    from adasr.video import codec_for_suffix, probe

    codec_for_suffix(dst, codec)  # refuse an unknown container or codec before any work
    info = probe(src)
    progress = Progress(TextColumn("[bold]upscale"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]} fps"), TextColumn("eta"), TimeRemainingColumn(),
                        console=console, disable=quiet)
    with progress:
        task = progress.add_task("frames", total=None, fps="-")
        import time

        start = time.perf_counter()

        def on_frame(done: int, total: int) -> None:
            rate = done / max(1e-9, time.perf_counter() - start)
            progress.update(task, completed=done, total=total or None, fps=f"{rate:.1f}")

        summary = upscale_video_file(model, spec.scale, src, dst, codec=codec, crf=crf, preset=preset,
                                     max_frames=max_frames, on_frame=on_frame, info=info, tile=tile)
    out.print(f"wrote {dst}: {summary.frames} frames {summary.width}x{summary.height} at {summary.fps:g} fps; "
              f"{summary.sr_fps:.1f} frames/s end to end with {spec.arch} x{spec.scale}")
