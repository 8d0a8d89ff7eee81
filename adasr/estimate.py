"""How long upscaling a file will take here, which level fits a time budget, and budget parsing.

`adasr upscale` of a file is quality first: the best level of the package, as fast as it runs.
Before it starts it says how long that should take, from what this module computes:

- `LevelCosts`: seconds per LR frame of every level of a package at a reference frame size, and
  where the numbers came from. A level's time at another frame size is scaled by pixel count
  (the convolutions of these nets cost the same per pixel; tiles add a margin that this ignores).
- `package_costs(package)`: this device's profile (stored in the package, or cached in
  ``$ADASR_CACHE/profiles``), the column of the background load share nearest `load_share`;
  with ``others=True`` then the closest profile of another device (same kind of device, same
  CPU model first), then the latencies the search predicted; None when none of these exist.
- `timed_costs(package, levels, frame_hw)`: a quick timing of one frame per level here, on the
  frame size capped at `TIMING_CAP` LR pixels a side (then scaled to the frame by pixel count).
- `calibrate_costs(package, costs, frame_hw, level=L)`: a profile's numbers scaled by how fast the
  machine runs now (level L timed against the profile's number for it: the median of a few
  frames, or with `min_s` the mean over up to that many seconds, `CALIBRATE_S` for an upscale's
  announced estimate): a profile is measured once, while the share of the CPU other programs
  take keeps changing.
- `estimate_seconds(source, level, frame_hw, frames)`: the one-call form (a package or costs).
- `pick_level(costs, psnr, budget_s, frame_hw, frames)`: the best level whose estimate fits the
  budget, or the fastest level when none does (and says so).
- `RunningEstimate`: the estimate corrected as frames run (the progress bar's ETA): the prior
  per-frame time blended with the measured one, the measured one weighing more with every frame.
- `parse_time_budget("90s" | "2m" | "1h30m" | "1x" | "0.5x")`: a `TimeBudget`; a multiple is of
  the clip's own duration (`TimeBudget.seconds(clip_s)`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adasr._jsonfile import loads
from adasr.errors import ConfigError
from adasr.safepath import read_bounded

if TYPE_CHECKING:
    from adasr.package import Package

__all__ = ["CALIBRATE_S", "Choice", "LARGE_IMAGE_S", "LevelCosts", "PRIOR_FRAMES", "RunningEstimate", "TIMING_CAP",
           "TimeBudget", "calibrate_costs", "costs_from_profile", "estimate_seconds", "format_seconds", "package_costs",
           "parse_time_budget", "pick_level", "quality_order", "sample_load_share", "time_level", "timed_costs"]

TIMING_CAP = 256          # quick timing: at most this many LR pixels a side
LARGE_IMAGE_S = 2.0       # images whose estimate reaches this get the estimate line
CALIBRATE_S = 1.5         # calibrate_costs: seconds of timing (the mean over them; see time_level)
PRIOR_FRAMES = 5.0        # RunningEstimate: the prior counts as this many measured frames


@dataclass(frozen=True)
class LevelCosts:
    """Seconds per LR frame of each level (None: unknown) at `ref_hw` (H, W).

    kind: "profile" (this device's, stored in the package), "cache" (this device's, cached),
    "other" (another device's profile), "predicted" (the search's prediction), "timed" (measured
    now) or "given"; source: the same in words, for the estimate line."""

    seconds: tuple[float | None, ...]
    ref_hw: tuple[int, int]
    kind: str
    source: str

    def __post_init__(self) -> None:
        h, w = self.ref_hw
        if not (h >= 1 and w >= 1):
            raise ConfigError(f"reference frame size must be positive, got {self.ref_hw!r}")
        for s in self.seconds:
            if s is not None and not (math.isfinite(s) and s > 0):
                raise ConfigError(f"seconds per frame must be positive, got {s!r}")

    def __len__(self) -> int:
        return len(self.seconds)

    def known(self, level: int) -> bool:
        return self.seconds[_index(level, len(self))] is not None

    def frame_seconds(self, level: int, frame_hw: tuple[int, int], tile: int | None = None,
                      overlap: int = 16) -> float:
        """Seconds for one LR frame of `frame_hw` (H, W) at `level`, scaled by pixel count (with
        `tile`: the pixels of its tiles and their margins, as `adasr.upscale.sr_tensor` runs them)."""
        s = self.seconds[_index(level, len(self))]
        if s is None:
            raise ConfigError(f"no latency is known for level {level}")
        h, w = _hw(frame_hw)
        if tile is None:  # whole frames (the ONNX runtime's graphs take any size)
            pixels = h * w
        else:
            from adasr.upscale import tiled_pixels

            pixels = tiled_pixels((h, w), tile, overlap)
        return s * pixels / (self.ref_hw[0] * self.ref_hw[1])

    def fps(self, level: int, frame_hw: tuple[int, int], tile: int | None = None, overlap: int = 16) -> float:
        return 1.0 / self.frame_seconds(level, frame_hw, tile, overlap)

    def seconds_for(self, level: int, frame_hw: tuple[int, int], frames: int, tile: int | None = None,
                    overlap: int = 16) -> float:
        """Seconds for `frames` frames of `frame_hw` at `level` (`tile`: see `frame_seconds`)."""
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 0:
            raise ConfigError(f"frame count must be a non-negative integer, got {frames!r}")
        return frames * self.frame_seconds(level, frame_hw, tile, overlap)

    def fastest(self, frame_hw: tuple[int, int] = (1, 1)) -> int:
        """The level with the smallest known time per frame."""
        known = [i for i in range(len(self)) if self.seconds[i] is not None]
        if not known:
            raise ConfigError("no latency is known for any level")
        return min(known, key=lambda i: (self.seconds[i], i))

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": list(self.seconds), "ref_hw": list(self.ref_hw), "kind": self.kind, "source": self.source}


def _index(level: Any, n: int) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level < n:
        raise ConfigError(f"level must be an index in [0, {n - 1}], got {level!r}")
    return level


def _hw(frame_hw: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in frame_hw)
    except (TypeError, ValueError):
        raise ConfigError(f"frame size must be (H, W), got {frame_hw!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"frame size must be positive, got {frame_hw!r}")
    return h, w


# -- where the numbers come from ----------------------------------------------------------------------

def costs_from_profile(profile: dict[str, Any], family: Any, *, load_share: float = 0.0, kind: str = "profile",
                       source: str | None = None) -> LevelCosts:
    """The column of `profile` whose background load share is nearest `load_share`."""
    columns = profile["levels"]
    name = min(columns, key=lambda k: (abs(float(columns[k].get("share", k)) - load_share), float(k)))
    measured = columns[name]["measured"]
    seconds = tuple(float(measured[lv.config.id]["median_s"]) if lv.config.id in measured else None
                    for lv in family)
    share = float(columns[name].get("share", name))
    column = "idle" if share == 0 else f"{100 * share:.0f}% background load"
    words = source or f"profile {profile.get('device', '?')}"
    return LevelCosts(seconds, _hw(profile.get("lr_hw") or family.lr_hw), kind, f"{words}, {column}")


def _closest_key(keys: Sequence[str], here: str) -> str:
    """Another device's profile key most like `here`: same kind (cpu/cuda), then same model."""
    kind = here.split("-", 1)[0]
    model = here.rsplit("-", 1)[0] if kind == "cpu" else here

    def rank(key: str) -> tuple[int, int, str]:
        same_kind = key.split("-", 1)[0] == kind
        same_model = (key.rsplit("-", 1)[0] if kind == "cpu" else key) == model
        return (0 if same_kind else 1, 0 if same_model else 1, key)

    return min(keys, key=rank)


