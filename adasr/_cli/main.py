"""`adasr` command line: thin wrappers over the library; one-line errors, non-zero exits."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from adasr._cli.common import console, explicit, out, parse_hw, parse_shares
from adasr._cli.common import set_threads as _threads
from adasr._cli.ddp import NPROC_HELP, TIMEOUT_HELP
from adasr.errors import AdasrError, ConfigError

__all__ = ["app", "bench_app", "main"]  # the commands register on `app`

app = typer.Typer(
    name="adasr",
    help="Adaptive neural super-resolution: train, evaluate and run SR models on images and video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _parse_args(pairs: list[str], option: str = "--arg") -> dict:
    args = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"{option} wants NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            args[key] = json.loads(value)
        except json.JSONDecodeError:
            args[key] = value
    return args


@app.command()
def train(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoint, config.json, model.safetensors.")],
    arch: Annotated[str, typer.Option(help="Architecture: fsrcnn, espcn, imdn, ...")] = "fsrcnn",
    supernet: Annotated[Optional[str], typer.Option(help="Train a supernet over this search space instead of --arch: a bundled name (lite-x2, lite-x3, lite-x4, base-x2, base-x3, base-x4, tiny) or a space JSON file.")] = None,
    recipe: Annotated[str, typer.Option(help="Supernet phases: lite (largest + smallest + one random, no distillation; the bundled packages), progressive (OFA shrinking + sandwich), sandwich, or single (largest only).")] = "progressive",
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
    anchors: Annotated[Optional[Path], typer.Option(help="Train the configs that ship: a package (its levels) or a JSON list of sub-network ids, smallest first; each sandwich step trains the largest, the first anchor and random other anchors instead of random configs of the space.")] = None,
    grad_clip: Annotated[float, typer.Option(help="Clip the global gradient norm of each update to this (0 = off).")] = 0.0,
    small_steps: Annotated[int, typer.Option(help="Supernets: extra updates per step of the sub-networks other than the largest (the smallest and random ones), each on its own batch of --small-patch patches: the cheap levels get several updates per update of the costly largest one.")] = 0,
    small_patch: Annotated[int, typer.Option(help="LR patch side of the --small-steps updates.")] = 16,
    small_until: Annotated[float, typer.Option(help="Fraction of the steps after which the --small-steps updates stop (1 = the whole run): the rest trains as the recipe alone, so the largest sub-network has the end of the schedule to itself.")] = 1.0,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of training options (the training options above are then ignored; --out, --threads, --nproc, --device and --max-minutes still apply).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped, with the settings stored in its "
                                         "checkpoint (options given again must agree with them).")] = False,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (and save) after this much training time.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    nproc: Annotated[int, typer.Option(help=NPROC_HELP)] = 1,
    dist_timeout: Annotated[float, typer.Option(help=TIMEOUT_HELP)] = 30.0,
) -> None:
    """Train a model with the one training loop (L1 + HFEN, Adam, checkpoints, exact resume);
    data-parallel with --nproc N or under `torchrun --nproc-per-node N -m adasr train ...`."""
    import contextlib

    from adasr._atomic import removed_if_empty
    from adasr._cli.ddp import joined, launched
    from adasr.errors import OutputError
    from adasr.train import Trainer

    _threads(threads)
    if launched(nproc, threads):
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out must be a run folder, but {out_dir} is a file")
    options = dict(arch=arch, supernet=supernet, recipe=recipe, scale=scale, data=data, val=val, steps=steps,
                   batch_size=batch_size, patch=patch, lr=lr, schedule=schedule, hfen_weight=hfen_weight, ema=ema,
                   val_every=val_every, ckpt_every=ckpt_every, seed=seed, arg=arg, init_from=init_from,
                   anchors=anchors, small_steps=small_steps, small_patch=small_patch, small_until=small_until,
                   grad_clip=grad_clip)
    if config is not None:
        try:
            cfg = _config_file(config)
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read training config {config}: {exc}") from None
        if cfg.arch != "supernet":
            import dataclasses

            from adasr.nn.registry import resolve_args

            cfg = dataclasses.replace(cfg, arch_args=resolve_args(cfg.arch, cfg.arch_args))
    elif resume:
        cfg = _resumed_config(out_dir, {k: options[k] for k in explicit(ctx, options)})
    else:
        cfg = _train_config(**options)
    _check_arch(cfg)
    from adasr._cli.progress import TrainProgress

    with joined(device, dist_timeout) as (dist, device):
        folder = removed_if_empty(out_dir) if dist.main else contextlib.nullcontext()
        with folder, TrainProgress(enabled=not quiet and dist.main, console=console) as progress:
            trainer = Trainer(cfg, out_dir, device=device, resume=resume, max_minutes=max_minutes,
                              on_event=progress.event if dist.main else None, dist=dist)
            state = trainer.run()
    if not dist.main:
        return
    last = state.history[-1] if state.history else {}
    psnr = ", ".join(f"{k} {v:.2f} dB" for k, v in last.items() if k.startswith("psnr"))
    out.print(f"trained {state.step} steps in {state.seconds / 60:.1f} min; {psnr or 'no validation'}; "
              f"model: {out_dir / 'model.safetensors'}")


def _config_file(path: Path):
    from adasr.train import TrainConfig

    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"training config {path} must be a JSON object")
    return TrainConfig.from_dict(data)


def _train_config(*, arch, supernet, recipe, scale, data, val, steps, batch_size, patch, lr, schedule, hfen_weight,
                  ema, val_every, ckpt_every, seed, arg, init_from, anchors=None, small_steps=0, small_patch=16,
                  small_until=1.0, grad_clip=0.0):
    """The TrainConfig that `adasr train`'s options describe."""
    from adasr.paths import benchmark_dir, data_root
    from adasr.train import TrainConfig

    sources = [str(p) for p in (data or [data_root() / "train" / "SunHays80"])]
    val_dir = None if val in (None, "none") else str(benchmark_dir(val))
    arch_args, phases = _parse_args(arg or []), None
    if small_until < 1 and not small_steps:
        raise ConfigError("--small-until needs --small-steps")
    if supernet is not None:
        arch, arch_args, phases = "supernet", {"space": _space_dict(supernet, scale)}, _phases(recipe, steps)
        if anchors is not None:
            phases = _anchored(phases, anchors, arch_args["space"])
        if small_steps:
            from adasr.train.sampling import with_small_steps

            phases = with_small_steps(phases, small_steps, small_patch, _small_until_step(small_until, steps))
    elif anchors is not None or small_steps:
        raise ConfigError(f"{'--anchors' if anchors is not None else '--small-steps'} needs --supernet")
    else:
        from adasr.nn.registry import resolve_args

        arch_args = resolve_args(arch, arch_args)  # e.g. a dlsr genotype file -> its content
    return TrainConfig(arch=arch, scale=scale, train_data=tuple(sources), arch_args=arch_args,
                       **({"phases": phases} if phases else {}),
                       val_data=val_dir, patch=patch, batch_size=batch_size, steps=steps, lr=lr,
                       schedule=schedule, hfen_weight=hfen_weight, ema=ema, val_every=val_every,
                       ckpt_every=ckpt_every, seed=seed, init_from=None if init_from is None else str(init_from),
                       grad_clip=grad_clip)


