"""Frame-rate statistics over a run's ready times (seconds since the stream started).

- `fps_windows`: frames ready in each consecutive window (the last partial window divided by
  its length): FPS over time.
- `fps_per_frame`: per frame, the frames ready in the trailing window (or the elapsed time,
  when shorter) divided by that window: the samples of an FPS CDF.

The player's timeline and the adaptivity bench both draw from these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["fps_per_frame", "fps_windows"]


def fps_windows(ready: Sequence[float], window_s: float = 1.0) -> tuple[list[float], list[float]]:
    """(window start times, achieved FPS) over consecutive `window_s` windows of ready times."""
    if not len(ready):
        return [], []
    r = np.asarray(ready, dtype=np.float64)
    span = float(r.max())
    n = max(1, int(math.ceil(span / window_s)))
    counts = np.histogram(np.minimum(r, n * window_s), bins=n, range=(0.0, n * window_s))[0]
    lengths = [window_s] * n
    lengths[-1] = max(span - (n - 1) * window_s, 1e-9)
    return [k * window_s for k in range(n)], [float(c / ln) for c, ln in zip(counts, lengths)]


def fps_per_frame(ready: Sequence[float], window_s: float = 1.0) -> list[float]:
    """Per frame: frames ready in the trailing window (`window_s`, or the elapsed time when shorter)
    divided by that window."""
    r = np.asarray(ready, dtype=np.float64)
    out = []
    for i, t in enumerate(r):
        w = min(window_s, float(t))
        if w <= 0:
            continue
        lo = int(np.searchsorted(r, t - w, side="right"))
        out.append(float((i + 1 - lo) / w))
    return out
