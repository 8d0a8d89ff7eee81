"""`adasr bench protocol|memory|adaptivity|multi|pipeline|overhead|ddp|estimate|setup|report`: the benches of the
runtime and the protocol, and the results page generated from the benches' JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, out
from adasr._cli.common import set_threads as _threads

__all__ = ["register"]


def _write_json(path: Path, data: object) -> None:
    from adasr._atomic import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def bench_protocol(
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON here.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Protocol parity: bicubic through adasr's SR protocol against the published bicubic rows (Set5, Set14)."""
    from adasr._atomic import check_writable
    from adasr.bench.protocol import run_protocol

    if json_out is not None:
        check_writable(json_out)
    _threads(threads)
    result = run_protocol(on_progress=lambda m: console.print(f"  {m}", highlight=False))
    for r in result["rows"]:
        diff = "" if r["psnr_diff"] is None else f" (published {r['published_psnr']:.2f}, {r['psnr_diff']:+.3f})"
        out.print(f"{r['set']} x{r['scale']}: PSNR {r['psnr']:.3f} dB{diff}, SSIM {r['ssim']:.4f}", highlight=False)
    if json_out is not None:
        _write_json(json_out, result)


def bench_memory(
    space: Annotated[str, typer.Option(help="Named search space (base-x2, base-x4, tiny).")] = "base-x2",
    levels: Annotated[int, typer.Option(help="How many levels, spread from smallest to largest.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the level spread.")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Weight memory: one supernet vs the same levels as separate models (DySR's Assembled)."""
    from adasr._atomic import check_writable
    from adasr.bench.memory import memory_report
    from adasr.timing import provenance

    if json_out is not None:
        check_writable(json_out)
    rep = memory_report(space, levels, seed)
    out.print(f"space {space}: {len(rep.levels)} levels from {rep.levels[0]} to {rep.levels[-1]}")
    out.print(f"  supernet (all levels)     {rep.supernet_bytes / 1e6:8.3f} MB")
    out.print(f"  assembled (separate)      {rep.assembled_bytes / 1e6:8.3f} MB")
    out.print(f"  largest level alone       {rep.largest_bytes / 1e6:8.3f} MB")
    out.print(f"  saving vs assembled       {rep.saving * 100:7.1f} %")
    if json_out is not None:
        _write_json(json_out, {**rep.to_dict(), "provenance": provenance()})


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


def bench_overhead(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    rounds: Annotated[int, typer.Option(help="Alternating rounds (supernet, extracted) per level.")] = 5,
    repeats: Annotated[int, typer.Option(help="Frames per measurement (median).")] = 10,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON here.")] = None,
) -> None:
    """Each level run inside the supernet vs the same level extracted standalone (time ratio)."""
    from adasr._atomic import check_not_input, check_writable
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
        _write_json(json_out, result)


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
    from adasr._atomic import check_writable
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
        _write_json(json_out, result)


def bench_report(
    results: Annotated[Path, typer.Option(help="Folder of the benches' JSON files.")] = Path("docs/results"),
    output: Annotated[Path, typer.Option("--out", help="Markdown page to write ('-': print it).")] = Path("docs/RESULTS.md"),
) -> None:
    """Write the results page (docs/RESULTS.md) from the JSON the benches wrote (docs/results/)."""
    from adasr._atomic import check_not_input, check_writable, write_bytes_atomic
    from adasr.bench.report import render_results

    if str(output) != "-":
        check_writable(output)
        check_not_input([output], [results])
    page = render_results(results)
    if str(output) == "-":
        out.print(page, markup=False, highlight=False, soft_wrap=True)
        return
    write_bytes_atomic(output, page.encode("utf-8"))
    console.print(f"wrote {output} ({page.count(chr(10))} lines) from {results}", highlight=False)


def bench_estimate(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Video files (default: the shared 720p, 720x528 and "
                                                           "768x576 clips).", show_default=False)] = None,
    frames: Annotated[int, typer.Option(help="Frames upscaled from the start of each input.")] = 24,
    level: Annotated[str, typer.Option(help="Level of the bundled package: best or an index (as adasr upscale).")] = "best",
    load: Annotated[float, typer.Option(help="Share of every core a background process keeps busy during the runs "
                                       "(0: none).")] = 0.5,
    json_out: Annotated[Path, typer.Option("--json", help="Where the result is written.")] = Path("out/estimate.json"),
) -> None:
    """`adasr upscale`'s announced time estimate against the time the run took, under a steady
    background load (the library call the CLI makes; within 30 %: actual/estimate in [0.77, 1.3])."""
    from adasr._atomic import check_not_input, check_writable
    from adasr.bench.estimate import default_inputs, run_estimate_bench
    from adasr.errors import InputError

    paths = list(inputs) if inputs else default_inputs()
    for p in paths:
        if not p.is_file():
            raise InputError(f"input not found: {p}")
    check_writable(json_out)
    check_not_input([json_out], paths)
    result = run_estimate_bench(paths, frames=frames, level=level, load_share=load,
                                on_progress=lambda m: console.print(f"  {m}", highlight=False))
    for r in result["rows"]:
        revised = "" if r["revised_s"] is None else f", revised {r['revised_s']:.1f} s"
        out.print(f"{r['input']}: level {r['level']}, estimated {r['estimated_s']:.1f} s, took {r['actual_s']:.1f} s "
                  f"(x{r['ratio']:.2f}{', within 30 %' if r['within'] else ''}){revised}", highlight=False)
    out.print(f"within 30 %: {result['met']} of {result['inputs']} (load {load:g} on every core)", highlight=False)
    _write_json(json_out, result)


def bench_setup(
    setups: Annotated[str, typer.Option(help="Set-ups to make, comma-separated: core (make run), full (make test).")] = "core,full",
    json_out: Annotated[Path, typer.Option("--json", help="Where the result is written.")] = Path("out/setup.json"),
) -> None:
    """The core set-up (make run: ONNX Runtime, no torch) against the full one (make test), each
    made from nothing in a fresh venv with pip's cache off: seconds and bytes side by side.
    Run it from a checkout; it fetches from the package index (minutes)."""
    from adasr._atomic import check_writable
    from adasr.bench.setup import run_setup_bench

    check_writable(json_out)
    names = tuple(s.strip() for s in setups.split(",") if s.strip())
    result = run_setup_bench(Path.cwd(), names, on_progress=lambda m: console.print(f"  {m}", highlight=False))
    for r in result["rows"]:
        out.print(f"{r['setup']} ({r['requirements']}): {r['seconds']:.0f} s, {r['bytes'] / 1e6:.0f} MB, "
                  f"{r['distributions']} distributions, torch {'in' if r['torch'] else 'not in'} it", highlight=False)
    if result["core_over_full"]:
        ratio = result["core_over_full"]
        out.print(f"core / full: {ratio['bytes']:.2f} of the bytes, {ratio['seconds']:.2f} of the time", highlight=False)
    _write_json(json_out, result)


def register(bench_app: typer.Typer) -> None:
    bench_app.command("setup")(bench_setup)
    bench_app.command("protocol")(bench_protocol)
    bench_app.command("report")(bench_report)
    bench_app.command("memory")(bench_memory)
    bench_app.command("adaptivity")(bench_adaptivity)
    bench_app.command("multi")(bench_multi)
    bench_app.command("pipeline")(bench_pipeline)
    bench_app.command("overhead")(bench_overhead)
    bench_app.command("ddp")(bench_ddp)
    bench_app.command("estimate")(bench_estimate)
