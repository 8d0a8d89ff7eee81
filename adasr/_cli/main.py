"""`adasr` command line: thin wrappers over the library; one-line errors, non-zero exits."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, out, parse_size
from adasr._cli.common import set_threads as _threads
from adasr.errors import AdasrError, ConfigError

app = typer.Typer(
    name="adasr",
    help="Adaptive neural super-resolution: train, evaluate and run SR models on images and video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _parse_args(pairs: list[str]) -> dict:
    args = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"--arg wants NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            args[key] = json.loads(value)
        except json.JSONDecodeError:
            args[key] = value
    return args


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoint, config.json, model.safetensors.")],
    arch: Annotated[str, typer.Option(help="Architecture: fsrcnn, espcn, imdn, ...")] = "fsrcnn",
    supernet: Annotated[Optional[str], typer.Option(help="Train a supernet over this search space (tiny, base-x2, base-x3, base-x4) instead of --arch.")] = None,
    recipe: Annotated[str, typer.Option(help="Supernet phases: progressive (OFA shrinking + sandwich), sandwich, or single (largest only).")] = "progressive",
    scale: Annotated[int, typer.Option(help="Upscaling factor (2, 3 or 4).")] = 2,
    data: Annotated[Optional[list[Path]], typer.Option(help="HR image folder or video file (repeatable). Default: the shared SunHays80 photos.")] = None,
    val: Annotated[Optional[str], typer.Option(help="Validation set: a benchmark name (Set5) or folder; 'none' to skip.")] = "Set5",
    steps: Annotated[int, typer.Option(help="Training steps.")] = 10000,
    batch_size: Annotated[int, typer.Option(help="Patches per step.")] = 16,
    patch: Annotated[int, typer.Option(help="LR patch side in pixels.")] = 48,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adam).")] = 1e-3,
    schedule: Annotated[str, typer.Option(help="cosine, step or constant.")] = "cosine",
    hfen_weight: Annotated[float, typer.Option(help="Weight of the HFEN loss next to L1 (DLSR uses 0.2).")] = 0.2,
    ema: Annotated[float, typer.Option(help="EMA decay of the weights (0 = off).")] = 0.0,
    val_every: Annotated[int, typer.Option(help="Validate every N steps.")] = 500,
    ckpt_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    arg: Annotated[Optional[list[str]], typer.Option(help="Architecture argument NAME=VALUE (repeatable, JSON values).")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="Warm start: copy the tensors of this model file whose names and shapes match (e.g. an x4 supernet from a trained x2 one).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of training options (CLI options are ignored except --out).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")] = False,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (and save) after this much training time.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a model with the one training loop (L1 + HFEN, Adam, checkpoints, exact resume)."""
    from adasr.paths import benchmark_dir, data_root
    from adasr.train import TrainConfig, Trainer

    _threads(threads)
    if config is not None:
        try:
            cfg = TrainConfig.from_dict(json.loads(Path(config).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read training config {config}: {exc}") from None
    else:
        sources = [str(p) for p in (data or [data_root() / "train" / "SunHays80"])]
        val_dir = None if val in (None, "none") else str(benchmark_dir(val))
        arch_args, phases = _parse_args(arg or []), None
        if supernet is not None:
            from adasr.space import SearchSpace
            from adasr.train.sampling import recipe as make_recipe

            try:
                space = SearchSpace.named(supernet, scale=scale)
                phases = make_recipe(recipe, steps)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            arch, arch_args = "supernet", {"space": space.to_dict()}
        cfg = TrainConfig(arch=arch, scale=scale, train_data=tuple(sources), arch_args=arch_args,
                          **({"phases": phases} if phases else {}),
                          val_data=val_dir, patch=patch, batch_size=batch_size, steps=steps, lr=lr,
                          schedule=schedule, hfen_weight=hfen_weight, ema=ema, val_every=val_every,
                          ckpt_every=ckpt_every, seed=seed, init_from=None if init_from is None else str(init_from))
    from adasr._cli.progress import TrainProgress

    with TrainProgress(enabled=not quiet, console=console) as progress:
        trainer = Trainer(cfg, out_dir, device=device, resume=resume, max_minutes=max_minutes,
                          on_event=progress.event)
        state = trainer.run()
    last = state.history[-1] if state.history else {}
    psnr = ", ".join(f"{k} {v:.2f} dB" for k, v in last.items() if k.startswith("psnr"))
    out.print(f"trained {state.step} steps in {state.seconds / 60:.1f} min; {psnr or 'no validation'}; "
              f"model: {out_dir / 'model.safetensors'}")


@app.command("eval")
def eval_cmd(
    models: Annotated[Optional[list[Path]], typer.Argument(help="Model files to evaluate.")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="Untrained reference to include: bicubic (repeatable).")] = None,
    data: Annotated[Optional[list[str]], typer.Option(help="Benchmark names or HR folders (default Set5 and Set14).")] = None,
    scale: Annotated[Optional[list[int]], typer.Option(help="Scales to evaluate (default: each model's own; 2,3,4 for bicubic).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the table as JSON here.")] = None,
    subnet: Annotated[Optional[list[str]], typer.Option(help="For a supernet file: sub-network id to evaluate (repeatable).")] = None,
    spread: Annotated[int, typer.Option(help="For a supernet file without --subnet: N sub-networks from smallest to largest.")] = 2,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Evaluate models with the standard SR protocol (PSNR/SSIM on Y, border = scale).

    A supernet file is evaluated per sub-network (each extracted as a static model)."""
    from adasr._cli.evaltable import run_eval

    _threads(threads)
    if not models and not baseline:
        baseline = ["bicubic"]
    run_eval(models or [], baseline or [], data or ["Set5", "Set14"], scale, json_out, out, subnet, spread)


@app.command()
def upscale(
    input: Annotated[Path, typer.Argument(help="Image (png, jpg, ...) or video (mp4, mkv, avi, ...).")],
    output: Annotated[Path, typer.Argument(help="Output file; its suffix picks the format.")],
    scale: Annotated[int, typer.Option(help="Upscaling factor; picks the bundled model unless --model is given.")] = 2,
    model: Annotated[Optional[Path], typer.Option(help="Package (folder or .adasr) or single model file "
                                                  "(default: the bundled package for --scale).")] = None,
    level: Annotated[Optional[str], typer.Option(help="Package level: best (the default: quality first), an index "
                                                 "(0 = fastest), or auto (videos: the same as --realtime).")] = None,
    time_budget: Annotated[Optional[str], typer.Option(help="Best level whose estimate fits this time: 90s, 2m, 1h, "
                                                       "or 1x / 0.5x (multiples of the clip's length).")] = None,
    strict: Annotated[bool, typer.Option(help="With --time-budget: refuse (exit 5) when even the fastest level "
                                         "does not fit, instead of running it.")] = False,
    realtime: Annotated[bool, typer.Option(help="Live transcoding: the adaptive runtime holds the video's frame "
                                           "rate (or --target-fps), switching levels as the CPU allows.")] = False,
    target_fps: Annotated[Optional[float], typer.Option(help="Frame rate --realtime holds (default: the video's); "
                                                        "implies --realtime.")] = None,
    codec: Annotated[str, typer.Option(help="Video codec: h264, h265 or av1.")] = "h264",
    crf: Annotated[int, typer.Option(help="Video quality (constant rate factor, lower = better).")] = 20,
    preset: Annotated[Optional[str], typer.Option(help="Encoder preset (default: the codec's own).")] = None,
    tile: Annotated[int, typer.Option(help="Process frames in tiles of this many LR pixels (bounded memory).")] = 256,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop a video after this many frames.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar and no estimate line (warnings still show).")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help="Print a JSON summary (mode, level histogram, "
                                               "estimated and actual seconds; --realtime: deadline share) "
                                               "instead of a sentence.")] = False,
) -> None:
    """Upscale an image or a video (frame rate, rotation and audio are kept): the best level by default,
    the best that fits --time-budget, or --realtime; one line up front says what runs and how long it takes."""
    from adasr._cli.upscale_cmd import run_upscale

    _threads(threads)
    run_upscale(input, output, scale, model, codec, crf, preset, tile, max_frames, quiet, out, console,
                level=level, target_fps=target_fps, json_summary=json_summary, time_budget=time_budget,
                realtime=realtime, strict=strict)


@app.command()
def play(
    video: Annotated[Path, typer.Argument(help="Video file to play (its frames are the LR input).")],
    target_fps: Annotated[Optional[float], typer.Option(help="Display rate to hold (default: the video's).")] = None,
    policy: Annotated[str, typer.Option(help="lookup (DySR Algorithm 1 on the profile, calibrated online), reactive "
                                        "(Dynamic-OFA runtime manager) or fixed (one level).")] = "lookup",
    level: Annotated[str, typer.Option(help="Starting level (fixed: the level): auto, best or an index.")] = "auto",
    trace: Annotated[Optional[str], typer.Option(help="Background CPU load to replay while playing: bursty, stable, "
                                                 "random or a CSV file (time,load).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Package (default: the bundled one for --scale).")] = None,
    scale: Annotated[int, typer.Option(help="Upscaling factor (picks the bundled package).")] = 2,
    lr_size: Annotated[Optional[str], typer.Option(help="Resize frames to WxH before SR (e.g. 320x180).")] = None,
    reference_every: Annotated[int, typer.Option(help="With --lr-size: score every N-th frame against the source "
                                                 "(PSNR vs bicubic); 0 = off.")] = 0,
    output: Annotated[Optional[Path], typer.Option("--out", help="Also write the upscaled video here.")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the QoS summary as JSON here.")] = None,
    timeline: Annotated[Optional[Path], typer.Option(help="Write a timeline PNG (level, FPS, latency, load).")] = None,
    quiet: Annotated[bool, typer.Option(help="No live view; print the summary only.")] = False,
) -> None:
    """Play a video through the adaptive runtime with a live view of level, FPS, load, switches and misses."""
    from adasr._cli.play_cmd import run_play

    if policy not in ("lookup", "reactive", "fixed"):
        raise ConfigError(f"--policy must be lookup, reactive or fixed, got {policy!r}")
    size = None
    if lr_size is not None:
        h, w = _parse_hw(lr_size)
        size = (w, h)
    run_play(video, model=model, scale=scale, target_fps=target_fps, policy=policy, level=level, trace=trace,
             lr_size=size, output=output, max_frames=max_frames, json_out=json_out, timeline=timeline,
             reference_every=reference_every, quiet=quiet, out=out, console=console)


def _parse_hw(text: str) -> tuple[int, int]:
    w, h = parse_size(text, "frame size")
    return h, w


@app.command()
def search(
    model: Annotated[Path, typer.Argument(help="Trained supernet model file (from adasr train --supernet).")],
    package_path: Annotated[Path, typer.Option("--out", "-o", help="Package to write: a folder, or a single file ending in .adasr.")],
    strategy: Annotated[str, typer.Option(help="ofa (Dynamic-OFA Algorithm 1 + evolution + Pareto front) or dysr (adaptation-aware binning, Eq. 1).")] = "ofa",
    cost: Annotated[str, typer.Option(help="Latency model for the search: table (per-op LUT timed here), macs or measured.")] = "table",
    val: Annotated[str, typer.Option(help="Validation set for the fast PSNR evaluator (crops).")] = "Set5",
    size: Annotated[str, typer.Option(help="LR frame size WxH the levels are profiled at.")] = "320x180",
    loads: Annotated[str, typer.Option(help="Resource levels: background CPU load shares, comma separated.")] = "0,0.5",
    repeats: Annotated[int, typer.Option(help="Frames per latency measurement (median).")] = 20,
    predictor_samples: Annotated[int, typer.Option(help="Train the quality predictor on N sampled configs and report Kendall tau (0 = skip).")] = 0,
    baseline: Annotated[Optional[list[Path]], typer.Option(help="Baseline model files to place on the Pareto picture (repeatable).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the PSNR-vs-FPS picture (PNG) here.")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="Strategy parameter NAME=VALUE (e.g. bins=5, per_bin=2, max_levels=10).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the search report as JSON here.")] = None,
    above_bicubic: Annotated[bool, typer.Option(help="Keep only levels that beat bicubic on the validation crops.")] = True,
    trim: Annotated[bool, typer.Option(help="Ship only the ops the levels use (same outputs, less memory).")] = True,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Search a family of levels in a trained supernet, profile it here, write a package."""
    from rich.table import Table

    from adasr._atomic import check_writable, write_bytes_atomic
    from adasr.search.run import run_search

    for path in (plot, json_out):
        if path is not None:
            check_writable(path)
    try:
        shares = tuple(float(v) for v in loads.split(","))
    except ValueError:
        raise ConfigError(f"--loads wants numbers like 0,0.5; got {loads!r}") from None
    last = {"stage": None}

    def progress(stage: str, done: int, total: int) -> None:
        if not quiet and (stage != last["stage"] or done == total):
            console.print(f"  {stage}: {done}/{total}", highlight=False)
            last["stage"] = stage

    report = run_search(model, package_path, strategy=strategy, val=val, cost=cost, lr_hw=_parse_hw(size), loads=shares,
                        repeats=repeats, threads=threads, seed=seed, predictor_samples=predictor_samples,
                        baselines=baseline or [], plot=plot, params=_parse_args(param or []),
                        floor_bicubic=above_bicubic, trim=trim, on_progress=progress)
    table = Table(title=f"{len(report['levels'])} levels ({strategy}, {cost}) on {report['device']}")
    for col in ("level", "config", "PSNR", "params", "GMACs", *[f"FPS@{k}" for k in sorted(report["levels"][0]["fps"])]):
        table.add_column(col, justify="left" if col == "config" else "right")
    for i, lv in enumerate(report["levels"]):
        table.add_row(str(i), lv["config"], f"{lv['psnr']:.2f}", f"{lv['params']:,}", f"{lv['macs'] / 1e9:.2f}",
                      *[f"{lv['fps'][k]:.1f}" for k in sorted(lv["fps"])])
    out.print(table, width=160)
    for p in report["baselines"]:
        out.print(f"  baseline {p['label']}: {p['psnr']:.2f} dB at {p['fps']:.1f} FPS")
    if report.get("dropped_below_bicubic"):
        out.print(f"  dropped {len(report['dropped_below_bicubic'])} level(s) that do not beat bicubic "
                  f"({report['bicubic_psnr']:.2f} dB on the crops)")
    if report.get("dropped_dominated"):
        out.print(f"  dropped {len(report['dropped_dominated'])} level(s) that another level beats on measured speed and PSNR")
    if "table_median_rel_error" in report:
        out.print(f"  latency table: median error {report['table_median_abs_error_s'] * 1e3:.2f} ms "
                               f"({report['table_median_rel_error'] * 100:.1f}%) against measured levels")
    if "predictor" in report:
        out.print(f"  quality predictor: Kendall tau {report['predictor']['kendall_tau']:.3f} on "
                               f"{report['predictor']['held_out']} held-out configs")
    out.print(f"  search {report['search_seconds']} s, whole command {report['wall_seconds']} s; package {package_path}")
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(report, indent=2) + "\n").encode())


