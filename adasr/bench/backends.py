"""`adasr bench backends`: every level of a package through each available backend, side by side.

Backends: ``torch-fp32`` (the engine's float path), ``torch-bf16`` (the same under bfloat16
autocast, with the bicubic skip in float32; only on a CPU with native bf16, AVX512-BF16 or AMX,
where it is not emulated), ``torch-int8`` (PyTorch's own oneDNN int8
kernels, `adasr.runtime.int8`, calibrated on frames of a real clip other than the timed one)
and ``runtime-onnx`` (the torch-free runtime of the core set-up, `adasr.runtime.onnx_engine`,
on the package's runtime graphs), with the fixed-size exports' ``ort-*`` rows where asked.
For each level: ms per frame (all backends timed in alternating rounds on the same frame, in
one process), the PSNR of each backend's output against the float output on the
timed frame, and PSNR-Y against HR on a benchmark set (the SR protocol). A large convolution
timed in the same run gives the machine's achieved float32 peak, against which each level's
GFLOP/s (2 x MACs / time) is reported.

With one thread, per-frame time is the process's CPU time (`time.process_time`), which other
jobs on a shared machine disturb far less than wall time; with more threads it is wall time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from adasr.errors import ConfigError
from adasr.timing import provenance

if TYPE_CHECKING:
    from adasr.package import Package

__all__ = ["Fn", "backends_png", "clip_frames", "conv_peak_gflops", "level_backends", "run_backends"]

Fn = Callable[[np.ndarray], np.ndarray]


def _clock() -> Callable[[], float]:
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def conv_peak_gflops(repeats: int = 5, hw: tuple[int, int] = (180, 320), channels: int = 64) -> float:
    """Achieved float32 GFLOP/s of one large 3x3 conv (channels -> channels) on this machine."""
    x = torch.rand(1, channels, *hw).contiguous(memory_format=torch.channels_last)
    w = torch.rand(channels, channels, 3, 3)
    clock = _clock()
    with torch.inference_mode():
        F.conv2d(x, w, padding=1)
        times = []
        for _ in range(repeats):
            t0 = clock()
            F.conv2d(x, w, padding=1)
            times.append(clock() - t0)
    flops = 2.0 * channels * channels * 9 * hw[0] * hw[1]
    return flops / min(times) / 1e9


def level_backends(package: Package, calib: Sequence[np.ndarray], only: Sequence[int] | None = None,
                   onnx_folder: Path | None = None, ort_calib: Sequence[np.ndarray] | None = None,
                   luma: bool = False, tile: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Per level: {"index", "id", "params", "macs_per_px", "fns": {backend: frame -> frame}}.
    ort_calib: ONNX Runtime's calibration frames, all of the export size (default `calib`)."""
    from adasr.runtime.engine import Engine, frame_to_tensor, phases_to_frame
    from adasr.runtime.int8 import quantize_level

    engine = Engine(package, tile=tile)
    notes: list[str] = []
    runtime = None  # the torch-free runtime's engine (make run's set-up), where the package has its graphs
    if package.path is not None:
        from adasr.package import read_package_arrays
        from adasr.runtime.onnx_engine import OnnxEngine, graphs_folder

        if (graphs_folder(package.path) / "manifest.json").is_file():
            runtime = OnnxEngine(read_package_arrays(package.path))
        else:
            notes.append(f"{RUNTIME}: no runtime graphs beside {package.path} (adasr export --format runtime)")
    if onnx_folder is not None:
        from adasr.bench.ort import available

        why = available()
        if why:
            notes.append(why)
            onnx_folder = None
    from adasr.threads import native_bf16

    bf16_native = native_bf16() and engine.device.type == "cpu"
    rows = []
    if only is not None and max(only) >= len(engine.levels):
        raise ConfigError(f"--levels: the package has levels 0-{len(engine.levels) - 1}, got {max(only)}")
    for index, level in enumerate(engine.levels):
        if only is not None and index not in only:
            continue

        def fp32(frame: np.ndarray, index: int = index) -> np.ndarray:
            if engine.level != index:
                engine.switch(index)
            return engine.process(frame)

        fns: dict[str, Fn] = {"torch-fp32": fp32}
        if bf16_native:  # emulated bf16 (no AVX512-BF16 / AMX) is slower than fp32: no row there
            def bf16(frame: np.ndarray, index: int = index) -> np.ndarray:
                if engine.level != index:
                    engine.switch(index)
                with torch.autocast("cpu", dtype=torch.bfloat16):  # the skip stays float32 (adasr.nn.supernet)
                    return engine.process(frame)

            fns["torch-bf16"] = bf16
        if runtime is not None:
            def onnx_runtime(frame: np.ndarray, index: int = index, runtime: Any = runtime) -> np.ndarray:
                if runtime.level != index:
                    runtime.switch(index)
                return runtime.process(frame)

            fns[RUNTIME] = onnx_runtime
        try:
            q = quantize_level(package.level_model(level), calib)
        except ConfigError as exc:
            notes.append(f"torch-int8 L{index}: {exc}")
        else:
            def int8(frame: np.ndarray, q: Any = q) -> np.ndarray:
                with torch.inference_mode():
                    if tile is not None and max(frame.shape[:2]) > tile:  # as the engine tiles
                        from adasr.upscale import sr_tiles

                        return sr_tiles(q, frame, q.scale, tile, engine.overlap)
                    return phases_to_frame(q.phases(frame_to_tensor(frame)), q.scale)

            fns["torch-int8"] = int8
            bits = q.weight_bits()
        if luma:  # speed only: untrained head and upsampler (adasr.bench.luma)
            from adasr.bench.luma import luma_frame_fn

            try:
                fns[LUMA] = luma_frame_fn(package.level_model(level))
            except ConfigError as exc:
                notes.append(f"{LUMA} L{index}: {exc}")
        if onnx_folder is not None:
            from adasr.bench.ort import ort_backends

            try:
                oc = calib if ort_calib is None else ort_calib
                fns.update(ort_backends(package.level_model(level), oc[0].shape[:2], oc,
                                        onnx_folder, torch.get_num_threads()))
            except (ValueError, RuntimeError) as exc:
                notes.append(f"ONNX Runtime L{index}: {str(exc).splitlines()[0]}")
        macs_px = level.macs / (package.family.lr_hw[0] * package.family.lr_hw[1])
        rows.append({"index": index, "id": level.config.id, "params": level.params, "macs_per_px": macs_px,
                     "fns": fns, "weight_bits": bits if "torch-int8" in fns else None})
    return rows, notes