def _small_until_step(fraction: float, steps: int) -> int | None:
    """--small-until as a step (None: the whole run)."""
    return None if fraction >= 1 else max(1, round(fraction * steps))


def _space_dict(name: str, scale: int) -> dict:
    from adasr.space import SearchSpace

    try:
        if name.endswith(".json") or os.sep in name:  # a user's space file, e.g. one widened for a GPU
            space = SearchSpace.from_file(name)
            if space.scale != scale:
                raise ConfigError(f"{name}: the space is x{space.scale}, but --scale is {scale}")
            return space.to_dict()
        return SearchSpace.named(name, scale=scale).to_dict()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _anchored(phases, source: Path, space: dict):
    """`--anchors`: the phases sampling from a package's levels or a JSON list of sub-network ids."""
    from adasr.errors import InputError
    from adasr.package import is_package_path, load_package
    from adasr.space import SearchSpace, SubnetConfig
    from adasr.train.config import MAX_ANCHORS
    from adasr.train.sampling import with_anchors

    if not source.exists():
        raise InputError(f"--anchors: {source} does not exist")
    if is_package_path(source):
        ids = [level.config.id for level in load_package(source).family.levels]
    else:
        try:
            if source.stat().st_size > 1 << 20:
                raise InputError(f"--anchors: {source} is larger than 1 MiB")
            ids = json.loads(source.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"--anchors: cannot read {source}: {exc}") from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InputError(f"--anchors: {source} must hold a JSON list of sub-network ids")
    if not 1 <= len(ids) <= MAX_ANCHORS:
        raise ConfigError(f"--anchors: between 1 and {MAX_ANCHORS} sub-networks are needed, {source} has {len(ids)}")
    space_obj = SearchSpace.from_dict(space)
    for i in ids:
        try:
            space_obj.validate(SubnetConfig.from_id(i))
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"--anchors: {exc}") from None
    return with_anchors(phases, ids)


