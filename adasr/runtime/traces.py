"""Resource traces: background CPU load over time, replayed through a `CpuLoad`.

A `Trace` is a list of steps (time_s, load_share): from time_s on, other programs take
load_share of the CPU, until the next step. The last step marks the end of the trace (the
generators put a step at `duration` repeating the last load), so `duration_s` is its time.

DySR (section 5.4) replays three kinds of resource fluctuation; the generators follow its
descriptions (the paper gives no parameters, these are ours):

- `bursty`: extreme changes: the load jumps between a low band (0.0-0.2) and a high band
  (0.7-1.0), holding each for a short random time (`hold_s` range).
- `stable`: a relatively small variation: one base load (0.2-0.5) with small jitter
  (+-`jitter`) every `step_s`.
- `random_walk`: the load moves by Gaussian steps (sigma `sigma`) every `step_s`, reflected
  into [0, 1].

Each takes a seed and draws from a local `random.Random(seed)`: same seed, same trace.

CSV: a header with columns ``time`` and ``load`` (others ignored), one step per row. Bad files
are refused with an `InputError` naming the line (missing columns, non-numeric values, loads
outside [0, 1], times not strictly increasing, negative times, no rows).

`TracePlayer(trace, load)` applies a trace to a running `CpuLoad` in a background thread
(``set_share`` at each step's time), with a clean start/stop; it never starts or stops the
load itself (use both as context managers).
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from adasr._atomic import atomic_path
from adasr.errors import ConfigError, InputError

if TYPE_CHECKING:
    from adasr.cpuload import CpuLoad

__all__ = ["KINDS", "MAX_TRACE_BYTES", "Trace", "TracePlayer", "bursty", "generate", "load_trace", "random_walk",
           "stable"]

MAX_TRACE_BYTES = 64 << 20  # a load trace CSV

KINDS = ("bursty", "stable", "random_walk")


def _check_steps(steps: Iterable[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    out: list[tuple[float, float]] = []
    for i, step in enumerate(steps):
        try:
            t, load = float(step[0]), float(step[1])
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"trace step {i} must be (time_s, load_share), got {step!r}") from None
        if not math.isfinite(t) or t < 0:
            raise ConfigError(f"trace step {i}: time must be a finite number >= 0, got {step[0]!r}")
        if not (math.isfinite(load) and 0.0 <= load <= 1.0):
            raise ConfigError(f"trace step {i}: load must be in [0, 1], got {step[1]!r}")
        if out and t <= out[-1][0]:
            raise ConfigError(f"trace step {i}: times must increase strictly ({t!r} after {out[-1][0]!r})")
        out.append((t, load))
    if not out:
        raise ConfigError("a trace needs at least one step")
    return tuple(out)


@dataclass(frozen=True)
class Trace:
    """Steps (time_s, load_share), times strictly increasing from >= 0, loads in [0, 1]."""

    steps: tuple[tuple[float, float], ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", _check_steps(self.steps))

    def __len__(self) -> int:
        return len(self.steps)

    def __eq__(self, other: object) -> bool:  # the name is a label, not part of the trace
        return isinstance(other, Trace) and self.steps == other.steps

    def __hash__(self) -> int:
        return hash(self.steps)

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.steps]

    @property
    def loads(self) -> list[float]:
        return [v for _, v in self.steps]

    @property
    def duration_s(self) -> float:
        return self.steps[-1][0]

    def at(self, t: float) -> float:
        """The load share at time `t` (before the first step: the first step's load)."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.steps[max(i, 0)][1]

    def scaled(self, factor: float) -> Trace:
        """The same loads at times multiplied by `factor` (e.g. a 60 s trace in 6 s: 0.1)."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ConfigError(f"time scale must be positive, got {factor!r}")
        return Trace(tuple((t * factor, v) for t, v in self.steps), self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [list(s) for s in self.steps]}

    # -- CSV --

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """The CSV text (``time,load`` header, exact float round trip); written atomically to
        `path` when given."""
        buf = io.StringIO()
        buf.write("time,load\n")
        for t, v in self.steps:
            buf.write(f"{t!r},{v!r}\n")
        text = buf.getvalue()
        if path is not None:
            with atomic_path(path) as tmp:
                Path(tmp).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], name: str | None = None) -> Trace:
        from adasr.safepath import read_bounded

        path = Path(path)
        try:
            text = read_bounded(path, MAX_TRACE_BYTES, "trace").decode("utf-8")  # a regular file, bounded
        except UnicodeDecodeError as exc:
            raise InputError(f"cannot read trace {path}: {exc}") from None
        return cls.parse_csv(text, str(path), name=path.stem if name is None else name)

    @classmethod
    def parse_csv(cls, text: str, source: str = "<csv>", name: str = "") -> Trace:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            raise InputError(f"{source}: empty trace file (expected a header 'time,load')")
        cols = [h.strip().lower() for h in header]
        missing = [c for c in ("time", "load") if c not in cols]
        if missing:
            raise InputError(f"{source}: trace CSV lacks column(s) {missing} (header is {header!r}; "
                             f"expected 'time,load')")
        ti, li = cols.index("time"), cols.index("load")
        steps: list[tuple[float, float]] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(ti, li):
                raise InputError(f"{source}: line {line_no}: expected columns time and load, got {row!r}")
            raw_t, raw_v = row[ti].strip(), row[li].strip()
            try:
                t, v = float(raw_t), float(raw_v)
            except ValueError:
                raise InputError(f"{source}: line {line_no}: time and load must be numbers, "
                                 f"got {raw_t!r}, {raw_v!r}") from None
            if not math.isfinite(t) or t < 0:
                raise InputError(f"{source}: line {line_no}: time must be a finite number >= 0, got {raw_t!r}")
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise InputError(f"{source}: line {line_no}: load must be in [0, 1], got {raw_v!r}")
            if steps and t <= steps[-1][0]:
                raise InputError(f"{source}: line {line_no}: time must increase strictly "
                                 f"({raw_t} after {steps[-1][0]!r})")
            steps.append((t, v))
        if not steps:
            raise InputError(f"{source}: trace has a header but no rows")
        return cls(tuple(steps), name)


# -- generators (DySR section 5.4) ----------------------------------------------------------------

def _check_duration(duration: Any) -> float:
    if not (isinstance(duration, (int, float)) and not isinstance(duration, bool)
            and math.isfinite(duration) and 0 < duration <= 1e6):
        raise ConfigError(f"trace duration must be a positive number of seconds, got {duration!r}")
    return float(duration)


def _check_step(step_s: Any, duration: float) -> float:
    if not (isinstance(step_s, (int, float)) and math.isfinite(step_s) and step_s > 0):
        raise ConfigError(f"trace step must be a positive number of seconds, got {step_s!r}")
    if duration / step_s > 1_000_000:
        raise ConfigError(f"trace of {duration:g} s with {step_s:g} s steps is too long (over 1e6 steps)")
    return float(step_s)


def _finish(steps: list[tuple[float, float]], duration: float, name: str) -> Trace:
    end = round(duration, 6)
    steps = [(round(t, 6), round(v, 4)) for t, v in steps if round(t, 6) < end]
    steps.append((end, steps[-1][1]))
    return Trace(tuple(steps), name)


def bursty(duration: float, seed: int = 0, *, hold_s: tuple[float, float] = (0.5, 3.0),
           low: tuple[float, float] = (0.0, 0.2), high: tuple[float, float] = (0.7, 1.0)) -> Trace:
    """Extreme changes: alternating low/high load phases of random length in `hold_s`."""
    duration = _check_duration(duration)
    if not (0 < hold_s[0] <= hold_s[1]):
        raise ConfigError(f"hold_s must be (min, max) with 0 < min <= max, got {hold_s!r}")
    rng = random.Random(seed)
    t, is_high, steps = 0.0, rng.random() < 0.5, []
    while t < duration and len(steps) < 1_000_000:  # every hold is >= hold_s[0] > 0
        band = high if is_high else low
        steps.append((t, rng.uniform(*band)))
        t += rng.uniform(*hold_s)
        is_high = not is_high
    return _finish(steps, duration, f"bursty-{seed}")


def stable(duration: float, seed: int = 0, *, step_s: float = 1.0, base: tuple[float, float] = (0.2, 0.5),
           jitter: float = 0.05) -> Trace:
    """Small variation: one base load with +-`jitter` noise every `step_s`."""
    duration = _check_duration(duration)
    step_s = _check_step(step_s, duration)
    rng = random.Random(seed)
    centre = rng.uniform(*base)
    steps = [(k * step_s, min(1.0, max(0.0, centre + rng.uniform(-jitter, jitter))))
             for k in range(int(math.ceil(duration / step_s)))]
    return _finish(steps, duration, f"stable-{seed}")


def random_walk(duration: float, seed: int = 0, *, step_s: float = 0.5, sigma: float = 0.15,
                start: float | None = None) -> Trace:
    """Gaussian random walk of the load, reflected into [0, 1], one step every `step_s`."""
    duration = _check_duration(duration)
    step_s = _check_step(step_s, duration)
    rng = random.Random(seed)
    v = rng.uniform(0.0, 1.0) if start is None else float(start)
    steps = []
    for k in range(int(math.ceil(duration / step_s))):
        steps.append((k * step_s, v))
        v += rng.gauss(0.0, sigma)
        v = abs(v)                      # reflect at 0
        v = 2.0 - v if v > 1.0 else v   # reflect at 1
        v = min(1.0, max(0.0, v))
    return _finish(steps, duration, f"random_walk-{seed}")


def generate(kind: str, duration: float, seed: int = 0, **kw: Any) -> Trace:
    """A trace of `kind` in KINDS ("random" is accepted for "random_walk")."""
    kind = "random_walk" if kind == "random" else kind
    makers: dict[str, Callable[..., Trace]] = {"bursty": bursty, "stable": stable, "random_walk": random_walk}
    if kind not in makers:
        raise ConfigError(f"unknown trace kind {kind!r}; known: {', '.join(KINDS)}")
    return makers[kind](duration, seed, **kw)


# -- replay ---------------------------------------------------------------------------------------

class TracePlayer:
    """Replays `trace` on `load` (anything with ``set_share(x)``, normally a started `CpuLoad`)
    from a daemon thread: at each step's time (relative to `start()`, times multiplied by
    `time_scale`) it calls ``load.set_share(share)``. Stops at the trace's end (`loop`: starts
    over) or on `stop()`; `stop()` is prompt (the thread waits on an Event, never sleeps blind).

    `applied` records (elapsed_s, share) of every step applied.
    """

    def __init__(self, trace: Trace, load: CpuLoad, *, time_scale: float = 1.0, loop: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not hasattr(load, "set_share"):
            raise ConfigError(f"TracePlayer needs a load with set_share(), got {type(load).__name__}")
        if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0):
            raise ConfigError(f"time_scale must be positive, got {time_scale!r}")
        self.trace, self.load, self.time_scale, self.loop, self.clock = trace, load, float(time_scale), loop, clock
        self.applied: list[tuple[float, float]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def elapsed(self) -> float:
        return self.clock() - self._t0

    def current_share(self) -> float:
        """The trace's share now (by the player's clock)."""
        period = self.trace.duration_s * self.time_scale
        t = self.elapsed()
        if self.loop and period > 0:
            t %= period
        return self.trace.at(t / self.time_scale)

    def start(self) -> TracePlayer:
        if self._thread is not None:
            raise RuntimeError("TracePlayer is already started")
        self._stop.clear()
        self._t0 = self.clock()
        self._thread = threading.Thread(target=self._run, name="adasr-trace-player", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            offset = 0.0
            period = self.trace.duration_s * self.time_scale
            while not self._stop.is_set():
                for t, share in self.trace.steps:
                    due = self._t0 + offset + t * self.time_scale
                    wait = due - self.clock()
                    if wait > 0 and self._stop.wait(wait):
                        return
                    if self._stop.is_set():
                        return
                    self.load.set_share(share)
                    self.applied.append((self.elapsed(), share))
                if not self.loop or period <= 0:
                    return
                offset += period
        except BaseException as exc:  # reported, never raised in the thread
            self.error = exc

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the end of the trace; True when the player has finished."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)

    def __enter__(self) -> TracePlayer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- by name or file -----------------------------------------------------------------------------

_NAMES = ("bursty", "stable", "random")


def load_trace(trace: str | os.PathLike[str], seconds: float, seed: int = 0) -> Any:
    """A generated trace of `seconds` (bursty | stable | random) or a CSV trace file.

    A name that is neither a known kind nor looks like a file (a ``.csv`` suffix, a folder
    separator, or an existing path) is a ConfigError; an unreadable or malformed CSV an InputError.
    """
    if not isinstance(trace, (str, os.PathLike)):
        raise ConfigError(f"trace must be a kind ({', '.join(_NAMES)}) or a CSV path, got {trace!r}")
    text = os.fspath(trace)
    if text in _NAMES or text == "random_walk":
        return generate(text, seconds, seed)
    path = Path(text)
    if path.suffix.lower() == ".csv" or os.sep in text or "/" in text or path.exists():
        if path.is_dir():
            raise InputError(f"trace {path} is a folder, not a CSV file")
        return Trace.from_csv(path)
    raise ConfigError(f"unknown trace {text!r}: use one of {', '.join(_NAMES)} or a CSV file path")