RUNTIME = "runtime-onnx"  # adasr.runtime.onnx_engine: what the torch-free core runs (any size, uint8 in and out)
LUMA = "luma-bound"  # timed only: the luma-only form of a level with untrained head and upsampler


def clip_frames(video: Path, lr_hw: tuple[int, int], count: int, stride: int = 10,
                enlarge: bool = True) -> list[np.ndarray]:
    """`count` frames of `video`, every `stride`-th, resized to `lr_hw` with the protocol's bicubic.
    enlarge False: a frame smaller than `lr_hw` on a side is kept at its own size (an enlarged
    frame is smoother than real content, and int8 calibrated on it clips real detail)."""
    from adasr.data.imresize import imresize
    from adasr.errors import InputError
    from adasr.video import read_frames

    out = []
    for i, f in enumerate(read_frames(video, max_frames=count * stride)):
        if i % stride == 0:
            if not enlarge and (f.shape[0] < lr_hw[0] or f.shape[1] < lr_hw[1]):
                out.append(np.ascontiguousarray(f))
                continue
            lr = imresize(f, output_shape=lr_hw)
            out.append(np.ascontiguousarray(np.clip(np.round(lr), 0, 255).astype(np.uint8)))
    if not out:
        raise InputError(f"{video}: no frames decoded")
    return out


