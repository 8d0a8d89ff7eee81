"""`adasr play` (and what `adasr upscale --realtime` shares): a package, the engine, the player."""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from adasr.errors import ConfigError, InputError
from adasr.upscale_run import parse_level

__all__ = ["LiveView", "load_engine", "parse_level", "print_summary", "run_play"]


def load_engine(model: Path | None, scale: int, console: Console, *, quiet: bool = False,
                profile: bool = True, precision: str | None = None, calibration_video: Path | None = None,
                family: str = "codec") -> Any:
    """`adasr.api.load_engine` with a progress bar while this device is profiled (first use)."""
    from adasr.api import load_engine as load

    progress = Progress(TextColumn("[bold]profiling this device (first use, cached)"), BarColumn(),
                        MofNCompleteColumn(), console=console, disable=quiet, transient=True)
    task: list[Any] = []

    def on_progress(stage: str, done: int, total: int) -> None:
        if not task:  # the bar shows only when profiling runs
            if not quiet and not console.is_terminal:  # no bar off a terminal: say it once
                console.print("profiling this device's levels (first use; cached after)", highlight=False)
            progress.start()
            task.append(progress.add_task("profile", total=None))
        progress.update(task[0], completed=done, total=total)

    import time

    start = time.perf_counter()
    try:
        engine = load(model, scale, profile=profile, on_progress=on_progress, precision=precision,
                      calibration_video=calibration_video, family=family)
    finally:
        if task:
            progress.stop()
    int8 = [i for i, q in enumerate(engine.int8_levels) if q is not None]
    if int8 and not quiet:
        console.print(f"int8 levels {int8} of {len(engine.levels)} (precision {precision or engine.package.precision}; "
                      f"loaded and calibrated in {time.perf_counter() - start:.1f} s)", highlight=False)
    return engine


def _trace_file(trace: str | None) -> Path | None:
    """The CSV file a --trace names (None for a named trace)."""
    return Path(trace) if trace is not None and Path(trace).is_file() else None


class LiveView:
    """What `adasr play` shows, refreshed from the SR loop at most `hz` times a second."""

    def __init__(self, engine: Any, target_fps: float, hz: float = 4.0) -> None:
        self.engine, self.target_fps, self.every = engine, target_fps, 1.0 / hz
        self.last_draw = 0.0
        self.recent: deque[float] = deque()
        self.frames = self.missed = self.switches = 0
        self.level = engine.level
        self.latency_ms = 0.0
        self.load: float | None = None
        self.threads = 0
        self.live: Any = None

    def table(self) -> Table:
        fps = 0.0
        if len(self.recent) > 1:
            span = self.recent[-1] - self.recent[0]
            fps = (len(self.recent) - 1) / span if span > 0 else 0.0
        lv = self.engine.levels[self.level]
        t = Table(title=f"adasr play: target {self.target_fps:.1f} FPS", show_header=False, min_width=60)
        t.add_column("what", style="bold")
        t.add_column("value")
        quality = f", {lv.psnr:.2f} dB" if lv.psnr == lv.psnr else ""  # NaN: unknown (streams)
        t.add_row("level", f"{self.level} of 0..{len(self.engine.levels) - 1}  ({lv.config.id}{quality})")
        t.add_row("FPS (last 1 s)", f"{fps:5.1f}")
        t.add_row("SR latency", f"{self.latency_ms:6.1f} ms  (period {1e3 / self.target_fps:.1f} ms)")
        t.add_row("background load", "-" if self.load is None else f"{100 * self.load:4.0f}%")
        t.add_row("SR threads", str(self.threads))
        t.add_row("frames / switches", f"{self.frames} / {self.switches}")
        share = 100.0 * (self.frames - self.missed) / self.frames if self.frames else 100.0
        t.add_row("deadlines missed", f"{self.missed} ({share:.1f}% met)")
        return t

    def on_frame(self, record: Any, state: Any) -> None:
        self.frames += 1
        self.missed += int(record.missed)
        if record.level != self.level:
            self.switches += 1
        self.level = record.level
        self.latency_ms = 1e3 * record.latency_s
        self.threads = record.threads
        if state is not None and state.load_share is not None:
            self.load = state.load_share
        now = record.ready_time
        self.recent.append(now)
        while self.recent and now - self.recent[0] > 1.0:
            self.recent.popleft()
        wall = time.monotonic()
        if self.live is not None and wall - self.last_draw >= self.every:
            self.last_draw = wall
            self.live.update(self.table())


