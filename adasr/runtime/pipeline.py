"""The streaming pipeline: decode -> SR at the level the policy picks -> sink, and its records.

`run_stream(runner, frames, sink, target_fps, policy, monitor, options)` is the player: decode -> SR ->
sink, for the Engine or any baseline (`Runner` protocol):

- A decode thread pulls frames from the iterable into a bounded queue; the SR loop (the
  calling thread) takes them, asks the policy for a level, switches, upscales, and hands the
  result to a sink thread through a second bounded queue. Every blocking get/put waits in
  slices of `poll_s` and checks a stop flag, and the SR loop gives up (TimeoutError) when no
  frame comes for `stall_timeout_s`: no deadlock. On the end of the stream or any exception
  (decoder, policy, model, sink) every thread is stopped and joined, the frame iterator closed,
  and the first exception re-raised.
- Display clock: anchored at t0, the moment the SR loop receives the first frame. Frame i is
  due one period after the previous frame's slot, ``deadline_i = deadline_{i-1} + period``
  (``deadline_0 = t0 + period``; period = 1 / target_fps); its ready time is when its SR output
  exists (after any switch it needed); it is *missed* if ready after its deadline. With
  ``resync=True`` (the default, what a video player does) a late frame is shown when it is
  ready and the clock re-anchors there: ``deadline_{i+1} = ready_i + period``, so one slow
  frame counts as one miss instead of making every later frame late. With ``resync=False``
  the schedule never re-anchors (a player that fell behind stays behind until it catches up
  by running faster than the target).
- Pacing (`pace=True`): the SR loop starts frame i no earlier than
  ``deadline_i - (1 + max_ahead) * period``, as a player whose output buffer holds `max_ahead`
  frames; this keeps a fast level from racing ahead, so monitors see the real idle time.
- Stall: a visible freeze. The display shows the newest ready frame at each slot; a stall is
  recorded when the gap between two consecutive ready times (for frame 0: from t0) exceeds
  `stall_periods` (default 2) periods, i.e. the viewer saw the same frame for 2+ slots.

`RunStats` holds per-frame records (index, level, latency_s, ready_time, deadline, missed),
switches (frame, from, to, ns) and stalls; `to_dict()` is JSON-ready with a summary.

`StreamOptions` holds the pipeline's settings (clock, queues, pacing, stall rule, threads,
timeouts) as one frozen, validated value.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from adasr import threads as _threads
from adasr._options import check_positive, options_or_default
from adasr.errors import ConfigError
from adasr.family import Family, Level

if TYPE_CHECKING:
    from adasr.runtime.monitors import Monitor, RuntimeState
    from adasr.runtime.policies import Policy

__all__ = ["AutoThreads", "FrameRecord", "RunStats", "Runner", "Stall", "StreamOptions", "SwitchRecord",
           "Streams", "ThreadRule", "auto_threads", "check_level_index", "run_stream"]


def check_level_index(level: Any, n: int) -> int:
    """`level` as an int; ConfigError unless it is an index in [0, n - 1]."""
    if not isinstance(level, (int, np.integer)) or isinstance(level, bool) or not 0 <= level < n:
        raise ConfigError(f"level must be an index in [0, {n - 1}], got {level!r}")
    return int(level)


@runtime_checkable
class Runner(Protocol):
    """What `run_stream` drives: the Engine and the baselines."""

    levels: Family | Sequence[Level]
    level: int
    switch_latencies: list[int]

    def process(self, frame: np.ndarray) -> np.ndarray: ...

    def switch(self, level: int) -> int: ...

    def resident_bytes(self) -> int: ...



# -- run statistics -------------------------------------------------------------------------------------

class Streams:
    """Gives a `Runner` the method form ``runner.run_stream(frames, sink, target_fps, ...)``."""

    def run_stream(self, frames: Iterable[np.ndarray], sink: Callable[[np.ndarray], Any] | None,
                   target_fps: float, policy: Policy | None = None, monitor: Monitor | None = None,
                   options: StreamOptions | None = None) -> RunStats:
        """`run_stream` on this runner."""
        return run_stream(self, frames, sink, target_fps, policy, monitor, options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FrameRecord:
    index: int
    level: int
    latency_s: float   # SR compute of this frame
    ready_time: float  # seconds since t0 (display clock anchor)
    deadline: float    # seconds since t0
    missed: bool
    threads: int = 0   # torch intra-op threads the frame ran with


@dataclass(frozen=True)
class SwitchRecord:
    frame: int  # the first frame run on the new level
    from_level: int
    to_level: int
    ns: int


@dataclass(frozen=True)
class Stall:
    frame: int    # the frame that ended the freeze
    gap_s: float  # time between it and the previous ready frame (or t0)


@dataclass
class RunStats:
    target_fps: float
    frames: list[FrameRecord] = field(default_factory=list)
    switches: list[SwitchRecord] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    wall_s: float = 0.0
    level_psnr: list[float] | None = None  # PSNR per level index (from the family), when known

    @property
    def period_s(self) -> float:
        return 1.0 / self.target_fps

    @property
    def missed(self) -> int:
        return sum(f.missed for f in self.frames)

    @property
    def switch_latencies(self) -> list[int]:
        return [s.ns for s in self.switches]

    def summary(self) -> dict[str, Any]:
        n = len(self.frames)
        lat = sorted(f.latency_s for f in self.frames)
        levels: dict[str, int] = {}
        for f in self.frames:
            levels[str(f.level)] = levels.get(str(f.level), 0) + 1
        span = self.frames[-1].ready_time if n else 0.0
        out = {
            "frames": n, "target_fps": self.target_fps, "missed": self.missed,
            "miss_rate": self.missed / n if n else 0.0, "stalls": len(self.stalls),
            "stall_s": sum(s.gap_s for s in self.stalls), "switches": len(self.switches),
            "switch_ns_max": max(self.switch_latencies, default=0),
            "switch_ns_median": int(np.median(self.switch_latencies)) if self.switches else 0,
            "latency_s_mean": sum(lat) / n if n else 0.0,
            "latency_s_p90": lat[min(n - 1, math.ceil(0.9 * n) - 1)] if n else 0.0,
            "achieved_fps": n / span if span > 0 else 0.0, "level_frames": levels, "wall_s": self.wall_s,
        }
        if self.level_psnr is not None and n:
            out["psnr_mean"] = sum(self.level_psnr[f.level] for f in self.frames) / n
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "target_fps": self.target_fps, "wall_s": self.wall_s,
                "level_psnr": self.level_psnr,
                "frames": [asdict(f) for f in self.frames], "switches": [asdict(s) for s in self.switches],
                "stalls": [asdict(s) for s in self.stalls]}


# -- the streaming pipeline --------------------------------------------------------------------------

ThreadRule = Callable[[Any], int]


def auto_threads(state: RuntimeState, *, cores: int | None = None, busy: float = 0.1) -> int:
    """Torch threads for the next frame: every core while other programs leave the CPU idle,
    one thread once they take more than `busy` of it (or when the load is unknown after a busy
    reading). On a contended CPU a multi-threaded forward waits at every parallel region for its
    slowest thread, and a descheduled thread stalls all of them: on the 2-core reference machine
    the fastest level took 320 ms a frame with 2 threads under full background load and 36 ms with
    one (docs/BENCHMARKS.md, section 6)."""
    import os

    cores = cores or os.cpu_count() or 1
    load = getattr(state, "load_share", None) if state is not None else None
    if load is None:
        return _threads.get_num_threads()
    return 1 if load > busy else cores


class AutoThreads:
    """`auto_threads` made robust to noisy CPU readings, for real pipelines: the load share is
    smoothed (EWMA, weight `alpha`) and the rule has hysteresis: one thread once the smoothed
    share exceeds `high`, every core again only when it falls below `low`. (psutil's system and
    per-process shares are sampled at slightly different instants; over a 50 ms frame their
    difference alone reaches 10-20% now and then.)"""

    def __init__(self, *, cores: int | None = None, high: float = 0.25, low: float = 0.1, alpha: float = 0.3) -> None:
        import os

        if not 0.0 <= low <= high <= 1.0 or not 0.0 < alpha <= 1.0:
            raise ConfigError(f"need 0 <= low <= high <= 1 and 0 < alpha <= 1, got {low}, {high}, {alpha}")
        self.cores = cores or os.cpu_count() or 1
        self.high, self.low, self.alpha = high, low, alpha
        self.smoothed: float | None = None
        self.threads = self.cores

    def __call__(self, state: RuntimeState) -> int:
        load = getattr(state, "load_share", None) if state is not None else None
        if load is not None:
            self.smoothed = load if self.smoothed is None else (1 - self.alpha) * self.smoothed + self.alpha * load
            if self.smoothed > self.high:
                self.threads = 1
            elif self.smoothed < self.low:
                self.threads = self.cores
        return self.threads


class _End:
    """End-of-stream marker."""


_END = _End()


def _put(q: queue.Queue, item: Any, stop: threading.Event, poll_s: float) -> bool:
    """Put with a timeout loop; False when stopped first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=poll_s)
            return True
        except queue.Full:
            continue
    return False


