"""`adasr upscale`: an image or a video in, an upscaled file out.

Three ways (issue 19): quality first (the best level, as fast as it runs; the default), the best
level whose estimate fits `--time-budget`, or `--realtime` (the adaptive runtime holds the
source's frame rate or `--target-fps`, for live transcoding). Before the work starts one line
says what will run and how long it should take here (`adasr.estimate`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adasr.errors import ConfigError, InputError

__all__ = ["DEADLINE_KEYS", "load_for_scale", "resolve_mode", "run_upscale"]

DEADLINE_KEYS = ("target_fps", "deadlines_met", "missed", "stalls", "switches", "switch_ms_max", "policy")


def load_for_scale(model_path: Path | None, scale: int):
    from adasr.modelfile import load_model
    from adasr.paths import bundled_model

    model, spec = load_model(model_path or bundled_model(scale))
    if spec.scale != scale and model_path is not None:
        raise ConfigError(f"{model_path} is a x{spec.scale} model; --scale {scale} asked for x{scale}")
    return model, spec


def _use_package(model_path: Path | None, scale: int) -> bool:
    """A package (given, or the bundled one for `scale`) rather than a single model file."""
    from adasr.package import is_package_path
    from adasr.paths import MODELS_DIR

    if model_path is not None:
        return is_package_path(model_path)
    return (MODELS_DIR / f"sr_x{scale}.adasr").is_file()


def _load_package(model_path: Path | None, scale: int):
    from adasr.package import load_package
    from adasr.paths import bundled_package

    path = model_path or bundled_package(scale)
    if not path.exists():
        raise InputError(f"model package not found: {path}")
    package = load_package(path)
    if package.scale != scale:
        raise ConfigError(f"{path} is a x{package.scale} package; --scale {scale} asked for x{scale}")
    return package


def resolve_mode(level: str | None, realtime: bool, target_fps: float | None, time_budget: str | None,
                 strict: bool, *, image: bool) -> str:
    """'best' | 'level' | 'budget' | 'realtime' from the options; ConfigError when they clash.

    `--level auto` is `--realtime` for a video (the best level for an image); `--target-fps`
    is the rate `--realtime` holds, so it implies it."""
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


def run_upscale(src: Path, dst: Path, scale: int, model_path: Path | None, codec: str, crf: int, preset: str | None,
                tile: int, max_frames: int | None, quiet: bool, out: Console, console: Console, *,
                level: str | None = None, target_fps: float | None = None, json_summary: bool = False,
                time_budget: str | None = None, realtime: bool = False, strict: bool = False,
                precision: str | None = None) -> None:
    from adasr._atomic import check_not_input, check_writable
    from adasr.estimate import parse_time_budget
    from adasr.images import is_image_path

    if not src.exists():
        raise InputError(f"input not found: {src}")
    if src.is_dir():
        raise InputError(f"input is a folder, not a file: {src}")
    check_writable(dst)
    check_not_input([dst], [src, model_path])
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {max_frames}")
    image = is_image_path(src)
    if precision is not None:
        from adasr.runtime.precision import check_precision

        check_precision(precision)
        if image and precision == "int8":
            raise ConfigError("--precision int8 applies to videos (an image runs in float32)")
    mode = resolve_mode(level, realtime, target_fps, time_budget, strict, image=image)
    budget = parse_time_budget(time_budget) if time_budget is not None else None
    job = _Job(src, dst, scale, mode, level, budget, strict, quiet, json_summary, out, console)
    job.precision = precision
    if _use_package(model_path, scale):
        package = None if mode == "realtime" else _load_package(model_path, scale)
        if image:
            _image_package(job, package, tile)
        elif mode == "realtime":
            _video_realtime(job, model_path, target_fps, codec, crf, preset, max_frames)
        else:
            _video_package(job, package, codec, crf, preset, max_frames)
        return
    if mode == "realtime":
        raise ConfigError("--realtime needs a package (folder or .adasr) with a family of levels; "
                          "this is a single model file")
    if mode == "level":
        raise ConfigError("--level picks a level of a package; a single model file has one")
    model, spec = load_for_scale(model_path, scale)
    _single_model(job, model, spec, tile, codec, crf, preset, max_frames)


class _Job:
    """What every path of `run_upscale` shares: the request and where it reports."""

    def __init__(self, src: Path, dst: Path, scale: int, mode: str, level: str | None, budget: Any, strict: bool,
                 quiet: bool, json_summary: bool, out: Console, console: Console) -> None:
        self.src, self.dst, self.scale, self.mode, self.level = src, dst, scale, mode, level
        self.budget, self.strict, self.quiet, self.json_summary = budget, strict, quiet, json_summary
        self.out, self.console = out, console

    def say(self, line: str) -> None:
        """The estimate line (before the work): stderr, unless --quiet."""
        if not self.quiet:
            self.console.print(line, highlight=False, soft_wrap=True)

    def warn(self, line: str) -> None:
        """A warning: stderr, even with --quiet."""
        self.console.print(line, highlight=False, soft_wrap=True)

    def report(self, summary: dict[str, Any], sentence: str) -> None:
        if self.json_summary:
            self.out.print_json(json.dumps(summary))
        else:
            self.out.print(sentence, highlight=False, soft_wrap=True)


def _sizes(hw: tuple[int, int], scale: int) -> str:
    h, w = hw
    return f"{w}x{h} -> {w * scale}x{h * scale}"


def _threads_for(load: float) -> int | None:
    """The torch threads the runtime's thread rule (`AutoThreads`) uses under `load`."""
    return 1 if load > 0.25 else None