def print_summary(summary: dict[str, Any], out: Console, title: str) -> None:
    t = Table(title=title)
    t.add_column("QoS", style="bold")
    t.add_column("value", justify="right")
    t.add_row("frames", str(summary["frames"]))
    t.add_row("mean FPS / target", f"{summary['mean_fps']:.1f} / {summary['target_fps']:.1f}")
    t.add_row("deadlines met", f"{100 * summary['deadlines_met']:.1f}% ({summary['missed']} missed)")
    t.add_row("stalls", str(summary["stalls"]))
    t.add_row("level changes", f"{summary['switches']} (slowest switch {summary['switch_ms_max']:.3f} ms)")
    hist = ", ".join(f"L{k}: {v}" for k, v in sorted(summary["level_histogram"].items(), key=lambda kv: int(kv[0])))
    t.add_row("frames per level", hist)
    psnr = summary.get("psnr")
    if psnr and psnr.get("frames"):
        where = f" ({psnr['stream']})" if psnr.get("stream") else ""
        t.add_row(f"PSNR-Y vs original{where}", f"{psnr['sr']:.2f} dB (bicubic {psnr['bicubic']:.2f}, "
                                        f"gain {psnr['gain']:+.2f} dB, {psnr['frames']} frames)")
    out.print(t)


def run_play(video: Path, *, model: Path | None, scale: int, target_fps: float | None, policy: str, level: str,
             trace: str | None, lr_hw: tuple[int, int] | None, output: Path | None, max_frames: int | None,
             json_out: Path | None, timeline: Path | None, reference_every: int, quiet: bool, out: Console,
             console: Console, base: str | None = None, precision: str | None = None,
             as_stream: str | None = None, family: str | None = None, pipe: bool = False) -> dict[str, Any]:
    """Play `video` with the live view (stderr); warn once when the target frame rate is out of reach
    (up front from this device's profile, or as it plays). pipe: the SR frames as raw rgb24 on stdout
    (for `ffplay -f rawvideo ...` or mpv), the summary on stderr. as_stream: an `adasr.data.degrade` spec the
    source is played through (shrunk and coded as a stream carries it; `PlayOptions.stream`)."""
    from rich.live import Live

    from adasr._atomic import check_not_input, check_writable
    from adasr.runtime.player import PlayOptions, play
    from adasr.stream.player import is_stream_path
    from adasr.video import codec_for_suffix, probe

    stream = is_stream_path(video)
    if not stream and not video.is_file():
        raise InputError(f"video not found: {video}")
    for path in (output, json_out, timeline):
        if path is not None:
            check_writable(path)
    base_path = None
    if base is not None:  # a stream's base model (the stream reader needs torch)
        from adasr.stream.reader import base_file

        base_path = base_file(base)
    check_not_input([output, json_out, timeline], [video, model, _trace_file(trace), base_path])
    if output is not None:
        codec_for_suffix(output)
    if stream:
        return _play_stream(video, target_fps=target_fps, policy=policy, level=level, output=output,
                            max_frames=max_frames, json_out=json_out, timeline=timeline, quiet=quiet, out=out,
                            console=console, base=base)
    if precision is not None:
        from adasr.package import check_precision

        check_precision(precision)
    info = probe(video)
    from adasr.paths import family_for_input

    # a fixed level needs no latency table: no first-use profiling of every level (its stored or
    # predicted latencies still feed the one "out of reach" warning)
    engine = load_engine(model, scale, console, quiet=quiet, precision=precision, calibration_video=video,
                         family=family_for_input(video, family), profile=policy != "fixed")
    start = parse_level(level, len(engine.levels))
    if policy == "fixed" and start is None:
        start = len(engine.levels) - 1
    fps = float(target_fps) if target_fps is not None else float(info.fps or 25)
    view = LiveView(engine, fps)
    from adasr.estimate import sample_load_share
    from adasr.runtime.player import ReachWatch
    from adasr.upscale_run import fastest_fps, reach_line

    def warn(line: str) -> None:
        console.print(line, highlight=False, soft_wrap=True)

    hw = lr_hw or (info.height, info.width)
    watch = ReachWatch(fps, warn)
    if policy != "fixed":
        top = fastest_fps(engine, hw, sample_load_share())
        if top is not None and top < fps:
            warn(reach_line(top, hw, fps, "the runtime will hold the fastest level"))
            watch.warned = True  # once is enough
    else:
        watch.warned = True  # one level asked for: being late is the choice made
    on_output = None
    if pipe:
        on_output = _raw_pipe(console, (hw[0] * engine.scale, hw[1] * engine.scale), fps)
        out = console  # stdout carries the frames; the summary goes to stderr

    def on_frame(record: Any, state: Any) -> None:
        watch.on_frame(record, state)
        if not quiet:
            view.on_frame(record, state)

    options = PlayOptions(target_fps=fps, policy=policy, level=start, trace=trace, lr_hw=lr_hw, out=output,
                          max_frames=max_frames, reference_every=reference_every, info=info, on_frame=on_frame,
                          on_output=on_output, stream=as_stream)
    try:
        if quiet:
            result = play(engine, video, options)
        else:
            with Live(view.table(), console=console, refresh_per_second=4, transient=False) as live:
                view.live = live
                result = play(engine, video, options)
                live.update(view.table())
            console.print()
    except _PipeClosed:
        console.print("the viewer closed the pipe; stopped", highlight=False)
        return {}
    summary = result.summary()
    summary["profile_source"] = engine.profile_source
    _report(result, summary, timeline, json_out, out, f"{video.name}: {_sizes(summary)}, policy {policy}"
            + (f", load trace {trace}" if trace else ""))
    written = [str(p) for p in (output, timeline, json_out) if p is not None]
    if written:
        out.print("wrote " + ", ".join(written))
    return summary


