"""The runtime engine: one resident supernet, levels switched between frames, a streaming pipeline.

`Engine` keeps a package's supernet in memory once and upscales frames with the active level.
A switch is `SuperNet.set_active(cfg)`: one reference swap of a routing that the engine
prebuilt for every level at start (so no switch builds anything, and no weight tensor is ever
allocated or copied; DySR section 4.2). Each switch's latency is recorded in nanoseconds
(`time.perf_counter_ns`).

`run_stream(runner, frames, sink, target_fps, policy, monitor)` is the player: decode -> SR ->
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
import torch

from adasr.errors import ConfigError
from adasr.family import Family, Level
from adasr.frames import to_frame, to_tensor
from adasr.nn.supernet import SuperNet

if TYPE_CHECKING:
    from adasr.package import Package
    from adasr.runtime.monitors import Monitor
    from adasr.runtime.policies import Policy


# -- frames <-> tensors (shared with the baselines) --------------------------------------------------

def check_frame(frame: Any) -> None:
    """ConfigError unless `frame` is a uint8 HxWx3 RGB array."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ConfigError(f"a frame must be a uint8 HxWx3 RGB array, got {got}")


def frame_to_tensor(frame: np.ndarray, channels_last: bool = True) -> torch.Tensor:
    """uint8 HxWx3 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    check_frame(frame)
    x = to_tensor(frame)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def tensor_to_frame(y: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> uint8 HxWx3 (rounded, clipped)."""
    return to_frame(y)


def phases_to_frame(z: torch.Tensor, scale: int) -> np.ndarray:
    """(1, 3*s*s, H, W) float, the SR output before its pixel shuffle -> uint8 (sH)x(sW)x3.

    Equals ``tensor_to_frame(F.pixel_shuffle(z, scale))`` exactly (rounding and clipping are
    per element, so they commute with the shuffle), but rounds in place at LR layout and
    shuffles bytes instead of floats. `z` is overwritten."""
    from adasr.nn.upsample import phases_to_hwc

    u = z.detach().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
    return phases_to_hwc(u.cpu(), scale)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers of `module`."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _check_level_index(level: Any, n: int) -> int:
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


# -- the engine ---------------------------------------------------------------------------------------

