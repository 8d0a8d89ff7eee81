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


def run_upscale(src: Path, dst: Path, scale: int, model_path: Path | None, codec: str, crf: int, preset: str | None,
                tile: int, max_frames: int | None, quiet: bool, out: Console, console: Console) -> None:
    from adasr._atomic import check_writable
    from adasr.images import is_image_path
    from adasr.upscale import upscale_image_file, upscale_video_file

    if not src.exists():
        raise InputError(f"input not found: {src}")
    if src.is_dir():
        raise InputError(f"input is a folder, not a file: {src}")
    check_writable(dst)
    if src.resolve() == dst.resolve():
        raise ConfigError("output would overwrite the input; choose another output path")
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
