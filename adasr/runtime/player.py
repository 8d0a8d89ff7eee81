"""Play a video through the adaptive engine: decode -> SR at the level the policy picks -> encode.

`play(engine, video, ...)` is what `adasr play`, `adasr upscale` (a video, a package) and `adasr demo`
run. It wires the pieces of `adasr.runtime` together for one real file:

- Frames: decoded by PyAV in the pipeline's decode thread, optionally resized on the way
  (`lr_size`, swscale area filter), so decoding competes for the CPU as it does in a player.
- Engine: every level warmed up at the frame size before the display clock starts.
- Policy: "lookup" (DySR Algorithm 1 on the package's profile, calibrated online), "reactive"
  (Dynamic-OFA's runtime manager) or "fixed" (one level, no switching).
- Threads: the `auto_threads` rule by default (every core while the CPU is otherwise idle,
  one thread under background load).
- Load: an optional background trace (bursty, stable, random or a CSV file) replayed by
  `CpuLoad` processes for the whole run (looped), to see the runtime react.
- Output: an optional video file (frame rate, rotation and audio of the source kept; written
  atomically by `VideoWriter` in the sink thread).
- Reference quality: with ``reference_every=N`` and an `lr_size`, the source is treated as the
  ground truth: frames are decoded at ``scale x lr_size`` (the HR reference), shrunk with the
  protocol's bicubic to the LR frame the engine gets, and every N-th frame's output and the
  bicubic upscale of its LR frame are scored against the reference with `psnr_y` after the run
  (outside the timed loop).

`PlayResult.summary()` is the JSON-ready QoS summary; `write_timeline(result, path)` draws level,
FPS, latency and load over time with the missed deadlines marked.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adasr.errors import ConfigError, InputError
from adasr.runtime.policies import pick_policy

POLICY_NAMES = ("lookup", "reactive", "fixed")


@dataclass
class PlayResult:
    stats: Any                 # RunStats
    target_fps: float
    policy: str
    lr_size: tuple[int, int]   # (W, H) fed to the engine
    out_size: tuple[int, int]  # (W, H) of the SR frames
    source_fps: float
    output: str | None = None
    trace: dict[str, Any] | None = None
    trace_applied: list[tuple[float, float]] = field(default_factory=list)
    load_offset_s: float = 0.0
    psnr: dict[str, Any] | None = None
    levels: list[dict[str, Any]] = field(default_factory=list)
    load_samples: list[tuple[float, float]] = field(default_factory=list)  # (t since t0, load share seen)

    def summary(self) -> dict[str, Any]:
        s = self.stats.summary()
        n = s["frames"]
        out = {
            "frames": n,
            "seconds": s["wall_s"],
            "target_fps": self.target_fps,
            "mean_fps": s["achieved_fps"],
            "deadlines_met": (n - s["missed"]) / n if n else 0.0,
            "missed": s["missed"],
            "stalls": s["stalls"],
            "switches": s["switches"],
            "switch_ms_max": s["switch_ns_max"] / 1e6,
            "level_histogram": s["level_frames"],
            "latency_ms_mean": 1e3 * s["latency_s_mean"],
            "policy": self.policy,
            "lr_size": list(self.lr_size),
            "out_size": list(self.out_size),
            "source_fps": self.source_fps,
            "output": self.output,
            "trace": None if self.trace is None else self.trace.get("name"),
            "levels": self.levels,
        }
        if self.psnr is not None:
            out["psnr"] = self.psnr
        return out


def _check_size(size: Any, what: str) -> tuple[int, int] | None:
    if size is None:
        return None
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= 16384 for v in size)):
        raise ConfigError(f"{what} must be (W, H) positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def play(engine: Any, video: str | os.PathLike[str], *, target_fps: float | None = None, policy: str = "lookup",
         level: int | None = None, trace: str | os.PathLike[str] | None = None, trace_seed: int = 0,
         lr_size: tuple[int, int] | None = None, out: str | os.PathLike[str] | None = None, codec: str = "h264",
         crf: int = 20, preset: str | None = None, max_frames: int | None = None, thread_rule: str = "auto",
         reference_every: int = 0, on_frame: Callable[[Any, Any], None] | None = None,
         load_workers: int | None = None, info: Any = None, pace: bool = True) -> PlayResult:
    """Play `video` through `engine` (see the module doc); returns a `PlayResult`.

    target_fps: the display rate to hold (default: the video's own frame rate).
    policy: "lookup" | "reactive" | "fixed"; level: the starting level (for "fixed": the level;
    default: the best level for "fixed", the fastest otherwise).
    pace: hold frames to the display clock (a player); False runs as fast as it can (offline
    upscaling at a fixed level; deadlines are still counted against the target).
    """
    from adasr.runtime.engine import AutoThreads, run_stream
    from adasr.runtime.monitors import CpuMonitor, StreamMonitor
    from adasr.video import VideoWriter, probe, read_frames

    if policy not in POLICY_NAMES:
        raise ConfigError(f"policy must be one of {', '.join(POLICY_NAMES)}, got {policy!r}")
    if thread_rule not in ("auto", "fixed"):
        raise ConfigError(f"thread_rule must be 'auto' or 'fixed', got {thread_rule!r}")
    if level is not None:
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level < len(engine.levels):
            raise ConfigError(f"level must be in [0, {len(engine.levels) - 1}] for this package, got {level!r}")
    if not isinstance(reference_every, int) or reference_every < 0:
        raise ConfigError(f"reference_every must be a non-negative integer, got {reference_every!r}")
    lr = _check_size(lr_size, "lr_size")
    if out is not None:
        from adasr._atomic import check_not_input

        check_not_input([out], [video])
    if reference_every and lr is None:
        raise ConfigError("reference PSNR needs lr_size (the source is the ground truth, shrunk to lr_size)")
    info = info or probe(video)
    scale = engine.scale
    lr = lr or (info.width, info.height)
    out_size = (lr[0] * scale, lr[1] * scale)
    fps = float(info.fps) if info.fps else 25.0
    target = fps if target_fps is None else float(target_fps)
    if not (math.isfinite(target) and target > 0):
        raise ConfigError(f"target FPS must be positive, got {target_fps!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ConfigError(f"max_frames must be a positive integer, got {max_frames!r}")

    refs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (HR reference, LR frame)

    def frames() -> Iterator[np.ndarray]:
        if not reference_every:
            yield from read_frames(video, max_frames=max_frames, size=None if lr == (info.width, info.height) else lr)
            return
        from adasr.data.imresize import imresize_torch
        from adasr.frames import to_frame, to_tensor

        for i, hr in enumerate(read_frames(video, max_frames=max_frames, size=out_size)):
            small = imresize_torch(to_tensor(hr, peak=1.0), scale=1.0 / scale)  # on the 0..255 scale
            lr_frame = to_frame(small, unit=False)
            if i % reference_every == 0:
                refs[i] = (hr, lr_frame)
            yield lr_frame

    outputs: dict[int, np.ndarray] = {}
    writer = None
    counter = [0]

    def sink(frame: np.ndarray) -> None:
        i = counter[0]
        counter[0] += 1
        if writer is not None:
            writer.write(frame)
        if reference_every and i % reference_every == 0:
            outputs[i] = frame

    start_level = level if level is not None else (len(engine.levels) - 1 if policy == "fixed" else 0)
    if engine.level != start_level:
        engine.switch(start_level)
        engine.switch_latencies.clear()
    engine.warmup((lr[1], lr[0]), levels=[start_level] if policy == "fixed" else None)
    pol = pick_policy(policy, engine.levels, level)
    monitor = StreamMonitor(cpu=CpuMonitor(), level=engine.level, target_period_s=1.0 / target)
    load_samples: list[tuple[float, float]] = []
    t0: list[float] = []

    def frame_hook(record: Any, state: Any) -> None:
        if state is not None and state.load_share is not None:
            load_samples.append((record.ready_time, float(state.load_share)))
        if on_frame is not None:
            on_frame(record, state)

    load = player = None
    trace_obj = None
    load_offset = 0.0
    applied: list[tuple[float, float]] = []
    try:
        if trace is not None:
            from adasr.cpuload import CpuLoad
            from adasr.runtime.traces import TracePlayer, load_trace

            duration = (max_frames or info.frame_count or 300) / target
            trace_obj = load_trace(trace, max(1.0, duration), trace_seed)
            load = CpuLoad(share=trace_obj.steps[0][1], workers=load_workers).start()
            player = TracePlayer(trace_obj, load, loop=True)
            player.start()
            load_start = time.monotonic()
        if out is not None:
            writer = VideoWriter(out, out_size[0], out_size[1], info.fps or fps, codec=codec, crf=crf, preset=preset,
                                 audio_from=video if info.has_audio else None, rotation=info.rotation)
            writer.__enter__()
        if trace is not None:
            load_offset = time.monotonic() - load_start
        t0.append(time.monotonic())
        stats = run_stream(engine, frames(), sink, target, pol, monitor, threads=AutoThreads() if thread_rule == "auto"
                           else None, on_frame=frame_hook, pace=pace)
    except InputError as exc:
        # a damaged source: keep what decoded (a complete, playable file), then report the damage
        if writer is None or counter[0] == 0:
            if writer is not None:
                writer.__exit__(type(exc), exc, exc.__traceback__)
            raise
        writer.__exit__(None, None, None)
        raise InputError(f"{exc}; the {counter[0]} frames before it were upscaled to {out}") from None
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
            writer = None
        raise
    finally:
        if player is not None:
            player.stop()
            applied = list(player.applied)
        if load is not None:
            load.stop()
    if writer is not None:
        writer.__exit__(None, None, None)
    if not stats.frames:
        raise ConfigError(f"no frames were played from {video}")
    levels = [{"index": i, "config": lv.config.id, "psnr": float(lv.psnr)} for i, lv in enumerate(engine.levels)]
    result = PlayResult(stats=stats, target_fps=target, policy=type(pol).__name__ if policy == "lookup" else policy,
                        lr_size=lr, out_size=out_size, source_fps=fps, output=None if out is None else str(out),
                        trace=None if trace_obj is None else trace_obj.to_dict(), trace_applied=applied,
                        load_offset_s=load_offset, levels=levels, load_samples=load_samples)
    if reference_every:
        result.psnr = _reference_psnr(refs, outputs, scale)
    return result


def _reference_psnr(refs: dict[int, tuple[np.ndarray, np.ndarray]], outputs: dict[int, np.ndarray],
                    scale: int) -> dict[str, Any]:
    """Mean PSNR-Y of the played frames and of bicubic on the same sampled frames."""
    from adasr.data.imresize import imresize_torch
    from adasr.frames import to_frame, to_tensor
    from adasr.metrics import psnr_y

    sr_scores, bic_scores = [], []
    for i in sorted(set(refs) & set(outputs)):
        hr, lr_frame = refs[i]
        bic = to_frame(imresize_torch(to_tensor(lr_frame, peak=1.0), scale=float(scale)), unit=False)
        sr_scores.append(psnr_y(outputs[i], hr, border=scale))
        bic_scores.append(psnr_y(bic, hr, border=scale))
    if not sr_scores:
        return {"frames": 0}
    sr, bic = float(np.mean(sr_scores)), float(np.mean(bic_scores))
    return {"frames": len(sr_scores), "sr": sr, "bicubic": bic, "gain": sr - bic}


def write_timeline(result: PlayResult, path: str | os.PathLike[str]) -> Path:
    """PNG: level and achieved FPS over time (top), frame latency vs the period with missed
    deadlines marked and the background load (bottom). Written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from adasr._atomic import atomic_path
    from adasr.runtime.stats import fps_windows

    frames = result.stats.frames
    t = [f.ready_time for f in frames]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.step(t, [f.level for f in frames], where="post", color="tab:blue", label="level")
    ax1.set_ylabel("level (0 = fastest)")
    ax1.set_ylim(-0.5, max(len(result.levels) - 0.5, 0.5))
    axf = ax1.twinx()
    tw, fw = fps_windows(t)
    if tw:
        axf.step(tw + [t[-1]], fw + [fw[-1]], where="post", color="tab:green", label="FPS (1 s)")
    axf.axhline(result.target_fps, color="k", ls="--", lw=0.8, label="target FPS")
    axf.set_ylabel("achieved FPS")
    axf.set_ylim(0, 1.2 * max([result.target_fps] + fw))
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = axf.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=8)
    s = result.summary()
    ax1.set_title(f"{s['frames']} frames, target {result.target_fps:.1f} FPS, deadlines met "
                  f"{100 * s['deadlines_met']:.1f}%, {s['stalls']} stalls, {s['switches']} switches")
    ax2.plot(t, [1e3 * f.latency_s for f in frames], lw=0.8, color="tab:purple", label="SR latency (ms)")
    ax2.axhline(1e3 / result.target_fps, color="k", ls="--", lw=0.8, label="period")
    missed = [f for f in frames if f.missed]
    if missed:
        ax2.scatter([f.ready_time for f in missed], [1e3 * f.latency_s for f in missed], color="red", s=10,
                    label="missed deadline", zorder=3)
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("ms")
    axl = ax2.twinx()
    if result.load_samples:
        axl.plot([p[0] for p in result.load_samples], [p[1] for p in result.load_samples], color="grey", alpha=0.6,
                 lw=0.8, label="other programs' CPU share (measured)")
    axl.set_ylim(0, 1.05)
    axl.set_ylabel("background load share")
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = axl.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
