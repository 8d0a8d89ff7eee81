"""`adasr export PACKAGE --format onnx`: every level as ONNX, the weights held once (`adasr.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import Range, console, out, parse_hw, parse_ints
from adasr.errors import ConfigError

__all__ = ["export", "register"]


def export(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    format: Annotated[str, typer.Option("--format", help="onnx: graphs at one LR size sharing weights.bin (for other runtimes and the browser); runtime: the graphs adasr's own torch-free runtime plays the package with (any frame size, uint8 frames in and out, weights read from the package), written beside the package as <package>.onnx unless --out says otherwise.")] = "onnx",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder to write (onnx: manifest.json, weights.bin and level-K.onnx per level; default out/onnx). Replaced whole if it is an earlier export; any other non-empty folder is refused.")] = None,
    lr_size: Annotated[str, typer.Option(help="LR frame size WxH the graphs take (fixed; export again for another size).")] = "320x180",
    levels: Annotated[Optional[str], typer.Option(help="Only these level indices, comma-separated (default: all).")] = None,
    residual_only: Annotated[bool, typer.Option("--residual-only", help="Graphs output the learned residual's s*s phases (r: 1 x 3s^2 x H x W, before the pixel shuffle) without the bicubic skip; the runtime adds its own upscale ('bic' levels only; docs/EXPORT.md).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Quantize every level to int8 (ONNX Runtime static QDQ, calibrated on --calibration); the weights go inside the graphs, so streamed model updates do not reach them.")] = False,
    calibration: Annotated[Optional[Path], typer.Option(help="Video whose frames calibrate --int8 (default: the shared bigbuckbunny 720p clip).")] = None,
) -> None:
    """Export every level of a package as ONNX graphs that share one weight file (see docs/EXPORT.md)."""
    from adasr.export import export_onnx, write_export
    from adasr.package import load_package

    if format not in ("onnx", "runtime"):
        raise ConfigError(f"--format must be onnx or runtime, got {format!r}")
    if format == "runtime":
        _runtime(package, out_dir, levels, residual_only, int8, calibration)
        return
    out_dir = out_dir or Path("out/onnx")
    h, w = parse_hw(lr_size, "--lr-size", minimum=8)
    if max(h, w) > 4096:
        raise ConfigError(f"--lr-size must be at most 4096 on a side, got {lr_size}")
    from adasr._atomic import check_replaceable
    from adasr.export import export_folder_reason

    check_replaceable(out_dir, export_folder_reason)  # refuse before the minutes of exporting
    pkg = load_package(package)
    picked = None if levels is None else parse_ints(levels, "--levels", Range(0, len(pkg.family) - 1))
    frames = None
    if calibration is not None and not int8:
        raise ConfigError("--calibration is for --int8")
    if int8:
        from adasr.paths import data_root
        from adasr.runtime.precision import calibration_frames

        # 8 frames over the first 5 s or so: one scene's frames alone give too narrow activation ranges
        frames = calibration_frames(calibration or data_root() / "video" / "bigbuckbunny_720p.mp4", count=8,
                                    stride=15, max_hw=(h, w))
    what = ("int8 " if int8 else "") + ("residual-only " if residual_only else "")
    console.print(f"exporting {len(pkg.family) if picked is None else len(picked)} {what}level(s) at {w}x{h} ...")
    files = export_onnx(pkg, (h, w), picked, residual=residual_only, calibration=frames)
    write_export(files, out_dir)
    size = sum(len(v) for k, v in files.items() if k.endswith(".onnx"))
    if int8:
        out.print(f"{out_dir}: {len(files) - 2} int8 level graph(s) ({size / 1024:.0f} KiB in all, weights inside), "
                  f"weights.bin (float32, for reference), sidecar manifest.json")
    else:
        out.print(f"{out_dir}: {len(files) - 2} level graph(s) ({size / 1024:.0f} KiB in all) sharing weights.bin "
                  f"({len(files['weights.bin']) / 1024:.0f} KiB), sidecar manifest.json")


def _runtime(package: Path, out_dir: Path | None, levels: str | None, residual_only: bool, int8: bool,
             calibration: Path | None) -> None:
    """`--format runtime`: every level's graph for `adasr.runtime.onnx_engine`, beside the package."""
    from adasr._atomic import atomic_folder, check_replaceable
    from adasr.export import runtime_folder_reason, runtime_graphs
    from adasr.package import load_package
    from adasr.runtime.onnx_engine import graphs_folder

    if levels is not None or residual_only or int8 or calibration is not None:
        raise ConfigError("--format runtime writes every level at any size in float32: --levels, --residual-only, "
                          "--int8 and --calibration are for --format onnx")
    folder = out_dir or graphs_folder(package)
    check_replaceable(folder, runtime_folder_reason)
    pkg = load_package(package)
    console.print(f"writing the runtime graphs of {len(pkg.family)} level(s) ...")
    files = runtime_graphs(pkg)
    with atomic_folder(folder, runtime_folder_reason) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    size = sum(len(v) for k, v in files.items() if k.endswith(".onnx"))
    where = "" if out_dir is None or out_dir == graphs_folder(package) else \
        f" (the runtime reads them beside the package, as {graphs_folder(package).name})"
    out.print(f"{folder}: {len(files) - 1} level graph(s) ({size / 1024:.0f} KiB in all, no weights: the runtime reads "
              f"them from the package), manifest.json{where}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
