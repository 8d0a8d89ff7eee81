"""`adasr bench browser`: the levels in headless Chromium (onnxruntime-web) against torch, and
the page's deadlines under a bursty in-page load (`adasr.bench.browser`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import Range, console, out, parse_hw, parse_ints
from adasr.errors import ConfigError

__all__ = ["bench_browser", "register"]


def bench_browser(
    package: Annotated[Optional[Path], typer.Argument(help="Package folder or .adasr file (default: the bundled x2).")] = None,
    video: Annotated[Optional[Path], typer.Option(help="Source clip, centre-cropped to scale x --lr-size (default: the shared bigbuckbunny 720p clip).")] = None,
    lr_size: Annotated[str, typer.Option(help="LR frame size WxH the page super-resolves.")] = "320x180",
    repeats: Annotated[int, typer.Option(help="Timed frames per level (median), after one warm-up.")] = 8,
    threads: Annotated[str, typer.Option(help="WASM thread counts to time the levels with, comma-separated.")] = "1,2",
    play_threads: Annotated[int, typer.Option(help="WASM threads of the two playbacks.")] = 2,
    seconds: Annotated[float, typer.Option(help="Seconds of each playback under the bursty load.")] = 20.0,
    burst_s: Annotated[float, typer.Option(help="Length of the load's on and off windows (s).")] = 2.0,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate the page holds (default: the video's).")] = None,
    variants: Annotated[str, typer.Option(help="Variants to time side by side with --play-threads, comma-separated: plain (weights as inputs, full image), residual (the graph outputs the residual; the page adds the exact bicubic in JS), residual-canvas (... the browser's canvas upscale), frozen, frozen-residual (float32, weights inside the graphs), int8, int8-residual, int8-residual-canvas.")] = "plain,residual,residual-canvas,frozen-residual,int8,int8-residual",
    floor: Annotated[bool, typer.Option("--floor/--no-floor", help="Also play the fastest variant adaptive with the bicubic floor (below level 0: the bicubic upscale alone).")] = True,
    lower_rate: Annotated[bool, typer.Option("--lower-rate/--no-lower-rate", help="Also play the fastest variant adaptive with the lowered display rate (1 frame in 2..4 shown when even level 0 cannot hold the stream's rate) and the canvas floor.")] = True,
    levels: Annotated[str, typer.Option(help="The package's levels the channel offers: 'all', level indices, and sub-networks of its supernet as dD-wW (depth, width; e.g. all,d6-w16 adds a 32K-param level between L3 and L4), comma-separated.")] = "all",
    quality_frames: Annotated[int, typer.Option(help="Video frames scoring int8 against float32 (PSNR against HR).")] = 4,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for browser.json and browser.png.")] = Path("out/browser"),
) -> None:
    """Levels in the browser (WASM, 1 and 2 threads; export variants side by side) vs torch on this machine; deadlines met, adaptive vs fixed."""
    from adasr._atomic import check_writable, ensure_dir, write_bytes_atomic
    from adasr.bench.browser import browser_png, run_browser_bench
    from adasr.paths import bundled_package, data_root

    h, w = parse_hw(lr_size, "--lr-size", minimum=16)
    if max(h, w) > 1920:
        raise ConfigError(f"--lr-size must be at most 1920 on a side, got {lr_size}")
    for name, value, lo, hi in (("--repeats", repeats, 1, 100), ("--play-threads", play_threads, 1, 16)):
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    if not 2 <= seconds <= 600 or not 0.1 <= burst_s <= 60:
        raise ConfigError("--seconds must be in [2, 600] and --burst-s in [0.1, 60]")
    if fps is not None and not 0.5 <= fps <= 240:
        raise ConfigError(f"--fps must be in [0.5, 240], got {fps}")
    counts = parse_ints(threads, "--threads", Range(1, 16), most=4)
    from adasr.bench.browser import BENCH_VARIANTS

    picked = tuple(dict.fromkeys(v.strip() for v in variants.split(",") if v.strip()))
    if not picked or any(v not in BENCH_VARIANTS for v in picked):
        raise ConfigError(f"--variants must be a comma-separated subset of {', '.join(BENCH_VARIANTS)}, "
                          f"got {variants!r}")
    if not 1 <= quality_frames <= 50:
        raise ConfigError(f"--quality-frames must be in [1, 50], got {quality_frames}")
    package = package or bundled_package(2)
    video = video or data_root() / "video" / "bigbuckbunny_720p.mp4"
    if levels != "all":  # checked before anything is written
        from adasr.package import load_package
        from adasr.stream.encoder import package_levels

        package_levels(load_package(package), levels, package)
    ensure_dir(out_dir)
    check_writable(out_dir / "browser.json")
    result = run_browser_bench(package, video, (h, w), repeats=repeats, threads=tuple(counts),
                               play_threads=play_threads, seconds=seconds, burst_s=burst_s, fps=fps,
                               progress=lambda m: console.print(m), variants=picked, quality_frames=quality_frames, floor=floor,
                               lower_rate=lower_rate, levels_spec=levels)
    from adasr.timing import provenance

    result["provenance"] = provenance()
    write_bytes_atomic(out_dir / "browser.json", json.dumps(result, indent=1, allow_nan=False).encode())
    browser_png(result, out_dir / "browser.png")
    for t, b in result["browser_wasm"].items():
        row = ", ".join(f"L{i} {f:.1f}" for i, f in enumerate(b["fps"]))
        out.print(f"browser WASM {t} thread(s) FPS: {row}")
    for t, v in result["python_torch_fps"].items():
        out.print(f"torch {t} thread(s) FPS:        " + ", ".join(f"L{i} {f:.1f}" for i, f in enumerate(v)))
    for name, v in result["variants"].items():
        ratio = ", ".join(f"L{i} x{r:.2f}" for i, r in enumerate(v.get("speedup_over_plain", [])))
        out.print(f"{name} ({result['play_threads']} thread(s)) FPS: " + ", ".join(f"L{i} {f:.1f}" for i, f in enumerate(v["fps"]))
                  + (f"; over plain: {ratio}" if ratio else "") + "; page vs Python: "
                  + ", ".join(f"L{k} {a['psnr_db']:.1f} dB" for k, a in v["page_vs_python"].items()))
    q = result.get("int8_quality")
    if q:
        out.print("int8 PSNR loss vs float32 (dB, against HR): " + ", ".join(f"L{i} {d:.3f}" for i, d in enumerate(q["int8_loss_db"])))
    for name, run in result["playback"].items():
        stalled = " (STALLED: no frame shown or dropped in the window)" if run["stalled"] else ""
        rate = (f", 1 frame in {'/'.join(map(str, run['rate_divs']))} shown ({run['thinned']} of {run['due']} left out)"
                if any(d > 1 for d in run.get("rate_divs", [])) else "")
        error = f" (the page stopped: {run['error']})" if run.get("error") else ""
        out.print(f"{name}: {100 * run['deadlines_met']:.1f}% on time at {result['fps']:.1f} fps "
                  f"({run['on_time']} of {run['timeline_frames']} timeline frames), levels {run['levels']}, "
                  f"{run['switches']} switches{rate}, TTFF {run['ttff_ms'] / 1000:.1f} s{stalled}{error}")
    out.print(f"{out_dir / 'browser.json'}, {out_dir / 'browser.png'} (shared machine: timings are noisy)")


def register(bench_app: typer.Typer) -> None:
    bench_app.command("browser")(bench_browser)
