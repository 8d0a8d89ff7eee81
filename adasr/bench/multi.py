"""Two (or more) workloads sharing the CPU: joint runtime manager vs independent managers vs fixed.

`run_multi(package, videos, targets, ...)` builds one engine per workload (each with its own copy
of the package's supernet: an engine's active routing is its own), prepares each workload's LR
frames and HR references from a real clip exactly as `adasr bench adaptivity` does, scores every
level on that content, then for each mode plays all workloads at once for `seconds` with
`run_workloads` and reports, per workload, the share of deadlines met, stalls, mean content PSNR
(the PSNR of the level that upscaled each frame) and switches. Writes ``multi.json`` and
``multi_levels.png`` (level over time per workload, one panel per mode).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adasr._atomic import ensure_dir, write_bytes_atomic
from adasr._jsonfile import header
from adasr.errors import ConfigError

__all__ = ["SCHEMA_VERSION", "run_multi", "summary_rows"]

SCHEMA_VERSION = 1


def run_multi(package_path: str | os.PathLike[str], videos: Sequence[str | os.PathLike[str]],
              targets: Sequence[float], *, seconds: float = 15.0,
              modes: Sequence[str] = ("joint", "independent", "fixed"),
              out_dir: str | os.PathLike[str], max_video_frames: int = 24, psnr_frames: int = 3,
              start_level: int | None = None) -> dict[str, Any]:
    """See the module doc. start_level: where every workload starts (default: the middle level;
    "fixed" stays there)."""
    from adasr.bench.adaptivity import content_psnr, prepare_frames
    from adasr.package import load_package
    from adasr.runtime.engine import Engine
    from adasr.runtime.multi import MODES, Workload, run_workloads

    if len(videos) != len(targets) or not videos:
        raise ConfigError(f"give one target FPS per video ({len(videos)} videos, {len(targets)} targets)")
    if not all(isinstance(t, (int, float)) and t > 0 for t in targets):
        raise ConfigError(f"target FPS must be positive, got {list(targets)}")
    if not (isinstance(seconds, (int, float)) and seconds > 0):
        raise ConfigError(f"seconds must be positive, got {seconds!r}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"modes must be from {', '.join(MODES)}, got {list(modes)}")
    out = ensure_dir(out_dir)

    packages = [load_package(package_path) for _ in videos]
    family = packages[0].family_for(next(iter(packages[0].profiles))) if len(packages[0].profiles) == 1 \
        else packages[0].family
    lr_hw = tuple(family.lr_hw)
    start = len(family) // 2 if start_level is None else int(start_level)
    if not 0 <= start < len(family):
        raise ConfigError(f"start_level must be in [0, {len(family) - 1}], got {start_level!r}")
    prepared = []
    for pkg, video in zip(packages, videos):
        lrs, hrs = prepare_frames(video, lr_hw, pkg.scale, max_video_frames)
        engine = Engine(pkg, family)
        engine.warmup(lr_hw)
        prepared.append((engine, lrs, content_psnr(engine, lrs, hrs, psnr_frames)))

    results: dict[str, Any] = {}
    for mode in modes:
        workloads = []
        for (engine, lrs, _), target in zip(prepared, targets):
            engine.switch(start)
            engine.switch_latencies.clear()
            n = max(1, round(seconds * target))
            workloads.append(Workload(engine, (lrs[i % len(lrs)] for i in range(n)), float(target)))
        stats = run_workloads(workloads, mode=mode)
        rows = []
        for i, (s, (_, _, psnr)) in enumerate(zip(stats, prepared)):
            frames = s.frames
            rows.append({
                "workload": i, "video": str(videos[i]), "target_fps": float(targets[i]), "frames": len(frames),
                "deadlines_met": (len(frames) - s.missed) / len(frames) if frames else 0.0,
                "stalls": len(s.stalls), "switches": len(s.switches),
                "psnr_mean": float(sum(psnr[f.level] for f in frames) / len(frames)) if frames else None,
                "achieved_fps": s.summary()["achieved_fps"],
                "level_over_time": {"t_s": [f.ready_time for f in frames], "level": [f.level for f in frames]},
            })
        results[mode] = rows

    result = {
        **header("adasr-bench-multi", SCHEMA_VERSION), "package": str(package_path),
        "videos": [str(v) for v in videos], "targets": [float(t) for t in targets], "seconds": seconds,
        "lr_size": [lr_hw[1], lr_hw[0]], "start_level": start, "machine": {"cores": os.cpu_count()},
        "content_psnr": [p for _, _, p in prepared], "modes": results,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_bytes_atomic(out / "multi.json", json.dumps(result, indent=1).encode("utf-8"))
    _plot(result, out / "multi_levels.png")
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from adasr._atomic import atomic_path

    modes = list(result["modes"])
    fig, axes = plt.subplots(len(modes), 1, figsize=(8, 2.4 * len(modes)), sharex=True, squeeze=False)
    for ax, mode in zip(axes[:, 0], modes):
        for row in result["modes"][mode]:
            lt = row["level_over_time"]
            ax.step(lt["t_s"], lt["level"], where="post",
                    label=f"workload {row['workload']} @ {row['target_fps']:g} FPS: "
                          f"{100 * row['deadlines_met']:.0f}% met, {row['psnr_mean']:.2f} dB")
        ax.set_title(mode, fontsize=9)
        ax.set_ylabel("level")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode, per in result["modes"].items():
        for r in per:
            rows.append({"mode": mode, "workload": r["workload"], "target FPS": r["target_fps"],
                         "deadlines met %": round(100 * r["deadlines_met"], 1), "stalls": r["stalls"],
                         "mean PSNR": None if r["psnr_mean"] is None else round(r["psnr_mean"], 2),
                         "switches": r["switches"]})
    return rows