@app.command()
def profile(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    loads: Annotated[str, typer.Option(help="Resource levels: background CPU load shares, comma separated.")] = "0,0.5",
    repeats: Annotated[int, typer.Option(help="Frames per measurement (median).")] = 20,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    thread_rule: Annotated[str, typer.Option(help="auto: loaded columns with one thread, as the runtime runs them; "
                                             "fixed: every column with --threads.")] = "auto",
    cache: Annotated[bool, typer.Option(help="Store the profile in the user's cache folder instead of the package "
                                        "(for read-only packages such as the bundled ones).")] = False,
) -> None:
    """Re-profile a package's levels on this device (how you bring your own phone or GPU)."""
    from adasr._atomic import write_bytes_atomic
    from adasr.package import load_package
    from adasr.runtime.profile import profile_cache_path, profile_package

    try:
        shares = tuple(float(v) for v in loads.split(","))
    except ValueError:
        raise ConfigError(f"--loads wants numbers like 0,0.5; got {loads!r}") from None
    pkg = load_package(package)
    prof = profile_package(pkg, levels=shares, repeats=repeats, threads=threads, device=device, table=False,
                           thread_rule=thread_rule)
    if cache:
        where = profile_cache_path(pkg, prof["device"])
        where.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(where, json.dumps(prof, indent=1).encode("utf-8"))
        pkg.profiles[prof["device"]] = prof
    else:
        where = package
        pkg.add_profile(prof["device"], prof)
    family = pkg.family_for(prof["device"])
    for i, lv in enumerate(family):
        fps = ", ".join(f"{name}: {1 / s:.1f}" for name, s in sorted((lv.measured_s or {}).items()))
        out.print(f"level {i} {lv.config.id}: {lv.psnr:.2f} dB, FPS {fps}", highlight=False)
    out.print(f"profile {prof['device']} stored in {where}")