@dataclass(frozen=True)
class StreamOptions:
    """How `run_stream` plays (validated on construction; see the module doc for the rules).

    clock / sleep: injectable (tests use a fake clock, so "latency" is whatever it says).
    queue_size: frames each of the two queues holds. pace / max_ahead: hold the SR loop to the
    display clock with `max_ahead` frames of output buffer. stall_periods: a gap of more than
    this many periods between ready frames is a stall. resync: re-anchor the clock on a late
    frame. threads: torch intra-op threads of the SR loop: an int (fixed), a rule
    ``threads(state) -> int`` asked before every frame (e.g. `auto_threads`), or None (leave
    torch's setting); the previous setting is restored at the end. on_frame: called as
    ``on_frame(record, state)`` in the SR loop after every frame (the `FrameRecord` and the
    `RuntimeState` the decision used, or None); keep it cheap (live views). max_frames: stop
    after this many frames (None: the whole source). poll_s: the slice every blocking queue
    wait checks the stop flag at. stall_timeout_s: give up when no frame comes for this long.
    join_timeout_s: how long the end of the stream waits for each thread.
    """

    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep
    queue_size: int = 4
    pace: bool = True
    max_ahead: int = 1
    stall_periods: float = 2.0
    resync: bool = True
    threads: ThreadRule | int | None = None
    on_frame: Callable[[FrameRecord, Any], None] | None = None
    max_frames: int | None = None
    poll_s: float = 0.05
    stall_timeout_s: float = 60.0
    join_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        q = self.queue_size
        if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 1024:
            raise ConfigError(f"queue_size must be an integer in [1, 1024], got {q!r}")
        m = self.max_frames
        if m is not None and (not isinstance(m, int) or m < 0):
            raise ConfigError(f"max_frames must be a non-negative integer, got {m!r}")
        object.__setattr__(self, "stall_periods", check_positive("stall_periods", self.stall_periods))
        object.__setattr__(self, "poll_s", check_positive("poll_s", self.poll_s))


