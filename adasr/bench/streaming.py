"""SR quality on streaming input: every level on codec-compressed LR, against bicubic and Lanczos.

The standard SR protocol scores clean bicubic LR; a live segment, an SRVC stream or a user's video
is LR that went through a codec. This evaluation runs a grid of (codec, CRF, downscale kernel)
points (`adasr.data.degrade`) over held-out clips and image sets:

* a clip: its first `frames` frames, centre-cropped to at most `max_hr` (HR) and to a multiple
  of 2 x scale, downscaled and coded as one clip (so P/B frames are scored);
* an image of a set: a pan of `frames` frames drifting a few pixels per frame (seeded), coded
  the same way.

For each upscaler (every level of each package, single model files, bicubic, Lanczos and the
OpenCV peers) it reports PSNR-Y and SSIM-Y (border = scale) on the same decoded LR, the gain in
dB over bicubic (MATLAB imresize, the protocol's) and over Lanczos (Pillow), and milliseconds per
frame (median over the scored frames, this process, these threads). A source's PSNR is that of
the mean MSE over its frames (capped at 100 dB if every frame is exact); a point's is the mean
over its sources, and a gain the mean of the sources' gains.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adasr.bench.peers import Upscaler, opencv_upscalers
from adasr.data.degrade import Degradation, Setting, degrade_clip
from adasr.errors import ConfigError, InputError

__all__ = ["DEFAULT_GRID", "bicubic_matlab", "gain_png", "lanczos", "run_streaming", "summary_lines"]

DEFAULT_GRID = ("h264:crf=23-33,kernel=area+bicubic", "clean:kernel=bicubic")
MAX_FRAMES = 300
SKIP = 25  # frames skipped at the start of a clip
def bicubic_matlab(scale: int) -> Upscaler:
    from adasr.data.imresize import imresize

    def fn(rgb: np.ndarray) -> np.ndarray:
        return imresize(rgb, float(scale))

    return Upscaler("bicubic", "bicubic", fn, 0)


def lanczos(scale: int) -> Upscaler:
    from PIL import Image

    def fn(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        return np.asarray(Image.fromarray(rgb).resize((w * scale, h * scale), Image.Resampling.LANCZOS))

    return Upscaler("Lanczos", "bicubic", fn, 0)


def _grid(specs: Sequence[str]) -> list[Setting]:
    points: list[Setting] = []
    for spec in specs:
        deg = Degradation.parse(spec)
        lo, hi = deg.crf
        crfs = [lo] if lo == hi else sorted({lo, hi, *range(lo, hi + 1, 5)})
        for codec in deg.codecs:
            points += [Setting(k, codec, q) for q in crfs for k in deg.kernels]
        if not deg.codecs:
            points += [Setting(k, None, 0) for k in deg.kernels]
    seen: set[Setting] = set()
    return [p for p in points if not (p in seen or seen.add(p))]


def _clip_frames(path: Path, frames: int, scale: int, max_hr: tuple[int, int]) -> list[np.ndarray]:
    """`frames` consecutive frames from one second in (`SKIP` frames: past fades from black at
    the start of a clip), or the last ones a shorter clip has."""
    from adasr.video import read_frames

    out = list(read_frames(path, max_frames=SKIP + frames))[-frames:]
    if not out:
        raise InputError(f"{path}: no frames decoded")
    h, w = out[0].shape[:2]
    unit = 2 * scale
    ch, cw = min(h, max_hr[0]) // unit * unit, min(w, max_hr[1]) // unit * unit
    y, x = (h - ch) // 2, (w - cw) // 2
    return [f[y:y + ch, x:x + cw] for f in out]


def _image_frames(path: Path, frames: int, scale: int, seed: int) -> list[np.ndarray]:
    from adasr.data.imresize import modcrop
    from adasr.images import read_image

    img = read_image(path)
    rgb = img.rgb if img.bit_depth == 8 else (img.rgb.astype(np.float64) / 257.0).round().astype(np.uint8)
    hr = modcrop(rgb, scale)
    rng = random.Random(f"{seed}|{path.name}")
    step = 2
    margin = step * (frames - 1)
    unit = 2 * scale
    ch, cw = (hr.shape[0] - margin) // unit * unit, (hr.shape[1] - margin) // unit * unit
    vy, vx = rng.choice((-step, step)), rng.choice((-step, step))
    y0, x0 = (margin if vy < 0 else 0), (margin if vx < 0 else 0)
    return [hr[y0 + t * vy:y0 + t * vy + ch, x0 + t * vx:x0 + t * vx + cw] for t in range(frames)]


def _sources(clips: Sequence[str | os.PathLike[str]], sets: Sequence[str], frames: int, scale: int,
             max_hr: tuple[int, int], seed: int) -> list[tuple[str, str, list[np.ndarray]]]:
    from adasr.data.datasets import list_images
    from adasr.paths import benchmark_dir

    out = []
    for clip in clips:
        path = Path(clip)
        if not path.is_file():
            raise InputError(f"clip not found: {path}")
        out.append((path.stem, "clip", _clip_frames(path, frames, scale, max_hr)))
    for name in sets:
        for image in list_images(benchmark_dir(name)):
            pan = _image_frames(image, frames, scale, seed)
            if min(pan[0].shape[:2]) >= 16 * scale:
                out.append((f"{name}/{image.stem}", "image", pan))
    if not out:
        raise InputError("nothing to evaluate: give clips (--clip) or image sets (--data)")
    return out


def run_streaming(upscalers: Sequence[Upscaler], scale: int, *, grid: Sequence[str] = DEFAULT_GRID,
                  clips: Sequence[str | os.PathLike[str]] = (), sets: Sequence[str] = (), frames: int = 12,
                  max_hr: tuple[int, int] = (360, 640), peers_dir: str | os.PathLike[str] | None = None,
                  seed: int = 0, preset: str = "medium",
                  progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Score `upscalers` (plus bicubic, Lanczos and the OpenCV peers) on the grid; the result dict
    is what `adasr eval --degradation` writes as JSON."""
    from adasr.metrics import psnr_of_mean_mse, psnr_y, ssim_y
    from adasr.timing import provenance

    if not (1 <= frames <= MAX_FRAMES):
        raise ConfigError(f"frames must be 1..{MAX_FRAMES}, got {frames}")
    points = _grid(grid)
    base = [bicubic_matlab(scale), lanczos(scale)]
    notes: list[str] = []
    peers: list[Upscaler] = []
    if peers_dir is not None:
        peers, notes = opencv_upscalers(scale, Path(peers_dir))
    ups = [*base, *peers, *upscalers]
    sources = _sources(clips, sets, frames, scale, max_hr, seed)
    rows = []
    total = len(points) * len(sources)
    done = 0
    for point in points:
        per: dict[str, dict[str, list[float]]] = {u.name: {"psnr": [], "ssim": [], "ms": []} for u in ups}
        for *_, hr_frames in sources:
            lr = degrade_clip(hr_frames, scale, point, preset)
            source_scores = {u.name: ([], []) for u in ups}
            for u in ups:
                for lo, hr in zip(lr, hr_frames, strict=True):
                    t0 = time.perf_counter()
                    sr = u.fn(np.ascontiguousarray(lo))
                    per[u.name]["ms"].append((time.perf_counter() - t0) * 1e3)
                    source_scores[u.name][0].append(psnr_y(sr, hr, border=scale))
                    source_scores[u.name][1].append(ssim_y(sr, hr, border=scale))
            for u in ups:
                per[u.name]["psnr"].append(psnr_of_mean_mse(source_scores[u.name][0]))
                per[u.name]["ssim"].append(float(np.mean(source_scores[u.name][1])))
            done += 1
            if progress is not None:
                progress(point.label, done, total)
        bic = np.array(per["bicubic"]["psnr"])
        lan = np.array(per["Lanczos"]["psnr"])
        for u in ups:
            p = np.array(per[u.name]["psnr"])
            rows.append({
                "upscaler": u.name, "kind": u.kind, "params": u.params,
                "codec": point.codec or "none", "crf": point.crf if point.codec else None, "kernel": point.kernel,
                "setting": point.label, "psnr": float(p.mean()), "ssim": float(np.mean(per[u.name]["ssim"])),
                "gain_bicubic": float((p - bic).mean()), "gain_lanczos": float((p - lan).mean()),
                "gain_bicubic_per_source": [float(g) for g in p - bic],
                "ms": float(np.median(per[u.name]["ms"])),
            })
    return {
        "bench": "streaming", "scale": scale, "provenance": provenance(),
        "grid": [p.label for p in points], "frames": frames, "max_hr": list(max_hr), "preset": preset, "seed": seed,
        "sources": [{"name": n, "kind": k, "hr": list(f[0].shape[:2]), "frames": len(f)} for n, k, f in sources],
        "notes": notes, "rows": rows,
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A table: one line per upscaler, one column per grid point (gain over bicubic, dB)."""
    grid = result["grid"]
    names = list(dict.fromkeys(r["upscaler"] for r in result["rows"]))
    cell = {(r["upscaler"], r["setting"]): r for r in result["rows"]}
    width = max(len(n) for n in names) + 2
    lines = ["gain over bicubic (dB, PSNR-Y) on the same decoded LR; bicubic row: its PSNR",
             " " * width + "  ".join(f"{g:>20}" for g in grid) + "     ms"]
    for n in names:
        vals = []
        for g in grid:
            r = cell[(n, g)]
            vals.append(f"{r['psnr']:>20.2f}" if n == "bicubic" else f"{r['gain_bicubic']:>+20.2f}")
        ms = np.median([cell[(n, g)]["ms"] for g in grid])
        lines.append(f"{n:<{width}}" + "  ".join(vals) + f"  {ms:6.1f}")
    return lines


def gain_png(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Gain over bicubic against CRF, one line per upscaler, one panel per (codec, kernel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["codec"] != "none" and r["upscaler"] != "bicubic"]
    panels = sorted({(r["codec"], r["kernel"]) for r in rows})
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    names = list(dict.fromkeys(r["upscaler"] for r in rows))
    cmap = plt.get_cmap("viridis")
    kinds = {r["upscaler"]: r["kind"] for r in rows}
    levels = [n for n in names if kinds[n] in ("adasr-level", "adasr-model")]
    for ax, (codec, kernel) in zip(axes[0], panels, strict=True):
        for n in names:
            pts = sorted((r["crf"], r["gain_bicubic"]) for r in rows
                         if r["upscaler"] == n and r["codec"] == codec and r["kernel"] == kernel)
            if not pts:
                continue
            x, y = zip(*pts, strict=True)
            if n in levels:
                color = cmap(levels.index(n) / max(1, len(levels) - 1))
                ax.plot(x, y, "-o", color=color, label=n, ms=3, lw=1.2)
            else:
                ax.plot(x, y, "--s", label=n, ms=3, lw=1.0, color="grey" if n == "Lanczos" else None)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"{codec}, {kernel} downscale, x{result['scale']}")
        ax.set_xlabel("CRF")
        ax.set_ylabel("gain over bicubic (dB, PSNR-Y)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    import io

    from adasr._atomic import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
