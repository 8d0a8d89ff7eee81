"""Adaptivity under a load trace: adasr's resident supernet against DySR's two baselines.

`run_adaptivity(package, video, options, out_dir=...)` (an `AdaptivityOptions`) plays the same
LR frames of a real video through each runner in turn ("adasr" = `Engine`, "static" = `StaticRunner`, "assembled" =
`AssembledRunner`), each with a fresh policy of the same class and settings, the same target FPS,
and the same background CPU load trace replayed from its start (`CpuLoad` + `TracePlayer`, owned
by the `PlaybackSession` the player uses too).
It writes ``adaptivity.json`` and four PNGs to `out_dir` and returns the JSON dict;
`summary_rows(result)` gives one compact row per runner for a table.

Measurement rules (what the numbers mean):

- Frames: at most `max_video_frames` frames are decoded once up front. Each is centre-cropped to
  the aspect ratio of the LR size, resized with the protocol's MATLAB-bicubic `imresize` to
  exactly ``scale x`` the LR size (the HR reference), and downscaled by ``1 / scale`` with
  `imresize` (the LR frame fed to SR). The run cycles the LR frames for
  ``max_frames = round(seconds * target_fps)`` frames.
- PSNR: before the runs, every level upscales `psnr_frames` evenly spaced LR frames and is scored
  with `psnr_y` (Y channel, `scale` border pixels cropped) against their HR references; a level's
  content PSNR is the mean over those frames. All runners compute exactly the same function per
  level (the baselines are extracted from the same supernet), so a frame's PSNR in a run is the
  content PSNR of the level that upscaled it: the PSNR CDF is over frames, measured on real
  content rather than the family's validation PSNR (kept as ``family_psnr`` for reference).
- Target FPS (default): the idle ("0.00") FPS of the family's median level (index
  ``len // 2``), measured from the device profile when the package has one, else predicted,
  scaled by the pixel ratio when the LR size differs from the family's `lr_hw`. The mid level
  then just meets the target at idle and the best level does not, so a policy must adapt.
- Precision (`AdaptivityOptions.precision`, default "fp32"): "int8" or "auto" runs the adasr
  runner's levels in int8 (`adasr.runtime.precision.build_engine`, calibrated on the video's
  first frames); its policy reads the runner's family, whose int8 levels carry their measured
  int8 time (`int8_timed`), the default target follows that family, and its levels' content
  PSNR is measured on its own int8 outputs. Static and Assembled stay float32.
- Deadlines, stalls, switches: as `run_stream` defines them (see `adasr.runtime.pipeline`).
- Switch latency: the runner's in-run switches plus a probe after the run that switches through
  every level once and back to the first (``2 * (levels - 1)`` switches, bounded), so every runner
  has samples even when its policy never switched; p50/p99 pool both (counts reported apart).
- Memory: ``resident_bytes`` is `runner.resident_bytes()` (parameters and buffers of what the
  runner keeps loaded) at the end of the run; ``resident_bytes_max`` the largest value seen over
  the switch probe (differs only for "static", which holds one level at a time).
  ``peak_rss_bytes`` is this process's peak RSS (psutil, sampled every
  `rss_interval_s` by a small thread) from just before the runner is built to the end of its run;
  it includes the shared interpreter, torch, the decoded frames and allocator caches left by
  earlier runners, so only differences between runners mean something (``rss_before_bytes`` is the
  reading before the runner was built).
- FPS over time: frames whose ready time falls in each 1 s window (the last partial window divided
  by its length). FPS CDF: per frame, the frames ready in the trailing window of 1 s (or of the
  elapsed time, when shorter) divided by that window. The trace's load is plotted shifted by
  ``load_offset_s``, the time from the start of its replay to the start of the stream.
"""

from __future__ import annotations

