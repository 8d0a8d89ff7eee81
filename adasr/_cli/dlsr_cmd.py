"""`adasr search-dlsr` and `adasr plot-dlsr`: DLSR's differentiable search on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from adasr._cli.common import console, out
from adasr._cli.common import set_threads as _threads
from adasr._cli.ddp import NPROC_HELP, TIMEOUT_HELP
from adasr.errors import ConfigError

if TYPE_CHECKING:
    from adasr.search.dlsr_search import DLSRSearchConfig
    from adasr.train.distributed import Dist

__all__ = ["plot_dlsr", "register", "run_search_dlsr", "search_dlsr"]


def search_dlsr(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoint, trajectory, genotype snapshots, genotype.json.")],
    scale: Annotated[Optional[int], typer.Option(help="Upscaling factor (2, 3 or 4). Default 2.")] = None,
    data: Annotated[Optional[list[Path]], typer.Option(help="HR image folder or video (repeatable; split into D_train and D_valid by image). Default: the shared SunHays80 photos.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Search steps (paper: 200000). On --resume: a larger value searches longer.")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Warm-up steps that train the weights only (default: a tenth of --steps).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Channels (paper: 48).")] = None,
    cells: Annotated[Optional[int], typer.Option(help="Cells (paper: 6).")] = None,
    patch: Annotated[Optional[int], typer.Option(help="LR patch side (paper: HR 64, i.e. 32 at x2).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Patches per batch (paper: 64).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate of the weights (paper: 3e-4).")] = None,
    arch_lr: Annotated[Optional[float], typer.Option(help="Adam learning rate of alpha and beta (paper: 3e-4).")] = None,
    lam: Annotated[Optional[float], typer.Option("--lambda", help="MiLeNAS lambda: weight of the validation gradient (paper: 1).")] = None,
    l1_weight: Annotated[Optional[float], typer.Option(help="Weight of L1 (1; 0 with --mu 0 searches on L_P alone).")] = None,
    mu: Annotated[Optional[float], typer.Option(help="Weight of HFEN (paper: 0.2; 0 = L1 only).")] = None,
    gamma: Annotated[Optional[float], typer.Option(help="Weight of the parameter loss L_P (paper: 0.2; 0 = off).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Share of the images held out as D_valid (paper: 450/3450).")] = None,
    snapshot: Annotated[Optional[list[int]], typer.Option(help="Step at which to write a genotype snapshot (repeatable; default: 1/4, 1/2, 3/4 of --steps).")] = None,
    log_every: Annotated[Optional[int], typer.Option(help="Record alpha/beta every N steps (default: --steps / 200).")] = None,
    ckpt_every: Annotated[Optional[int], typer.Option(help="Checkpoint every N steps (default: --steps / 20, at most 1000).")] = None,
    network_level: Annotated[Optional[bool], typer.Option("--network-level/--no-network-level", help="Search the cell connections too (off: DLSR-B, a fixed chain).")] = None,
    global_skip: Annotated[Optional[bool], typer.Option("--global-skip/--no-global-skip", help="Add bicubic(x) to the output (default on).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random choice (default 0).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the search in --out exactly where it stopped.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (and save) after this much search time.")] = None,
    plot: Annotated[bool, typer.Option(help="Write trajectory.png (alpha and beta over the steps) at the end.")] = True,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    nproc: Annotated[int, typer.Option(help=NPROC_HELP)] = 1,
    dist_timeout: Annotated[float, typer.Option(help=TIMEOUT_HELP)] = 30.0,
) -> None:
    """DLSR: differentiable cell- and network-level search (MiLeNAS, L1 + HFEN + L_P); writes a genotype.
    Data-parallel with --nproc N or under `torchrun --nproc-per-node N -m adasr search-dlsr ...`."""
    from adasr._cli.ddp import joined, launched
    from adasr.search.dlsr_search import CHECKPOINT, DLSRSearchConfig, read_search_checkpoint

    _threads(threads)
    if launched(nproc, threads):
        return
    given: dict[str, Any] = {k: v for k, v in {
        "scale": scale, "steps": steps, "warmup_steps": warmup, "width": width, "cells": cells, "patch": patch,
        "batch_size": batch_size, "lr": lr, "arch_lr": arch_lr, "lam": lam, "l1_weight": l1_weight, "mu": mu,
        "gamma": gamma, "val_fraction": val_fraction, "snapshot_steps": snapshot, "log_every": log_every,
        "ckpt_every": ckpt_every, "network_level": network_level, "global_skip": global_skip, "seed": seed,
        "train_data": None if data is None else [str(p) for p in data]}.items() if v is not None}
    if resume:
        if not (out_dir / CHECKPOINT).is_file():
            raise ConfigError(f"nothing to resume: no {CHECKPOINT} in {out_dir}")
        stored, _, _ = read_search_checkpoint(out_dir / CHECKPOINT)
        cfg = DLSRSearchConfig.from_dict({**stored.to_dict(), **given})
    else:
        from adasr.paths import data_root

        n = given.get("steps", 200_000)
        defaults = {"scale": 2, "train_data": [str(data_root() / "train" / "SunHays80")], "warmup_steps": n // 10,
                    "snapshot_steps": [n // 4, n // 2, 3 * n // 4], "log_every": max(1, n // 200),
                    "ckpt_every": max(1, min(1000, n // 20))}
        defaults["snapshot_steps"] = [s for s in defaults["snapshot_steps"] if s >= 1]
        cfg = DLSRSearchConfig.from_dict({**defaults, **given})
    with joined(device, dist_timeout) as (dist, device):
        run_search_dlsr(cfg, out_dir, resume=resume, device=device, max_minutes=max_minutes, plot=plot, quiet=quiet,
                        dist=dist)


def run_search_dlsr(cfg: DLSRSearchConfig, out_dir: Path, *, resume: bool, device: str, max_minutes: float | None,
                    plot: bool, quiet: bool, dist: Dist | None = None) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from adasr.nn.cost import count_params
    from adasr.nn.registry import build_model
    from adasr.search.dlsr_search import DLSRSearch, read_trajectory
    from adasr.train.distributed import Dist

    dist = dist or Dist()
    quiet = quiet or not dist.main
    progress = Progress(TextColumn("[bold]search-dlsr"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[phase]}"), TextColumn("loss {task.fields[loss]}"),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                        console=console, disable=quiet, transient=False)
    task = None
    smooth: dict[str, float] = {}

    def event(kind: str, data: dict[str, Any]) -> None:
        nonlocal task
        if kind == "start":
            task = progress.add_task("search", total=data["steps"], completed=data["step"], phase="warm-up", loss="-")
            if data["step"]:
                console.print(f"resuming at step {data['step']} on {data['device']}")
        elif kind == "step":
            smooth["loss"] = data["loss"] if "loss" not in smooth else 0.98 * smooth["loss"] + 0.02 * data["loss"]
            progress.update(task, completed=data["step"], loss=f"{smooth['loss']:.4f}",
                            phase="search" if data["searching"] else "warm-up")
        elif kind == "snapshot":
            console.print(f"step {data['step']}: genotype snapshot {data['path']}", highlight=False, soft_wrap=True)
        elif kind == "budget":
            console.print(f"time budget reached at step {data['step']}; saving (continue with --resume)")

    with progress:
        search = DLSRSearch(cfg, out_dir, device=device, resume=resume, max_minutes=max_minutes,
                            on_event=event if dist.main else None, dist=dist)
        state = search.run()
    if not dist.main:
        return
    genotype = search.genotype()
    params = count_params(build_model("dlsr", scale=cfg.scale, genotype=genotype.to_dict()))
    cells = " | ".join(f"{'/'.join(c.ops)} <- {','.join(f'x{i}' for i in c.inputs)}" for c in genotype.cells)
    out.print(f"cells: {cells}", highlight=False, soft_wrap=True)
    picture = ""
    if plot:
        from adasr.search.dlsr_plot import plot_trajectory

        plot_trajectory(out_dir / "trajectory.png", read_trajectory(out_dir))
        picture = f"; trajectory: {out_dir / 'trajectory.png'}"
    out.print(f"searched {state.step} steps in {state.seconds / 60:.1f} min on {search.device}; derived network "
              f"{params:,} params at x{cfg.scale}{picture}", highlight=False, soft_wrap=True)
    out.print(f"retrain: adasr train --arch dlsr --arg genotype={out_dir / 'genotype.json'} --scale {cfg.scale}",
              highlight=False, soft_wrap=True)
    out.print(f"genotype: {out_dir / 'genotype.json'}", highlight=False, soft_wrap=True)


def plot_dlsr(
    run: Annotated[Path, typer.Argument(help="Search run folder (or its trajectory.json).")],
    output: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")],
) -> None:
    """Plot a DLSR search's alpha and beta trajectories (also mid-search) as a PNG."""
    from adasr._atomic import check_writable
    from adasr.search.dlsr_plot import plot_trajectory
    from adasr.search.dlsr_search import read_trajectory

    check_writable(output)
    trajectory = read_trajectory(run)
    plot_trajectory(output, trajectory)
    out.print(f"wrote {output} ({len(trajectory['records'])} records)")


def register(app: typer.Typer) -> None:
    app.command("search-dlsr")(search_dlsr)
    app.command("plot-dlsr")(plot_dlsr)
