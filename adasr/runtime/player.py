"""Play a video through the adaptive engine: decode -> SR at the level the policy picks -> encode.

`play(engine, video, options)` (a `PlayOptions`) is what `adasr play`, `adasr upscale` (a video, a
package) and `adasr demo` run. It wires the pieces of `adasr.runtime` together for one real file:

- Frames: decoded by PyAV in the pipeline's decode thread, optionally resized on the way
  (`lr_hw`, swscale area filter), so decoding competes for the CPU as it does in a player.
- Engine: every level warmed up at the frame size before the display clock starts.
- Policy: "lookup" (DySR Algorithm 1 on the package's profile, calibrated online), "reactive"
  (Dynamic-OFA's runtime manager) or "fixed" (one level, no switching).
- Threads: the `auto_threads` rule by default (every core while the CPU is otherwise idle,
  one thread under background load).
- Load: an optional background trace (bursty, stable, random or a CSV file) replayed by
  `CpuLoad` processes for the whole run (looped), to see the runtime react.
- Output: an optional video file (frame rate, rotation and audio of the source kept; written
  atomically by `VideoWriter` in the sink thread).
- The load, the monitor and the writer are owned by one `PlaybackSession`
  (`adasr.runtime.session`), the same one the adaptivity bench uses.
- Reference quality: with ``reference_every=N`` and an `lr_hw`, the source is treated as the
  ground truth: frames are decoded at ``scale x lr_hw`` (the HR reference), shrunk with the
  protocol's bicubic to the LR frame the engine gets, and every N-th frame's output and the
  bicubic upscale of its LR frame are scored against the reference with `psnr_y` after the run
  (outside the timed loop).

`PlayResult.summary()` is the JSON-ready QoS summary; `write_timeline(result, path)` draws level,
FPS, latency and load over time with the missed deadlines marked.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adasr._options import check_hw, options_or_default
from adasr.errors import ConfigError, InputError
from adasr.runtime.policies import pick_policy

if TYPE_CHECKING:
    from adasr.runtime.monitors import RuntimeState
    from adasr.runtime.pipeline import FrameRecord, Runner, RunStats
    from adasr.video import VideoInfo

__all__ = ["POLICY_NAMES", "PlayOptions", "PlayResult", "ReachWatch", "check_time_range", "play",
           "write_timeline"]

POLICY_NAMES = ("lookup", "reactive", "fixed")


@dataclass
class PlayResult:
    stats: RunStats
    target_fps: float
    policy: str
    lr_hw: tuple[int, int]     # (H, W) fed to the engine
    out_hw: tuple[int, int]    # (H, W) of the SR frames
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
            "lr_size": [self.lr_hw[1], self.lr_hw[0]],  # the report's sizes read W, H (as WxH)
            "out_size": [self.out_hw[1], self.out_hw[0]],
            "source_fps": self.source_fps,
            "output": self.output,
            "trace": None if self.trace is None else self.trace.get("name"),
            "levels": self.levels,
        }
        if self.psnr is not None:
            out["psnr"] = self.psnr
        return out


@dataclass(frozen=True)
class PlayOptions:
    """How `play` plays (validated on construction).

    target_fps: the display rate to hold (default: the video's own frame rate).
    policy: "lookup" | "reactive" | "fixed"; level: the starting level (for "fixed": the level;
    default: the best level for "fixed", the fastest otherwise).
    trace / trace_seed / load_workers: a background CPU load to replay (bursty, stable, random or
    a CSV file), looped for the whole run, with `CpuLoad` processes (default one per core).
    lr_hw: (H, W) to resize the frames to before SR (default: the video's size).
    out / codec / crf / preset: an optional output video. max_frames: stop after this many frames.
    thread_rule: "auto" (`AutoThreads`) or "fixed" (torch's setting). reference_every: score every
    N-th frame against the source (needs `lr_hw`). on_frame: ``on_frame(record, state)`` after
    every frame (live views). info: the video's `probe` result when the caller has it already.
    pace: hold frames to the display clock (a player); False runs as fast as it can (offline
    upscaling at a fixed level; deadlines are still counted against the target).
    stream: with `reference_every`, play the source as a stream carries it: shrunk with this
    `adasr.data.degrade` spec's kernel and coded with its codec and CRF (e.g.
    "h264:crf=28,kernel=area", the live server's settings) in segments of `STREAM_GOP` frames,
    so the reference PSNR is that of the stream actually played.
    start_s / duration_s: play only this time range of the video (seconds from its start).
    on_output: called with every SR frame, in order, from the sink thread (e.g. raw frames to a pipe).
    writer: makes the output instead of `VideoWriter` (same arguments; `adasr.resume.ChunkedWriter`).
    skip_frames: decode and drop this many frames first (they were upscaled before: a resume);
    `max_frames` still counts from the first frame.

    The output keeps the source's timestamps (a variable frame rate stays variable), bit depth
    (a 10-bit source is decoded to 16-bit RGB and written at yuv420p10le), colour tags, sample
    aspect ratio and its audio, subtitle and attachment streams (trimmed to the frames played
    when `max_frames`, `start_s` or `duration_s` cut the video).
    """

    target_fps: float | None = None
    policy: str = "lookup"
    level: int | None = None
    trace: str | os.PathLike[str] | None = None
    trace_seed: int = 0
    lr_hw: tuple[int, int] | None = None
    out: str | os.PathLike[str] | None = None
    codec: str = "h264"
    crf: int = 20
    preset: str | None = None
    max_frames: int | None = None
    thread_rule: str = "auto"
    reference_every: int = 0
    on_frame: Callable[[Any, Any], None] | None = None
    load_workers: int | None = None
    info: VideoInfo | None = None
    pace: bool = True
    stream: str | None = None
    start_s: float | None = None
    duration_s: float | None = None
    on_output: Callable[[np.ndarray], None] | None = None
    writer: Callable[..., Any] | None = None
    skip_frames: int = 0

    def __post_init__(self) -> None:
        if self.policy not in POLICY_NAMES:
            raise ConfigError(f"policy must be one of {', '.join(POLICY_NAMES)}, got {self.policy!r}")
        if self.thread_rule not in ("auto", "fixed"):
            raise ConfigError(f"thread_rule must be 'auto' or 'fixed', got {self.thread_rule!r}")
        if self.level is not None and (not isinstance(self.level, int) or isinstance(self.level, bool)):
            raise ConfigError(f"level must be a level index, got {self.level!r}")
        if not isinstance(self.reference_every, int) or self.reference_every < 0:
            raise ConfigError(f"reference_every must be a non-negative integer, got {self.reference_every!r}")
        object.__setattr__(self, "lr_hw", check_hw(self.lr_hw, "lr_hw"))
        if self.reference_every and self.lr_hw is None:
            raise ConfigError("reference PSNR needs lr_hw (the source is the ground truth, shrunk to lr_hw)")
        if self.stream is not None:
            from adasr.data.degrade import Degradation

            if not self.reference_every:
                raise ConfigError("stream needs reference_every (the source is the ground truth it degrades)")
            settings = Degradation.parse(self.stream).settings()
            if len(settings) != 1:
                raise ConfigError(f"stream must name one codec, CRF and kernel, got {self.stream!r}")
        t = self.target_fps
        if t is not None and not (isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
                                  and t > 0):
            raise ConfigError(f"target FPS must be positive, got {t!r}")
        m = self.max_frames
        if m is not None and (not isinstance(m, int) or m < 1):
            raise ConfigError(f"max_frames must be a positive integer, got {m!r}")
        check_time_range(self.start_s, self.duration_s)
        if not isinstance(self.skip_frames, int) or self.skip_frames < 0:
            raise ConfigError(f"skip_frames must be a non-negative integer, got {self.skip_frames!r}")
        if self.max_frames is not None and self.skip_frames >= self.max_frames:
            raise ConfigError(f"skip_frames ({self.skip_frames}) leaves nothing of max_frames ({self.max_frames})")


def check_time_range(start_s: Any, duration_s: Any) -> None:
    """ConfigError unless start is a finite number >= 0 and duration one > 0 (None: not given)."""
    for name, v, lo_ok in (("start", start_s, True), ("duration", duration_s, False)):
        if v is None:
            continue
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v >= 0 if lo_ok else v > 0) and v < 1e7):
            raise ConfigError(f"{name} must be {'non-negative' if lo_ok else 'positive'} seconds, got {v!r}")


def play(engine: Runner, video: str | os.PathLike[str], options: PlayOptions | None = None) -> PlayResult:
    """Play `video` through `engine` (see the module doc and `PlayOptions`); returns a `PlayResult`."""
    from adasr.runtime.pipeline import AutoThreads, StreamOptions
    from adasr.runtime.session import PlaybackSession
    from adasr.video import VideoWriter, output_pix_fmt, probe, read_frames

    opts = options_or_default(PlayOptions, options, "play")
    policy, level, reference_every, max_frames, out = opts.policy, opts.level, opts.reference_every, \
        opts.max_frames, opts.out
    if level is not None and not 0 <= level < len(engine.levels):
        raise ConfigError(f"level must be in [0, {len(engine.levels) - 1}] for this package, got {level!r}")
    if out is not None:
        from adasr._atomic import check_not_input

        check_not_input([out], [video])
    info = opts.info or probe(video)
    if out is not None:
        from adasr.video import check_carried, check_sdr

        check_sdr(info)
        check_carried(video, out)  # a stream the container cannot hold: refused before any frame
    scale = engine.scale
    lr = opts.lr_hw or (info.height, info.width)
    out_hw = (lr[0] * scale, lr[1] * scale)
    fps = float(info.fps) if info.fps else 25.0
    target = fps if opts.target_fps is None else float(opts.target_fps)

    refs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (HR reference, LR frame)
    times: list[float] = []  # source time of every frame read, in order (the writer keeps them)
    start_s = opts.start_s
    end_s = None if opts.duration_s is None else (start_s or 0.0) + opts.duration_s
    depth = 16 if getattr(info, "bit_depth", 8) > 8 and not reference_every else 8

    def frames() -> Iterator[np.ndarray]:
        if not reference_every:
            same = lr == (info.height, info.width)
            skip = opts.skip_frames
            yield from read_frames(video, max_frames=None if max_frames is None else max_frames - skip, start=skip,
                                   hw=None if same else lr, depth=depth, start_s=start_s, end_s=end_s, times=times)
            return
        if opts.stream is not None:
            yield from _streamed(read_frames(video, max_frames=max_frames, hw=out_hw, start_s=start_s, end_s=end_s,
                                             times=times), scale, opts.stream, reference_every, refs)
            return
        from adasr.data.imresize import bicubic_frame

        for i, hr in enumerate(read_frames(video, max_frames=max_frames, hw=out_hw, start_s=start_s, end_s=end_s,
                                           times=times)):
            lr_frame = bicubic_frame(hr, 1.0 / scale)
            if i % reference_every == 0:
                refs[i] = (hr, lr_frame)
            yield lr_frame

    outputs: dict[int, np.ndarray] = {}
    counter = [0]
    session: PlaybackSession

    def sink(frame: np.ndarray) -> None:
        i = counter[0]
        counter[0] += 1
        if session.writer is not None:
            session.writer.write(frame, times[i] if i < len(times) else None)
        if reference_every and i % reference_every == 0:
            outputs[i] = frame
        if opts.on_output is not None:
            opts.on_output(frame)

    start_level = level if level is not None else (len(engine.levels) - 1 if policy == "fixed" else 0)
    if engine.level != start_level:
        engine.switch(start_level)
        engine.switch_latencies.clear()
    engine.warmup(lr, levels=[start_level] if policy == "fixed" else None)
    pol = pick_policy(policy, engine.levels, level)
    load_samples: list[tuple[float, float]] = []

    def frame_hook(record: FrameRecord, state: RuntimeState | None) -> None:
        if state is not None and state.load_share is not None:
            load_samples.append((record.ready_time, float(state.load_share)))
        if opts.on_frame is not None:
            opts.on_frame(record, state)

    trace_obj = None
    if opts.trace is not None:
        from adasr.runtime.traces import load_trace

        duration = (max_frames or info.frame_count or 300) / target
        trace_obj = load_trace(opts.trace, max(1.0, duration), opts.trace_seed)

    def open_writer() -> Any:
        trimmed = max_frames is not None or start_s is not None or end_s is not None
        make = opts.writer or VideoWriter
        return make(out, out_hw[1], out_hw[0], info.fps or fps, codec=opts.codec, crf=opts.crf,
                           preset=opts.preset, audio_from=video if getattr(info, "carried", ()) or info.has_audio
                           else None, rotation=info.rotation, pix_fmt=output_pix_fmt(info, opts.codec),
                           color=getattr(info, "color", None), sar=getattr(info, "sar", None),
                           time_base=getattr(info, "time_base", None), trim=trimmed)

    stream = StreamOptions(threads=AutoThreads() if opts.thread_rule == "auto" else None, on_frame=frame_hook,
                           pace=opts.pace)
    with PlaybackSession(target_fps=target, level=engine.level, trace=trace_obj, loop=True,
                         load_workers=opts.load_workers, open_writer=None if out is None else open_writer) as session:
        try:
            stats = session.run(engine, frames(), sink, pol, stream)
        except InputError as exc:
            # a damaged source: keep what decoded (a complete, playable file), then report the damage
            if session.writer is None or counter[0] == 0:
                raise
            session.commit_writer()
            raise InputError(f"{exc}; the {counter[0]} frames before it were upscaled to {out}") from None
    if not stats.frames:
        raise ConfigError(f"no frames were played from {video}")
    levels = [{"index": i, "config": lv.config.id, "psnr": float(lv.psnr)} for i, lv in enumerate(engine.levels)]
    result = PlayResult(stats=stats, target_fps=target, policy=type(pol).__name__ if policy == "lookup" else policy,
                        lr_hw=lr, out_hw=out_hw, source_fps=fps, output=None if out is None else str(out),
                        trace=None if trace_obj is None else trace_obj.to_dict(), trace_applied=session.applied,
                        load_offset_s=session.load_offset_s, levels=levels, load_samples=load_samples)
    if reference_every:
        result.psnr = _reference_psnr(refs, outputs, scale)
        if opts.stream is not None:
            from adasr.data.degrade import Degradation

            (point,) = Degradation.parse(opts.stream).settings()
            result.psnr["stream"] = f"{point.kernel} downscale, {point.codec} CRF {point.crf}" if point.codec \
                else f"{point.kernel} downscale, no codec"
    return result


STREAM_GOP = 16  # frames per coded segment of a `stream` played with a reference


def _streamed(hr_frames: Iterator[np.ndarray], scale: int, spec: str, every: int,
              refs: dict[int, tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
    """The LR frames a stream carries: HR frames shrunk and coded `STREAM_GOP` at a time (one
    segment each, an I frame then P/B frames), decoded; every `every`-th kept as a reference."""
    from adasr.data.degrade import Degradation, degrade_clip

    (setting,) = Degradation.parse(spec).settings()
    index, chunk = 0, []
    for hr in itertools.chain(hr_frames, [None]):
        if hr is not None:
            chunk.append(hr)
        if chunk and (hr is None or len(chunk) == STREAM_GOP):
            for hr_frame, lr_frame in zip(chunk, degrade_clip(chunk, scale, setting), strict=True):
                if index % every == 0:
                    refs[index] = (hr_frame, lr_frame)
                index += 1
                yield lr_frame
            chunk = []

class ReachWatch:
    """Calls `warn(line)` once when the target frame rate is out of reach while playing: over the
    last `window_s` seconds (after at least that long and `min_frames` frames) the runtime sat on
    its fastest level for most frames and still delivered under `share` of the target. Feed it
    every frame record (`on_frame`)."""

    def __init__(self, target_fps: float, warn: Callable[[str], None], *, fastest: int = 0, window_s: float = 3.0,
                 min_frames: int = 20, share: float = 0.9) -> None:
        self.target, self.warn, self.fastest = float(target_fps), warn, fastest
        self.window_s, self.min_frames, self.share = window_s, min_frames, share
        self.recent: list[tuple[float, int, bool]] = []  # (ready time, level, missed)
        self.warned = False

    def on_frame(self, record: Any, state: Any = None) -> None:
        if self.warned:
            return
        t = float(record.ready_time)
        self.recent.append((t, int(record.level), bool(record.missed)))
        while self.recent and self.recent[0][0] < t - self.window_s:
            self.recent.pop(0)
        n = len(self.recent)
        if record.index + 1 < self.min_frames or t < self.window_s or n < 2:
            return
        span = self.recent[-1][0] - self.recent[0][0]
        rate = (n - 1) / span if span > 0 else math.inf
        on_fastest = sum(1 for _, lv, _ in self.recent if lv == self.fastest) / n
        if rate < self.share * self.target and on_fastest >= 0.5:
            late = sum(1 for *_, m in self.recent if m) / n
            self.warned = True
            self.warn(f"target {self.target:g} FPS is out of reach on this machine now: even the fastest level "
                      f"runs about {rate:.1f} FPS ({100 * late:.0f}% of recent frames late); lower the target "
                      f"(--target-fps) or the LR size, or free the CPU")


def _reference_psnr(refs: dict[int, tuple[np.ndarray, np.ndarray]], outputs: dict[int, np.ndarray],
                    scale: int) -> dict[str, Any]:
    """Mean PSNR-Y of the played frames and of bicubic on the same sampled frames."""
    from adasr.data.imresize import bicubic_frame
    from adasr.metrics import psnr_y

    sr_scores, bic_scores = [], []
    for i in sorted(set(refs) & set(outputs)):
        hr, lr_frame = refs[i]
        bic = bicubic_frame(lr_frame, float(scale))
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
