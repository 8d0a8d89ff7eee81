"""`adasr bench peers`: a package's levels against OpenCV, Anime4K, bicubic and adasr's own models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, out, parse_hw
from adasr._cli.common import set_threads as _threads
from adasr.errors import ConfigError

__all__ = ["bench_peers", "register"]


def bench_peers(
    package: Annotated[Path, typer.Argument(help="Package folder or .adasr file (its scale is the bench's).")],
    data: Annotated[Optional[list[str]], typer.Option(help="Benchmark names or HR folders (default Set5 and Set14).")] = None,
    model: Annotated[Optional[list[Path]], typer.Option(help="An adasr model file to include (repeatable), e.g. FSRCNN trained with adasr train.")] = None,
    peers_dir: Annotated[Optional[Path], typer.Option(help="Folder of the OpenCV peers' .pb files (default: shared data peers/).")] = None,
    video: Annotated[Optional[Path], typer.Option(help="Clip whose middle frame is timed (default: the shared bigbuckbunny clip).")] = None,
    lr_size: Annotated[str, typer.Option(help="LR frame size WxH for the FPS column.")] = "320x180",
    rounds: Annotated[int, typer.Option(help="Alternating timing rounds.")] = 3,
    repeats: Annotated[int, typer.Option(help="Frames per upscaler per round.")] = 5,
    max_images: Annotated[Optional[int], typer.Option(help="Use only the first N images of each set.")] = None,
    crop: Annotated[Optional[int], typer.Option(help="Score only the top-left NxN LR corner of each image (quick checks).")] = None,
    acnet: Annotated[bool, typer.Option(help="Include Anime4K's ACNet (pyanime4k).")] = True,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for peers.json and peers.png.")] = Path("out/peers"),
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch and OpenCV.")] = None,
) -> None:
    """adasr's levels against the real peers on the same frames and threads: PSNR/SSIM and FPS."""
    from rich.table import Table

    from adasr._atomic import check_writable, ensure_dir, write_bytes_atomic
    from adasr.bench.peers import pareto_png, run_peers
    from adasr.paths import data_root

    for name, value, lo, hi in (("--rounds", rounds, 1, 100), ("--repeats", repeats, 1, 1000)):
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    if max_images is not None and max_images < 1:
        raise ConfigError(f"--max-images must be positive, got {max_images}")
    if crop is not None and not 8 <= crop <= 4096:
        raise ConfigError(f"--crop must be in [8, 4096], got {crop}")
    h, w = parse_hw(lr_size, "--lr-size", minimum=8)
    _threads(threads)  # torch's; OpenCV's peers follow it (adasr.bench.peers.opencv_upscalers)
    ensure_dir(out_dir)
    check_writable(out_dir / "peers.json")
    if video is None:
        default = data_root() / "video" / "bigbuckbunny_720p.mp4"
        video = default if default.is_file() else None
    result = run_peers(package, sets=tuple(data or ("Set5", "Set14")), models=tuple(model or ()),
                       peers_dir=peers_dir, video=video, lr_hw=(h, w), rounds=rounds, repeats=repeats,
                       max_images=max_images, crop=crop, acnet=acnet,
                       on_progress=lambda m: console.print(f"  {m}", highlight=False))
    table = Table(title=f"x{result['scale']} at {w}x{h}, {result['threads']} threads ({result['device']})")
    table.add_column("upscaler")
    table.add_column("params", justify="right")
    for s in result["sets"]:
        table.add_column(f"{Path(s).name} PSNR/SSIM", justify="right")
    table.add_column("ms/frame", justify="right")
    table.add_column("FPS", justify="right")
    for r in result["rows"]:
        params = "-" if r["params"] is None else f"{r['params'] / 1e3:.1f}K"
        cells = [f"{r[s]['psnr']:.2f} / {r[s]['ssim']:.4f}" for s in result["sets"]]
        mark = "" if r.get("timing_trusted", True) else " ?"
        table.add_row(r["name"], params, *cells, f"{r['ms']:.1f}{mark}", f"{r['fps']:.1f}{mark}")
    out.print(table, width=160)
    for note in result["notes"]:
        out.print(f"not run: {note}", highlight=False)
    if result.get("verdict_withheld"):
        out.print(f"? marks a timing that cannot be trusted: {result['verdict_withheld']}", highlight=False)
    for s, v in result["verdict"].items():
        word = "above" if v["every_level_above_every_peer"] else "NOT above"
        out.print(f"{Path(s).name}: every level {word} every peer (worst level {v['worst_level']} "
                  f"{v['worst_level_psnr']:.2f} dB, best peer {v['best_peer']} {v['best_peer_psnr']:.2f} dB)",
                  highlight=False)
        for m in v.get("models", []):
            if m["as_fast"]:
                word = "on or above" if m["at_or_above"] else "BELOW"
                line = (f"the best level at least as fast, {m['level']} ({m['level_fps']:.1f} FPS, "
                        f"{m['level_psnr']:.2f} dB), is {word} it ({m['margin_db']:+.2f} dB)")
            else:
                line = (f"no level is as fast; the fastest, {m['level']} ({m['level_fps']:.1f} FPS), scores "
                        f"{m['margin_db']:+.2f} dB against it")
            out.print(f"{Path(s).name}: {m['model']} {m['model_psnr']:.2f} dB at {m['model_fps']:.1f} FPS: {line}",
                      highlight=False)
    write_bytes_atomic(out_dir / "peers.json", (json.dumps(result, indent=2) + "\n").encode())
    pareto_png(result, out_dir / "peers.png")
    out.print(f"wrote {out_dir / 'peers.json'} and {out_dir / 'peers.png'}")


def register(bench_app: typer.Typer) -> None:
    bench_app.command("peers")(bench_peers)
