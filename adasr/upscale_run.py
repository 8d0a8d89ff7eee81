"""The upscale policy: what `adasr upscale` and `adasr.upscale_video` / `upscale_image` run for one file.

Three ways (issue 19): quality first (the best level, as fast as it runs; the default), the best
level whose estimate fits a time budget, or realtime (the adaptive runtime holds the source's
frame rate or `target_fps`, for live transcoding); or one level asked for. Before the work starts
the `Reporter` gets one line saying what will run and about how long it takes here, in plain
words (a fixed-level video expected to take `FIRST_FRAMES_FROM_S` or more says the estimate once
its own first frames are done: a timing before the run sees one tile of one level, and ran 1.4-1.6x
low on a loaded machine, docs/journal/29); while it runs, the estimate is re-measured from the
frames done, and when it moves by more than a third the reporter is told once ("now about 4 min
30 s: this machine is busier than when the estimate was made").

- `thread_rule(load_share)`: the torch threads the runtime's rule (`AutoThreads`) uses under a
  background load; the estimate times with it, and a single model file runs with it, so the
  library runs as fast as the CLI.
- `choose_level(...)`: the level and its estimate for the best / level / budget modes.
- `upscale_file(src, dst, ...)`: the whole job for one image or video; returns an `UpscaleResult`
  (the JSON summary the CLI prints with --json, and its one-sentence form).

A video output keeps every stream, frame time, bit depth and colour tag of the source
(`adasr.runtime.player`, `adasr.video`). Nothing here prints: the CLI passes a reporter that does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adasr.errors import ConfigError, InputError

__all__ = ["DEADLINE_KEYS", "Reporter", "UpscaleResult", "busy_words", "choose_level", "fastest_fps", "parse_level",
           "plain_estimate", "reach_line", "resolve_mode", "thread_rule", "threads_for_load", "upscale_file"]

DEADLINE_KEYS = ("target_fps", "deadlines_met", "missed", "stalls", "switches", "switch_ms_max", "policy")
#: The re-measured total moves the reporter's estimate once it differs from the first by this share.
REESTIMATE_SHARE = 1 / 3
#: The estimate's timing lasts at most this share of what the run is expected to take.
CALIBRATE_SHARE = 0.02
#: A fixed-level video run expected to take at least this long says its estimate from its own
#: first frames (timed for at least `FIRST_FRAMES_S`), not from a timing before the run.
FIRST_FRAMES_FROM_S = 10.0
FIRST_FRAMES_S = 1.5
_log = logging.getLogger("adasr")


class Reporter:
    """Where `upscale_file` reports; this one is silent except for warnings (to the "adasr"
    logger). The CLI subclasses it with a progress bar."""

    def say(self, line: str) -> None:
        """The estimate line before the work, and the revised estimate once, if it moves."""

    def warn(self, line: str) -> None:
        """A warning (target out of reach, budget out of reach, estimate revised)."""
        _log.warning(line)

    def start(self, total: int | None, level: str, eta: str) -> None:
        """The work starts: `total` frames (None: unknown)."""

    def update(self, done: int, total: int | None, fps: float, level: str, eta: str) -> None:
        """`done` frames are ready."""

    def finish(self, done: int) -> None:
        """The work ended (also on failure)."""

    def profiling(self, stage: str, done: int, total: int) -> None:
        """First use of a package on this device: its levels are being timed (cached after)."""


@dataclass
class UpscaleResult:
    summary: dict[str, Any]
    sentence: str


def threads_for_load(load_share: float) -> int | None:
    """The torch threads the runtime's thread rule (`AutoThreads`) uses under `load_share`:
    one thread above its `high` share, else None (every core)."""
    from adasr.runtime.pipeline import AutoThreads

    return 1 if load_share > AutoThreads().high else None


thread_rule = threads_for_load


@contextlib.contextmanager
def _rule_threads(load_share: float) -> Iterator[None]:
    """Run the block with `threads_for_load`'s thread count, then restore the setting before
    (torch's, or the ONNX runtime's: `adasr.threads`)."""
    from adasr import threads

    n = threads_for_load(load_share)
    before = threads.get_num_threads()
    if n is not None and n != before:
        threads.set_num_threads(n)
    try:
        yield
    finally:
        if threads.get_num_threads() != before:
            threads.set_num_threads(before)


def busy_words(load_share: float | None) -> str:
    """'' on an idle machine, else '; this machine is busy (other programs take N% of the CPU)'."""
    if load_share is None or load_share < 0.15:
        return ""
    return f"; this machine is busy (other programs take {100 * load_share:.0f}% of the CPU), so it may vary"


def plain_estimate(seconds: float | None, load_share: float | None = None) -> str:
    """'about 4 min 05 s here; this machine is busy (...)' (the estimate line's words)."""
    from adasr.estimate import format_seconds

    if seconds is None or not math.isfinite(seconds):
        return "time unknown"
    return f"about {format_seconds(seconds)} here{busy_words(load_share)}"


def fastest_fps(engine: Any, hw: tuple[int, int], load_share: float) -> float | None:
    """Frames per second the engine's fastest level runs at `hw` (H, W) here now (its profile,
    calibrated by a timing now); None without a profile. An `OnnxEngine`: its own profile
    (ONNX Runtime's timings), scaled by pixels to `hw`, without the timing."""
    from adasr.estimate import calibrate_costs, package_costs

    if getattr(engine, "backend", "torch") == "onnx":
        from adasr.runtime.onnx_engine import onnx_device_key

        costs = package_costs(engine.package, onnx_device_key(), load_share=load_share, others=False)
        return None if costs is None else costs.fps(costs.fastest(), hw, engine.tile, engine.overlap)
    costs = package_costs(engine.package, load_share=load_share)
    if costs is None:
        return None
    costs = calibrate_costs(engine.package, costs, hw, threads=threads_for_load(load_share))
    return costs.fps(costs.fastest(), hw, engine.tile, engine.overlap)


def reach_line(top_fps: float, hw: tuple[int, int], target_fps: float, what: str) -> str:
    """The one warning when even the fastest level cannot hold the target."""
    return (f"smallest level runs about {top_fps:.1f} FPS at {hw[1]}x{hw[0]} here; target {target_fps:g} FPS: "
            f"frames will be late ({what})")


def parse_level(text: str | int, n_levels: int) -> int | None:
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


def resolve_mode(level: str | int | None, realtime: bool, target_fps: float | None, time_budget: str | None,
                 strict: bool, *, image: bool) -> str:
    """'best' | 'level' | 'budget' | 'realtime' from the options; ConfigError when they clash.

    `level="auto"` is realtime for a video (the best level for an image); `target_fps` is the
    rate realtime holds, so it implies it."""
    level = None if level is None else str(level)
    if target_fps is not None and not target_fps > 0:
        raise ConfigError(f"--target-fps must be positive, got {target_fps}")
    if strict and time_budget is None:
        raise ConfigError("--strict goes with --time-budget (refuse when even the fastest level does not fit)")
    if image:
        if realtime or target_fps is not None:
            raise ConfigError("--realtime and --target-fps are for videos; an image gets the best level")
        if time_budget is not None and level not in (None, "auto"):
            raise ConfigError("--time-budget picks the level; drop --level")
        return "budget" if time_budget is not None else ("level" if level not in (None, "auto", "best") else "best")
    realtime = realtime or level == "auto" or target_fps is not None
    if realtime:
        if time_budget is not None:
            raise ConfigError("--realtime (or --target-fps, --level auto) and --time-budget: choose one")
        if level not in (None, "auto"):
            raise ConfigError(f"--realtime picks levels as it goes; drop --level {level} (or --target-fps)")
        return "realtime"
    if time_budget is not None:
        if level is not None:
            raise ConfigError("--time-budget picks the level; drop --level")
        return "budget"
    return "level" if level not in (None, "best") else "best"


# -- the job ----------------------------------------------------------------------------------------------

@dataclass
class _Job:
    src: Path
    dst: Path
    scale: int
    mode: str
    level: str | None
    budget: Any
    strict: bool
    reporter: Reporter
    precision: str | None = None
    codec: str | None = None
    crf: int = 20
    preset: str | None = None
    tile: int = 256
    max_frames: int | None = None
    start_s: float | None = None
    duration_s: float | None = None
    load_share: float = 0.0
    resume: bool = False
    chunk_frames: int = 240
    family: str = "codec"  # the bundled levels used without a model: adasr.paths.family_for_input


def _sizes(hw: tuple[int, int], scale: int) -> str:
    h, w = hw
    return f"{w}x{h} -> {w * scale}x{h * scale}"


def _level_costs(package: Any, levels: list[int], hw: tuple[int, int], load: float, *,
                 image: bool = False, frames: int = 1) -> tuple[Any, Any]:
    """(costs, calibrate): this device's profile (the column nearest the CPU load now), else a
    quick timing of `levels` here; `calibrate(costs, level)` rescales profile numbers by a timing
    of `level` now (timed numbers are returned as they are). Timed as the run will go: a video
    through the engine (NHWC input, the runtime's thread rule), an image through `sr_array`
    (NCHW, torch's thread setting). The timing lasts up to `CALIBRATE_S`, at most
    `CALIBRATE_SHARE` of what the profile says `frames` frames take: a long run gets an estimate
    from a stretch of time, a short one starts at once."""
    from adasr.estimate import CALIBRATE_S, calibrate_costs, package_costs, timed_costs

    threads, layout = (None, False) if image else (threads_for_load(load), None)
    costs = package_costs(package, others=False, load_share=load)
    if costs is None or not all(costs.known(i) for i in levels):
        return timed_costs(package, levels, hw, threads=threads, channels_last=layout), lambda c, level: c
    profile = costs

    def calibrate(_: Any, level: int) -> Any:
        min_s = min(CALIBRATE_S, CALIBRATE_SHARE * profile.seconds_for(level, hw, frames))
        return calibrate_costs(package, profile, hw, level=level, threads=threads, channels_last=layout,
                               min_s=min_s)

    return costs, calibrate


@dataclass(frozen=True)
class LevelChoice:
    level: int
    estimate_s: float
    costs: Any
    budget_s: float | None
    fits: bool = True


def choose_level(package: Any, hw: tuple[int, int], frames: int, clip_s: float | None, *, mode: str,
                 level: str | int | None = None, budget: Any = None, tile: int | None = None,
                 image: bool = False, load_share: float = 0.0) -> LevelChoice:
    """The level and its estimate for the best / level / budget modes (`budget`: a `TimeBudget`).
    With a budget no level fits: the fastest level, ``fits=False``."""
    from adasr.estimate import pick_level

    family = package.family
    n = len(family)
    if mode == "budget":
        budget_s = budget.seconds(clip_s)
        costs, calibrate = _level_costs(package, list(range(n)), hw, load_share, image=image, frames=frames)
        psnr = [lv.psnr for lv in family]
        costs = calibrate(costs, costs.fastest())
        choice = pick_level(costs, psnr, budget_s, hw, frames, tile)
        for _ in range(3):  # time the level picked; pick again while that changes the answer
            costs = calibrate(costs, choice.level)
            again = pick_level(costs, psnr, budget_s, hw, frames, tile)
            if again.level == choice.level:
                choice = again
                break
            choice = again
        return LevelChoice(choice.level, choice.estimate_s, costs, budget_s, choice.fits)
    chosen = n - 1 if mode == "best" else parse_level(level if level is not None else "best", n)
    assert chosen is not None
    costs, calibrate = _level_costs(package, [chosen], hw, load_share, image=image, frames=frames)
    costs = calibrate(costs, chosen)
    return LevelChoice(chosen, costs.seconds_for(chosen, hw, frames, tile), costs, None)


def _announce(job: _Job, choice: LevelChoice, n: int, what: str, *, deferred: bool = False) -> None:
    """The line before the work. deferred: the level only; the estimate follows from the first
    frames (`_Reestimate`)."""
    from adasr.estimate import format_seconds

    if choice.budget_s is not None and not choice.fits:
        line = (f"{what}: time budget {format_seconds(choice.budget_s)} is out of reach: even the fastest level "
                f"({choice.level} of 0..{n - 1}) needs {plain_estimate(choice.estimate_s, job.load_share)}")
        if job.strict:
            raise ConfigError(f"{line}; --strict refuses")
        job.reporter.warn(f"{line}; running it anyway")
        return
    if choice.budget_s is not None:
        why = f"the best that fits {format_seconds(choice.budget_s)}"
    else:
        why = "the best" if choice.level == n - 1 else "as asked"
    if deferred:
        job.reporter.say(f"{what}, level {choice.level} of 0..{n - 1} ({why}); "
                         f"the estimate follows from the first frames")
        return
    job.reporter.say(f"{what}, level {choice.level} of 0..{n - 1} ({why}): "
                     f"{plain_estimate(choice.estimate_s, job.load_share)}")


class _Reestimate:
    """The running estimate, and one warning when it moves by more than `REESTIMATE_SHARE`.

    pending: the estimate is not said yet; it is said from the run's own first frames (at least
    two, and `FIRST_FRAMES_S` seconds: the first frame, which builds the kernels of each tile
    shape, is left out of the rate), which time exactly what the run does (tiles, conversions,
    decode and encode beside it, the machine's load now). `pending(seconds, frames)` words it."""

    def __init__(self, job: _Job, estimate: float | None, total: int, *, pending: Any = None) -> None:
        from adasr.estimate import RunningEstimate

        self.job, self.estimate, self.total = job, estimate, total
        self.running = RunningEstimate(estimate / total if estimate and total else None, total)
        self.told = False
        self.revised: float | None = None  # the revised total, once said
        self.pending = pending
        self.first_s: float | None = None  # when the first frame was done
        self.measured_from: int | None = None  # frames the announced estimate was measured on

    def update(self, done: int, elapsed: float) -> float:
        from adasr.estimate import RunningEstimate, format_seconds

        if done >= 1 and self.first_s is None:
            self.first_s = elapsed
        if self.pending is not None and self.total:
            if done >= self.total or (done >= 2 and elapsed >= FIRST_FRAMES_S):
                per = (elapsed - (self.first_s or 0.0)) / (done - 1) if done >= 2 else elapsed / max(done, 1)
                self.estimate = elapsed + max(0, self.total - done) * per
                self.running = RunningEstimate(max(per, 1e-9), self.total)
                self.measured_from = done
                self.job.reporter.say(self.pending(self.estimate, done))
                self.pending = None
        remaining = self.running.update(done, elapsed)
        if (not self.told and self.pending is None and self.estimate and self.total and elapsed >= 2.0
                and done >= min(10, self.total // 4) + (self.measured_from or 0) and done < self.total):
            measured = elapsed + (self.total - done) * elapsed / done  # the frames done alone
            if abs(measured - self.estimate) > REESTIMATE_SHARE * self.estimate:
                self.told = True
                self.revised = measured
                slower = measured > self.estimate
                self.job.reporter.say(
                    f"now about {format_seconds(measured)} in all (estimated {format_seconds(self.estimate)}): "
                    f"this machine is {'busier' if slower else 'less busy'} than when the estimate was made"
                    + ("" if slower else ", or the first frames were slow"))
        return remaining


def upscale_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, scale: int = 2,
                 model: str | os.PathLike[str] | None = None, level: str | int | None = None,
                 time_budget: str | None = None, strict: bool = False, realtime: bool = False,
                 target_fps: float | None = None, precision: str | None = None, codec: str | None = None,
                 crf: int = 20, preset: str | None = None, tile: int = 256, max_frames: int | None = None,
                 start: float | None = None, duration: float | None = None, resume: bool = False,
                 chunk_frames: int | None = None, reporter: Reporter | None = None,
                 family: str | None = "auto") -> UpscaleResult:
    """Upscale one image or video file `src` into `dst` as `adasr upscale` does (see the module doc).

    model: a package (folder or .adasr) or a single model file (None: the bundled package for
    `scale` of `family`: "auto" picks the clean levels for a lossless image and the codec-trained
    ones for anything else, `adasr.paths.family_for_input`; or "codec" / "clean"). level: "best",
    an index, or "auto" (videos: realtime). time_budget: "90s", "2m", "1x", ...
    (`adasr.estimate.parse_time_budget`); strict: refuse when even the fastest level
    misses it. realtime / target_fps: the adaptive runtime, paced. codec None: h265 for a source
    of more than 8 bits (av1 for .webm), else h264. start / duration: a time range of the video
    (seconds). resume: encode in chunks kept beside the output and continue an interrupted run
    (`adasr.resume`; one level of a package, not realtime); chunk_frames: frames per chunk.
    Errors are `adasr.AdasrError`s raised before any work where they can be.
    """
    from adasr._atomic import check_not_input, check_writable
    from adasr.estimate import parse_time_budget, sample_load_share
    from adasr.images import is_image_path
    from adasr.runtime.player import check_time_range
    from adasr.video import check_not_url

    check_not_url(src)
    src, dst = Path(src), Path(dst)
    model_path = Path(model) if model is not None else None
    if not src.exists():
        raise InputError(f"input not found: {src}")
    if src.is_dir():
        raise InputError(f"input is a folder, not a file: {src}")
    check_writable(dst)
    check_not_input([dst], [src, model_path])
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {max_frames}")
    check_time_range(start, duration)
    image = is_image_path(src)
    if image and (start is not None or duration is not None):
        raise ConfigError("--start and --duration are for videos")
    if precision is not None:
        from adasr.package import check_precision

        check_precision(precision)
        if image and precision == "int8":
            raise ConfigError("--precision int8 applies to videos (an image runs in float32)")
    mode = resolve_mode(level, realtime, target_fps, time_budget, strict, image=image)
    budget = parse_time_budget(time_budget) if time_budget is not None else None
    job = _Job(src, dst, scale, mode, None if level is None else str(level), budget, strict,
               reporter or Reporter(), precision, codec, crf, preset, tile, max_frames, start, duration)
    from adasr.paths import family_for_input

    job.family = family_for_input(src, family)
    job.load_share = sample_load_share()
    if chunk_frames is not None:
        if not isinstance(chunk_frames, int) or isinstance(chunk_frames, bool) or chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be a positive integer, got {chunk_frames!r}")
        job.chunk_frames = chunk_frames
    if resume:
        if image:
            raise ConfigError("--resume is for videos (an image is one step)")
        if mode == "realtime":
            raise ConfigError("--resume and --realtime: a live transcode is not resumed; choose one")
        job.resume = True
    from adasr.package import is_package_path
    from adasr.paths import MODELS_DIR

    use_package = is_package_path(model_path) if model_path is not None else \
        any(MODELS_DIR.glob(f"sr_x{scale}*.adasr"))
    if use_package:
        if image:
            return _image_package(job, model_path)
        if mode == "realtime":
            return _video_realtime(job, model_path, target_fps)
        return _video_package(job, model_path)
    if mode == "realtime":
        raise ConfigError("--realtime needs a package (folder or .adasr) with a family of levels; "
                          "this is a single model file")
    if mode == "level":
        raise ConfigError("--level picks a level of a package; a single model file has one")
    if job.resume:
        raise ConfigError("--resume works with a package (the bundled one, or --model a package), not a single "
                          "model file")
    from adasr.modelfile import load_model
    from adasr.paths import bundled_model

    mod, spec = load_model(model_path or bundled_model(scale))
    if spec.scale != scale and model_path is not None:
        raise ConfigError(f"{model_path} is a x{spec.scale} model; --scale {scale} asked for x{scale}")
    return _single_model(job, mod, spec)


# -- images ---------------------------------------------------------------------------------------------

def _open(job: _Job, model_path: Path | None) -> Any:
    """The package: loaded into torch, or read as arrays for ONNX Runtime where torch is not
    installed (or $ADASR_BACKEND=onnx; `adasr.runtime.onnx_engine`)."""
    from adasr.runtime.onnx_engine import backend

    if backend() == "onnx":
        from adasr.runtime.onnx_engine import open_package_arrays

        if job.precision == "int8":
            raise ConfigError("--precision int8 needs the torch runtime (pip install 'adasr[torch]')")
        return open_package_arrays(model_path, job.scale, job.family)
    from adasr.package import open_package

    return open_package(model_path, job.scale, job.family)


def _upscale_image_onnx(package: Any, level: int, job: _Job, img: Any) -> tuple[int, int]:
    """An image through level `level` of a package run by ONNX Runtime (alpha with bicubic,
    grayscale kept, as `adasr.upscale.upscale_image_file` does)."""
    from adasr.data.imresize import imresize
    from adasr.images import write_image
    from adasr.runtime.onnx_engine import engine_for

    if img.rgb.dtype != np.uint8:
        raise ConfigError(f"{job.src}: a {img.bit_depth}-bit image needs the torch runtime "
                          f"(pip install 'adasr[torch]')")
    engine = engine_for(package)
    engine.switch(level)
    sr = engine.process(img.rgb)
    alpha = None if img.alpha is None else imresize(img.alpha, output_shape=sr.shape[:2])
    write_image(job.dst, sr, alpha=alpha, gray=img.gray, bit_depth=img.bit_depth)
    return sr.shape[1], sr.shape[0]


def _image_package(job: _Job, model_path: Path | None) -> UpscaleResult:
    from adasr.estimate import LARGE_IMAGE_S, TIMING_CAP, format_seconds, package_costs
    from adasr.images import read_image

    package = _open(job, model_path)
    img = read_image(job.src)
    hw = (img.height, img.width)
    n = len(package.family)
    what = f"{job.src.name}: {_sizes(hw, job.scale)}"
    estimate = source = budget_s = None
    if job.mode == "budget":
        choice = choose_level(package, hw, 1, None, mode="budget", budget=job.budget, tile=job.tile, image=True,
                              load_share=job.load_share)
        _announce(job, choice, n, what)
        level, estimate, source, budget_s = choice.level, choice.estimate_s, choice.costs.source, choice.budget_s
    else:
        level = n - 1 if job.mode == "best" else parse_level(job.level or "best", n)
        # an estimate costs nothing with a profile; without one, time a frame only for large images
        if hw[0] * hw[1] > 4 * TIMING_CAP * TIMING_CAP:
            costs, calibrate = _level_costs(package, [level], hw, job.load_share, image=True)
            costs = calibrate(costs, level)  # calibrated now, or timed
        else:
            costs = package_costs(package, others=False)  # small: the profile's word, nothing timed
        if costs is not None and costs.known(level):
            estimate, source = costs.seconds_for(level, hw, 1, job.tile), costs.source
            if estimate >= LARGE_IMAGE_S:
                job.reporter.say(f"{what}, level {level} of 0..{n - 1}: {plain_estimate(estimate, job.load_share)}")
    start = time.perf_counter()
    if getattr(package, "supernet", None) is None:
        w, h = _upscale_image_onnx(package, level, job, img)
    else:
        from adasr.upscale import upscale_image_file

        w, h = upscale_image_file(package.level_model(level), job.scale, job.src, job.dst, tile=job.tile, image=img)
    seconds = time.perf_counter() - start
    label = f"level {level} of {package.path.name}"
    return UpscaleResult(
        {"output": str(job.dst), "width": w, "height": h, "model": label, "mode": job.mode, "level": level,
         "level_histogram": {str(level): 1}, "estimated_s": estimate, "estimate_source": source,
         "budget_s": budget_s, "seconds": seconds},
        f"wrote {job.dst} ({w}x{h}, x{job.scale} with {label}, {format_seconds(seconds)})")


# -- videos through a package -------------------------------------------------------------------------

def _video_frames(job: _Job, info: Any) -> int:
    """Frames the run will process (an estimate when the range or the count is)."""
    fps = float(info.fps or 25)
    total = info.frame_count
    if job.start_s is not None or job.duration_s is not None:
        left = max(0.0, info.duration - (job.start_s or 0.0))
        span = left if job.duration_s is None else min(left, job.duration_s)
        total = max(1, round(span * fps))
    if job.max_frames is not None:
        total = min(job.max_frames, total or job.max_frames)
    return total


def _check_video_out(job: _Job) -> Any:
    """Probe the source and refuse, before any work, what the output cannot hold."""
    from adasr.video import check_carried, check_sdr, codec_for_suffix, probe

    info = probe(job.src)
    if job.codec is None:
        job.codec = "av1" if job.dst.suffix.lower() == ".webm" else ("h265" if info.bit_depth > 8 else "h264")
    codec_for_suffix(job.dst, job.codec)  # an unknown container or codec
    check_sdr(info)
    check_carried(job.src, job.dst)
    return info


def _video_package(job: _Job, model_path: Path | None) -> UpscaleResult:
    """The best level, a level asked for, or the best within the budget: one level, no pacing."""
    from adasr.estimate import format_seconds
    from adasr.runtime.player import PlayOptions, play

    info = _check_video_out(job)
    package = _open(job, model_path)
    fps = float(info.fps or 25)
    total = _video_frames(job, info)
    hw = (info.height, info.width)
    what = f"{job.src.name}: {total} frames {_sizes(hw, job.scale)}"
    # one fixed level: the family's latencies play no part; quality first, so float32 unless
    # `precision` asks (the package's own precision is for the adaptive runtime: realtime, play);
    # int8 levels calibrate on the input
    if getattr(package, "supernet", None) is None:  # ONNX Runtime (float32)
        from adasr.runtime.onnx_engine import engine_for

        engine = engine_for(package)
    else:
        from adasr.runtime.precision import build_engine

        engine = build_engine(package, precision=job.precision or "fp32", calibration_video=job.src)
    work = _work_folder(job, model_path) if job.resume else None
    if work is not None and work.chunks and work.frames_done >= total:
        work.chunks.pop()  # all kept (stopped while joining): the last chunk again, then the join
        work.save()
    skip = 0 if work is None else work.frames_done
    deferred = False
    if work is not None and work.level is not None:
        n = len(package.family)
        if not 0 <= work.level < n:
            raise ConfigError(f"the work kept in {work.folder} is at level {work.level}, which {package.path.name} "
                              f"does not have; remove that folder to start over")
        costs, calibrate = _level_costs(package, [work.level], hw, job.load_share, frames=max(1, total - skip))
        costs = calibrate(costs, work.level)
        left = max(0, total - skip)
        choice = LevelChoice(work.level, costs.seconds_for(work.level, hw, left, engine.tile), costs, None)
        job.reporter.say(f"{what}: resuming after {skip} frames kept in {work.folder.name}, at level {work.level} "
                         f"as before: {plain_estimate(choice.estimate_s, job.load_share)} for the rest")
    else:
        choice = choose_level(package, hw, total, total / fps, mode=job.mode, level=job.level, budget=job.budget,
                              tile=engine.tile, load_share=job.load_share)
        # a long fixed-level run says its estimate from its own first frames: a timing before the
        # run sees one tile of one level, the run the whole frame beside decoding and encoding
        deferred = choice.budget_s is None and total >= 3 and choice.estimate_s >= FIRST_FRAMES_FROM_S
        _announce(job, choice, len(package.family), what, deferred=deferred)
        if work is not None:
            work.level = choice.level
            work.save()
    level, estimate = choice.level, choice.estimate_s
    pending = None
    if work is None and deferred:
        def pending(seconds: float, done: int) -> str:
            return f"estimate from the first {done} frames: {plain_estimate(seconds, job.load_share)}"
    re = _Reestimate(job, estimate, max(0, total - skip), pending=pending)
    job.reporter.start(total or None, str(level), format_seconds(estimate))
    writer = None
    if work is not None:
        from functools import partial

        from adasr.resume import ChunkedWriter

        writer = partial(_chunked, ChunkedWriter, work, job.chunk_frames)
    try:
        def on_frame(record: Any, state: Any) -> None:
            done = record.index + 1
            remaining = re.update(done, record.ready_time)
            if done <= 3 or done % 5 == 0 or skip + done == total:
                job.reporter.update(skip + done, total or None, done / max(1e-9, record.ready_time), str(level),
                                    format_seconds(remaining))

        result = play(engine, job.src, PlayOptions(target_fps=fps, policy="fixed", level=level, out=job.dst,
                                                   codec=job.codec, crf=job.crf, preset=job.preset,
                                                   max_frames=job.max_frames, info=info, on_frame=on_frame,
                                                   pace=False, start_s=job.start_s, duration_s=job.duration_s,
                                                   writer=writer, skip_frames=skip))
    except KeyboardInterrupt:
        if work is not None and work.chunks:
            from adasr.errors import Interrupted

            raise Interrupted(f"interrupted; {work.frames_done} frames are kept in {work.folder}: run the same "
                              f"command (with --resume) to go on from there") from None
        raise
    finally:
        job.reporter.finish(skip + re.running.done)
    summary = {k: v for k, v in result.summary().items() if k not in DEADLINE_KEYS}
    source = choice.costs.source
    if re.measured_from is not None:  # said from the first frames
        source = f"the run's first {re.measured_from} frames (before the run: {estimate:.1f} s from {source})"
    summary.update(mode=job.mode, level=level, estimated_s=re.estimate, estimate_source=source,
                   prior_estimate_s=estimate, budget_s=choice.budget_s, revised_estimate_s=re.revised)
    kept = ""
    if work is not None:
        summary["frames_resumed"] = skip  # frames upscaled by an earlier, interrupted run
        summary["frames"] += skip
        summary["level_histogram"] = {str(level): summary["frames"]}
        kept = f" ({skip} of them kept from before)" if skip else ""
    return UpscaleResult(summary, f"wrote {job.dst}: {summary['frames']} frames{kept} {summary['out_size'][0]}x"
                                  f"{summary['out_size'][1]}, level {level}, {format_seconds(summary['seconds'])} "
                                  f"(estimated {format_seconds(estimate)}), {summary['mean_fps']:.1f} FPS")


def _work_folder(job: _Job, model_path: Path | None) -> Any:
    """The resume work folder, keyed by everything that shapes the output's frames and encoding."""
    from adasr.resume import WorkFolder

    model = f"bundled {job.family}" if model_path is None else str(model_path.resolve())
    if model_path is not None and model_path.is_file():
        model += f" {model_path.stat().st_size} {model_path.stat().st_mtime_ns}"
    key = {"scale": job.scale, "model": model, "mode": job.mode, "level": job.level,
           "budget": None if job.budget is None else job.budget.text, "codec": job.codec, "crf": job.crf,
           "preset": job.preset, "max_frames": job.max_frames, "start": job.start_s, "duration": job.duration_s,
           "precision": job.precision, "chunk_frames": job.chunk_frames}
    return WorkFolder(job.dst, job.src, key)


def _chunked(cls: Any, work: Any, chunk_frames: int, out: Any, width: int, height: int, fps: Any, *,
             audio_from: Any = None, trim: bool = False, rotation: int = 0, **video: Any) -> Any:
    """`PlayOptions.writer` for a resumable run: `ChunkedWriter` with VideoWriter's arguments."""
    return cls(work, width, height, fps, chunk_frames=chunk_frames, audio_from=audio_from, trim=trim,
               rotation=rotation, **video)


def _video_realtime(job: _Job, model_path: Path | None, target_fps: float | None) -> UpscaleResult:
    """The adaptive runtime at the source's frame rate (or `target_fps`), paced, for live
    transcoding; one warning up front when even the fastest level cannot hold the target."""
    from adasr.estimate import calibrate_costs, package_costs
    from adasr.runtime.onnx_engine import open_runtime_engine
    from adasr.runtime.player import PlayOptions, play

    info = _check_video_out(job)
    engine = open_runtime_engine(model_path, job.scale, on_progress=job.reporter.profiling, precision=job.precision,
                         calibration_video=job.src, family=job.family)
    fps = float(target_fps) if target_fps is not None else float(info.fps or 25)
    total = _video_frames(job, info)
    hw = (info.height, info.width)
    costs = package_costs(engine.package, load_share=job.load_share)
    if costs is not None:
        costs = calibrate_costs(engine.package, costs, hw, threads=threads_for_load(job.load_share))
    estimate = reachable = None
    if costs is not None:
        top = costs.fps(costs.fastest(), hw, engine.tile, engine.overlap)
        reachable = top >= fps
        estimate = total / min(fps, top)
        if not reachable:
            job.reporter.warn(reach_line(top, hw, fps, "without --realtime: the best level, as fast as it goes"))
    from adasr.runtime.player import ReachWatch

    watch = ReachWatch(fps, job.reporter.warn)
    watch.warned = reachable is False  # warned up front already: once is enough
    job.reporter.start(total or None, "-", "-")
    done_box = [0]
    try:
        def on_frame(record: Any, state: Any) -> None:
            done = record.index + 1
            done_box[0] = done
            watch.on_frame(record, state)
            if done % 5 == 0 or done == total:
                job.reporter.update(done, total or None, done / max(1e-9, record.ready_time), str(record.level), "")

        result = play(engine, job.src, PlayOptions(target_fps=fps, policy="lookup", out=job.dst, codec=job.codec,
                                                   crf=job.crf, preset=job.preset, max_frames=job.max_frames,
                                                   info=info, on_frame=on_frame, pace=True, start_s=job.start_s,
                                                   duration_s=job.duration_s))
    finally:
        job.reporter.finish(done_box[0])
    summary = result.summary()
    summary.update(profile_source=engine.profile_source, mode="realtime", estimated_s=estimate,
                   estimate_source=None if costs is None else costs.source, target_reachable=reachable)
    return UpscaleResult(summary, f"wrote {job.dst}: {summary['frames']} frames {summary['out_size'][0]}x"
                                  f"{summary['out_size'][1]}, {summary['mean_fps']:.1f} FPS (target {fps:.1f}), "
                                  f"deadlines met {100 * summary['deadlines_met']:.1f}%, {summary['switches']} "
                                  f"level changes")


# -- a single model file ------------------------------------------------------------------------------

def _single_model(job: _Job, model: Any, spec: Any) -> UpscaleResult:
    """One model: nothing to choose; the estimate (a quick timing) and, with a budget, whether it fits.
    It runs with the runtime's thread rule for the load measured at the start."""
    from adasr.estimate import LARGE_IMAGE_S, TIMING_CAP, LevelCosts, format_seconds
    from adasr.images import is_image_path
    from adasr.runtime.profile import measure_latency
    from adasr.upscale import upscale_image_file, upscale_video_file

    tile = job.tile

    def estimate_for(hw: tuple[int, int], frames: int) -> tuple[float, str]:
        cap = (min(hw[0], TIMING_CAP), min(hw[1], TIMING_CAP))
        sample = measure_latency(model, None, cap, warmup=1, repeats=1, channels_last=False)  # as sr_array runs
        costs = LevelCosts((max(sample.median_s, 1e-9),), cap, "timed", "a quick timing of one frame here")
        return costs.seconds_for(0, hw, frames, tile), costs.source

    def check_budget(est: float, clip_s: float | None, what: str) -> float | None:
        if job.budget is None:
            return None
        budget_s = job.budget.seconds(clip_s)
        if est > budget_s:
            line = (f"{what}: time budget {format_seconds(budget_s)} is out of reach: {spec.arch} needs "
                    f"{plain_estimate(est, job.load_share)}")
            if job.strict:
                raise ConfigError(f"{line}; --strict refuses")
            job.reporter.warn(f"{line}; running it anyway")
        return budget_s

    with _rule_threads(job.load_share):
        if is_image_path(job.src):
            from adasr.images import read_image

            img = read_image(job.src)
            hw = (img.height, img.width)
            what = f"{job.src.name}: {_sizes(hw, spec.scale)}"
            est = source = budget_s = None
            if job.budget is not None or hw[0] * hw[1] > 4 * TIMING_CAP * TIMING_CAP:
                est, source = estimate_for(hw, 1)
                budget_s = check_budget(est, None, what)
                if est >= LARGE_IMAGE_S or job.budget is not None:
                    job.reporter.say(f"{what} with {spec.arch}: {plain_estimate(est, job.load_share)}")
            start = time.perf_counter()
            w, h = upscale_image_file(model, spec.scale, job.src, job.dst, tile=tile, image=img)
            seconds = time.perf_counter() - start
            return UpscaleResult({"output": str(job.dst), "width": w, "height": h, "model": spec.arch,
                                  "mode": job.mode, "estimated_s": est, "estimate_source": source,
                                  "budget_s": budget_s, "seconds": seconds},
                                 f"wrote {job.dst} ({w}x{h}, x{spec.scale} with {spec.arch})")
        info = _check_video_out(job)
        fps = float(info.fps or 25)
        total = _video_frames(job, info)
        hw = (info.height, info.width)
        what = f"{job.src.name}: {total} frames {_sizes(hw, spec.scale)}"
        est, source = estimate_for(hw, total)
        budget_s = check_budget(est, total / fps, what)
        job.reporter.say(f"{what} with {spec.arch}: {plain_estimate(est, job.load_share)}")
        re = _Reestimate(job, est, total)
        job.reporter.start(None, "-", format_seconds(est))
        start = time.perf_counter()
        try:
            def on_frame(done: int, total_: int) -> None:
                elapsed = time.perf_counter() - start
                remaining = re.update(done, elapsed)
                job.reporter.update(done, total_ or None, done / max(1e-9, elapsed), "-", format_seconds(remaining))

            summary = upscale_video_file(model, spec.scale, job.src, job.dst, codec=job.codec, crf=job.crf,
                                         preset=job.preset, max_frames=job.max_frames, on_frame=on_frame, info=info,
                                         tile=tile, start_s=job.start_s, duration_s=job.duration_s)
        finally:
            job.reporter.finish(re.running.done)
    return UpscaleResult(
        {"output": str(job.dst), "frames": summary.frames, "out_size": [summary.width, summary.height],
         "source_fps": summary.fps, "model": spec.arch, "mode": job.mode, "seconds": summary.seconds,
         "mean_fps": summary.sr_fps, "estimated_s": est, "estimate_source": source, "budget_s": budget_s},
        f"wrote {job.dst}: {summary.frames} frames {summary.width}x{summary.height} at {summary.fps:g} fps; "
        f"{summary.sr_fps:.1f} frames/s end to end with {spec.arch} x{spec.scale} "
        f"({format_seconds(summary.seconds)}, estimated {format_seconds(est)})")