def _phases(recipe: str, steps: int):
    from adasr.train.sampling import recipe as make_recipe

    try:
        return make_recipe(recipe, steps)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _resumed_config(out_dir: Path, given: dict):
    """`train --resume`: the checkpoint's settings; the options given again must agree with them."""
    import dataclasses

    from adasr.nn.registry import resolve_args
    from adasr.paths import benchmark_dir
    from adasr.train.loop import CHECKPOINT, read_checkpoint_config
    from adasr.train.sampling import small_steps_until

    ckpt = out_dir / CHECKPOINT
    if not ckpt.is_file():
        from adasr.errors import InputError

        raise InputError(f"nothing to resume: no {CHECKPOINT} in {out_dir}")
    stored = read_checkpoint_config(ckpt)
    space = stored.arch_args.get("space") if stored.arch == "supernet" else None
    # option -> (what the option says, what the checkpoint says), in the checkpoint's terms
    views = {
        "arch": lambda v: (v, stored.arch),
        "supernet": lambda v: (_space_dict(v, stored.scale), space),
        "recipe": lambda v: (dataclasses.replace(stored, phases=_phases(v, stored.steps)).to_dict()["phases"],
                             stored.to_dict()["phases"]),
        "data": lambda v: (tuple(str(p) for p in v), stored.train_data),
        "val": lambda v: (None if v == "none" else str(benchmark_dir(v)), stored.val_data),
        "arg": lambda v: (_parse_args(v) if stored.arch == "supernet" else resolve_args(stored.arch, _parse_args(v)),
                          stored.arch_args),
        "init_from": lambda v: (str(v), stored.init_from),
        "anchors": lambda v: (dataclasses.replace(stored, phases=_anchored(stored.phases, v, space)).to_dict()["phases"],
                              stored.to_dict()["phases"]),
        "small_steps": lambda v: (v, max(p.small_steps for p in stored.phases)),
        "small_patch": lambda v: (v, max((p.small_patch for p in stored.phases if p.small_steps), default=v)),
        "small_until": lambda v: (_small_until_step(v, stored.steps), small_steps_until(stored.phases)),
    }
    conflicts = []
    for name, value in given.items():
        mine, theirs = views[name](value) if name in views else (value, getattr(stored, name))
        if mine != theirs:
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            conflicts.append(f"--{name.replace('_', '-')} {shown}")
    if conflicts:
        raise ConfigError(f"--resume continues {out_dir} with the settings of its checkpoint; "
                          f"{', '.join(conflicts)} differ from them (leave them out, or train into another folder)")
    return stored


def _check_arch(cfg) -> None:
    """Refuse an unknown architecture or bad --arg values before any folder is made (a model is built)."""
    from adasr.errors import ModelError
    from adasr.nn.registry import build_model

    try:
        build_model(cfg.arch, scale=cfg.scale, **cfg.arch_args)
    except ModelError as exc:
        raise ConfigError(f"--arch/--arg: {exc}") from None


