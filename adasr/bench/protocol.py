"""Protocol parity: bicubic through adasr's SR protocol against the published bicubic rows.

The published numbers are the bicubic rows of the usual SR tables (SRCNN, VDSR, ...): mean
PSNR / SSIM on Y over Set5 and Set14, border = scale, MATLAB bicubic. adasr's bicubic is
`imresize` in float with the protocol's uint8 rounding; a difference of a few hundredths of a dB
is the rounding of the published tables, a tenth or more would mean a protocol bug.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adasr.timing import provenance

__all__ = ["PUBLISHED_BICUBIC", "run_protocol"]

# (set, scale) -> (PSNR dB, SSIM) of bicubic as published.
PUBLISHED_BICUBIC: dict[tuple[str, int], tuple[float, float]] = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


def run_protocol(sets: Sequence[str] = ("Set5", "Set14"), scales: Sequence[int] = (2, 3, 4),
                 on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Bicubic scored by `adasr.evaluation.evaluate` on each (set, scale), beside the published row."""
    from adasr.data.datasets import load_image_pairs
    from adasr.evaluation import evaluate
    from adasr.nn.registry import build_model
    from adasr.paths import benchmark_dir

    rows = []
    for name in sets:
        for scale in scales:
            if on_progress is not None:
                on_progress(f"{name} x{scale}")
            pairs = load_image_pairs(str(benchmark_dir(name)), scale)
            res = evaluate(build_model("bicubic", scale=scale), pairs, scale)
            published = PUBLISHED_BICUBIC.get((name, scale))
            rows.append({"set": name, "scale": scale, "images": res.images, "psnr": res.psnr, "ssim": res.ssim,
                         "published_psnr": None if published is None else published[0],
                         "published_ssim": None if published is None else published[1],
                         "psnr_diff": None if published is None else res.psnr - published[0]})
    return {"kind": "adasr-bench-protocol", "schema_version": 1, "rows": rows, "provenance": provenance()}
