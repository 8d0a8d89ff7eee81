"""adasr's levels against the SR models people reach for today, on the same frames and threads.

Peers (each an `Upscaler`: uint8 RGB H x W x 3 in, uint8 RGB sH x sW x 3 out):

- bicubic (torch, the same interpolation as the levels' global skip);
- OpenCV `dnn_superres` FSRCNN, FSRCNN-s and ESPCN, the graphs their authors released
  (`peers/` of the shared data; luma only, bicubic chroma, as OpenCV runs them);
- Anime4K's ACNet through `pyanime4k` (its weights are inside the wheel), CPU processor;
- adasr's own single models (`--model FILE`, e.g. FSRCNN/ESPCN/IMDN trained with `adasr train`);
- every level of an adasr package, extracted as a static module.

Quality is the SR protocol (MATLAB bicubic LR, PSNR/SSIM on Y, border = scale) on benchmark sets;
speed is frames per second on one real video frame shrunk to the LR size, every upscaler timed in
alternating rounds in this one process with the same thread count, so machine noise hits all alike.
The peer packages are the optional extra `adasr[peers]`; a peer whose package is missing is
reported as unavailable, never silently dropped.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from adasr.errors import ConfigError, InputError
from adasr.frames import to_frame, to_tensor
from adasr.timing import provenance

if TYPE_CHECKING:
    from adasr.data.datasets import SRPair

__all__ = ["Upscaler", "bicubic_upscaler", "opencv_upscalers", "acnet_upscaler", "model_upscaler",
           "package_upscalers", "score", "time_upscalers", "run_peers", "pareto_png"]

Fn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Upscaler:
    name: str
    kind: str  # "adasr-level", "adasr-model", "peer", "bicubic"
    fn: Fn
    params: int | None = None


def _torch_fn(module: torch.nn.Module) -> Fn:
    module = module.eval()

    @torch.inference_mode()
    def fn(rgb: np.ndarray) -> np.ndarray:
        return to_frame(module(to_tensor(rgb)))

    return fn


def bicubic_upscaler(scale: int) -> Upscaler:
    from torch.nn import functional as F

    @torch.inference_mode()
    def fn(rgb: np.ndarray) -> np.ndarray:
        x = to_tensor(rgb)
        return to_frame(F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False))

    return Upscaler("bicubic", "bicubic", fn, 0)


# OpenCV dnn_superres names and the released graph files (shared data, peers/).
_OPENCV_MODELS = (("FSRCNN", "fsrcnn", "FSRCNN_x{s}.pb"), ("FSRCNN-s", "fsrcnn", "FSRCNN-small_x{s}.pb"),
                  ("ESPCN", "espcn", "ESPCN_x{s}.pb"))
# Parameter counts of the released graphs (their papers: FSRCNN 12K, FSRCNN-s 4K, ESPCN 20-25K by scale).
_OPENCV_PARAMS = {"FSRCNN": 12_000, "FSRCNN-s": 4_000, "ESPCN": 24_000}


def opencv_upscalers(scale: int, peers_dir: Path) -> tuple[list[Upscaler], list[str]]:
    """The OpenCV peers whose graph exists for `scale`; (upscalers, notes on what is missing). OpenCV's
    thread pool is set to torch's thread count, so that peers and levels are timed on the same threads
    (OpenCV's default is every core)."""
    try:
        import cv2  # the optional extra adasr[peers]
        dnn_superres = cv2.dnn_superres
    except (ImportError, AttributeError):
        return [], ["OpenCV dnn_superres not installed (pip install 'adasr[peers]')"]
    import torch

    cv2.setNumThreads(max(1, torch.get_num_threads()))
    found, notes = [], []
    for label, algo, pattern in _OPENCV_MODELS:
        path = Path(peers_dir) / pattern.format(s=scale)
        if not path.is_file():
            notes.append(f"{label} x{scale}: no {path.name} in {peers_dir}")
            continue
        impl = dnn_superres.DnnSuperResImpl_create()
        try:
            impl.readModel(str(path))
        except cv2.error as exc:
            notes.append(f"{label} x{scale}: OpenCV cannot read {path.name} ({str(exc).splitlines()[0]})")
            continue
        impl.setModel(algo, scale)

        def fn(rgb: np.ndarray, impl=impl) -> np.ndarray:  # OpenCV works in BGR
            return np.ascontiguousarray(impl.upsample(np.ascontiguousarray(rgb[..., ::-1]))[..., ::-1])

        found.append(Upscaler(f"OpenCV {label}", "peer", fn, _OPENCV_PARAMS[label]))
    return found, notes


def acnet_upscaler(scale: int, model: str = "acnet-hdn0") -> tuple[list[Upscaler], list[str]]:
    try:
        from pyanime4k.pyac import pyac
    except ImportError:
        return [], ["pyanime4k not installed (pip install 'adasr[peers]')"]
    processor = pyac.core.Processor("cpu", 0, model)

    def fn(rgb: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(processor(np.ascontiguousarray(rgb), float(scale)))

    return [Upscaler(f"Anime4K {model.upper()}", "peer", fn, None)], []


def model_upscaler(path: str | Path, scale: int) -> Upscaler:
    from adasr.modelfile import load_model

    model, spec = load_model(path)
    if spec.scale != scale:
        raise ConfigError(f"{path} is an x{spec.scale} model; this bench runs x{scale}")
    params = sum(p.numel() for p in model.parameters())
    path = Path(path)  # named by its run folder (runs/imdn-x2/model.safetensors), else by its file name
    tag = path.parent.name if path.stem == "model" and path.parent.name else path.stem
    return Upscaler(f"adasr {spec.arch} ({tag})", "adasr-model", _torch_fn(model), params)


def package_upscalers(path: str | Path) -> tuple[int, list[Upscaler]]:
    """(scale, one upscaler per level, extracted from the package's supernet)."""
    from adasr.package import load_package

    package = load_package(path)
    ups = []
    for index, level in enumerate(package.family):
        static = package.level_model(level)
        name = f"adasr L{index}" + (" (own weights)" if package.has_own(level) else "")
        ups.append(Upscaler(name, "adasr-level", _torch_fn(static), level.params))
    return package.scale, ups


# -- quality ------------------------------------------------------------------------------------

def score(up: Upscaler, pairs: Sequence[Any], scale: int) -> dict[str, float]:
    """Mean PSNR / SSIM on Y of `up` over SR pairs, as `adasr.evaluation.evaluate` scores a model."""
    from adasr.data.datasets import gray_of
    from adasr.metrics import psnr_y, ssim_y

    psnrs, ssims = [], []
    for pair in pairs:
        sr = up.fn(pair.lr)
        if sr.shape != pair.hr.shape:
            raise InputError(f"{up.name}: output {sr.shape} does not match HR {pair.hr.shape} for {pair.name}")
        hr = pair.hr
        if pair.gray:
            sr, hr = gray_of(sr), hr[..., 0]
        psnrs.append(psnr_y(sr, hr, border=scale))
        ssims.append(ssim_y(sr, hr, border=scale))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}


# -- speed --------------------------------------------------------------------------------------

#: A timing is trusted with at least this many samples and a spread (interquartile range over
#: the median) of at most TRUSTED_SPREAD; no comparison at equal speed is made from timings that are not.
TRUSTED_SAMPLES = 10
TRUSTED_SPREAD = 0.20


def timing_spread(samples: Sequence[float]) -> float:
    """(75th - 25th percentile) / median of `samples` (0 for fewer than two)."""
    if len(samples) < 2:
        return 0.0
    q1, med, q3 = np.percentile(np.asarray(samples, dtype=np.float64), [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else math.inf


def timing_trusted(samples: Sequence[float]) -> bool:
    return len(samples) >= TRUSTED_SAMPLES and timing_spread(samples) <= TRUSTED_SPREAD


def time_upscalers(ups: Sequence[Upscaler], frame: np.ndarray, *, rounds: int = 3, repeats: int = 5,
                   warmup: int = 2, samples: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Median seconds per frame of each upscaler, measured in alternating rounds (`samples`, when
    given, gets every timing by name)."""
    times: dict[str, list[float]] = {u.name: [] for u in ups} if samples is None else samples
    for u in ups:
        times.setdefault(u.name, [])
    for u in ups:
        for _ in range(warmup):
            u.fn(frame)
    for _ in range(rounds):
        for u in ups:
            for _ in range(repeats):
                t0 = time.perf_counter()
                u.fn(frame)
                times[u.name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _frame(video: Path | None, lr_hw: tuple[int, int]) -> np.ndarray:
    """One real frame (the middle of `video`) shrunk to `lr_hw` with the protocol's bicubic."""
    from adasr.data.imresize import imresize

    h, w = lr_hw
    if video is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    from adasr.video import read_frames

    frames = list(read_frames(video, max_frames=12))
    if not frames:
        raise InputError(f"{video}: no frames decoded")
    out = imresize(frames[len(frames) // 2], output_shape=(h, w))
    return np.ascontiguousarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


# -- the bench ----------------------------------------------------------------------------------

def run_peers(package: str | Path, *, sets: Sequence[str] = ("Set5", "Set14"), models: Sequence[str | Path] = (),
              peers_dir: str | Path | None = None, video: str | Path | None = None,
              lr_hw: tuple[int, int] = (180, 320), rounds: int = 3, repeats: int = 5,
              max_images: int | None = None, crop: int | None = None, acnet: bool = True,
              on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every level of `package` and every available peer: PSNR/SSIM per set and FPS at `lr_hw`."""
    from adasr.data.datasets import load_pairs
    from adasr.paths import benchmark_dir, data_root
    from adasr.runtime.profile import device_key

    say = on_progress or (lambda message: None)
    scale, levels = package_upscalers(package)
    peers_dir = Path(peers_dir) if peers_dir is not None else data_root() / "peers"
    ups: list[Upscaler] = [bicubic_upscaler(scale)]
    notes: list[str] = []
    found, missing = opencv_upscalers(scale, peers_dir)
    ups += found
    notes += missing
    if acnet:
        found, missing = acnet_upscaler(scale)
        ups += found
        notes += missing
    ups += [model_upscaler(m, scale) for m in models]
    ups += levels
    names = [u.name for u in ups]
    if len(set(names)) != len(names):
        raise ConfigError(f"two upscalers share a name: {names}")
    rows = {u.name: {"name": u.name, "kind": u.kind, "params": u.params} for u in ups}
    for set_name in sets:
        pairs = load_pairs(str(benchmark_dir(set_name)), scale, limit=max_images)
        if crop:
            pairs = [_crop_pair(p, crop, scale) for p in pairs]
        for u in ups:
            say(f"{set_name}: {u.name}")
            rows[u.name][set_name] = score(u, pairs, scale)
    frame = _frame(None if video is None else Path(video), lr_hw)
    say(f"timing {len(ups)} upscalers at {lr_hw[1]}x{lr_hw[0]}")
    samples: dict[str, list[float]] = {}
    seconds = time_upscalers(ups, frame, rounds=rounds, repeats=repeats, samples=samples)
    for name, s in seconds.items():
        rows[name]["ms"] = s * 1e3
        rows[name]["fps"] = 1.0 / s
        rows[name]["timing_samples"] = len(samples[name])
        rows[name]["timing_spread"] = timing_spread(samples[name])
        rows[name]["timing_trusted"] = timing_trusted(samples[name])
    result = {"package": str(package), "scale": scale, "sets": list(sets), "lr_hw": list(lr_hw),
              "video": None if video is None else str(video), "threads": torch.get_num_threads(),
              "device": device_key("cpu", torch.get_num_threads()), "notes": notes,
              "rows": list(rows.values())}
    untrusted = [r["name"] for r in rows.values() if not r["timing_trusted"]]
    # "every level above every peer" compares PSNR alone and stands whatever the timings; the comparisons
    # at equal speed (adasr's own models against the levels) use the timings, and none comes from noise
    result["verdict"] = _verdict(result, at_equal_speed=not untrusted)
    if untrusted:
        result["verdict_withheld"] = (
            f"{len(untrusted)} of {len(rows)} timings are not trustworthy (fewer than {TRUSTED_SAMPLES} samples "
            f"or a spread above {100 * TRUSTED_SPREAD:.0f}%): {', '.join(untrusted)}; no comparison at equal "
            f"speed. Rerun with more --rounds / --repeats, on a quieter machine")
    result["provenance"] = provenance()
    return result


def _crop_pair(pair: SRPair, crop: int, scale: int) -> SRPair:
    """The top-left `crop` x `crop` LR corner of a pair (and its HR), for quick tests."""
    import dataclasses

    lr = pair.lr[:crop, :crop]
    hr = pair.hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
    return dataclasses.replace(pair, lr=np.ascontiguousarray(lr), hr=np.ascontiguousarray(hr))


def _verdict(result: dict[str, Any], *, at_equal_speed: bool = True) -> dict[str, Any]:
    """Per set: is every adasr level above every peer (OpenCV, Anime4K) and bicubic in PSNR? With
    `at_equal_speed`, also each of adasr's own models against the best level at least as fast."""
    rows = result["rows"]
    out: dict[str, Any] = {}
    for set_name in result["sets"]:
        levels = [r for r in rows if r["kind"] == "adasr-level"]
        others = [r for r in rows if r["kind"] in ("peer", "bicubic")]
        if not levels or not others:
            continue
        best_other = max(others, key=lambda r: r[set_name]["psnr"])
        worst_level = min(levels, key=lambda r: r[set_name]["psnr"])
        out[set_name] = {"worst_level": worst_level["name"], "worst_level_psnr": worst_level[set_name]["psnr"],
                         "best_peer": best_other["name"], "best_peer_psnr": best_other[set_name]["psnr"],
                         "every_level_above_every_peer": worst_level[set_name]["psnr"] > best_other[set_name]["psnr"]}
        models = [r for r in rows if r["kind"] == "adasr-model"]
        if models and at_equal_speed:
            out[set_name]["models"] = [_against_levels(m, levels, set_name) for m in models]
    return out


def _against_levels(model: dict[str, Any], levels: Sequence[dict[str, Any]], set_name: str) -> dict[str, Any]:
    """One of adasr's own models against the family at equal speed: the best level at least as
    fast as the model (its PSNR and the margin), or, when every level is slower, the fastest
    level (and `as_fast` false). `at_or_above`: that level's PSNR is not below the model's."""
    fast = [r for r in levels if r["fps"] >= model["fps"]]
    level = max(fast, key=lambda r: r[set_name]["psnr"]) if fast else max(levels, key=lambda r: r["fps"])
    margin = level[set_name]["psnr"] - model[set_name]["psnr"]
    return {"model": model["name"], "model_psnr": model[set_name]["psnr"], "model_fps": model["fps"],
            "level": level["name"], "level_psnr": level[set_name]["psnr"], "level_fps": level["fps"],
            "as_fast": bool(fast), "margin_db": margin, "at_or_above": bool(fast) and margin >= 0}


def pareto_png(result: dict[str, Any], path: str | Path, set_name: str | None = None) -> None:
    """PSNR on `set_name` (default the first set) against FPS: the levels as a line, peers as points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from adasr._atomic import atomic_path

    set_name = set_name or result["sets"][0]
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=120)
    levels = [r for r in result["rows"] if r["kind"] == "adasr-level"]
    ax.plot([r["fps"] for r in levels], [r[set_name]["psnr"] for r in levels], "o-", color="tab:blue",
            label="adasr levels (one supernet; 'own': a level with its own weights)")
    for r in levels:
        tag = r["name"].replace("adasr ", "").replace(" (own weights)", " own")
        ax.annotate(tag, (r["fps"], r[set_name]["psnr"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    markers = {"peer": ("s", "tab:red"), "bicubic": ("x", "black"), "adasr-model": ("^", "tab:green")}
    labelled: set[str] = set()
    names = {"peer": "peers", "bicubic": "bicubic", "adasr-model": "adasr models"}
    for r in result["rows"]:
        if r["kind"] in markers:
            m, c = markers[r["kind"]]
            label = None if r["kind"] in labelled else names[r["kind"]]
            labelled.add(r["kind"])
            ax.scatter([r["fps"]], [r[set_name]["psnr"]], marker=m, color=c, label=label)
            ax.annotate(r["name"], (r["fps"], r[set_name]["psnr"]), fontsize=7, xytext=(4, -9),
                        textcoords="offset points")
    ax.set_xscale("log")
    h, w = result["lr_hw"]
    ax.set_xlabel(f"frames per second at {w}x{h} LR ({result['threads']} threads, log scale)")
    ax.set_ylabel(f"{set_name} x{result['scale']} PSNR (dB, Y)")
    ax.set_title(f"adasr levels vs peers, x{result['scale']}")
    ax.grid(True, alpha=0.3)
    untrusted = [r for r in result["rows"] if r.get("timing_trusted") is False]
    if untrusted:
        ax.scatter([r["fps"] for r in untrusted], [r[set_name]["psnr"] for r in untrusted], s=160,
                   facecolors="none", edgecolors="tab:orange", label="timing not trustworthy")
    # outside the axes, so that it never covers a point
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
