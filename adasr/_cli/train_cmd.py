"""`adasr train`: the options, read into a `TrainConfig` by `adasr.train.options`, and the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, explicit, out
from adasr._cli.common import set_threads as _threads
from adasr._cli.ddp import NPROC_HELP, TIMEOUT_HELP
from adasr.errors import InputError

__all__ = ["anchor_ids", "register", "train"]


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
    init_from: Annotated[Optional[Path], typer.Option(help="Warm start: copy the tensors of this model file (or this package's supernet) whose names and shapes match (e.g. an x4 supernet from a trained x2 one).")] = None,
    anchors: Annotated[Optional[Path], typer.Option(help="Train the configs that ship: a package (its levels) or a JSON list of sub-network ids, smallest first; each sandwich step trains the largest, the first anchor and random other anchors instead of random configs of the space.")] = None,
    degrade: Annotated[Optional[str], typer.Option(help="Train on streaming input: the LR goes through a real codec round trip drawn per clip, e.g. 'h264+h265:crf=18-36,kernel=area+bicubic,clean=0.1' (codecs h264/h265/av1, CRF band, downscale kernels, share of clean clips). Images become short pans so P/B frames appear; cached under $ADASR_CACHE/degraded. Validation then uses x264 CRF 28, area.")] = None,
    grad_clip: Annotated[float, typer.Option(help="Clip the global gradient norm of each update to this (0 = off).")] = 0.0,
    small_steps: Annotated[int, typer.Option(help="Supernets: extra updates per step of the sub-networks other than the largest (the smallest and random ones), each on its own batch of --small-patch patches: the cheap levels get several updates per update of the costly largest one.")] = 0,
    small_patch: Annotated[int, typer.Option(help="LR patch side of the --small-steps updates.")] = 16,
    small_until: Annotated[float, typer.Option(help="Fraction of the steps after which the --small-steps updates stop (1 = the whole run): the rest trains as the recipe alone, so the largest sub-network has the end of the schedule to itself.")] = 1.0,
    precision: Annotated[str, typer.Option(help="Arithmetic of the forward and backward passes: fp32, bf16 (about 1.5x faster on a CPU with AVX512-BF16 or AMX; the weights, Adam and the EMA stay float32) or auto (bf16 where the CPU or GPU computes it natively, else fp32).")] = "fp32",
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
    from adasr._cli.progress import TrainProgress
    from adasr.errors import OutputError
    from adasr.train import Trainer
    from adasr.train.options import check_arch, check_resume, from_options, read_config_file

    _threads(threads)
    if launched(nproc, threads):
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out must be a run folder, but {out_dir} is a file")
    options = dict(arch=arch, supernet=supernet, recipe=recipe, scale=scale, data=data, val=val, steps=steps,
                   batch_size=batch_size, patch=patch, lr=lr, schedule=schedule, hfen_weight=hfen_weight, ema=ema,
                   val_every=val_every, ckpt_every=ckpt_every, seed=seed, arg=arg, init_from=init_from,
                   anchors=anchors, small_steps=small_steps, small_patch=small_patch, small_until=small_until,
                   grad_clip=grad_clip, degrade=degrade, precision=precision)
    if config is not None:
        cfg = read_config_file(config)
    elif resume:
        given = {k: options[k] for k in explicit(ctx, options)}
        if "anchors" in given:
            given["anchors"] = anchor_ids(given["anchors"])
        cfg = check_resume(out_dir, given)
    else:
        ids = None if anchors is None else anchor_ids(anchors) if supernet is not None else []  # [] is refused
        cfg = from_options(**{**options, "anchors": ids})
    check_arch(cfg)
    with joined(device, dist_timeout) as (dist, device):
        folder = removed_if_empty(out_dir) if dist.main else contextlib.nullcontext()
        with folder, TrainProgress(enabled=not quiet and dist.main, console=console) as progress:
            if cfg.init_from is not None and not resume:  # every rank: the same bytes, written atomically
                cfg = _package_warm_start(cfg, out_dir)
            trainer = Trainer(cfg, out_dir, device=device, resume=resume, max_minutes=max_minutes,
                              on_event=progress.event if dist.main else None, dist=dist)
            state = trainer.run()
    if not dist.main:
        return
    last = state.history[-1] if state.history else {}
    psnr = ", ".join(f"{k} {v:.2f} dB" for k, v in last.items() if k.startswith("psnr"))
    out.print(f"trained {state.step} steps in {state.seconds / 60:.1f} min; {psnr or 'no validation'}; "
              f"model: {out_dir / 'model.safetensors'}")


INIT_FILE = "init-supernet.safetensors"


def _package_warm_start(cfg, out_dir: Path):
    """`--init-from PACKAGE`: the package's supernet written into the run folder as a model file
    (what the training loop warm-starts from; the run folder keeps the starting point)."""
    import dataclasses

    from adasr.modelfile import ModelSpec, save_model
    from adasr.package import is_package_path, load_package

    if not is_package_path(Path(cfg.init_from)):
        return cfg
    package = load_package(cfg.init_from)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / INIT_FILE
    save_model(target, package.supernet, ModelSpec("supernet", {"space": package.space.to_dict()}, package.scale,
                                                   {"source": str(cfg.init_from)}))
    return dataclasses.replace(cfg, init_from=str(target))


def anchor_ids(source: Path) -> list[str]:
    """`--anchors`: the sub-network ids of a package's levels, or of a JSON list in a file."""
    from adasr.package import is_package_path, load_package

    if not source.exists():
        raise InputError(f"--anchors: {source} does not exist")
    if is_package_path(source):
        return [level.config.id for level in load_package(source).family.levels]
    from adasr._jsonfile import loads
    from adasr.safepath import read_bounded

    ids = loads(read_bounded(source, 1 << 20, "--anchors file", InputError), f"--anchors {source}", InputError)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(f"--anchors: {source} must hold a JSON list of sub-network ids")
    return ids


def register(app: typer.Typer) -> None:
    app.command()(train)