def package_costs(package: Package, device_key: str | None = None, *, load_share: float = 0.0,
                  others: bool = True) -> LevelCosts | None:
    """Latencies of `package`'s levels for this device (see the module doc for the order)."""

    from adasr.package import check_profile
    from adasr.runtime.profile_cache import profile_cache_path
    from adasr.threads import cpu_device_key

    if device_key is None and getattr(package, "supernet", None) is None:  # run by ONNX Runtime: its timings
        from adasr.runtime.onnx_engine import onnx_device_key

        device_key = onnx_device_key()
    key = device_key or cpu_device_key()
    family = package.family
    if key in package.profiles:
        return costs_from_profile(package.profiles[key], family, load_share=load_share, kind="profile",
                                  source=f"this device's profile {key}")
    try:
        path = profile_cache_path(package, key)
        if path.is_file():
            profile = check_profile(loads(read_bounded(path, 16 << 20, "cached profile"), str(path)), str(path))
            return costs_from_profile(profile, family, load_share=load_share, kind="cache",
                                      source=f"this device's cached profile {key}")
    except (OSError, ValueError, ConfigError, KeyError, TypeError):
        pass
    if not others:
        return None
    if package.profiles:
        other = _closest_key(sorted(package.profiles), key)
        return costs_from_profile(package.profiles[other], family, load_share=load_share, kind="other",
                                  source=f"the profile of another device, {other}")
    predicted = tuple(lv.latency_s[min(lv.latency_s, key=lambda k: (abs(float(k) - load_share), float(k)))]
                      if lv.latency_s else None for lv in family)
    if any(s is not None for s in predicted):
        return LevelCosts(predicted, family.lr_hw, "predicted", "the search's predicted latencies")
    return None