class Engine:
    """Resident supernet + family; `process` upscales with the active level, `switch` changes it.

    source: a `Package` (its family, or `package.family_for(device_key)` when `device_key` is
    given), or a `SuperNet` with `family`. level: the starting level index (default: the
    fastest, 0). channels_last: feed NHWC-strided input on CPU (faster, same output).
    precision: "fp32", "int8" (the levels in `int8_only`, default all) or "auto" (the levels
    `adasr.runtime.precision.int8_choice` picks from the package's profile), int8 levels
    calibrated on `calibration` frames.
    """

    def __init__(self, source: Package | SuperNet, family: Family | None = None, *, device_key: str | None = None,
                 level: int = 0, channels_last: bool | None = None, tile: int | None = 512,
                 overlap: int = 16, precision: str = "fp32",
                 calibration: Sequence[np.ndarray] | None = None, int8_only: Sequence[int] | None = None) -> None:
        if isinstance(source, SuperNet):
            if family is None:
                raise ConfigError("Engine(supernet, family): a supernet needs its family of levels")
            self.supernet = source
        else:
            self.supernet = source.supernet
            if family is None:
                family = source.family_for(device_key) if device_key is not None else source.family
        family.validate(self.supernet.space)
        if len(family) == 0:
            raise ConfigError("the family has no levels")
        self.levels: Family = family
        self.scale = self.supernet.scale
        self.device = self.supernet.head.weight.device
        self.channels_last = self.device.type == "cpu" if channels_last is None else bool(channels_last)
        self.supernet.eval()
        # Prebuild every level's routing (cached by the supernet): a later switch is a lookup + swap.
        if len(family) > self.supernet.cache_size:
            raise ConfigError(f"{len(family)} levels exceed the supernet's routing cache ({self.supernet.cache_size})")
        for lv in family:
            self.supernet.set_active(lv.config)
        self.switch_latencies: list[int] = []
        if tile is not None and (not isinstance(tile, int) or tile < 8):
            raise ConfigError(f"tile must be an integer of at least 8 LR pixels (or None), got {tile!r}")
        self.tile, self.overlap = tile, int(overlap)
        self.level = _check_level_index(level, len(family))
        self.supernet.set_active(family[self.level].config)
        # precision "int8": every level that `adasr.runtime.int8` supports (or those in
        # `int8_only`) also gets a quantized copy (its own int8 weights, about a quarter of the
        # level's float32 bytes), calibrated on `calibration` frames and built here once, so a
        # switch still allocates nothing. "auto": the levels `adasr.runtime.precision` picks from
        # the package's profile for `device_key` (measured faster, loss within its tolerance).
        from adasr.runtime.precision import check_precision, int8_levels

        self.precision = check_precision(precision)
        if precision == "auto":
            if isinstance(source, SuperNet):
                raise ConfigError("precision auto needs a package (its profile holds the int8 measurements)")
            int8_only = int8_levels(source, family, "auto", device_key)
        quantize = [] if precision == "fp32" else range(len(family)) if int8_only is None else \
            [_check_level_index(i, len(family)) for i in int8_only]
        self.int8_levels: list[Any] = [None] * len(family)
        if quantize:
            from adasr.runtime.int8 import quantize_level

            if not calibration:
                raise ConfigError(f"precision {precision} needs calibration frames (uint8 RGB)")
            for i in quantize:
                try:
                    self.int8_levels[i] = quantize_level(self.supernet.extract(family[i].config), calibration)
                except ConfigError:
                    pass  # this level runs in float32

    @classmethod
    def load(cls, path: str, *, device: str = "cpu", device_key: str | None = None, level: int = 0,
             **kw: Any) -> Engine:
        """Load a package once and keep its supernet resident."""
        from adasr.package import load_package

        return cls(load_package(path, device=device), device_key=device_key, level=level, **kw)

    def __len__(self) -> int:
        return len(self.levels)

    @property
    def active(self) -> Level:
        return self.levels[self.level]

    def switch(self, level: int) -> int:
        """Make `level` active (one routing swap); returns and records the switch time in ns."""
        level = _check_level_index(level, len(self.levels))
        cfg = self.levels[level].config
        start = time.perf_counter_ns()
        self.supernet.set_active(cfg)
        ns = time.perf_counter_ns() - start
        self.level = level
        self.switch_latencies.append(ns)
        return ns

    @torch.inference_mode()
    def process_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, 3, sH, sW) with the active level (not clamped).

        A single frame larger than `tile` LR pixels on a side is processed in overlapping tiles
        (`adasr.upscale.sr_tensor`), so memory stays bounded on large frames."""
        if self.tile is not None and x.shape[0] == 1 and max(x.shape[2:]) > self.tile:
            from adasr.upscale import sr_tensor

            return sr_tensor(self._forward, x, self.scale, tile=self.tile, overlap=self.overlap)
        return self._forward(x)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        quantized = self.int8_levels[self.level]
        return quantized(x) if quantized is not None else self.supernet(self._prepare(x))

    @torch.inference_mode()
    def process(self, frame: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB -> uint8 (sH)x(sW)x3 with the active level.

        A frame larger than `tile` is upscaled tile by tile straight into the uint8 output
        (`adasr.upscale.sr_tiles`): no float buffer of the output's size."""
        if self.tile is not None and isinstance(frame, np.ndarray) and frame.ndim == 3 \
                and max(frame.shape[:2]) > self.tile:
            from adasr.upscale import sr_tiles

            check_frame(frame)
            return sr_tiles(self._forward, frame, self.scale, self.tile, self.overlap)
        x = frame_to_tensor(frame, self.channels_last)
        quantized = self.int8_levels[self.level]
        if quantized is not None:
            return phases_to_frame(quantized.phases(x), self.scale)
        routing = self.supernet.routing  # read once: a switch from another thread lands on the next frame
        if routing.config.upsampler == "tc":
            return tensor_to_frame(self._forward(x))
        # Before the pixel shuffle: round to uint8 at LR layout, then shuffle bytes (no float
        # buffer at output size, no float shuffle).
        return phases_to_frame(routing(self._prepare(x), phases=True), self.scale)

    def warmup(self, lr_hw: tuple[int, int], repeats: int = 1, levels: Sequence[int] | None = None) -> None:
        """Run every level `repeats` times on a frame of `lr_hw` (H, W), then restore the active
        level: the first forward of a level at a new size builds kernels (oneDNN primitives, CUDA
        autotuning) and would otherwise land on a live frame. Switches made here are not recorded.
        levels: only these level indices (default: all)."""
        h, w = (int(v) for v in lr_hw)
        if h < 1 or w < 1:
            raise ConfigError(f"warm-up size must be positive, got {lr_hw!r}")
        x = torch.zeros(1, 3, h, w)
        keep, recorded = self.level, len(self.switch_latencies)
        for i in range(len(self.levels)) if levels is None else levels:
            self.level = _check_level_index(i, len(self.levels))
            self.supernet.set_active(self.levels[self.level].config)
            for _ in range(max(1, int(repeats))):
                self.process_tensor(x)
        self.level = keep
        self.supernet.set_active(self.levels[keep].config)
        del self.switch_latencies[recorded:]

    def supernet_bytes(self) -> int:
        return self.supernet.supernet_bytes()

    def resident_bytes(self) -> int:
        """What is resident for every level at once: the supernet (and any int8 levels)."""
        return self.supernet_bytes() + sum(q.int8_bytes() for q in self.int8_levels if q is not None)

    def data_ptrs(self) -> list[int]:
        """Storage addresses of every parameter (unchanged by switches; a test hook)."""
        return [p.data_ptr() for p in self.supernet.parameters()]

    def run_stream(self, frames: Iterable[np.ndarray], sink: Callable[[np.ndarray], Any] | None,
                   target_fps: float, policy: Policy | None = None, monitor: Monitor | None = None,
                   **kw: Any) -> RunStats:
        return run_stream(self, frames, sink, target_fps, policy, monitor, **kw)