@app.command()
def info(model: Annotated[Path, typer.Argument(help="Model file (.safetensors) or package (folder or .adasr).")]) -> None:
    """Show what a model file or package holds: architecture, scale, parameters, MACs, levels."""
    from adasr.modelfile import load_model

    if model.is_dir() or model.suffix == ".adasr":
        from adasr.package import load_package

        summary = load_package(model).summary()
        out.print(f"[bold]{model}[/bold] package v{summary['schema_version']}, x{summary['scale']}, "
                  f"supernet {summary['supernet_bytes'] / 1e6:.2f} MB, profiles: {', '.join(summary['profiles']) or 'none'}")
        for i, lv in enumerate(summary["levels"]):
            out.print(f"  level {i}: {lv['config']}  {lv['psnr']:.2f} dB  {lv['params']:,} params", highlight=False)
        return
    from adasr.nn.cost import count_macs, count_params

    net, spec = load_model(model)
    lr_hw = (round(720 / spec.scale), round(1280 / spec.scale))
    out.print(f"[bold]{model}[/bold]")
    out.print(f"  architecture  {spec.arch} {json.dumps(spec.args, sort_keys=True)}")
    out.print(f"  scale         x{spec.scale}")
    out.print(f"  parameters    {count_params(net):,}")
    if hasattr(net, "space"):  # a supernet: describe its space and its extreme levels
        out.print(f"  search space  {net.space.size():,} sub-networks")
        for label, cfg in (("smallest", net.space.smallest()), ("largest", net.space.largest())):
            params, macs = net.cost(cfg, lr_hw=lr_hw)
            out.print(f"  {label:<13} {cfg.id}: {params:,} params, {macs / 1e9:.2f} GMACs at 1280x720 output")
    else:
        out.print(f"  MACs          {count_macs(net, lr_hw) / 1e9:.2f} G at 1280x720 output")
    out.print(f"  schema        v{spec.schema_version}")
    for key, value in spec.info.items():
        out.print(f"  {key:<13} {json.dumps(value)}")