import gc
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adasr._atomic import atomic_path, ensure_dir, write_bytes_atomic
from adasr._jsonfile import header
from adasr._options import check_hw, check_int, check_positive, options_or_default
from adasr.errors import ConfigError, InputError
from adasr.runtime.policies import pick_policy
from adasr.runtime.stats import fps_per_frame, fps_windows
from adasr.runtime.traces import load_trace as load_trace
from adasr.timing import provenance

if TYPE_CHECKING:
    from adasr.family import Family
    from adasr.package import Package
    from adasr.runtime.engine import Engine
    from adasr.runtime.pipeline import Runner
    from adasr.runtime.traces import Trace

__all__ = ["AdaptivityOptions", "PNGS", "POLICIES", "PeakRss", "Progress", "RUNNERS", "SCHEMA_VERSION", "TRACE_KINDS",
           "content_psnr", "default_target_fps", "prepare_frames", "run_adaptivity", "summary_rows", "write_plots"]

RUNNERS = ("adasr", "static", "assembled")
POLICIES = ("lookup", "reactive")
TRACE_KINDS = ("bursty", "stable", "random", "random_walk")
SCHEMA_VERSION = 1
PNGS = ("fps_over_time.png", "fps_cdf.png", "psnr_cdf.png", "switch_latency.png")

Progress = Callable[[str, int, int], None]


# -- inputs ----------------------------------------------------------------------------------------------