def _level_costs(package: Any, levels: list[int], hw: tuple[int, int], *, image: bool = False) -> tuple[Any, Any]:
    """(costs, calibrate): this device's profile (the column nearest the CPU load now), else a
    quick timing of `levels` here; `calibrate(costs, level)` rescales profile numbers by a timing
    of `level` now (timed numbers are returned as they are). Timed as the run will go: a video
    through the engine (NHWC input, the runtime's thread rule), an image through `sr_array`
    (NCHW, torch's thread setting)."""
    from adasr.estimate import calibrate_costs, package_costs, sample_load_share, timed_costs

    load = sample_load_share()
    threads, layout = (None, False) if image else (_threads_for(load), None)
    costs = package_costs(package, others=False, load_share=load)
    if costs is None or not all(costs.known(i) for i in levels):
        return timed_costs(package, levels, hw, threads=threads, channels_last=layout), lambda c, level: c
    profile = costs

    def calibrate(_: Any, level: int) -> Any:
        return calibrate_costs(package, profile, hw, level=level, threads=threads, channels_last=layout)

    return costs, calibrate


def _choose_level(job: _Job, package: Any, hw: tuple[int, int], frames: int, clip_s: float | None,
                  what: str, *, tile: int | None, image: bool = False) -> tuple[int, float, Any, float | None]:
    """(level, estimated seconds, costs, budget seconds) for the best / level / budget modes;
    prints the estimate line (or the one line saying the budget is out of reach). `tile`: the
    tile size the run uses (its margins count in the estimate)."""
    from adasr._cli.play_cmd import parse_level
    from adasr.estimate import format_seconds, pick_level

    family = package.family
    n = len(family)
    budget_s = None
    if job.mode == "budget":
        budget_s = job.budget.seconds(clip_s)
        costs, calibrate = _level_costs(package, list(range(n)), hw, image=image)
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
        level, est = choice.level, choice.estimate_s
        if not choice.fits:
            line = (f"{what}: time budget {format_seconds(budget_s)} is out of reach: even the fastest level "
                    f"({level} of 0..{n - 1}) needs about {format_seconds(est)} here (from {costs.source})")
            if job.strict:
                raise ConfigError(f"{line}; --strict refuses")
            job.warn(f"{line}; running it anyway")
            return level, est, costs, budget_s
        why = f"the best that fits {format_seconds(budget_s)}"
    else:
        level = n - 1 if job.mode == "best" else parse_level(job.level, n)
        costs, calibrate = _level_costs(package, [level], hw, image=image)
        costs = calibrate(costs, level)
        est = costs.seconds_for(level, hw, frames, tile)
        why = "the best" if level == n - 1 else "as asked"
    job.say(f"{what}, level {level} of 0..{n - 1} ({why}): about {format_seconds(est)} here "
            f"(from {costs.source})")
    return level, est, costs, budget_s


# -- images ---------------------------------------------------------------------------------------------

