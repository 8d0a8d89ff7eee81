"""One stream's surroundings, started and stopped together: the load trace, the monitor, the writer.

`PlaybackSession` is what the player (`adasr.runtime.player.play`) and the adaptivity bench
(`adasr.bench.adaptivity`) wrap around `run_stream`:

- Load: with a `Trace`, `CpuLoad` worker processes start at the trace's first share and a
  `TracePlayer` replays the rest (`loop`: over and over, as a player runs for as long as the
  video; otherwise once, as a bench replays one trace per runner from its start).
- Monitor: a `StreamMonitor` over a `CpuMonitor`, at the runner's starting level and the target
  period, built on entry (before the load starts), so the policy sees the whole run.
- Writer: an optional output (a context manager such as `VideoWriter`, made by `open_writer()`
  after the load started), entered on entry; on exit it is closed with the exception that ended
  the block (an atomic writer then leaves nothing behind), or committed when the block ended
  normally. `commit_writer()` commits it early (a player keeps what decoded before a damaged
  frame).

`run(...)` plays through `run_stream` with the session's monitor and records `load_offset_s`, the
time from the start of the load's replay to the start of the stream. `stop_load()` stops the
load early (a bench stops it before its switch probe) and keeps `applied` (the trace steps
applied: (elapsed_s, share)) and `trace_error` (an exception of the replay thread, or None).
Exit always stops the load, then closes the writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from adasr.runtime.pipeline import Runner, RunStats, StreamOptions, run_stream

if TYPE_CHECKING:
    from adasr.cpuload import CpuLoad
    from adasr.runtime.monitors import StreamMonitor
    from adasr.runtime.policies import Policy
    from adasr.runtime.traces import Trace, TracePlayer

__all__ = ["PlaybackSession"]


class PlaybackSession:
    """Load trace + monitor + writer for one stream (see the module doc).

    target_fps: the display rate (the monitor's target period). level: the runner's starting level.
    trace: a `adasr.runtime.traces.Trace` to replay as background CPU load, or None.
    loop: replay the trace in a loop. load_workers: `CpuLoad` processes (default one per core).
    open_writer: a callable that returns the output (a context manager with ``write(frame)``), or None.
    """

    def __init__(self, *, target_fps: float, level: int, trace: Trace | None = None, loop: bool = False,
                 load_workers: int | None = None,
                 open_writer: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        self.target_fps, self.level, self.trace, self.loop = float(target_fps), int(level), trace, loop
        self.load_workers, self._open_writer = load_workers, open_writer
        self.monitor: StreamMonitor | None = None
        self.writer: Any = None
        self.applied: list[tuple[float, float]] = []
        self.trace_error: BaseException | None = None
        self.load_offset_s = 0.0
        self._load: CpuLoad | None = None
        self._player: TracePlayer | None = None
        self._load_start: float | None = None

    def __enter__(self) -> PlaybackSession:
        from adasr.runtime.monitors import CpuMonitor, StreamMonitor

        self.monitor = StreamMonitor(cpu=CpuMonitor(), level=self.level, target_period_s=1.0 / self.target_fps)
        try:
            if self.trace is not None:
                from adasr.cpuload import CpuLoad
                from adasr.runtime.traces import TracePlayer

                self._load = CpuLoad(share=self.trace.steps[0][1], workers=self.load_workers).start()
                self._player = TracePlayer(self.trace, self._load, loop=self.loop)
                self._player.start()
                self._load_start = time.monotonic()
            if self._open_writer is not None:
                writer = self._open_writer()
                writer.__enter__()
                self.writer = writer
        except BaseException:
            self.stop_load()
            raise
        return self

    def run(self, runner: Runner, frames: Iterable[np.ndarray], sink: Callable[[np.ndarray], Any] | None,
            policy: Policy | None, options: StreamOptions | None = None) -> RunStats:
        """`run_stream(runner, frames, sink, target_fps, policy, monitor, options)` with this
        session's target and monitor; records `load_offset_s`."""
        if self._load_start is not None:
            self.load_offset_s = time.monotonic() - self._load_start
        return run_stream(runner, frames, sink, self.target_fps, policy, self.monitor, options)

    def stop_load(self) -> None:
        """Stop the trace replay and the load processes (idempotent); keeps `applied`, `trace_error`."""
        player, load = self._player, self._load
        self._player = self._load = None
        try:
            if player is not None:
                player.stop()
                self.applied = list(player.applied)
                self.trace_error = player.error
        finally:
            if load is not None:
                load.stop()

    def commit_writer(self) -> None:
        """Close the writer as on success (its output becomes final); later exits leave it alone."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.__exit__(None, None, None)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.stop_load()
        finally:
            writer, self.writer = self.writer, None
            if writer is not None:
                writer.__exit__(exc_type, exc, tb)