def _crop_to_aspect(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """Centre crop of `frame` with the aspect ratio w:h (as large as possible)."""
    fh, fw = frame.shape[:2]
    if fw * h > fh * w:  # too wide
        cw = max(1, round(fh * w / h))
        x0 = (fw - cw) // 2
        return frame[:, x0:x0 + cw]
    ch = max(1, round(fw * h / w))
    y0 = (fh - ch) // 2
    return frame[y0:y0 + ch]


def prepare_frames(video_path: str | os.PathLike[str], lr_hw: tuple[int, int], scale: int,
                   max_video_frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(LR frames, HR references) from the first `max_video_frames` frames of the video; see the
    module doc."""
    from adasr.data.imresize import imresize
    from adasr.video import read_frames

    h, w = lr_hw
    lrs: list[np.ndarray] = []
    hrs: list[np.ndarray] = []
    for frame in read_frames(video_path, max_frames=max_video_frames):
        crop = _crop_to_aspect(frame, h, w)
        hr = crop if crop.shape[:2] == (scale * h, scale * w) else imresize(crop, output_shape=(scale * h, scale * w))
        lr = imresize(hr, scale=1.0 / scale)
        if lr.shape[:2] != (h, w):  # ceil(sH / s) == H always; a guard, not expected
            lr = imresize(hr, output_shape=(h, w))
        hrs.append(np.ascontiguousarray(hr))
        lrs.append(np.ascontiguousarray(lr))
    if not lrs:
        raise InputError(f"no frames decoded from {video_path}")
    return lrs, hrs


def content_psnr(engine: Engine, lrs: Sequence[np.ndarray], hrs: Sequence[np.ndarray], n: int) -> list[float]:
    """Mean `psnr_y` per level over `n` evenly spaced (LR, HR) pairs (the engine ends on level 0)."""
    from adasr.metrics import psnr_y

    picks = sorted({int(i) for i in np.linspace(0, len(lrs) - 1, num=min(n, len(lrs)))})
    out = []
    for level in range(len(engine.levels)):
        engine.switch(level)
        scores = [psnr_y(engine.process(lrs[i]), hrs[i], border=engine.scale) for i in picks]
        out.append(float(np.mean([s if math.isfinite(s) else 100.0 for s in scores])))
    engine.switch(0)
    engine.switch_latencies.clear()
    return out


def default_target_fps(family: Family, lr_hw: tuple[int, int]) -> float:
    """Idle FPS of the median level, scaled to `lr_hw` by pixel count (see the module doc)."""
    mid = family[len(family) // 2]
    seconds = mid.seconds("0.00")
    if seconds is None or not seconds > 0:
        raise ConfigError("the package's family has no idle ('0.00') latency for its levels; "
                          "profile the package or pass target_fps")
    fh, fw = family.lr_hw
    return 1.0 / (seconds * (lr_hw[0] * lr_hw[1]) / (fh * fw))


# -- measurement helpers ------------------------------------------------------------------------------

class PeakRss:
    """Samples this process's RSS every `interval_s` from a daemon thread; `peak` is the maximum."""

    def __init__(self, interval_s: float = 0.02) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval_s = interval_s
        self.before = self.peak = int(self._proc.memory_info().rss)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        rss = int(self._proc.memory_info().rss)
        if rss > self.peak:
            self.peak = rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, name="adasr-peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self._sample()


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def _switch_probe(runner: Runner) -> tuple[list[int], int]:
    """Switch through every level once and back to the first: (ns of each switch, the largest
    `resident_bytes()` seen on the way)."""
    n = len(runner.levels)
    order = list(range(1, n)) + list(range(n - 2, -1, -1)) if n >= 2 else []
    ns, resident = [], int(runner.resident_bytes())
    for level in order:
        ns.append(int(runner.switch(level)))
        resident = max(resident, int(runner.resident_bytes()))
    return ns, resident


def _build_runner(name: str, package: Package, family: Family, options: AdaptivityOptions | None = None,
                  video: str | os.PathLike[str] | None = None) -> Any:
    from adasr.runtime.baseline_runners import AssembledRunner, StaticRunner
    from adasr.runtime.engine import Engine

    if name == "adasr":
        if options is None or options.precision == "fp32":
            return Engine(package, family)
        from adasr.runtime.precision import build_engine

        return build_engine(package, family, precision=options.precision, calibration_video=video,
                            device_key=options.device_key)
    if name == "static":
        return StaticRunner(package, family)
    return AssembledRunner(package, family)


def _run_one(name: str, package: Package, family: Family, lrs: list[np.ndarray], level_psnr: list[float], *,
             trace: Trace, target_fps: float, max_frames: int, options: AdaptivityOptions,
             video: str | os.PathLike[str] | None = None, hrs: list[np.ndarray] | None = None) -> dict[str, Any]:
    from adasr.runtime.pipeline import AutoThreads, StreamOptions
    from adasr.runtime.session import PlaybackSession

    gc.collect()
    runner = None
    stream = StreamOptions(max_frames=max_frames, threads=AutoThreads() if options.thread_rule == "auto" else None)
    with PeakRss(options.rss_interval_s) as rss:
        try:
            runner = _build_runner(name, package, family, options, video)
            if name == "adasr" and options.precision != "fp32" and hrs is not None:
                level_psnr = content_psnr(runner, lrs, hrs, options.psnr_frames)  # its int8 levels' own PSNR
            runner.warmup(lrs[0].shape[:2])  # kernels for this frame size built before the clock starts
            frames = (lrs[i % len(lrs)] for i in range(max_frames))  # bounded
            with PlaybackSession(target_fps=target_fps, level=runner.level, trace=trace,
                                 load_workers=options.load_workers) as session:
                # the runner's family: an int8 level's latency is its measured int8 time
                run_policy = pick_policy(options.policy, runner.levels, None, fallback=False)
                stats = session.run(runner, frames, None, run_policy, stream)
                session.stop_load()
                resident = int(runner.resident_bytes())  # as the run left it (static: its last level)
                probe, resident_max = _switch_probe(runner)
                resident_max = max(resident, resident_max)
        finally:
            close = getattr(runner, "close", None)
            if close is not None:
                close()
    if session.trace_error is not None:
        raise RuntimeError(f"trace replay failed: {session.trace_error}") from session.trace_error
    applied = session.applied
    stats.level_psnr = list(level_psnr)  # content PSNR, not the family's validation PSNR
    summary = stats.summary()
    n = len(stats.frames)
    ready = [f.ready_time for f in stats.frames]
    run_ns = [s.ns for s in stats.switches]
    pooled_ms = [ns / 1e6 for ns in run_ns + probe]
    t_win, fps_win = fps_windows(ready)
    return {
        "runner": name,
        "frames": n,
        "max_frames": max_frames,
        "target_fps": target_fps,
        "deadlines_met": (n - stats.missed) / n if n else 0.0,
        "missed": stats.missed,
        "stalls": len(stats.stalls),
        "stall_s": float(sum(s.gap_s for s in stats.stalls)),
        "psnr_mean": summary.get("psnr_mean"),
        "resident_bytes": resident,
        "resident_bytes_max": resident_max,
        "peak_rss_bytes": int(rss.peak),
        "rss_before_bytes": int(rss.before),
        "switches": len(stats.switches),
        "int8_levels": [i for i, q in enumerate(getattr(runner, "int8_levels", None) or []) if q is not None],
        "content_psnr": list(level_psnr),
        "switch_ms": {"p50": _percentile(pooled_ms, 50), "p99": _percentile(pooled_ms, 99),
                      "max": max(pooled_ms) if pooled_ms else None, "n_run": len(run_ns), "n_probe": len(probe)},
        "switch_run_ns": run_ns,
        "switch_probe_ns": probe,
        "achieved_fps": summary["achieved_fps"],
        "fps_over_time": {"t_s": t_win, "fps": fps_win, "window_s": 1.0},
        "fps_per_frame": fps_per_frame(ready),
        "level_over_time": {"t_s": ready, "level": [f.level for f in stats.frames]},
        "psnr_per_frame": [level_psnr[f.level] for f in stats.frames],
        "level_frames": summary["level_frames"],
        "latency_s_mean": summary["latency_s_mean"],
        "latency_s_p90": summary["latency_s_p90"],
        "load_offset_s": session.load_offset_s,
        "trace_applied": [[float(t), float(v)] for t, v in applied],
        "wall_s": stats.wall_s,
    }


# -- plots ------------------------------------------------------------------------------------------------

def _save_fig(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def _cdf(ax: Any, values: Sequence[float], label: str) -> None:
    v = np.sort(np.asarray(values, dtype=np.float64))
    if len(v):
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=label)


def _cdf_figure(runs: dict[str, Any], values: Callable[[dict[str, Any]], Sequence[float]], xlabel: str,
                path: Path, *, vline: float | None = None, log: bool = False) -> None:
    """One CDF per runner of `values(run)` on one figure, saved atomically to `path`."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        _cdf(ax, values(r), name)
    if vline is not None:
        ax.axvline(vline, color="k", ls="--", lw=0.8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("CDF")
    ax.legend(fontsize=8)
    _save_fig(fig, path)


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    runs = result["runners"]
    trace_steps = result["trace"]["steps"]
    paths = [out_dir / p for p in PNGS]

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, r in runs.items():
        t, fps = list(r["fps_over_time"]["t_s"]), list(r["fps_over_time"]["fps"])
        if t:  # close the last window at the last ready time
            t.append(max(r["level_over_time"]["t_s"]))
            fps.append(fps[-1])
        ax.step(t, fps, where="post", label=name)
    ax.axhline(result["target_fps"], color="k", ls="--", lw=0.8, label="target")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("achieved FPS (1 s windows)")
    top = max([result["target_fps"]] + [f for r in runs.values() for f in r["fps_over_time"]["fps"]])
    ax.set_ylim(0, 1.15 * top)
    ax2 = ax.twinx()
    ts = [s[0] for s in trace_steps]
    loads = [s[1] for s in trace_steps]
    ax2.step(ts, loads, where="post", color="grey", alpha=0.5, label=f"load ({result['trace']['name']})")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("background load share")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower left", fontsize=8)
    ax.set_title("achieved FPS under the load trace")
    _save_fig(fig, paths[0])

    _cdf_figure(runs, lambda r: r["fps_per_frame"], "FPS (trailing 1 s window, per frame)", paths[1],
                vline=result["target_fps"])
    _cdf_figure(runs, lambda r: r["psnr_per_frame"], "PSNR-Y (dB) of the level used, on the video's frames", paths[2])
    _cdf_figure(runs, lambda r: [ns / 1e6 for ns in r["switch_run_ns"] + r["switch_probe_ns"]],
                "switch latency (ms, in-run + probe switches)", paths[3], log=True)
    return paths


# -- the experiment ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdaptivityOptions:
    """What `run_adaptivity` runs (validated on construction).

    trace: "bursty" | "stable" | "random" (generated for `seconds` with `seed`) or a CSV path.
    target_fps: the display rate (default: see the module doc). lr_hw: (H, W) of the LR frames
    (default: the family's lr_hw). runners: a subset of ("adasr", "static", "assembled"), run in
    this order. load_workers: `CpuLoad` processes (default one per core). device_key: which
    device profile of the package to use (default: the only one, else this machine's key, else
    the stored family). thread_rule: "auto" (`auto_threads`: all cores while the CPU is otherwise
    idle, one thread under background load) or "fixed" (torch's current setting throughout).
    """

    trace: str = "bursty"
    seconds: float = 20.0
    target_fps: float | None = None
    policy: str = "lookup"
    lr_hw: tuple[int, int] | None = None
    runners: tuple[str, ...] = RUNNERS
    seed: int = 0
    load_workers: int | None = None
    device_key: str | None = None
    max_video_frames: int = 32
    psnr_frames: int = 4
    rss_interval_s: float = 0.02
    thread_rule: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        from adasr.package import check_precision

        put = object.__setattr__
        check_precision(self.precision)
        put(self, "seconds", check_positive("seconds", self.seconds))
        if self.thread_rule not in ("auto", "fixed"):
            raise ConfigError(f"thread_rule must be 'auto' or 'fixed', got {self.thread_rule!r}")
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        runners = tuple(self.runners) if not isinstance(self.runners, str) else (self.runners,)
        bad = [r for r in runners if r not in RUNNERS]
        if not runners or bad or len(set(runners)) != len(runners):
            raise ConfigError(f"runners must be distinct names from {', '.join(RUNNERS)}, got {list(runners)!r}")
        put(self, "runners", runners)
        if self.load_workers is not None:
            check_int("load_workers", self.load_workers, 1, 1024)
        put(self, "max_video_frames", check_int("max_video_frames", self.max_video_frames, 1, 10_000))
        put(self, "psnr_frames", check_int("psnr_frames", self.psnr_frames, 1, 1000))
        put(self, "rss_interval_s", check_positive("rss_interval_s", self.rss_interval_s))
        put(self, "lr_hw", check_hw(self.lr_hw, "lr_hw"))
        if self.target_fps is not None:
            put(self, "target_fps", check_positive("target_fps", self.target_fps))


def run_adaptivity(package_path: str | os.PathLike[str], video_path: str | os.PathLike[str],
                   options: AdaptivityOptions | None = None, *, out_dir: str | os.PathLike[str],
                   on_progress: Progress | None = None) -> dict[str, Any]:
    """Run every runner under the same load trace on the same frames; see the module doc and
    `AdaptivityOptions`.

    on_progress(stage, done, total): called after the PSNR evaluation and after each runner.
    Writes ``out_dir/adaptivity.json`` and the PNGs in `PNGS`; returns the JSON dict.
    """
    from adasr.package import load_package
    from adasr.runtime.engine import Engine

    opts = options_or_default(AdaptivityOptions, options, "run_adaptivity")
    seconds, policy, runners, seed, device_key = opts.seconds, opts.policy, opts.runners, opts.seed, opts.device_key
    out = ensure_dir(out_dir)
    trace_obj = load_trace(opts.trace, seconds, seed)

    package = load_package(package_path)
    if device_key is None and len(package.profiles) > 1:
        from adasr.runtime.profile import device_key as this_device

        key = this_device()
        device_key = key if key in package.profiles else None
    family = package.family_for(device_key)
    lr_hw = opts.lr_hw or tuple(family.lr_hw)
    target_fps = opts.target_fps
    if target_fps is None:
        timed = family
        if opts.precision != "fp32" and "adasr" in runners:  # the target follows the faster levels
            from adasr.runtime.int8_rule import int8_section, int8_timed
            from adasr.runtime.precision import int8_levels

            chosen = int8_levels(package, family, opts.precision, device_key)
            timed = int8_timed(family, int8_section(package, device_key),
                               range(len(family)) if chosen is None else chosen)
        target_fps = default_target_fps(timed, lr_hw)
        fps_source = "median level idle FPS (profile/predicted), scaled to the LR size"
    else:
        fps_source = "given"
    max_frames = max(1, int(round(seconds * target_fps)))
    if max_frames > 1_000_000:
        raise ConfigError(f"seconds * target_fps = {max_frames} frames is too many")

    lrs, hrs = prepare_frames(video_path, lr_hw, package.scale, opts.max_video_frames)
    engine = Engine(package, family)
    level_psnr = content_psnr(engine, lrs, hrs, opts.psnr_frames)
    del engine
    if on_progress is not None:
        on_progress("psnr", 1, 1)

    results: dict[str, Any] = {}
    for i, name in enumerate(runners):
        results[name] = _run_one(name, package, family, lrs, level_psnr, trace=trace_obj, target_fps=target_fps,
                                 max_frames=max_frames, options=opts, video=video_path, hrs=hrs)
        if on_progress is not None:
            on_progress("runner", i + 1, len(runners))

    result: dict[str, Any] = {
        **header("adasr-bench-adaptivity", SCHEMA_VERSION),
        "package": str(package_path),
        "video": str(video_path),
        "trace": trace_obj.to_dict(),
        "seconds": seconds,
        "seed": seed,
        "target_fps": target_fps,
        "target_fps_source": fps_source,
        "max_frames": max_frames,
        "policy": policy,
        "thread_rule": opts.thread_rule,
        "precision": opts.precision,
        "lr_size": [lr_hw[1], lr_hw[0]],
        "scale": package.scale,
        "video_frames": len(lrs),
        "psnr_frames": min(opts.psnr_frames, len(lrs)),
        "load_workers": opts.load_workers or os.cpu_count() or 1,
        "machine": {"cores": os.cpu_count()},
        "device_key": device_key,
        "levels": [{"config": lv.config.id, "family_psnr": float(lv.psnr), "content_psnr": level_psnr[i],
                    "idle_s": lv.seconds("0.00")} for i, lv in enumerate(family)],
        "runners": results,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": provenance(),
    }
    import json

    write_bytes_atomic(out / "adaptivity.json", json.dumps(result, indent=1).encode("utf-8"))
    write_plots(result, out)
    return result


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per runner: runner, deadlines met %, stalls, mean PSNR, resident MB, peak RSS MB,
    switch p50 / p99 ms, switches."""
    rows = []
    for name, r in result["runners"].items():
        sw = r["switch_ms"]
        rows.append({
            "runner": name,
            "deadlines met %": round(100.0 * r["deadlines_met"], 1),
            "stalls": r["stalls"],
            "mean PSNR": None if r["psnr_mean"] is None else round(r["psnr_mean"], 2),
            "resident MB": round(r["resident_bytes"] / 2**20, 3),
            "peak RSS MB": round(r["peak_rss_bytes"] / 2**20, 1),
            "switch p50 ms": None if sw["p50"] is None else round(sw["p50"], 4),
            "switch p99 ms": None if sw["p99"] is None else round(sw["p99"], 4),
            "switches": r["switches"],
        })
    return rows