class _PipeClosed(Exception):
    """The program reading `--pipe` went away."""


def _raw_pipe(console: Console, out_hw: tuple[int, int], fps: float) -> Any:
    """A writer of raw rgb24 frames to stdout, and the line that says how to watch them."""
    import sys

    import numpy as np

    if sys.stdout.isatty():
        raise ConfigError("--pipe writes raw video to stdout: pipe it into a player, e.g. "
                          "adasr play clip.mp4 --pipe | ffplay -f rawvideo -pixel_format rgb24 ...")
    h, w = out_hw
    console.print(f"raw rgb24 {w}x{h} at {fps:g} fps on stdout: | ffplay -f rawvideo -pixel_format rgb24 "
                  f"-video_size {w}x{h} -framerate {fps:g} -   (or: | mpv --demuxer=rawvideo "
                  f"--demuxer-rawvideo-w={w} --demuxer-rawvideo-h={h} --demuxer-rawvideo-fps={fps:g} -)",
                  highlight=False, soft_wrap=True)
    stream = sys.stdout.buffer

    def write(frame: Any) -> None:
        if frame.dtype != np.uint8:  # a 10-bit source's 16-bit frames: the top 8 bits
            frame = (frame >> 8).astype(np.uint8)
        try:
            stream.write(np.ascontiguousarray(frame).tobytes())
            stream.flush()
        except (BrokenPipeError, ValueError):
            raise _PipeClosed() from None

    return write


def _play_stream(path: Path, *, target_fps: float | None, policy: str, level: str, output: Path | None,
                 max_frames: int | None, json_out: Path | None, timeline: Path | None, quiet: bool, out: Console,
                 console: Console, base: str | None = None) -> dict[str, Any]:
    """`adasr play STREAM`: the model stream's deltas applied at segment boundaries while playing."""
    from rich.live import Live

    from adasr.stream.player import play_stream

    index = None
    if level != "auto":
        try:
            index = int(level)
        except ValueError:
            raise ConfigError(f"--level must be auto or a level index for a stream, got {level!r}") from None
    pol = "reactive" if policy == "lookup" else policy  # a stream carries no device profile
    views: list[LiveView] = []

    def on_frame(record: Any, state: Any) -> None:
        if views:
            views[0].on_frame(record, state)

    if quiet:
        result, _ = play_stream(path, target_fps=target_fps, policy=pol, level=index, out=output,
                                max_frames=max_frames, base=base)
    else:
        with Live("preparing the stream...", console=console, refresh_per_second=4) as live:
            def on_ready(engine: Any, fps: float) -> None:
                views.append(LiveView(engine, fps))
                views[0].live = live

            result, _ = play_stream(path, target_fps=target_fps, policy=pol, level=index, out=output,
                                    max_frames=max_frames, on_frame=on_frame, on_ready=on_ready, base=base)
            live.update(views[0].table())
        console.print()
    summary = result.summary()
    summary["segments_applied"] = result.segments_applied
    _report(result, summary, timeline, json_out, out, f"{path.name} (model stream, {summary['segments_applied']} "
                                                      f"segments applied): {_sizes(summary)}, policy {result.policy}")
    return summary


def _sizes(summary: dict[str, Any]) -> str:
    return (f"{summary['lr_size'][0]}x{summary['lr_size'][1]} -> "
            f"{summary['out_size'][0]}x{summary['out_size'][1]}")


def _report(result: Any, summary: dict[str, Any], timeline: Path | None, json_out: Path | None, out: Console,
            title: str) -> None:
    """Timeline PNG and JSON (when asked), then the QoS table."""
    from adasr._atomic import write_bytes_atomic
    from adasr.runtime.player import write_timeline

    if timeline is not None:
        write_timeline(result, timeline)
    if json_out is not None:
        write_bytes_atomic(json_out, json.dumps(summary, indent=1).encode("utf-8"))
    print_summary(summary, out, title)