def time_level(package: Package, level: int, hw: tuple[int, int], *, threads: int | None = None,
               repeats: int = 3, channels_last: bool | None = None, min_s: float = 0.0,
               max_repeats: int = 40) -> float:
    """Seconds per frame of `hw` (H, W) through `level` here, after one warm-up
    (`channels_last`: the input layout the run will use; None: the runtime's, NHWC on CPU).

    min_s = 0: the median of `repeats` frames. min_s > 0: frames are timed for about `min_s`
    seconds (at least `repeats`, at most `max_repeats`) and their mean is returned: on a machine
    other programs share, the mean over a stretch of time is what a long run will see, while
    the median of a few frames is whichever share the scheduler gave in that instant.

    A package read without torch (`adasr.package.PackageArrays`) is timed through ONNX Runtime
    (`adasr.runtime.onnx_engine.time_onnx_level`), as its run will go."""
    if getattr(package, "supernet", None) is None:
        from adasr.runtime.onnx_engine import time_onnx_level

        return time_onnx_level(package, _index(level, len(package.family)), _hw(hw), threads=threads,
                               repeats=repeats, min_s=min_s, max_repeats=max_repeats)
    from adasr.runtime.profile import measure_latency

    cfg = package.family[_index(level, len(package.family))].config
    hw = _hw(hw)
    if min_s <= 0:
        sample = measure_latency(package.supernet, cfg, hw, warmup=1, repeats=repeats, threads=threads,
                                 channels_last=channels_last)
        return max(sample.median_s, 1e-9)
    first = measure_latency(package.supernet, cfg, hw, warmup=1, repeats=1, threads=threads,
                            channels_last=channels_last).median_s
    n = min(max_repeats, max(repeats, math.ceil(min_s / max(first, 1e-6))))
    sample = measure_latency(package.supernet, cfg, hw, warmup=0, repeats=n, threads=threads,
                             channels_last=channels_last)
    return max(sample.mean_s, 1e-9)


