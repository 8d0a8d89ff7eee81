"""Cost of running a level inside the supernet against the same level extracted standalone.

The engine keeps the supernet resident and runs the active level through it (sliced weights,
kernel transforms at forward time); the Static and Assembled baselines run extracted modules.
Both are timed on the same frame size in alternating rounds, so machine noise hits both alike;
the ratio per level is median(supernet) / median(extracted).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_overhead"]


def run_overhead(package_path: str | Path, *, rounds: int = 5, repeats: int = 10, threads: int | None = None,
                 lr_hw: tuple[int, int] | None = None,
                 on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    from adasr.package import load_package
    from adasr.runtime.profile import device_key, measure_latency
    from adasr.timing import provenance

    if rounds < 1 or repeats < 1:
        from adasr.errors import ConfigError

        raise ConfigError(f"rounds and repeats must be positive, got {rounds}, {repeats}")
    package = load_package(package_path)
    net = package.supernet.eval()
    hw = tuple(lr_hw or package.family.lr_hw)
    rows = []
    levels = list(package.family)
    for index, level in enumerate(levels):
        cfg = level.config
        static = net.extract(cfg).eval()
        inside, alone = [], []
        for _ in range(rounds):
            net.set_active(cfg)
            inside.append(measure_latency(net, None, hw, repeats=repeats, warmup=2, threads=threads).median_s)
            alone.append(measure_latency(static, None, hw, repeats=repeats, warmup=2, threads=threads).median_s)
        a, b = statistics.median(inside), statistics.median(alone)
        rows.append({"level": index, "config": cfg.id, "supernet_s": a, "extracted_s": b, "ratio": a / b})
        if on_progress is not None:
            on_progress("levels", index + 1, len(levels))
    return {"provenance": provenance(), "package": str(package_path), "lr_hw": list(hw), "device": device_key("cpu",
                                                                                                              threads),
            "rounds": rounds, "repeats": repeats, "levels": rows,
            "max_ratio": max(r["ratio"] for r in rows), "median_ratio": statistics.median(r["ratio"] for r in rows)}