def run_stream(runner: Runner, frames: Iterable[np.ndarray], sink: Callable[[np.ndarray], Any] | None,
               target_fps: float, policy: Policy | None = None, monitor: Monitor | None = None,
               options: StreamOptions | None = None) -> RunStats:
    """Play `frames` through `runner` at `target_fps`; see the module doc for the clock rules.

    policy: decides the level before every frame (None: keep the runner's level).
    monitor: its `sample()` feeds the policy; if it has ``observe(level, latency_s, period)``
    it is told every frame's latency (None: a `StreamMonitor` on `clock`).
    sink: called as ``sink(frame)`` in order, from a sink thread (None: frames are dropped).
    options: a `StreamOptions` (default: its defaults).
    """
    from adasr.runtime.monitors import StreamMonitor

    opts = options_or_default(StreamOptions, options, "run_stream")
    clock, sleep, pace, max_ahead, resync = opts.clock, opts.sleep, opts.pace, opts.max_ahead, opts.resync
    threads, on_frame, max_frames, poll_s = opts.threads, opts.on_frame, opts.max_frames, opts.poll_s
    stall_periods, stall_timeout_s, join_timeout_s = opts.stall_periods, opts.stall_timeout_s, opts.join_timeout_s
    queue_size = opts.queue_size
    period = 1.0 / check_positive("target_fps", target_fps)
    n_levels = len(runner.levels)
    if monitor is None:
        monitor = StreamMonitor(clock=clock, level=runner.level, target_period_s=period)
    observe = getattr(monitor, "observe", None)
    if observe is not None:
        observe(runner.level, None, period)
    psnr = [float(lv.psnr) for lv in runner.levels] if all(hasattr(lv, "psnr") for lv in runner.levels) else None
    stats = RunStats(target_fps=float(target_fps), level_psnr=psnr)

    stop = threading.Event()
    errors: list[BaseException] = []
    decoded: queue.Queue = queue.Queue(maxsize=queue_size)
    finished: queue.Queue = queue.Queue(maxsize=queue_size)

    def fail(exc: BaseException) -> None:
        errors.append(exc)
        stop.set()

    def decode() -> None:
        it = iter(frames)
        try:
            count = 0
            while not stop.is_set() and (max_frames is None or count < max_frames):
                try:
                    frame = next(it)
                except StopIteration:
                    break
                if not _put(decoded, frame, stop, poll_s):
                    return
                count += 1
            _put(decoded, _END, stop, poll_s)
        except BaseException as exc:
            fail(exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()  # a generator (PyAV container) releases its file here
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

    def write() -> None:
        try:
            while True:
                try:
                    item = finished.get(timeout=poll_s)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if item is _END:
                    return
                if sink is not None:
                    sink(item)
        except BaseException as exc:
            fail(exc)

    threads_before = _threads.get_num_threads()
    decoder = threading.Thread(target=decode, name="adasr-decode", daemon=True)
    writer = threading.Thread(target=write, name="adasr-sink", daemon=True)
    wall_start = time.perf_counter()
    decoder.start()
    writer.start()
    try:
        t0: float | None = None
        last_ready = 0.0
        next_deadline = period
        index = 0
        waited = 0.0
        while not stop.is_set():
            try:
                item = decoded.get(timeout=poll_s)
            except queue.Empty:
                waited += poll_s
                if waited >= stall_timeout_s:
                    raise TimeoutError(f"no frame from the decoder for {stall_timeout_s:g} s") from None
                continue
            waited = 0.0
            if item is _END:
                break
            if t0 is None:
                t0 = clock()
            deadline = next_deadline
            if pace:
                early = t0 + deadline - (1 + max_ahead) * period - clock()
                if early > 0:
                    sleep(early)
            state = monitor.sample() if policy is not None or callable(threads) else None
            if threads is not None:
                n_threads = int(threads(state) if callable(threads) else threads)
                if n_threads >= 1 and n_threads != _threads.get_num_threads():
                    _threads.set_num_threads(n_threads)
            if policy is not None:
                want = check_level_index(policy.choose(state), n_levels)
                if want != runner.level:
                    before = runner.level
                    ns = runner.switch(want)
                    stats.switches.append(SwitchRecord(index, before, want, int(ns)))
            level = runner.level
            start = clock()
            out = runner.process(item)
            ready = clock()
            latency = ready - start
            if observe is not None:
                observe(level, max(0.0, latency), period)
            ready_rel = ready - t0
            gap = ready_rel - last_ready
            if gap > stall_periods * period:
                stats.stalls.append(Stall(index, gap))
            last_ready = ready_rel
            late = ready_rel > deadline
            stats.frames.append(FrameRecord(index, level, latency, ready_rel, deadline, late,
                                            _threads.get_num_threads()))
            next_deadline = (ready_rel if late and resync else deadline) + period
            if on_frame is not None:
                on_frame(stats.frames[-1], state)
            index += 1
            if not _put(finished, out, stop, poll_s):
                break
        if not stop.is_set() and _put(finished, _END, stop, poll_s):
            writer.join(join_timeout_s)  # let the sink drain
            if writer.is_alive() and not errors:
                fail(TimeoutError(f"the sink did not finish within {join_timeout_s:g} s of the end of stream"))
    except BaseException as exc:
        fail(exc)
    finally:
        stop.set()
        decoder.join(join_timeout_s)
        writer.join(join_timeout_s)
        stats.wall_s = time.perf_counter() - wall_start
        if threads is not None and _threads.get_num_threads() != threads_before:
            _threads.set_num_threads(threads_before)
    if errors:
        raise errors[0]
    if decoder.is_alive() or writer.is_alive():
        raise RuntimeError("stream threads did not stop in time (a frame source or sink is blocked)")
    return stats

