"""How honest `adasr upscale`'s time estimate is on a loaded machine.

Each input is upscaled exactly as `adasr upscale` does it (`adasr.upscale_run.upscale_file`, the
same library call the CLI makes), while a `CpuLoad` keeps a steady share of every core busy in
separate processes. The estimate the run announced (from its own first frames when it is expected
to take 10 s or more, else from a timing before its first frame) is set against the time the run
took, with the figure timed before the run and the revised estimate (said once during the run
when it moves by a third) beside it. A ratio actual / estimate in [1/1.3, 1.3] is "within 30 %".

Outputs go to a temporary folder that is removed; only the JSON is written.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adasr.errors import ConfigError

__all__ = ["TOLERANCE", "default_inputs", "run_estimate_bench"]

#: "within 30 %": actual / estimate in [1 / (1 + TOLERANCE), 1 + TOLERANCE].
TOLERANCE = 0.3
MAX_INPUTS = 16


def default_inputs() -> list[Path]:
    """The three shared clips of different sizes (720p, 720x528, 768x576)."""
    from adasr.paths import data_root

    names = ("bigbuckbunny_720p.mp4", "megamind_720x528.avi", "vtest_768x576.avi")
    return [data_root() / "video" / name for name in names]


def within(ratio: float, tolerance: float = TOLERANCE) -> bool:
    return 1.0 / (1.0 + tolerance) <= ratio <= 1.0 + tolerance


def run_estimate_bench(inputs: Sequence[Path], *, frames: int = 24, level: str = "best", load_share: float = 0.5,
                       load_workers: int | None = None, settle_s: float = 2.0,
                       on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Upscale each input's first `frames` frames at `level` under a steady background load of
    `load_share` on `load_workers` processes (default: one per core); one row per input."""
    from adasr.cpuload import CpuLoad
    from adasr.timing import provenance
    from adasr.upscale_run import Reporter, upscale_file

    if not 1 <= len(inputs) <= MAX_INPUTS:
        raise ConfigError(f"between 1 and {MAX_INPUTS} inputs, got {len(inputs)}")
    if not 1 <= frames <= 10_000:
        raise ConfigError(f"--frames must be in 1..10000, got {frames}")
    if not 0.0 <= load_share <= 1.0:
        raise ConfigError(f"--load must be in [0, 1], got {load_share}")

    class Said(Reporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def say(self, line: str) -> None:
            self.lines.append(line)

        def warn(self, line: str) -> None:
            self.lines.append(line)

    rows = []
    load = CpuLoad(share=load_share, workers=load_workers) if load_share > 0 else None
    try:
        if load is not None:
            load.start()
            time.sleep(settle_s)  # the load average and the run's load sample see the load
        with tempfile.TemporaryDirectory(prefix="adasr-estimate-") as tmp:
            for i, src in enumerate(inputs):
                src = Path(src)
                if on_progress:
                    on_progress(f"{src.name}: {frames} frames at level {level}")
                said = Said()
                dst = Path(tmp) / f"{i}.mkv"
                t0 = time.perf_counter()
                result = upscale_file(src, dst, level=level, max_frames=frames, reporter=said)
                wall = time.perf_counter() - t0
                s = result.summary
                est = s.get("estimated_s")
                actual = float(s["seconds"])
                ratio = actual / est if est else None
                rows.append({"input": src.name, "frames": int(s["frames"]), "lr_size": s.get("lr_size"),
                             "level": s.get("level"), "estimated_s": est, "actual_s": actual, "wall_s": wall,
                             "ratio": ratio, "within": bool(ratio is not None and within(ratio)),
                             "prior_estimate_s": s.get("prior_estimate_s"), "revised_s": s.get("revised_estimate_s"),
                             "estimate_source": s.get("estimate_source"),
                             "said": said.lines[:4], "loadavg_1m": os.getloadavg()[0]})
                dst.unlink(missing_ok=True)
    finally:
        if load is not None:
            load.stop()
    met = sum(r["within"] for r in rows)
    return {"bench": "estimate", "frames": frames, "level": level, "load_share": load_share,
            "load_workers": load_workers or os.cpu_count(), "tolerance": TOLERANCE, "rows": rows,
            "met": met, "inputs": len(rows), "provenance": provenance()}