def _image_package(job: _Job, package: Any, tile: int) -> None:
    import time

    from adasr.estimate import LARGE_IMAGE_S, TIMING_CAP, format_seconds, package_costs
    from adasr.images import read_image
    from adasr.upscale import upscale_image_file

    img = read_image(job.src)
    hw = (img.height, img.width)
    n = len(package.family)
    what = f"{job.src.name}: {_sizes(hw, job.scale)}"
    estimate = source = budget_s = None
    if job.mode == "budget":
        level, estimate, costs, budget_s = _choose_level(job, package, hw, 1, None, what, tile=tile, image=True)
        source = costs.source
    else:
        from adasr._cli.play_cmd import parse_level

        level = n - 1 if job.mode == "best" else parse_level(job.level, n)
        # an estimate costs nothing with a profile; without one, time a frame only for large images
        if hw[0] * hw[1] > 4 * TIMING_CAP * TIMING_CAP:
            costs, calibrate = _level_costs(package, [level], hw, image=True)
            costs = calibrate(costs, level)  # calibrated now, or timed
        else:
            costs = package_costs(package, others=False)  # small: the profile's word, nothing timed
        if costs is not None and costs.known(level):
            estimate, source = costs.seconds_for(level, hw, 1, tile), costs.source
            if estimate >= LARGE_IMAGE_S:
                job.say(f"{what}, level {level} of 0..{n - 1}: about {format_seconds(estimate)} here "
                        f"(from {source})")
    model = package.level_model(level)
    start = time.perf_counter()
    w, h = upscale_image_file(model, job.scale, job.src, job.dst, tile=tile, image=img)
    seconds = time.perf_counter() - start
    label = f"level {level} of {package.path.name}"
    job.report({"output": str(job.dst), "width": w, "height": h, "model": label, "mode": job.mode, "level": level,
                "level_histogram": {str(level): 1}, "estimated_s": estimate, "estimate_source": source,
                "budget_s": budget_s, "seconds": seconds},
               f"wrote {job.dst} ({w}x{h}, x{job.scale} with {label}, {format_seconds(seconds)})")


# -- videos through a package -------------------------------------------------------------------------

