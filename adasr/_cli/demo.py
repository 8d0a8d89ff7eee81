"""`adasr demo` (what `make run` runs): the bundled model on a real clip, measured against bicubic.

The clip's frames are the ground truth: each is shrunk by the protocol's bicubic imresize, then
restored by the bundled model and by bicubic, and both are scored against the original.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_CLIP = "bigbuckbunny_720p.mp4"
DEMO_FRAMES = 48


def run_demo(scale: int, out_dir: Path, console: Console) -> None:
    import numpy as np

    from adasr.data.imresize import imresize, modcrop
    from adasr.errors import InputError
    from adasr.metrics import psnr_y
    from adasr.modelfile import load_model
    from adasr.paths import bundled_model, data_root
    from adasr.upscale import sr_array
    from adasr.video import VideoWriter, probe, read_frames

    clip = data_root() / "video" / DEMO_CLIP
    if not clip.is_file():
        raise InputError(f"demo clip not found: {clip} (set ADASR_DATA to the shared data folder)")
    model_path = bundled_model(scale)
    model, spec = load_model(model_path)
    info = probe(clip)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"demo_x{scale}.mp4"
    console.print(f"model {model_path.name}: {spec.arch} x{spec.scale}; clip {clip.name} "
                  f"{info.width}x{info.height} @ {float(info.fps):g} fps, first {DEMO_FRAMES} frames")
    psnr_model, psnr_bicubic, sr_seconds = [], [], 0.0
    writer = None
    with VideoWriter(target, *_even_size(info, scale), info.fps, codec="h264", crf=18) as writer:
        for frame in read_frames(clip, max_frames=DEMO_FRAMES):
            hr = modcrop(frame, scale)
            lr = imresize(hr, 1.0 / scale)
            start = time.perf_counter()
            sr = sr_array(model, lr, scale)
            sr_seconds += time.perf_counter() - start
            psnr_model.append(psnr_y(sr, hr, border=scale))
            psnr_bicubic.append(psnr_y(imresize(lr, float(scale)), hr, border=scale))
            writer.write(sr)
    n = len(psnr_model)
    table = Table(title=f"x{scale} on {n} frames of {clip.name} (PSNR on Y vs the original frames)")
    for col in ("method", "mean PSNR", "min", "max"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, values in (("bicubic", psnr_bicubic), (spec.arch, psnr_model)):
        table.add_row(name, f"{np.mean(values):.2f} dB", f"{np.min(values):.2f}", f"{np.max(values):.2f}")
    console.print(table)
    gain = float(np.mean(psnr_model) - np.mean(psnr_bicubic))
    console.print(f"gain over bicubic: {gain:+.2f} dB; SR speed {n / sr_seconds:.1f} frames/s "
                  f"({lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]}); wrote {target}")


def _even_size(info, scale: int) -> tuple[int, int]:
    return (info.width // scale) * scale, (info.height // scale) * scale