@app.command("eval")
def eval_cmd(
    models: Annotated[Optional[list[Path]], typer.Argument(help="Model files or packages to evaluate.")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="Untrained reference to include: bicubic (repeatable).")] = None,
    data: Annotated[Optional[list[str]], typer.Option(help="Benchmark names or HR folders (default Set5 and Set14).")] = None,
    scale: Annotated[Optional[list[int]], typer.Option(help="Scales to evaluate (default: each model's own; 2,3,4 for bicubic).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the table as JSON here.")] = None,
    subnet: Annotated[Optional[list[str]], typer.Option(help="For a supernet file: sub-network id to evaluate (repeatable).")] = None,
    spread: Annotated[int, typer.Option(help="For a supernet file without --subnet: N sub-networks from smallest to largest.")] = 2,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Evaluate models with the standard SR protocol (PSNR/SSIM on Y, border = scale).

    A supernet file is evaluated per sub-network, a package per level (each extracted as a static model)."""
    from adasr._atomic import check_not_input
    from adasr._cli.evaltable import run_eval

    _threads(threads)
    check_not_input([json_out], models or [])
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
    precision: Annotated[Optional[str], typer.Option(help="Video level precision: fp32, int8 (every level, forced) or auto (int8 only where this device's profile measured it faster and within its PSNR tolerance); default: fp32 for a file (quality first), the package's own with --realtime (the bundled packages: auto).")] = None,
) -> None:
    """Upscale an image or a video (frame rate, rotation and audio are kept): the best level by default,
    the best that fits --time-budget, or --realtime; one line up front says what runs and how long it takes."""
    from adasr._cli.upscale_cmd import run_upscale

    _threads(threads)
    run_upscale(input, output, scale, model, codec, crf, preset, tile, max_frames, quiet, out, console,
                level=level, target_fps=target_fps, json_summary=json_summary, time_budget=time_budget,
                realtime=realtime, strict=strict, precision=precision)


@app.command()
def play(
    ctx: typer.Context,
    video: Annotated[str, typer.Argument(help="Video file to play (its frames are the LR input), a model stream "
                                         "(from adasr encode), which carries its own model and LR size, or a live "
                                         "channel http://127.0.0.1:PORT/channel/NAME (from adasr serve).")],
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
    base: Annotated[Optional[str], typer.Option(help="The base model this player already holds (generic, srvc, a model file or a package): a live channel then names it by hash and sends only updates; a model stream encoded with --base-by-hash needs it (a mismatching hash is refused).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="Level precision: fp32, int8 (every level, forced) or auto (int8 only where this device's profile measured it faster and within its PSNR tolerance); default: the package's own (the bundled packages: auto; fp32 when a package says nothing).")] = None,
) -> None:
    """Play a video through the adaptive runtime with a live view of level, FPS, load, switches and misses."""
    from adasr._cli.play_cmd import run_play
    from adasr.stream.player import is_stream_path

    if policy not in ("lookup", "reactive", "fixed"):
        raise ConfigError(f"--policy must be lookup, reactive or fixed, got {policy!r}")
    if video.startswith(("http://", "https://")):
        from adasr._cli.serve_cmd import run_play_live

        ignored = explicit(ctx, ("model", "scale", "trace", "lr_size", "reference_every", "level", "timeline",
                                 "precision"))
        if ignored:
            names = ", ".join("--" + n.replace("_", "-") for n in ignored)
            raise ConfigError(f"{names}: not for a live channel (the channel sets model, scale and LR size); "
                              f"leave {names} out")
        run_play_live(video, base=base, target_fps=target_fps, policy=policy, output=output, json_out=json_out,
                      max_frames=max_frames, quiet=quiet)
        return
    video = Path(video)
    if base is not None and not is_stream_path(video):
        raise ConfigError("--base applies to a live channel (http://127.0.0.1:PORT/channel/NAME) or a model "
                          "stream only")
    if is_stream_path(video):
        ignored = explicit(ctx, ("model", "scale", "trace", "lr_size", "reference_every", "precision"))
        if ignored:
            names = ", ".join("--" + n.replace("_", "-") for n in ignored)
            verb = "does" if len(ignored) == 1 else "do"
            raise ConfigError(f"{names} {verb} not apply to a model stream ({video} carries its own model, scale and "
                              f"LR size, and plays without a background load); leave {names} out")
    run_play(video, model=model, scale=scale, target_fps=target_fps, policy=policy, level=level, trace=trace,
             lr_hw=None if lr_size is None else _parse_hw(lr_size), output=output, max_frames=max_frames,
             json_out=json_out, timeline=timeline, reference_every=reference_every, quiet=quiet, out=out,
             console=console, base=base, precision=precision)


def _parse_hw(text: str) -> tuple[int, int]:
    return parse_hw(text, "frame size")


@app.command()
def search(
    model: Annotated[Path, typer.Argument(help="Trained supernet model file (from adasr train --supernet).")],
    package_path: Annotated[Path, typer.Option("--out", "-o", help="Package to write: a folder, or a single file ending in .adasr.")],
    strategy: Annotated[str, typer.Option(help="ofa (Dynamic-OFA Algorithm 1 + evolution + Pareto front), dysr (adaptation-aware binning, Eq. 1), or fixed (no search: the levels of --levels-from or --param levels=[...]).")] = "ofa",
    levels_from: Annotated[Optional[Path], typer.Option(help="Keep this package's levels (strategy fixed): re-score and re-profile them with MODEL's weights, e.g. after training its supernet further.")] = None,
    keep_profiles: Annotated[bool, typer.Option(help="With --levels-from: copy that package's device profiles instead of profiling here (a level's latency depends on its config, not its weights).")] = False,
    add_level: Annotated[Optional[list[Path]], typer.Option(help="A sub-network model file (adasr train --arch subnet, a config of MODEL's space) to add as a level with its own weights, kept if no level beats it on PSNR and speed (repeatable; with --levels-from or --strategy fixed).")] = None,
    cost: Annotated[str, typer.Option(help="Latency model for the search: table (per-op LUT timed here), macs or measured.")] = "table",
    val: Annotated[str, typer.Option(help="Validation set for the fast PSNR evaluator (crops).")] = "Set5",
    size: Annotated[str, typer.Option(help="LR frame size WxH the levels are profiled at.")] = "320x180",
    loads: Annotated[str, typer.Option(help="Loads: background CPU load shares, comma separated.")] = "0,0.5",
    repeats: Annotated[int, typer.Option(help="Frames per latency measurement (median).")] = 20,
    rounds: Annotated[int, typer.Option(help="Profile every level this many times, interleaved, keeping each level's lowest median (steadier on a busy machine).")] = 1,
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

    from adasr._atomic import check_not_input, check_writable, write_bytes_atomic
    from adasr.build import SearchOptions, run_search
    from adasr.package import check_package_output

    for path in (plot, json_out):
        if path is not None:
            check_writable(path)
    check_package_output(package_path)  # before any work: replace only a package adasr wrote
    check_not_input([plot, json_out], [model, *(baseline or []), *(add_level or [])], folders=[package_path])
    shares = parse_shares(loads)
    params = _parse_args(param or [], "--param")
    own = {}
    source = None
    if levels_from is not None:
        from adasr.errors import InputError
        from adasr.package import is_package_path, load_package

        if not is_package_path(levels_from):
            raise InputError(f"--levels-from: {levels_from} is not a package")
        if strategy not in ("ofa", "fixed") or "levels" in params:
            raise ConfigError("--levels-from chooses the levels itself: leave out --strategy and --param levels")
        source = load_package(levels_from)
        strategy, params["levels"] = "fixed", [lv.config.id for lv in source.family.levels]
        own.update(source.own)
    elif keep_profiles:
        raise ConfigError("--keep-profiles needs --levels-from")
    if add_level:
        if strategy != "fixed":
            raise ConfigError("--add-level adds to a given family: use it with --levels-from or --strategy fixed")
        added = _own_levels(add_level)
        own.update(added)
        given = list(params.get("levels") or [])
        params["levels"] = given + [cid for cid in added if cid not in given]
    last = {"stage": None}

    def progress(stage: str, done: int, total: int) -> None:
        if not quiet and (stage != last["stage"] or done == total):
            console.print(f"  {stage}: {done}/{total}", highlight=False)
            last["stage"] = stage

    options = SearchOptions(strategy=strategy, val=val, cost=cost, lr_hw=_parse_hw(size), loads=shares,
                            repeats=repeats, rounds=rounds, threads=threads, seed=seed, predictor_samples=predictor_samples,
                            baselines=tuple(baseline or ()), plot=plot, params=params,
                            floor_bicubic=above_bicubic, trim=trim, profiles_from=source if keep_profiles else None,
                            own=own)
    report = run_search(model, package_path, options, on_progress=progress)
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


def _own_levels(paths: list[Path]) -> dict:
    """config id -> SubNet of each --add-level model file (refused unless it is a sub-network)."""
    from adasr.errors import InputError
    from adasr.modelfile import load_model
    from adasr.package import MAX_OWN_LEVELS, is_package_path

    if len(paths) > MAX_OWN_LEVELS:
        raise ConfigError(f"--add-level: at most {MAX_OWN_LEVELS} levels, got {len(paths)}")
    out = {}
    for path in paths:
        if is_package_path(path):
            raise InputError(f"--add-level: {path} is a package; give a sub-network model file (adasr train --arch subnet)")
        model, spec = load_model(path)
        if spec.arch != "subnet":
            raise ConfigError(f"--add-level: {path} is a {spec.arch!r} model; a level is a sub-network "
                              f"(adasr train --arch subnet --arg config=...)")
        if model.config.id in out:
            raise ConfigError(f"--add-level: two files of the same config {model.config.id}")
        out[model.config.id] = model
    return out


@app.command()
def profile(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    loads: Annotated[str, typer.Option(help="Loads: background CPU load shares, comma separated.")] = "0,0.5",
    repeats: Annotated[int, typer.Option(help="Frames per measurement (median).")] = 20,
    rounds: Annotated[int, typer.Option(help="Measure every level this many times, interleaved, and keep each level's lowest median (steadier on a busy machine).")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    thread_rule: Annotated[str, typer.Option(help="auto: loaded columns with one thread, as the runtime runs them; "
                                             "fixed: every column with --threads.")] = "auto",
    cache: Annotated[bool, typer.Option(help="Store the profile in the user's cache folder instead of the package "
                                        "(for read-only packages such as the bundled ones).")] = False,
) -> None:
    """Re-profile a package's levels on this device (how you bring your own phone or GPU)."""
    from adasr.package import load_package
    from adasr.runtime.profile import cache_profile, profile_package

    shares = parse_shares(loads)
    pkg = load_package(package)
    prof = profile_package(pkg, loads=shares, repeats=repeats, threads=threads, device=device, table=False,
                           thread_rule=thread_rule, rounds=rounds)
    if cache:
        where = cache_profile(pkg, prof)
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
        own = set(summary["own_levels"])
        for i, lv in enumerate(summary["levels"]):
            mark = "  (own weights)" if lv["config"] in own else ""
            out.print(f"  level {i}: {lv['config']}  {lv['psnr']:.2f} dB  {lv['params']:,} params{mark}",
                      highlight=False, soft_wrap=True)
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
    precision: Annotated[Optional[str], typer.Option(help="Level precision: fp32, int8 or auto; default: the package's own (the bundled packages: auto).")] = None,
) -> None:
    """The main job of `make run`: adaptive SR of the bundled clip under a bursty CPU load.

    Prints the QoS summary and the PSNR gain over bicubic; writes the video, a timeline PNG and JSON."""
    from adasr._cli.demo import run_demo

    run_demo(scale, out_dir, out, console, target_fps=target_fps, trace=trace, quiet=quiet, precision=precision)


