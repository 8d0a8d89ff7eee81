"""`adasr search` (a family of levels in a trained supernet, written as a package) and `adasr
profile` (a package's levels measured on this device)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from adasr._cli.common import console, out, parse_hw, parse_shares
from adasr._options import parse_assignments
from adasr.errors import ConfigError

__all__ = ["profile", "register", "search"]


def search(
    model: Annotated[Path, typer.Argument(help="Trained supernet model file (from adasr train --supernet).")],
    package_path: Annotated[Path, typer.Option("--out", "-o", help="Package to write: a folder, or a single file ending in .adasr.")],
    strategy: Annotated[str, typer.Option(help="ofa (Dynamic-OFA Algorithm 1 + evolution + Pareto front), dysr (adaptation-aware binning, Eq. 1), or fixed (no search: the levels of --levels-from or --param levels=[...]).")] = "ofa",
    levels_from: Annotated[Optional[Path], typer.Option(help="Keep this package's levels (strategy fixed): re-score and re-profile them with MODEL's weights, e.g. after training its supernet further.")] = None,
    shared_only: Annotated[bool, typer.Option(help="With --levels-from: leave out that package's levels with their own weights (e.g. when MODEL was retrained for other input and those weights were not).")] = False,
    keep_profiles: Annotated[bool, typer.Option(help="With --levels-from: copy that package's device profiles instead of profiling here (a level's latency depends on its config, not its weights).")] = False,
    add_level: Annotated[Optional[list[Path]], typer.Option(help="A sub-network model file (adasr train --arch subnet, a config of MODEL's space) to add as a level with its own weights, kept if no level beats it on PSNR and speed (repeatable; with --levels-from or --strategy fixed).")] = None,
    cost: Annotated[str, typer.Option(help="Latency model for the search: table (per-op LUT timed here), macs or measured.")] = "table",
    val: Annotated[str, typer.Option(help="Validation set for the fast PSNR evaluator (crops).")] = "Set5",
    degradation: Annotated[Optional[str], typer.Option(help="Score the levels on streaming input: the validation images through this codec round trip (adasr.data.degrade spec, e.g. 'h264:crf=28,kernel=area+bicubic,variants=2,frames=2'), so the family is a ladder on compressed input.")] = None,
    min_step: Annotated[float, typer.Option(help="Drop a level whose score is less than this many dB above the next faster level kept, so every step of the ladder is a real step in quality (0 = keep every level no other dominates).")] = 0.0,
    crops: Annotated[int, typer.Option(help="Validation crops (64x64 LR) the fast PSNR evaluator scores.")] = 8,
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
    params = parse_assignments(param or [], "--param")
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
        if not shared_only:
            own.update(source.own)
    elif keep_profiles or shared_only:
        raise ConfigError(f"{'--keep-profiles' if keep_profiles else '--shared-only'} needs --levels-from")
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

    options = SearchOptions(strategy=strategy, val=val, cost=cost, lr_hw=parse_hw(size, "frame size"), loads=shares,
                            repeats=repeats, rounds=rounds, threads=threads, seed=seed, predictor_samples=predictor_samples,
                            baselines=tuple(baseline or ()), plot=plot, params=params,
                            floor_bicubic=above_bicubic, trim=trim, profiles_from=source if keep_profiles else None,
                            own=own, degradation=degradation, crops=crops, min_step=min_step)
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
                                        "(for read-only packages such as the bundled ones); without torch the profile always goes to the cache.")] = False,
) -> None:
    """Re-profile a package's levels on this device (how you bring your own phone or GPU).
    Without torch: ONNX Runtime's timings of the levels, stored in the cache."""
    from adasr.runtime.onnx_engine import backend

    shares = parse_shares(loads)
    if backend() == "onnx":
        _profile_onnx(package, shares, repeats, threads, device, thread_rule, rounds)
        return
    from adasr.package import load_package
    from adasr.runtime.profile import cache_profile, profile_package

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


def _profile_onnx(package: Path, shares: Any, repeats: int, threads: int | None, device: str, thread_rule: str,
                  rounds: int) -> None:
    """`adasr profile` without torch: the levels as ONNX Runtime runs them (`profile_onnx`), in the
    user's cache (the package file is written with torch)."""
    from adasr import threads as sr_threads
    from adasr.package import read_package_arrays
    from adasr.runtime.onnx_engine import OnnxEngine, profile_onnx
    from adasr.runtime.profile_cache import cache_profile

    if device != "cpu" or thread_rule != "auto" or rounds != 1:
        raise ConfigError("without torch a profile is ONNX Runtime's on the CPU with the runtime's thread rule: "
                          "--device cpu, --thread-rule auto and --rounds 1 (pip install 'adasr[torch]' for the rest)")
    if threads is not None:
        sr_threads.set_num_threads(threads)
    pkg = read_package_arrays(package)
    prof = profile_onnx(OnnxEngine(pkg), loads=shares, repeats=repeats)
    where = cache_profile(pkg, prof)
    for i, lv in enumerate(pkg.family_for(prof["device"])):
        fps = ", ".join(f"{name}: {1 / s:.1f}" for name, s in sorted((lv.measured_s or {}).items()))
        out.print(f"level {i} {lv.config.id}: {lv.psnr:.2f} dB, FPS {fps}", highlight=False)
    out.print(f"profile {prof['device']} (ONNX Runtime) stored in {where}")


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(profile)