def timed_costs(package: Package, levels: Sequence[int], frame_hw: tuple[int, int], *, cap: int = TIMING_CAP,
                threads: int | None = None, channels_last: bool | None = None) -> LevelCosts:
    """One frame per level in `levels` timed here (`time_level`, one frame after a warm-up), on
    `frame_hw` capped at `cap` LR pixels a side; the other levels stay unknown."""
    h, w = _hw(frame_hw)
    hw = (min(h, cap), min(w, cap))
    n = len(package.family)
    seconds: list[float | None] = [None] * n
    for i in levels:
        seconds[_index(i, n)] = time_level(package, i, hw, threads=threads, repeats=1, channels_last=channels_last)
    what = "one frame" if len(levels) == 1 else f"one frame of each of {len(levels)} levels"
    return LevelCosts(tuple(seconds), hw, "timed", f"a quick timing of {what} here")


def calibrate_costs(package: Package, costs: LevelCosts, frame_hw: tuple[int, int], *, level: int | None = None,
                    threads: int | None = None, channels_last: bool | None = None, cap: int = TIMING_CAP,
                    limits: tuple[float, float] = (0.2, 50.0), min_s: float = 0.0) -> LevelCosts:
    """`costs` scaled to how fast this machine runs right now: `level` (default: the fastest) is
    timed on `frame_hw` capped at `cap` (`time_level`, with the run's `threads` and input layout),
    and every level's time is multiplied by the ratio of that timing to the profile's number
    (clamped to `limits`; `min_s`: how long to time, see `time_level`). A profile is measured
    once; the CPU other programs take changes, a
    busy machine can be several times slower, and not by the same factor for every level (small
    nets suffer most from a contended thread pool): time the level that will run."""
    h, w = _hw(frame_hw)
    hw = (min(h, cap), min(w, cap))
    level = costs.fastest() if level is None else _index(level, len(costs))
    now = time_level(package, level, hw, threads=threads, channels_last=channels_last, min_s=min_s)
    factor = min(max(now / costs.frame_seconds(level, hw), limits[0]), limits[1])
    seconds = tuple(None if s is None else s * factor for s in costs.seconds)
    return LevelCosts(seconds, costs.ref_hw, costs.kind,
                      f"{costs.source}, x{factor:.2g} after timing level {level} here now")


def estimate_seconds(source: Package | LevelCosts, level: int, frame_hw: tuple[int, int], frames: int, *,
                     device_key: str | None = None, load_share: float = 0.0) -> float:
    """Seconds to upscale `frames` LR frames of `frame_hw` (H, W) at `level` here.

    source: `LevelCosts`, or a package (its profile for this device, else another device's, else
    the search's prediction; ConfigError when it has none: time it with `timed_costs`)."""
    costs = source if isinstance(source, LevelCosts) else package_costs(source, device_key, load_share=load_share)
    if costs is None:
        raise ConfigError("the package has no latencies for any device; time a frame with timed_costs")
    return costs.seconds_for(level, frame_hw, frames)


# -- choosing a level -----------------------------------------------------------------------------------

def quality_order(psnr: Sequence[float]) -> list[int]:
    """Level indices, best first: by PSNR (unknown PSNR last), ties to the larger index."""
    def key(i: int) -> tuple[float, int]:
        p = psnr[i]
        return (-p if p == p else math.inf, -i)

    return sorted(range(len(psnr)), key=key)


@dataclass(frozen=True)
class Choice:
    level: int
    estimate_s: float
    fits: bool


def pick_level(costs: LevelCosts, psnr: Sequence[float], budget_s: float, frame_hw: tuple[int, int],
               frames: int, tile: int | None = None, overlap: int = 16) -> Choice:
    """The best level (by `psnr`) whose estimate fits `budget_s`; if none fits, the fastest one
    with ``fits=False``. Levels with unknown latency are never picked."""
    if len(psnr) != len(costs):
        raise ConfigError(f"{len(psnr)} PSNR values for {len(costs)} levels")
    if not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise ConfigError(f"a time budget must be positive seconds, got {budget_s!r}")
    for i in quality_order(psnr):
        if costs.known(i):
            est = costs.seconds_for(i, frame_hw, frames, tile, overlap)
            if est <= budget_s:
                return Choice(i, est, True)
    fast = costs.fastest()
    return Choice(fast, costs.seconds_for(fast, frame_hw, frames, tile, overlap), False)