@app.command()
def demo(
    scale: Annotated[int, typer.Option(help="Scale of the bundled package to run.")] = 2,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the demo outputs.")] = Path("out"),
    target_fps: Annotated[float, typer.Option(help="Frame rate the runtime holds.")] = 15.0,
    trace: Annotated[str, typer.Option(help="Background load: bursty, stable, random or a CSV file.")] = "bursty",
    quiet: Annotated[bool, typer.Option(help="No live view; print the summary only.")] = False,
) -> None:
    """The main job of `make run`: adaptive SR of the bundled clip under a bursty CPU load.

    Prints the QoS summary and the PSNR gain over bicubic; writes the video, a timeline PNG and JSON."""
    from adasr._cli.demo import run_demo

    run_demo(scale, out_dir, out, console, target_fps=target_fps, trace=trace, quiet=quiet)


bench_app = typer.Typer(help="Benchmarks that run competitors side by side and report ratios.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

from adasr._cli.stream_cmd import register as _register_stream  # noqa: E402  (encode, decode, bench codec)

_register_stream(app, bench_app)


@bench_app.command("memory")
def bench_memory(
    space: Annotated[str, typer.Option(help="Named search space (base-x2, base-x4, tiny).")] = "base-x2",
    levels: Annotated[int, typer.Option(help="How many levels, spread from smallest to largest.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the level spread.")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Weight memory: one supernet vs the same levels as separate models (DySR's Assembled)."""
    from adasr._atomic import check_writable, write_bytes_atomic
    from adasr.bench.memory import memory_report

    if json_out is not None:
        check_writable(json_out)
    rep = memory_report(space, levels, seed)
    out.print(f"space {space}: {len(rep.levels)} levels from {rep.levels[0]} to {rep.levels[-1]}")
    out.print(f"  supernet (all levels)     {rep.supernet_bytes / 1e6:8.3f} MB")
    out.print(f"  assembled (separate)      {rep.assembled_bytes / 1e6:8.3f} MB")
    out.print(f"  largest level alone       {rep.largest_bytes / 1e6:8.3f} MB")
    out.print(f"  saving vs assembled       {rep.saving * 100:7.1f} %")
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(rep.to_dict(), indent=2) + "\n").encode())


@bench_app.command("adaptivity")
def bench_adaptivity(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file (from adasr search).")],
    video: Annotated[Path, typer.Option(help="Real clip whose frames are upscaled.")],
    trace: Annotated[str, typer.Option(help="Background load trace: bursty, stable, random, or a CSV file (time,load).")] = "bursty",
    seconds: Annotated[float, typer.Option(help="Length of each runner's run.")] = 20.0,
    target_fps: Annotated[Optional[float], typer.Option(help="Display rate to hold (default: the median level's idle FPS).")] = None,
    policy: Annotated[str, typer.Option(help="lookup (DySR Algorithm 1 on the profile) or reactive (Dynamic-OFA).")] = "lookup",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for adaptivity.json and the PNGs.")] = Path("out/adaptivity"),
    seed: Annotated[int, typer.Option(help="Seed of the trace.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    thread_rule: Annotated[str, typer.Option(help="auto: every core while the CPU is otherwise idle, one thread under "
                                             "background load; fixed: keep --threads throughout.")] = "auto",
) -> None:
    """adasr vs Static (reload on switch) vs Assembled (all resident) under one load trace."""
    from adasr.bench.adaptivity import run_adaptivity, summary_rows

    _threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = run_adaptivity(package, video, trace=trace, seconds=seconds, target_fps=target_fps, policy=policy,
                            seed=seed, out_dir=out_dir, thread_rule=thread_rule,
                            on_progress=lambda stage, done, total: console.print(f"  {stage}: {done}/{total}"))
    rows = summary_rows(result)
    _print_rows(f"trace {trace}, target {result['target_fps']:.1f} FPS, policy {policy}, {seconds:g} s per runner",
                rows)
    out.print(f"wrote {out_dir / 'adaptivity.json'} and PNGs")


def _print_rows(title: str, rows: list[dict]) -> None:
    """A rich table of dict rows (first column left-aligned), 3 decimals for floats."""
    from rich.table import Table

    table = Table(title=title)
    for i, key in enumerate(rows[0]):
        table.add_column(str(key), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    out.print(table, width=160)


@bench_app.command("multi")
def bench_multi(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    video: Annotated[list[Path], typer.Option(help="One real clip per workload (repeat: two or more workloads).")],
    target_fps: Annotated[list[float], typer.Option(help="One target FPS per workload, in the order of --video.")],
    seconds: Annotated[float, typer.Option(help="Length of each mode's run.")] = 15.0,
    mode: Annotated[Optional[list[str]], typer.Option(help="joint, independent, fixed (repeatable; default all).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for multi.json and multi_levels.png.")] = Path("out/multi"),
) -> None:
    """Several workloads sharing the CPU: Dynamic-OFA's joint manager vs independent managers vs fixed levels."""
    from adasr.bench.multi import run_multi, summary_rows

    result = run_multi(package, video, target_fps, seconds=seconds, modes=tuple(mode or ("joint", "independent", "fixed")),
                       out_dir=out_dir)
    rows = summary_rows(result)
    _print_rows(f"{len(video)} workloads sharing the CPU, {seconds:g} s per mode", rows)
    out.print(f"wrote {out_dir / 'multi.json'} and {out_dir / 'multi_levels.png'}")


@bench_app.command("pipeline")
def bench_pipeline(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    video: Annotated[list[Path], typer.Option(help="Clip to upscale at its own size (repeatable).")],
    level: Annotated[int, typer.Option(help="Level to run (0 = fastest).")] = 0,
    max_frames: Annotated[int, typer.Option(help="Frames per clip.")] = 30,
    codec: Annotated[str, typer.Option(help="Output codec.")] = "h264",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for pipeline.json.")] = Path("out/pipeline"),
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Decode, SR and encode alone against the whole upscale pipeline (where it loses time)."""
    from rich.table import Table

    from adasr.bench.pipeline import run_pipeline

    _threads(threads)
    result = run_pipeline(package, video, level=level, max_frames=max_frames, codec=codec, out_dir=out_dir)
    table = Table(title=f"level {level} ({result['config']}), {codec}, {result['threads']} torch threads")
    for col in ("clip", "LR", "decode FPS", "SR FPS", "encode FPS", "end-to-end FPS", "e2e / SR"):
        table.add_column(col, justify="left" if col == "clip" else "right")
    for r in result["clips"]:
        table.add_row(Path(r["video"]).name, "x".join(map(str, r["lr_size"])), f"{r['decode_fps']:.1f}",
                      f"{r['sr_fps']:.1f}", f"{r['encode_fps']:.1f}", f"{r['end_to_end_fps']:.1f}",
                      f"{r['end_to_end_over_sr']:.2f}")
    out.print(table, width=160)
    out.print(f"wrote {out_dir / 'pipeline.json'}")


@bench_app.command("overhead")
def bench_overhead(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    rounds: Annotated[int, typer.Option(help="Alternating rounds (supernet, extracted) per level.")] = 5,
    repeats: Annotated[int, typer.Option(help="Frames per measurement (median).")] = 10,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON here.")] = None,
) -> None:
    """Each level run inside the supernet vs the same level extracted standalone (time ratio)."""
    from adasr._atomic import check_writable, write_bytes_atomic
    from adasr.bench.overhead import run_overhead

    if json_out is not None:
        check_writable(json_out)
    result = run_overhead(package, rounds=rounds, repeats=repeats, threads=threads)
    for row in result["levels"]:
        out.print(f"level {row['level']}: supernet {row['supernet_s'] * 1e3:7.2f} ms, extracted "
                  f"{row['extracted_s'] * 1e3:7.2f} ms, ratio {row['ratio']:.3f}  {row['config']}", highlight=False)
    out.print(f"median ratio {result['median_ratio']:.3f}, max {result['max_ratio']:.3f} ({result['device']})")
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(result, indent=2) + "\n").encode())


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); adasr errors become one line."""
    try:
        app()  # standalone: parses, runs, and exits with the command's status
    except AdasrError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]; no partial output was left behind")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("ADASR_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        console.print(f"[red]internal error:[/red] {type(exc).__name__}: {first} (set ADASR_DEBUG=1 for the traceback)",
                      markup=True, highlight=False, soft_wrap=True)
        sys.exit(70)
