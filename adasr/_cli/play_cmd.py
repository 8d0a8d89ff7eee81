"""`adasr play` (and what `adasr upscale --realtime` shares): a package, the engine, the player."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from adasr.errors import ConfigError, InputError

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


def parse_level(text: str, n_levels: int) -> int | None:
    """'auto' -> None; 'best' -> the last level; an index (negative counts from the end)."""
    if text == "auto":
        return None
    if text == "best":
        return n_levels - 1
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--level must be auto, best or a level index, got {text!r}") from None
    if value < 0:
        value += n_levels
    if not 0 <= value < n_levels:
        raise ConfigError(f"--level {text}: this package has levels 0..{n_levels - 1}")
    return value


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
        t.add_row("torch threads", str(self.threads))
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
             stream: str | None = None, family: str | None = None) -> dict[str, Any]:
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
    from adasr.stream.reader import base_file

    check_not_input([output, json_out, timeline], [video, model, _trace_file(trace), base_file(base)])
    if output is not None:
        codec_for_suffix(output)
    if stream:
        return _play_stream(video, target_fps=target_fps, policy=policy, level=level, output=output,
                            max_frames=max_frames, json_out=json_out, timeline=timeline, quiet=quiet, out=out,
                            console=console, base=base)
    if precision is not None:
        from adasr.runtime.precision import check_precision

        check_precision(precision)
    info = probe(video)
    from adasr.paths import family_for_input

    engine = load_engine(model, scale, console, quiet=quiet, precision=precision, calibration_video=video,
                         family=family_for_input(video, family))
    start = parse_level(level, len(engine.levels))
    if policy == "fixed" and start is None:
        start = len(engine.levels) - 1
    fps = float(target_fps) if target_fps is not None else float(info.fps or 25)
    view = LiveView(engine, fps)
    options = PlayOptions(target_fps=fps, policy=policy, level=start, trace=trace, lr_hw=lr_hw, out=output,
                          max_frames=max_frames, reference_every=reference_every, info=info, stream=stream)
    if quiet:
        result = play(engine, video, options)
    else:
        with Live(view.table(), console=console, refresh_per_second=4, transient=False) as live:
            view.live = live
            result = play(engine, video, replace(options, on_frame=view.on_frame))
            live.update(view.table())
        console.print()
    summary = result.summary()
    summary["profile_source"] = engine.profile_source
    _report(result, summary, timeline, json_out, out, f"{video.name}: {_sizes(summary)}, policy {policy}"
            + (f", load trace {trace}" if trace else ""))
    written = [str(p) for p in (output, timeline, json_out) if p is not None]
    if written:
        out.print("wrote " + ", ".join(written))
    return summary


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
