"""`adasr bench backends`: every level of a package through torch float32 / int8 and ONNX Runtime
float32 / int8, with OpenCV's dnn_superres peers as points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, out, parse_hw
from adasr._cli.common import set_threads as _threads
from adasr.errors import ConfigError

__all__ = ["bench_backends", "register"]


def bench_backends(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file.")],
    lr_size: Annotated[Optional[list[str]], typer.Option(help="LR frame size WxH to time (repeatable; default 320x180 and 960x540).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Benchmark set for PSNR-Y against HR ('none' to skip).")] = "Set5",
    calib_video: Annotated[Optional[Path], typer.Option(help="Clip whose frames calibrate int8 (default: the shared bikes clip).")] = None,
    video: Annotated[Optional[Path], typer.Option(help="Clip whose middle frame is timed (default: the shared bigbuckbunny clip).")] = None,
    calib_frames: Annotated[int, typer.Option(help="Calibration frames (every 10th frame of the clip).")] = 4,
    rounds: Annotated[int, typer.Option(help="Alternating timing rounds.")] = 3,
    repeats: Annotated[int, typer.Option(help="Frames per backend per level per round.")] = 3,
    max_images: Annotated[Optional[int], typer.Option(help="Use only the first N images of the set.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for backends.json and backends.png.")] = Path("out/backends"),
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (1: per-frame CPU time).")] = None,
    levels: Annotated[Optional[str], typer.Option(help="Only these level indices, comma-separated (default: all).")] = None,
    onnx: Annotated[bool, typer.Option(help="Also ONNX Runtime fp32 and static int8 (QDQ) rows, each level exported at the first --lr-size (needs adasr[onnx]).")] = True,
    peers: Annotated[bool, typer.Option(help="Also OpenCV dnn_superres FSRCNN / FSRCNN-s / ESPCN as points (needs adasr[peers]).")] = True,
    save_profile: Annotated[bool, typer.Option(help="Store the int8 measurements (first --lr-size, --data PSNR) in the package's profile for this device, where precision auto reads them.")] = False,
    tolerance_db: Annotated[float, typer.Option(help="With --save-profile: the largest PSNR loss (dB) at which precision auto runs a level in int8.")] = 0.05,
    tile: Annotated[Optional[int], typer.Option(help="Run torch fp32 and int8 on frames larger than this many LR pixels a side in overlapping tiles, as the engine does (default: whole frames).")] = None,
    luma: Annotated[bool, typer.Option(help="Also time each level's luma-only form (Y through the network, bicubic chroma; untrained head and upsampler, so speed only: the bound a trained luma-only level would reach).")] = False,
    set_precision: Annotated[Optional[str], typer.Option(help="With --save-profile: also make this (fp32, int8 or auto) the package's own precision, what play, realtime upscale and the API use when none is asked for.")] = None,
) -> None:
    """Levels through each backend in one run: ms/frame, PSNR against float32, GFLOP/s against peak."""
    from rich.table import Table

    from adasr._atomic import check_writable, ensure_dir, write_bytes_atomic
    from adasr.bench.backends import backends_png, run_backends
    from adasr.paths import data_root

    for name, value, lo, hi in (("--rounds", rounds, 1, 100), ("--repeats", repeats, 1, 1000),
                                ("--calib-frames", calib_frames, 1, 64)):
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    if max_images is not None and max_images < 1:
        raise ConfigError(f"--max-images must be positive, got {max_images}")
    sizes = [parse_hw(s, "--lr-size", minimum=8) for s in (lr_size or ["320x180", "960x540"])]
    if len(sizes) > 4:
        raise ConfigError(f"at most 4 --lr-size values, got {len(sizes)}")
    for h, w in sizes:
        if max(h, w) > 4096:
            raise ConfigError(f"--lr-size must be at most 4096 on a side, got {w}x{h}")
    only = None
    if levels is not None:
        try:
            only = sorted({int(v) for v in levels.split(",")})
        except ValueError:
            raise ConfigError(f"--levels must be comma-separated level indices, got {levels!r}") from None
        if not only or only[0] < 0 or len(only) > 64:
            raise ConfigError(f"--levels must be 1-64 non-negative level indices, got {levels!r}")
    if set_precision is not None:
        from adasr.package import check_precision

        check_precision(set_precision)
        if not save_profile:
            raise ConfigError("--set-precision goes with --save-profile (the measurements auto reads)")
    if save_profile and data == "none":
        raise ConfigError("--save-profile needs --data (the PSNR change the tolerance is checked against)")
    if not 0.0 <= tolerance_db <= 10.0:
        raise ConfigError(f"--tolerance-db must be in [0, 10], got {tolerance_db}")
    _threads(threads)
    ensure_dir(out_dir)
    check_writable(out_dir / "backends.json")
    clips = data_root() / "video"
    calib_video = calib_video or clips / "bikes_640x272.mp4"
    if not calib_video.is_file():
        raise ConfigError(f"calibration clip not found: {calib_video}")
    if video is None and (clips / "bigbuckbunny_720p.mp4").is_file():
        video = clips / "bigbuckbunny_720p.mp4"
    result = run_backends(package, calib_video=calib_video, time_video=video,
                          lr_sizes=sizes, set_name=None if data == "none" else data,
                          calib_frames=calib_frames, rounds=rounds, repeats=repeats, max_images=max_images, levels=only,
                          onnx_folder=out_dir / "onnx" if onnx else None,
                          peers_dir=data_root() / "peers" if peers else None,
                          on_progress=lambda m: console.print(f"  {m}", highlight=False), luma=luma, tile=tile)
    set_name = None if data == "none" else data
    for size in result["sizes"]:
        h, w = size["lr_hw"]
        table = Table(title=f"x{result['scale']} at {w}x{h}, {result['threads']} thread(s), {result['clock']} time; "
                            f"peak conv {result['peak_gflops']:.0f} GFLOP/s")
        for col in ("level", "backend", "ms/frame", "x fp32", "PSNR vs fp32", *([f"{set_name} PSNR-Y"] if set_name else []),
                    "GFLOP/s", "of peak"):
            table.add_column(col, justify="right")
        for r in size["rows"]:
            lv = next(v for v in result["levels"] if v["index"] == r["level"])
            score = lv[set_name].get(r["backend"]) if set_name else None
            extra = [("-" if score is None else f"{score:.2f}")] if set_name else []
            vs = "-" if r["psnr_vs_fp32"] is None else f"{r['psnr_vs_fp32']:.1f}"
            table.add_row(f"L{r['level']}", r["backend"], f"{r['ms']:.1f}", f"{r['speedup']:.2f}", vs, *extra, f"{r['gflops']:.1f}", f"{r['of_peak']:.0%}")
        for p, entry in zip(size.get("peers", []), result["peers"]):
            extra = [f"{entry[set_name]:.2f}"] if set_name else []
            table.add_row("peer", p["name"], f"{p['ms']:.1f}", "", "", *extra, "", "")
        out.print(table, width=160)
    for note in result["notes"]:
        out.print(f"not run: {note}", highlight=False)
    write_bytes_atomic(out_dir / "backends.json", (json.dumps(result, indent=1) + "\n").encode())
    if save_profile:
        from adasr.bench.backends import save_int8_profile

        key, chosen = save_int8_profile(package, result, set_name, tolerance_db)
        out.print(f"stored int8 measurements in {package} (profile {key}); precision auto runs levels "
                  f"{chosen or 'none'} in int8", highlight=False)
        if set_precision is not None:
            from adasr.package import load_package

            load_package(str(package)).set_precision(set_precision)
            out.print(f"{package}: precision {set_precision}", highlight=False)
    backends_png(result, out_dir / "backends.png")
    out.print(f"wrote {out_dir / 'backends.json'} and {out_dir / 'backends.png'}", highlight=False)


def register(bench_app: typer.Typer) -> None:
    bench_app.command("backends")(bench_backends)