def _eta_progress(console: Console, quiet: bool) -> Progress:
    return Progress(TextColumn("[bold]upscale"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[fps]} fps, level {task.fields[level]}"),
                    TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"), console=console, disable=quiet)


def _video_package(job: _Job, package: Any, codec: str, crf: int, preset: str | None,
                   max_frames: int | None) -> None:
    """The best level, a level asked for, or the best within the budget: one level, no pacing."""
    from adasr.estimate import RunningEstimate, format_seconds
    from adasr.runtime.player import PlayOptions, play
    from adasr.runtime.precision import build_engine
    from adasr.video import codec_for_suffix, probe

    codec_for_suffix(job.dst, codec)  # refuse an unknown container or codec before any work
    info = probe(job.src)
    fps = float(info.fps or 25)
    total = info.frame_count if max_frames is None else min(max_frames, info.frame_count or max_frames)
    hw = (info.height, info.width)
    what = f"{job.src.name}: {total} frames {_sizes(hw, job.scale)}"
    # one fixed level: the family's latencies play no part; quality first, so float32 unless
    # --precision asks (the package's own precision is for the adaptive runtime: --realtime, play);
    # int8 levels calibrate on the input
    engine = build_engine(package, precision=job.precision or "fp32", calibration_video=job.src)
    level, estimate, costs, budget_s = _choose_level(job, package, hw, total, total / fps, what, tile=engine.tile)
    running = RunningEstimate(estimate / total if total else None, total)
    progress = _eta_progress(job.console, job.quiet)
    with progress:
        task = progress.add_task("frames", total=total or None, fps="-", level=str(level),
                                 eta=format_seconds(estimate))

        def on_frame(record: Any, state: Any) -> None:
            done = record.index + 1
            remaining = running.update(done, record.ready_time)
            if done <= 3 or done % 5 == 0 or done == total:
                progress.update(task, completed=done, fps=f"{done / max(1e-9, record.ready_time):.1f}",
                                eta=format_seconds(remaining))

        result = play(engine, job.src, PlayOptions(target_fps=fps, policy="fixed", level=level, out=job.dst,
                                                   codec=codec, crf=crf, preset=preset, max_frames=max_frames,
                                                   info=info, on_frame=on_frame, pace=False))
        progress.update(task, completed=len(result.stats.frames), eta="0 s")
    summary = {k: v for k, v in result.summary().items() if k not in DEADLINE_KEYS}
    summary.update(mode=job.mode, level=level, estimated_s=estimate, estimate_source=costs.source,
                   budget_s=budget_s)
    job.report(summary, f"wrote {job.dst}: {summary['frames']} frames {summary['out_size'][0]}x"
                        f"{summary['out_size'][1]}, level {level}, {format_seconds(summary['seconds'])} "
                        f"(estimated {format_seconds(estimate)}), {summary['mean_fps']:.1f} FPS")


def _video_realtime(job: _Job, model_path: Path | None, target_fps: float | None, codec: str, crf: int,
                    preset: str | None, max_frames: int | None) -> None:
    """The adaptive runtime at the source's frame rate (or `target_fps`), paced, for live
    transcoding; one line up front when even the fastest level cannot hold the target."""
    from adasr._cli.play_cmd import load_engine
    from adasr.estimate import calibrate_costs, package_costs, sample_load_share
    from adasr.runtime.player import PlayOptions, play
    from adasr.video import codec_for_suffix, probe

    codec_for_suffix(job.dst, codec)
    info = probe(job.src)
    engine = load_engine(model_path, job.scale, job.console, quiet=job.quiet, precision=job.precision,
                         calibration_video=job.src)
    fps = float(target_fps) if target_fps is not None else float(info.fps or 25)
    total = info.frame_count if max_frames is None else min(max_frames, info.frame_count or max_frames)
    hw = (info.height, info.width)
    load = sample_load_share()
    costs = package_costs(engine.package, load_share=load)
    if costs is not None:
        costs = calibrate_costs(engine.package, costs, hw, threads=_threads_for(load))
    estimate = reachable = None
    if costs is not None:
        fastest = costs.fastest()
        top = costs.fps(fastest, hw, engine.tile, engine.overlap)
        reachable = top >= fps
        estimate = total / min(fps, top)
        if not reachable:
            job.warn(f"smallest level runs about {top:.1f} FPS at {hw[1]}x{hw[0]} here; target {fps:g} FPS: "
                     f"frames will be late (without --realtime: the best level, as fast as it goes)")
    progress = Progress(TextColumn("[bold]upscale"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]} fps, level {task.fields[level]}"),
                        console=job.console, disable=job.quiet)
    with progress:
        task = progress.add_task("frames", total=total or None, fps="-", level="-")

        def on_frame(record: Any, state: Any) -> None:
            done = record.index + 1
            if done % 5 == 0 or done == total:
                rate = done / max(1e-9, record.ready_time)
                progress.update(task, completed=done, fps=f"{rate:.1f}", level=str(record.level))

        result = play(engine, job.src, PlayOptions(target_fps=fps, policy="lookup", out=job.dst, codec=codec,
                                                   crf=crf, preset=preset, max_frames=max_frames, info=info,
                                                   on_frame=on_frame, pace=True))
        progress.update(task, completed=len(result.stats.frames))
    summary = result.summary()
    summary.update(profile_source=engine.profile_source, mode="realtime", estimated_s=estimate,
                   estimate_source=None if costs is None else costs.source, target_reachable=reachable)
    job.report(summary, f"wrote {job.dst}: {summary['frames']} frames {summary['out_size'][0]}x"
                        f"{summary['out_size'][1]}, {summary['mean_fps']:.1f} FPS (target {fps:.1f}), deadlines met "
                        f"{100 * summary['deadlines_met']:.1f}%, {summary['switches']} level changes")


# -- a single model file ------------------------------------------------------------------------------