bench_app = typer.Typer(help="Benchmarks that run competitors side by side and report ratios.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

from adasr._cli.stream_cmd import register as _register_stream  # noqa: E402  (encode, decode, bench codec)

_register_stream(app, bench_app)

from adasr._cli.serve_cmd import register as _register_serve  # noqa: E402  (serve, bench live)

_register_serve(app, bench_app)

from adasr._cli.peers_cmd import register as _register_peers  # noqa: E402  (bench peers)

_register_peers(bench_app)

from adasr._cli.reuse_cmd import register as _register_reuse  # noqa: E402  (bench reuse)

_register_reuse(bench_app)

from adasr._cli.backends_cmd import register as _register_backends  # noqa: E402  (bench backends)

_register_backends(bench_app)

from adasr._cli.export_cmd import register as _register_export  # noqa: E402  (export)

_register_export(app)

from adasr._cli.browser_cmd import register as _register_browser  # noqa: E402  (bench browser)

_register_browser(bench_app)

from adasr._cli.dlsr_cmd import register as _register_dlsr  # noqa: E402  (search-dlsr, plot-dlsr)

_register_dlsr(app)

from adasr._cli.mimo_cmd import register as _register_mimo  # noqa: E402  (mimo channels, bench, train)

_register_mimo(app)


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
    precision: Annotated[str, typer.Option(help="Precision of the adasr runner's levels: fp32, int8 (every level) or auto "
                                           "(int8 where the profile measured it faster and within tolerance); "
                                           "calibrated on --video; the default target FPS follows it. Static and "
                                           "Assembled stay float32.")] = "fp32",
    runners: Annotated[str, typer.Option(help="Comma-separated runners, in order: adasr, static, assembled.")] = "adasr,static,assembled",
) -> None:
    """adasr vs Static (reload on switch) vs Assembled (all resident) under one load trace."""
    from adasr._atomic import check_not_input
    from adasr.bench.adaptivity import AdaptivityOptions, run_adaptivity, summary_rows

    _threads(threads)
    check_not_input([out_dir], [package, video, trace if Path(trace).is_file() else None])
    out_dir.mkdir(parents=True, exist_ok=True)
    options = AdaptivityOptions(trace=trace, seconds=seconds, target_fps=target_fps, policy=policy, seed=seed,
                                thread_rule=thread_rule, precision=precision,
                                runners=tuple(r.strip() for r in runners.split(",") if r.strip()))
    result = run_adaptivity(package, video, options, out_dir=out_dir,
                            on_progress=lambda stage, done, total: console.print(f"  {stage}: {done}/{total}"))
    rows = summary_rows(result)
    _print_rows(f"trace {trace}, target {result['target_fps']:.1f} FPS, policy {policy}, adasr in {precision}, "
                f"{seconds:g} s per runner",
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
    from adasr._atomic import check_not_input
    from adasr.bench.multi import run_multi, summary_rows

    check_not_input([out_dir], [package, *video])
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

    from adasr._atomic import check_not_input
    from adasr.bench.pipeline import run_pipeline

    _threads(threads)
    check_not_input([out_dir], [package, *video])
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
    from adasr._atomic import check_not_input, check_writable, write_bytes_atomic
    from adasr.bench.overhead import run_overhead

    if json_out is not None:
        check_writable(json_out)
    check_not_input([json_out], [package])
    result = run_overhead(package, rounds=rounds, repeats=repeats, threads=threads)
    for row in result["levels"]:
        out.print(f"level {row['level']}: supernet {row['supernet_s'] * 1e3:7.2f} ms, extracted "
                  f"{row['extracted_s'] * 1e3:7.2f} ms, ratio {row['ratio']:.3f}  {row['config']}", highlight=False)
    out.print(f"median ratio {result['median_ratio']:.3f}, max {result['max_ratio']:.3f} ({result['device']})")
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(result, indent=2) + "\n").encode())


