"""Runtime monitors: what a policy sees of the world, one `RuntimeState` per decision.

A monitor is anything with ``sample() -> RuntimeState`` (the `Monitor` protocol). The stream
pipeline (`adasr.runtime.pipeline.run_stream`) also feeds monitors that have an
``observe(level, latency_s, target_period_s)`` method (the `FrameObserver` protocol) after every
frame, so a monitor can keep a latency window without knowing the engine.

- `LatencyMonitor`: a sliding window of the last `window` frame latencies of ONE level (the
  window is cleared when the level changes, so the mean always describes the running level;
  Dynamic-OFA's RTM averages latency over a sliding window of 10 frames).
- `CpuMonitor`: system CPU availability from psutil, non-blocking (``cpu_percent(interval=None)``
  reports the share since the previous call). It also estimates the share other programs take
  (system busy minus this process), which is what the package's profiles call a load
  (a background load share).
- `StreamMonitor`: both combined into `RuntimeState`s; the default monitor of `run_stream`.

Pluggable: a GPU or battery monitor implements `sample()` (and optionally `observe`) and puts
its readings in `RuntimeState.extra`.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from adasr.errors import ConfigError

__all__ = ["CpuMonitor", "FrameObserver", "LatencyMonitor", "Monitor", "RuntimeState", "StreamMonitor"]


@dataclass(frozen=True)
class RuntimeState:
    """One observation. Latencies and periods in seconds; shares in [0, 1]; None = unknown.

    time_s: monitor clock reading. level: index of the running level (0 = fastest).
    target_period_s: 1 / target FPS. window_*: statistics of the latency window of `level`.
    cpu_free: idle share of the whole machine. load_share: share taken by other programs
    (a load in the profiles' sense). extra: readings of other monitors.
    """

    time_s: float
    level: int
    target_period_s: float
    window_mean_s: float | None = None
    window_p90_s: float | None = None
    window_count: int = 0
    last_latency_s: float | None = None
    cpu_free: float | None = None
    load_share: float | None = None
    extra: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d


@runtime_checkable
class Monitor(Protocol):
    def sample(self) -> RuntimeState: ...


@runtime_checkable
class FrameObserver(Protocol):
    def observe(self, level: int, latency_s: float | None, target_period_s: float) -> None: ...


def _check_window(window: Any) -> int:
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 100_000:
        raise ConfigError(f"latency window must be an integer in [1, 100000], got {window!r}")
    return window


class LatencyMonitor:
    """Sliding window of measured frame latencies (seconds) of the running level."""

    def __init__(self, window: int = 10) -> None:
        self.window = _check_window(window)
        self._values: deque[float] = deque(maxlen=self.window)
        self.level: int | None = None
        self.last: float | None = None

    def record(self, latency_s: float, level: int | None = None) -> None:
        """Add one latency; a different `level` than the window's clears the window first."""
        if not (isinstance(latency_s, (int, float)) and math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency must be a finite non-negative number of seconds, got {latency_s!r}")
        if level is not None and level != self.level:
            self.reset(level)
        self._values.append(float(latency_s))
        self.last = float(latency_s)

    def reset(self, level: int | None = None) -> None:
        self._values.clear()
        self.level = level

    @property
    def count(self) -> int:
        return len(self._values)

    @property
    def mean(self) -> float | None:
        return sum(self._values) / len(self._values) if self._values else None

    @property
    def p90(self) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)  # nearest-rank percentile; windows are small
        return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


class CpuMonitor:
    """Machine CPU availability via psutil, never blocking.

    `cpu_percent` / `own_percent` are injectable (tests); by default psutil's system-wide
    ``cpu_percent(interval=None)`` and this process's ``Process().cpu_percent(interval=None)``
    (which is in percent of ONE core, hence divided by the core count). Both report the share
    since their previous call; the constructor primes them (the first reading is meaningless).
    """

    def __init__(self, cpu_percent: Callable[[], float] | None = None,
                 own_percent: Callable[[], float] | None = None, cores: int | None = None) -> None:
        import psutil

        self.cores = cores or os.cpu_count() or 1
        self._cpu = cpu_percent or (lambda: psutil.cpu_percent(interval=None))
        if own_percent is None and cpu_percent is None:
            proc = psutil.Process()
            own_percent = lambda: proc.cpu_percent(interval=None)  # noqa: E731
        self._own = own_percent
        self._cpu()
        if self._own is not None:
            self._own()

    def read(self) -> tuple[float, float]:
        """(cpu_free, load_share): idle share of the machine and the share other programs take."""
        busy = min(1.0, max(0.0, float(self._cpu()) / 100.0))
        own = 0.0
        if self._own is not None:
            own = min(1.0, max(0.0, float(self._own()) / (100.0 * self.cores)))
        return 1.0 - busy, max(0.0, busy - own)


class StreamMonitor:
    """`Monitor` + `FrameObserver`: a latency window, optionally CPU readings, optionally more
    monitors whose `sample().extra` is merged (GPU, battery, ...)."""

    def __init__(self, latency: LatencyMonitor | None = None, cpu: CpuMonitor | None = None, *,
                 clock: Callable[[], float] = time.perf_counter, level: int = 0,
                 target_period_s: float = 1 / 30, extra: Callable[[], Mapping[str, float]] | None = None) -> None:
        self.latency = latency or LatencyMonitor()
        self.cpu = cpu
        self.clock = clock
        self.level = level
        self.target_period_s = target_period_s
        self._extra = extra

    def observe(self, level: int, latency_s: float | None, target_period_s: float) -> None:
        self.target_period_s = target_period_s
        if latency_s is None:
            if level != self.latency.level:
                self.latency.reset(level)
        else:
            self.latency.record(latency_s, level)
        self.level = level

    def sample(self) -> RuntimeState:
        free = load = None
        if self.cpu is not None:
            free, load = self.cpu.read()
        lat = self.latency
        return RuntimeState(time_s=self.clock(), level=self.level, target_period_s=self.target_period_s,
                            window_mean_s=lat.mean, window_p90_s=lat.p90, window_count=lat.count,
                            last_latency_s=lat.last, cpu_free=free, load_share=load,
                            extra=dict(self._extra() if self._extra else {}))