def _single_model(job: _Job, model: Any, spec: Any, tile: int, codec: str, crf: int, preset: str | None,
                  max_frames: int | None) -> None:
    """One model: nothing to choose; the estimate (a quick timing) and, with a budget, whether it fits."""
    import time

    from adasr.estimate import LARGE_IMAGE_S, TIMING_CAP, LevelCosts, format_seconds
    from adasr.images import is_image_path
    from adasr.runtime.profile import measure_latency
    from adasr.upscale import upscale_image_file, upscale_video_file

    def estimate_for(hw: tuple[int, int], frames: int) -> tuple[float, str]:
        cap = (min(hw[0], TIMING_CAP), min(hw[1], TIMING_CAP))
        sample = measure_latency(model, None, cap, warmup=1, repeats=1, channels_last=False)  # as sr_array runs
        costs = LevelCosts((max(sample.median_s, 1e-9),), cap, "timed", "a quick timing of one frame here")
        return costs.seconds_for(0, hw, frames, tile), costs.source

    def check_budget(est: float, source: str, clip_s: float | None, what: str) -> float | None:
        if job.budget is None:
            return None
        budget_s = job.budget.seconds(clip_s)
        if est > budget_s:
            line = (f"{what}: time budget {format_seconds(budget_s)} is out of reach: {spec.arch} needs about "
                    f"{format_seconds(est)} here (from {source})")
            if job.strict:
                raise ConfigError(f"{line}; --strict refuses")
            job.warn(f"{line}; running it anyway")
        return budget_s

    if is_image_path(job.src):
        from adasr.images import read_image

        img = read_image(job.src)
        hw = (img.height, img.width)
        what = f"{job.src.name}: {_sizes(hw, spec.scale)}"
        est = source = budget_s = None
        if job.budget is not None or hw[0] * hw[1] > 4 * TIMING_CAP * TIMING_CAP:
            est, source = estimate_for(hw, 1)
            budget_s = check_budget(est, source, None, what)
            if est >= LARGE_IMAGE_S or job.budget is not None:
                job.say(f"{what} with {spec.arch}: about {format_seconds(est)} here (from {source})")
        start = time.perf_counter()
        w, h = upscale_image_file(model, spec.scale, job.src, job.dst, tile=tile, image=img)
        seconds = time.perf_counter() - start
        job.report({"output": str(job.dst), "width": w, "height": h, "model": spec.arch, "mode": job.mode,
                    "estimated_s": est, "estimate_source": source, "budget_s": budget_s, "seconds": seconds},
                   f"wrote {job.dst} ({w}x{h}, x{spec.scale} with {spec.arch})")
        return
    from adasr.estimate import RunningEstimate
    from adasr.video import codec_for_suffix, probe

    codec_for_suffix(job.dst, codec)  # refuse an unknown container or codec before any work
    info = probe(job.src)
    fps = float(info.fps or 25)
    total = info.frame_count if max_frames is None else min(max_frames, info.frame_count)
    hw = (info.height, info.width)
    what = f"{job.src.name}: {total} frames {_sizes(hw, spec.scale)}"
    est, source = estimate_for(hw, total)
    budget_s = check_budget(est, source, total / fps, what)
    job.say(f"{what} with {spec.arch}: about {format_seconds(est)} here (from {source})")
    running = RunningEstimate(est / total if total else None, total)
    progress = Progress(TextColumn("[bold]upscale"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]} fps"), TextColumn("eta {task.fields[eta]}"),
                        console=job.console, disable=job.quiet)
    with progress:
        task = progress.add_task("frames", total=None, fps="-", eta=format_seconds(est))
        start = time.perf_counter()

        def on_frame(done: int, total_: int) -> None:
            elapsed = time.perf_counter() - start
            remaining = running.update(done, elapsed)
            progress.update(task, completed=done, total=total_ or None, fps=f"{done / max(1e-9, elapsed):.1f}",
                            eta=format_seconds(remaining))

        summary = upscale_video_file(model, spec.scale, job.src, job.dst, codec=codec, crf=crf, preset=preset,
                                     max_frames=max_frames, on_frame=on_frame, info=info, tile=tile)
    job.report({"output": str(job.dst), "frames": summary.frames, "out_size": [summary.width, summary.height],
                "source_fps": summary.fps, "model": spec.arch, "mode": job.mode, "seconds": summary.seconds,
                "mean_fps": summary.sr_fps, "estimated_s": est, "estimate_source": source, "budget_s": budget_s},
               f"wrote {job.dst}: {summary.frames} frames {summary.width}x{summary.height} at {summary.fps:g} fps; "
               f"{summary.sr_fps:.1f} frames/s end to end with {spec.arch} x{spec.scale} "
               f"({format_seconds(summary.seconds)}, estimated {format_seconds(est)})")