@bench_app.command("ddp")
def bench_ddp(
    nproc: Annotated[int, typer.Option(help="Data-parallel processes to compare with one process.")] = 2,
    steps: Annotated[int, typer.Option(help="Training steps per run.")] = 20,
    rounds: Annotated[int, typer.Option(help="Alternating rounds of the three runners.")] = 2,
    batch_size: Annotated[int, typer.Option(help="Global batch (patches per step), split over the processes.")] = 16,
    patch: Annotated[int, typer.Option(help="LR patch side in pixels.")] = 48,
    supernet: Annotated[str, typer.Option(help="Search space of the supernet trained.")] = "lite-x2",
    recipe: Annotated[str, typer.Option(help="Supernet phases (see adasr train --recipe).")] = "lite",
    data: Annotated[Optional[list[Path]], typer.Option(help="HR image folder or video (repeatable). Default: adasr train's.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON here.")] = None,
) -> None:
    """Training throughput (images/s): 1 process on 1 and on N threads vs N processes (`train --nproc N`)."""
    from adasr._atomic import check_writable, write_bytes_atomic
    from adasr.bench.ddp import run_ddp_bench

    if json_out is not None:
        check_writable(json_out)
    result = run_ddp_bench(nproc=nproc, steps=steps, rounds=rounds, batch_size=batch_size, patch=patch,
                           supernet=supernet, recipe=recipe, data=[str(p) for p in data or []],
                           on_progress=lambda stage, done, total: console.print(f"  {stage}: {done}/{total}"))
    rows = [{"runner": r["runner"], "images/s": r["images_per_s"], "vs 1x1": r["ratio_to_1x1"],
             "wall s (with start-up)": r["wall_s"]} for r in result["runners"]]
    _print_rows(f"{supernet} ({recipe}), global batch {batch_size} x {patch}px, {steps} steps, "
                f"{rounds} rounds, {result['cpus']} CPUs", rows)
    out.print(f"largest weight difference, {nproc} processes vs 1: {result['max_weight_diff']:.2e}")
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(result, indent=2) + "\n").encode())


_FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _fail(message: str, code: int) -> None:
    from adasr._cli.ddp import rank_prefix

    console.print("[red]error:[/red] " + escape(rank_prefix() + message), highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Entry point: every failure is one line on stderr and an exit code from adasr.errors
    (a usage error is an option error, 5; Ctrl-C is 130); a bug is an "internal error", 70."""
    from typer.main import get_command

    from adasr._cli.common import bound_commands
    from adasr.errors import OutputError

    command = get_command(app)
    bound_commands(command)  # every numeric option is range-checked before its command runs
    try:
        code = command.main(prog_name="adasr", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors: unknown option, missing argument, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `adasr` / `adasr bench`: the help is the answer
            console.print(exc.format_message(), markup=False, highlight=False)
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path if ctx is not None else 'adasr'} --help)"
        _fail(" ".join(exc.format_message().split()) + hint, ConfigError.exit_code)
    except typer.Abort:  # end of input at a prompt, or an explicit abort
        code = 130
    except KeyboardInterrupt:  # outside the command (startup); inside, typer turns it into exit code 130
        code = 130
    except AdasrError as exc:
        if exc.exit_code == 130:
            console.print(escape(str(exc)), highlight=False, soft_wrap=True)
            sys.exit(130)
        _fail(str(exc), exc.exit_code)
    except OSError as exc:
        if exc.errno not in _FULL_DISK or os.environ.get("ADASR_DEBUG"):
            _internal(exc)
        where = f" writing {exc.filename}" if exc.filename else ""
        _fail(f"output failed{where}: {exc.strerror or exc} (free some space and run again)", OutputError.exit_code)
    except Exception as exc:
        _internal(exc)
    if code == 130:
        console.print("[red]interrupted[/red]; no partial output was left behind")
    sys.exit(code or 0)


def _internal(exc: BaseException) -> None:
    if os.environ.get("ADASR_DEBUG"):
        raise exc
    first = str(exc).splitlines()[0] if str(exc) else ""
    console.print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(first)} (set ADASR_DEBUG=1 for "
                  f"the traceback)", highlight=False, soft_wrap=True)
    sys.exit(70)
