"""`adasr bench reuse`: RECL model reuse against no adaptation, retrain-only, exhaustive search and
autoencoder selection on emulated concurrent sessions of the shared clips and photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, out, parse_hw
from adasr._cli.common import set_threads as _threads
from adasr.errors import ConfigError

__all__ = ["bench_reuse", "register"]


def bench_reuse(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for reuse.json and reuse.png.")] = Path("out/reuse"),
    data: Annotated[Optional[Path], typer.Option(help="Shared data folder (clips under video/, photos under train/SunHays80/).")] = None,
    sessions: Annotated[int, typer.Option(help="Concurrent sessions (2-8).")] = 3,
    windows: Annotated[int, typer.Option(help="Update windows per session.")] = 12,
    scene_windows: Annotated[int, typer.Option(help="Windows per scene segment.")] = 3,
    recur: Annotated[int, typer.Option(help="Segments each kind of scene plays (2-6), in other sessions and at other times where the plan allows: how often scenes recur.")] = 2,
    budget: Annotated[int, typer.Option(help="Micro-windows of compute per session per window (shared by all jobs).")] = 3,
    steps: Annotated[int, typer.Option(help="Sparse Adam steps per micro-window.")] = 4,
    lr_size: Annotated[str, typer.Option(help="LR crop WxH of every frame (HR is twice that).")] = "160x90",
    profile: Annotated[int, typer.Option(help="Ekya-style profiling micro-windows per job (retrain-outofband).")] = 1,
    level: Annotated[int, typer.Option(help="Level of the bundled x2 package that experts serve.")] = 2,
    k: Annotated[int, typer.Option(help="Top-K experts the gating network passes to the safety checker.")] = 5,
    alpha: Annotated[float, typer.Option(help="Admission margin in dB over the other candidates.")] = 0.05,
    gamma: Annotated[int, typer.Option(help="Promising models queued before they enter the zoo.")] = 2,
    eta: Annotated[int, typer.Option(help="Prune experts chosen fewer than this many times in the last q selections.")] = 1,
    q: Annotated[int, typer.Option(help="Selections the pruning looks back over.")] = 24,
    lr: Annotated[float, typer.Option(help="Adam learning rate of retraining.")] = 5e-4,
    schemes: Annotated[Optional[str], typer.Option(help="Comma-separated subset of: none, retrain, exhaustive, autoencoder, recl, retrain-inband, retrain-outofband.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = 1,
    degradation: Annotated[Optional[str], typer.Option(help="LR as streams carry it: each window's frames through "
                                                       "one codec setting, e.g. h264:crf=28,kernel=area (default: "
                                                       "clean MATLAB-bicubic LR).")] = None,
) -> None:
    """RECL (gating top-K + safety checker + Algorithm 4) vs its foils, same frames and compute: JSON + PNG."""
    from adasr._atomic import check_not_input, check_writable, ensure_dir, write_bytes_atomic
    from adasr.bench.reuse import SCHEMES, ReuseBenchConfig, plot, run_reuse_bench, summary_lines
    from adasr.paths import data_root

    _threads(threads)
    h, w = parse_hw(lr_size, "--lr-size", minimum=16)
    chosen = tuple(s.strip() for s in schemes.split(",") if s.strip()) if schemes else SCHEMES
    if not chosen:
        raise ConfigError("--schemes names no scheme")
    cfg = ReuseBenchConfig(sessions=sessions, windows=windows, scene_windows=scene_windows, recur=recur, budget=budget,
                           steps=steps, lr_w=w, lr_h=h, profile=profile, level=level, k=k, alpha=alpha, gamma=gamma, eta=eta, q=q, lr=lr,
                           schemes=chosen, seed=seed, degradation=degradation)
    root = data or data_root()
    check_not_input([out_dir], [root])
    ensure_dir(out_dir)
    check_writable(out_dir / "reuse.json")
    def save(result: dict) -> None:  # after every scheme, so a long run keeps what it measured
        write_bytes_atomic(out_dir / "reuse.json", (json.dumps(result, indent=1) + "\n").encode())

    result = run_reuse_bench(cfg, root, on_progress=lambda m: console.print(f"  {m}", highlight=False),
                             on_scheme=save)
    for line in summary_lines(result):
        out.print(line, highlight=False)
    save(result)
    plot(result, out_dir / "reuse.png")
    out.print(f"wrote {out_dir / 'reuse.json'} and {out_dir / 'reuse.png'}")


def register(bench_app: typer.Typer) -> None:
    bench_app.command("reuse")(bench_reuse)
