"""`adasr demo` (what `make run` runs): adaptive SR of a real clip while a bursty load competes.

The bundled package for the scale plays the bundled clip through the adaptive runtime: frames
are shrunk to the demo's LR size and coded as a live segment is (area downscale, x264 CRF 28; the clip
itself is the ground truth), a bursty background CPU
load runs in separate processes, the lookup policy picks a level before every frame to hold the
target frame rate, and the output video, a timeline PNG and a JSON QoS summary are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from adasr._cli.common import console, out

__all__ = ["DEMO_CLIP", "DEMO_FPS", "DEMO_LR", "DEMO_STREAM", "demo", "register", "run_demo"]

DEMO_CLIP = "bigbuckbunny_720p.mp4"
DEMO_LR = {2: (180, 320), 3: (120, 212), 4: (90, 160)}  # (H, W) fed to SR; output 640x360 (x3: 636x360)
DEMO_FPS = 15.0
# The clip is played as a live segment carries it (the server's downscale and codec), so the
# reported PSNR is that of the stream actually played.
DEMO_STREAM = "h264:crf=28,kernel=area"


def run_demo(scale: int, out_dir: Path, out: Console, console: Console, *, target_fps: float = DEMO_FPS,
             trace: str = "bursty", quiet: bool = False, precision: str | None = None) -> dict:
    from adasr._atomic import ensure_dir, removed_if_empty
    from adasr._cli.play_cmd import run_play
    from adasr.errors import ConfigError, InputError
    from adasr.paths import bundled_package, data_root

    clip = data_root() / "video" / DEMO_CLIP
    if not clip.is_file():
        raise InputError(f"demo clip not found: {clip} (set ADASR_DATA to the shared data folder)")
    if scale not in DEMO_LR:
        raise ConfigError(f"the demo runs x2, x3 or x4, got x{scale}")
    try:
        package = bundled_package(scale)
    except InputError:  # its hint names --model, which the demo does not have
        raise InputError(f"no bundled package for x{scale}; the demo runs the bundled packages only "
                         f"(try --scale 2, or `adasr play` with --model)") from None
    from adasr.runtime.traces import load_trace

    load_trace(trace, 1.0)  # refuse a bad --trace before the output folder is made
    if precision is not None:
        from adasr.package import check_precision

        check_precision(precision)
    lr = DEMO_LR[scale]
    with removed_if_empty(out_dir):
        ensure_dir(out_dir)
        out.print(f"adasr demo: {clip.name} shrunk to {lr[1]}x{lr[0]} and coded as a live stream carries it "
                  f"(area downscale, x264 CRF 28), upscaled x{scale} by {package.name} at a "
                  f"target of {target_fps:g} FPS while a {trace} background load competes for the CPU", highlight=False)
        return run_play(clip, model=package, scale=scale, target_fps=target_fps, policy="lookup", level="auto",
                        trace=trace, lr_hw=lr, output=out_dir / f"demo_x{scale}.mp4", max_frames=None,
                        json_out=out_dir / f"demo_x{scale}.json", timeline=out_dir / f"demo_x{scale}_timeline.png",
                        reference_every=4, quiet=quiet, out=out, console=console, precision=precision,
                        as_stream=DEMO_STREAM)


def demo(
    scale: Annotated[int, typer.Option(help="Scale of the bundled package to run.")] = 2,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the demo outputs.")] = Path("out"),
    target_fps: Annotated[float, typer.Option(help="Frame rate the runtime holds.")] = 15.0,
    trace: Annotated[str, typer.Option(help="Background load: bursty, stable, random or a CSV file.")] = "bursty",
    quiet: Annotated[bool, typer.Option(help="No live view; print the summary only.")] = False,
    precision: Annotated[Optional[str], typer.Option(help="Level precision: fp32, int8 or auto; default: the package's own (the bundled packages: auto).")] = None,
) -> None:
    """The main job of `make run`: adaptive SR of the bundled clip under a bursty CPU load.

    Prints the QoS summary and the PSNR gain over bicubic; writes the video, a timeline PNG and JSON."""
    run_demo(scale, out_dir, out, console, target_fps=target_fps, trace=trace, quiet=quiet, precision=precision)


def register(app: typer.Typer) -> None:
    app.command()(demo)