# -- the estimate as frames run ---------------------------------------------------------------------

class RunningEstimate:
    """Total and remaining seconds of a job of `total` frames, corrected as frames run.

    The per-frame time is ``(k0 * prior + elapsed) / (k0 + done)``: the prior counts as `k0`
    measured frames, so the first few frames move it a little and later ones decide it."""

    def __init__(self, prior_frame_s: float | None, total: int, *, prior_frames: float = PRIOR_FRAMES) -> None:
        if prior_frame_s is not None and not (math.isfinite(prior_frame_s) and prior_frame_s > 0):
            raise ConfigError(f"prior seconds per frame must be positive, got {prior_frame_s!r}")
        self.prior, self.total, self.k0 = prior_frame_s, max(0, int(total)), float(prior_frames)
        self.done, self.elapsed = 0, 0.0

    def update(self, done: int, elapsed_s: float) -> float:
        """Record progress; returns the remaining seconds."""
        self.done, self.elapsed = int(done), max(0.0, float(elapsed_s))
        return self.remaining_s

    @property
    def frame_s(self) -> float | None:
        if self.prior is None:
            return self.elapsed / self.done if self.done else None
        return (self.k0 * self.prior + self.elapsed) / (self.k0 + self.done)

    @property
    def remaining_s(self) -> float:
        per = self.frame_s
        return 0.0 if per is None else max(0, self.total - self.done) * per

    @property
    def total_s(self) -> float:
        return self.elapsed + self.remaining_s


# -- time budgets -----------------------------------------------------------------------------------------

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(h|min|m|sec|s)")


@dataclass(frozen=True)
class TimeBudget:
    """A wall-time budget: `fixed_s` seconds, or `multiple` times the clip's own duration."""

    text: str
    fixed_s: float | None = None
    multiple: float | None = None

    def seconds(self, clip_s: float | None) -> float:
        if self.fixed_s is not None:
            return self.fixed_s
        if clip_s is None or not clip_s > 0:
            raise ConfigError(f"--time-budget {self.text}: a multiple of the clip's length needs a video; "
                              f"give seconds (90s, 2m, 1h)")
        return float(self.multiple) * clip_s


def parse_time_budget(text: str) -> TimeBudget:
    """'90s', '90', '2m', '1h', '1h30m', '2.5min' -> seconds; '1x', '0.5x' -> a multiple of the
    clip's duration. ConfigError (one line) for anything else, zero or negative."""
    bad = ConfigError(f"--time-budget must look like 90s, 2m, 1h or 1x (a multiple of the clip's length), "
                      f"got {text!r}")
    s = str(text).strip().lower().replace(" ", "")
    if not s:
        raise bad
    if s.endswith("x"):
        try:
            value = float(s[:-1])
        except ValueError:
            raise bad from None
        if not (math.isfinite(value) and value > 0):
            raise bad
        return TimeBudget(str(text), multiple=value)
    try:
        total = float(s)  # bare number: seconds
    except ValueError:
        pos, total = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                raise bad from None
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s):
            raise bad from None
    if not (math.isfinite(total) and total > 0):
        raise bad
    return TimeBudget(str(text), fixed_s=total)


def format_seconds(s: float) -> str:
    """'0.4 s', '12 s', '3 min 05 s', '1 h 02 min'."""
    if not math.isfinite(s):
        return "?"
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        m, sec = divmod(int(round(s)), 60)
        return f"{m} min {sec:02d} s"
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h} h {m:02d} min"


def sample_load_share(seconds: float = 0.25) -> float:
    """The share of the CPU other programs take now (psutil over `seconds`); 0 when unknown."""
    import time

    try:
        from adasr.runtime.monitors import CpuMonitor

        monitor = CpuMonitor()
        time.sleep(seconds)
        return float(monitor.read()[1])
    except Exception:  # noqa: BLE001 - a missing reading only costs the idle column
        return 0.0