# -- run statistics -------------------------------------------------------------------------------------

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


def auto_threads(state: Any, *, cores: int | None = None, busy: float = 0.1) -> int:
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
        return torch.get_num_threads()
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

    def __call__(self, state: Any) -> int:
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


def _check_positive(name: str, value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def run_stream(runner: Runner, frames: Iterable[np.ndarray], sink: Callable[[np.ndarray], Any] | None,
               target_fps: float, policy: Policy | None = None, monitor: Monitor | None = None, *,
               clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep,
               queue_size: int = 4, pace: bool = True, max_ahead: int = 1, stall_periods: float = 2.0,
               resync: bool = True, threads: ThreadRule | int | None = None,
               on_frame: Callable[[FrameRecord, Any], None] | None = None,
               max_frames: int | None = None, poll_s: float = 0.05, stall_timeout_s: float = 60.0,
               join_timeout_s: float = 10.0) -> RunStats:
    """Play `frames` through `runner` at `target_fps`; see the module doc for the clock rules.

    policy: decides the level before every frame (None: keep the runner's level).
    monitor: its `sample()` feeds the policy; if it has ``observe(level, latency_s, period)``
    it is told every frame's latency (None: a `StreamMonitor` on `clock`).
    clock / sleep: injectable (tests use a fake clock, so "latency" is whatever it says).
    sink: called as ``sink(frame)`` in order, from a sink thread (None: frames are dropped).
    threads: torch intra-op threads of the SR loop: an int (fixed), a rule
    ``threads(state) -> int`` asked before every frame (e.g. `auto_threads`), or None (leave
    torch's setting). The previous setting is restored at the end.
    on_frame: called as ``on_frame(record, state)`` in the SR loop after every frame (the
    `FrameRecord` and the `RuntimeState` the decision used, or None); keep it cheap (live views).
    """
    from adasr.runtime.monitors import StreamMonitor

    period = 1.0 / _check_positive("target_fps", target_fps)
    if not isinstance(queue_size, int) or isinstance(queue_size, bool) or not 1 <= queue_size <= 1024:
        raise ConfigError(f"queue_size must be an integer in [1, 1024], got {queue_size!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 0):
        raise ConfigError(f"max_frames must be a non-negative integer, got {max_frames!r}")
    stall_periods = _check_positive("stall_periods", stall_periods)
    poll_s = _check_positive("poll_s", poll_s)
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

    threads_before = torch.get_num_threads()
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
                if n_threads >= 1 and n_threads != torch.get_num_threads():
                    torch.set_num_threads(n_threads)
            if policy is not None:
                want = _check_level_index(policy.choose(state), n_levels)
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
            stats.frames.append(FrameRecord(index, level, latency, ready_rel, deadline, late, torch.get_num_threads()))
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
        if threads is not None and torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
    if errors:
        raise errors[0]
    if decoder.is_alive() or writer.is_alive():
        raise RuntimeError("stream threads did not stop in time (a frame source or sink is blocked)")
    return stats