def run_backends(package_path: str | Path, *, calib_video: Path, time_video: Path | None,
                 lr_sizes: Sequence[tuple[int, int]] = ((180, 320),), set_name: str | None = "Set5",
                 calib_frames: int = 4, rounds: int = 3, repeats: int = 3, max_images: int | None = None,
                 levels: Sequence[int] | None = None, onnx_folder: Path | None = None, peers_dir: Path | None = None,
                 on_progress: Callable[[str], None] | None = None, luma: bool = False,
                 tile: int | None = None) -> dict[str, Any]:
    from adasr.bench.peers import _frame
    from adasr.metrics import psnr, psnr_y
    from adasr.package import load_package
    from adasr.paths import benchmark_dir
    from adasr.runtime.profile import device_key

    say = on_progress or (lambda m: None)
    package = load_package(str(package_path))
    scale = package.scale
    say("peak conv")
    peak = conv_peak_gflops()
    calib = clip_frames(calib_video, lr_sizes[0], calib_frames, enlarge=False)
    count = len(levels) if levels else len(package.family)
    say(f"quantizing {count} levels on {len(calib)} frames of {calib_video.name}")
    ort_calib = None if onnx_folder is None else clip_frames(calib_video, lr_sizes[0], calib_frames)
    levels, notes = level_backends(package, calib, levels, onnx_folder, ort_calib, luma=luma, tile=tile)
    peers = []
    if peers_dir is not None:
        from adasr.bench.peers import opencv_upscalers

        peers, why = opencv_upscalers(scale, peers_dir)
        notes.extend(why)
    backends = sorted({b for r in levels for b in r["fns"]}, key=lambda b: (b != "torch-fp32", b))
    result: dict[str, Any] = {"provenance": provenance(),
                              "package": str(package_path), "scale": scale, "threads": torch.get_num_threads(),
                              "device": device_key("cpu", torch.get_num_threads()), "peak_gflops": peak,
                              "clock": "cpu" if torch.get_num_threads() == 1 else "wall",
                              "calib_video": str(calib_video), "time_video": str(time_video) if time_video else None,
                              "backends": backends, "notes": notes, "tile": tile, "sizes": [], "levels": [],
                              "peers": [{"name": p.name, "params": p.params} for p in peers]}
    pairs = []
    if set_name:
        from adasr.data.datasets import load_pairs

        pairs = load_pairs(str(benchmark_dir(set_name)), scale, limit=max_images)
    for r in levels:
        row = {k: v for k, v in r.items() if k != "fns"}
        row["weight_bits"] = r.get("weight_bits")
        if pairs:
            row[set_name] = {}
            for b, fn in r["fns"].items():
                if b != LUMA:
                    row[set_name][b] = float(np.mean([psnr_y(fn(p.lr), p.hr, border=scale) for p in pairs]))
        result["levels"].append(row)
    for p, entry in zip(peers, result["peers"]):
        if pairs:
            entry[set_name] = float(np.mean([psnr_y(p.fn(q.lr), q.hr, border=scale) for q in pairs]))
    clock = _clock()
    for lr_hw in lr_sizes:
        frame = _frame(time_video, lr_hw)
        say(f"timing at {lr_hw[1]}x{lr_hw[0]}")
        times: dict[tuple[int, str], list[float]] = {}
        fidelity: dict[tuple[int, str], float] = {}
        for r in levels:
            ref = r["fns"]["torch-fp32"](frame)
            for b, fn in r["fns"].items():
                out = fn(frame)
                # capped at 100 dB: identical outputs (fp32 against itself) give inf, not JSON
                fidelity[(r["index"], b)] = None if b == LUMA else \
                    min(100.0, psnr(out.astype(np.float64), ref.astype(np.float64), 255.0))
        for _ in range(rounds):
            for r in levels:
                for b, fn in r["fns"].items():
                    fn(frame)  # the switch and any first-call work stay outside the timing
                    for _ in range(repeats):
                        t0 = clock()
                        fn(frame)
                        times.setdefault((r["index"], b), []).append(clock() - t0)
            for p in peers:  # the OpenCV peers as points, in the same rounds
                p.fn(frame)
                for _ in range(repeats):
                    t0 = clock()
                    p.fn(frame)
                    times.setdefault((-1, p.name), []).append(clock() - t0)
        size = {"lr_hw": list(lr_hw), "rows": []}
        for r in levels:
            for b in r["fns"]:
                s = statistics.median(times[(r["index"], b)])
                gflops = 2.0 * r["macs_per_px"] * lr_hw[0] * lr_hw[1] / s / 1e9
                size["rows"].append({"level": r["index"], "backend": b, "ms": s * 1e3,
                                     "speedup": None, "psnr_vs_fp32": fidelity[(r["index"], b)],
                                     "gflops": gflops, "of_peak": gflops / peak})
        base = {row["level"]: row["ms"] for row in size["rows"] if row["backend"] == "torch-fp32"}
        for row in size["rows"]:
            row["speedup"] = base[row["level"]] / row["ms"]
        size["peers"] = [{"name": p.name, "ms": statistics.median(times[(-1, p.name)]) * 1e3} for p in peers]
        result["sizes"].append(size)
    return result


def backends_png(result: dict[str, Any], path: str | Path) -> None:
    """ms per frame of every level by backend, one panel per frame size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for b in result["backends"]:
            rows = [r for r in size["rows"] if r["backend"] == b]
            ax.plot([r["level"] for r in rows], [r["ms"] for r in rows], marker="o", label=b)
        h, w = size["lr_hw"]
        ax.set_title(f"x{result['scale']}, {w}x{h} LR, {result['threads']} thread(s)")
        ax.set_xlabel("level")
        ax.set_ylabel(f"ms / frame ({result['clock']} time)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_int8_profile(package_path: str | Path, result: dict[str, Any], set_name: str,
                      tolerance_db: float) -> tuple[str, list[int]]:
    """Store `result`'s int8 measurements as the ``int8`` entry of the package's profile for the
    bench's device key; returns (key, the level indices precision "auto" now picks)."""
    from adasr.package import load_package
    from adasr.runtime.int8_rule import int8_choice
    from adasr.runtime.precision import section_from_bench

    package = load_package(str(package_path))
    key = result["device"]
    if key not in package.profiles:
        raise ConfigError(f"{package_path} has no profile for {key} (it has {sorted(package.profiles) or 'none'}); "
                          f"profile it first at the same thread count (adasr profile)")
    section = section_from_bench(result, set_name, tolerance_db)
    package.add_profile(key, {**package.profiles[key], "int8": section})
    return key, int8_choice(package.family, section)
