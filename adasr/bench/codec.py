"""`adasr bench codec`: rate-distortion of content-adaptive model streaming vs H.264/H.265.

For each clip, on the same HR frames (Y, border = scale; PSNR of the clip from the MSE over all
frames, as SRVC reports it, so a black frame coded exactly does not make it infinite; mean SSIM
over every `ssim_every`-th frame), with bits per pixel = (every stored byte * 8) / (frames * HR
pixels):

* HR H.264 slow, HR H.265 slow at `hr_crfs` (the anchor for BD-rate / BD-PSNR is HR H.265 slow);
* LR H.265 slow at `lr_crfs` + bicubic, + generic SR (the bundled model, nothing streamed),
  + one-shot customisation (the model trained once on the whole clip, sent in full at the start),
  + adasr stream (first model + per-segment sparse deltas; all model bits counted), and the
  same stream with its first record naming the generic model by hash (a receiver that holds
  the bundled model: the base reference + the deltas counted; the same frames), and (`rd`)
  the by-hash stream that sends only the updates that pay at the content's own
  rate-distortion slope (`adasr.stream.encoder.content_lambda`; the others get empty records);
* sweeps at `sweep_crf` like SRVC Tables 5.2-5.3 (eta, tau) and AMS Table 4.3 (selection
  strategies at eta 1% and 5%);
* with `package`: the package's supernet adapted for all its levels at once, each level's PSNR
  before and after.

Encode speed: content encode + decode + adaptation time against the clip's duration.
Writes codec.json and PNGs into the output folder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adasr.errors import ConfigError
from adasr.frames import to_frame, to_tensor
from adasr.metrics import bd_psnr, bd_rate, ssim_y
from adasr.nn.precision import resolved_precision
from adasr.stream.adapt import AdaptConfig
from adasr.stream.encoder import (
    EncodeSettings,
    build_model_stream,
    content_lambda,
    downsample,
    encode_content,
    initial_model,
    load_clip,
)
from adasr.timing import provenance

__all__ = ["ANCHOR", "RD_GATED", "CodecBenchConfig", "Progress", "Quality", "bench_clip", "run_codec_bench",
           "summary_lines", "video_psnr"]

Progress = Callable[[str, int, int], None]
ANCHOR = "HR H.265 slow"
BY_HASH = "LR H.265 + adasr stream, base by hash"
RD_GATED = "LR H.265 + adasr stream, base by hash, updates that pay"


@dataclass(frozen=True)
class CodecBenchConfig:
    max_frames: int | None = 250
    crop_hw: tuple[int, int] | None = None
    scale: int = 2
    hr_crfs: tuple[int, ...] = (26, 30, 34, 38, 42)
    lr_crfs: tuple[int, ...] = (18, 22, 26, 30, 34)
    sweep_crf: int = 26
    sweeps: bool = True
    package: Path | None = None
    tau: float = 5.0  # SRVC's tau and eta: the model stream's cheapest useful updates (journal 31)
    eta: float = 0.01
    steps: int = 60
    oneshot_steps: int = 100
    lr: float = 1e-3
    patch: int = 48  # LR crop side of the stream's training crops (AdaptConfig.patch)
    ssim_every: int = 5
    seed: int = 0
    device: str = "auto"
    etas: tuple[float, ...] = (0.005, 0.01, 0.05, 0.1, 1.0)
    taus: tuple[float, ...] = (2.0, 5.0, 10.0, math.inf)
    strategy_etas: tuple[float, ...] = (0.01, 0.05)
    strategies: tuple[str, ...] = ("gradient", "ams", "random", "first", "last", "first_last")
    package_steps: int = 20
    values: str = "int8"  # the adasr stream's delta values: int8, float16 or float32
    rd: bool = True  # also the stream that sends only the updates that pay (EncodeSettings.updates="rd")
    rd_lookahead: int = 2  # that stream's EncodeSettings.rd_lookahead
    precision: str = "auto"  # of the streams' adaptation steps (AdaptConfig.precision)


def _y_mse(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    from adasr.metrics import rgb_to_ycbcr_y

    ys, yh = rgb_to_ycbcr_y(sr), rgb_to_ycbcr_y(hr)
    if border:
        ys, yh = ys[border:-border, border:-border], yh[border:-border, border:-border]
    return float(np.mean((ys - yh) ** 2))


def video_psnr(mses: Sequence[float]) -> float:
    """PSNR of a whole clip from the mean squared error over all its frames (as SRVC reports it);
    finite even when some frames (black ones) are reproduced exactly."""
    mse = float(np.mean(mses))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


class Quality:
    """Clip PSNR on Y (from the MSE over every frame) and mean SSIM on Y (every N-th frame)."""

    def __init__(self, hr: np.ndarray, border: int, ssim_every: int) -> None:
        self.hr, self.border, self.every = hr, border, ssim_every
        self.mse: list[float] = []
        self.ssim: list[float] = []

    def add(self, i: int, frame: np.ndarray) -> None:
        self.mse.append(_y_mse(frame, self.hr[i], self.border))
        if i % self.every == 0:
            self.ssim.append(ssim_y(frame, self.hr[i], self.border))

    def result(self) -> dict[str, float]:
        return {"psnr": video_psnr(self.mse), "ssim": float(np.mean(self.ssim))}


@torch.inference_mode()
def _sr(model, frame: np.ndarray, device: torch.device, cfg=None) -> np.ndarray:
    x = to_tensor(frame, device=device)
    return to_frame(model(x) if cfg is None else model(x, cfg=cfg))


def _point(bits: int, n: int, h: int, w: int, duration: float, q: dict[str, float], **extra) -> dict[str, Any]:
    return {"bits": bits, "bpp": bits / (n * h * w), "kbps": bits / duration / 1000, **q, **extra}


def _stream_point(dec, hr, fps, settings, content_bits, quality_args, device, base=None, levels_eval=False):
    """Run the model stream on decoded LR frames; quality of what the decoder shows."""
    n, h, w = hr.shape[:3]
    q = Quality(hr, *quality_args)

    def on_segment(t, model, a, b):
        for i in range(a, b):
            q.add(i, _sr(model, dec[i], device))

    started = time.perf_counter()
    ms = build_model_stream(dec, hr, fps, settings, on_segment=on_segment, base=base)
    adapt_s = ms.seconds
    init_bits, delta_bits = 8 * len(ms.init), 8 * sum(map(len, ms.deltas))
    duration = n / float(fps)
    point = _point(content_bits + init_bits + delta_bits, n, h, w, duration, q.result(),
                   model_init_bits=init_bits, model_delta_bits=delta_bits,
                   model_kbps=(init_bits + delta_bits) / duration / 1000,
                   model_delta_kbps=delta_bits / duration / 1000, adapt_s=adapt_s, adapt_cpu_s=ms.cpu_seconds,
                   wall_s=time.perf_counter() - started, segments=len(ms.deltas),
                   changed=[s["changed"] for s in ms.segments])
    return point, ms


def _by_hash(point: dict[str, Any], ms, n: int, h: int, w: int, duration: float) -> dict[str, Any]:
    """The same stream with its first record a base reference (the receiver holds the generic
    model): the same weights after every segment, so the same frames; only the first record's
    bits change."""
    ref_bits = 8 * len(ms.base_ref)
    bits = point["bits"] - point["model_init_bits"] + ref_bits
    model_bits = ref_bits + point["model_delta_bits"]
    return dict(point, bits=bits, bpp=bits / (n * h * w), kbps=bits / duration / 1000, model_init_bits=ref_bits,
                model_kbps=model_bits / duration / 1000, base_by_hash=True)


def _bd(curves: dict[str, list[dict]], key: str) -> dict[str, Any]:
    anchor = curves[ANCHOR]
    out = {}
    for name, pts in curves.items():
        if name == ANCHOR:
            continue
        ra, pa = [p["bpp"] for p in anchor], [p[key] for p in anchor]
        rb, pb = [p["bpp"] for p in pts], [p[key] for p in pts]
        try:
            out[name] = {"bd_rate": bd_rate(ra, pa, rb, pb), "bd_" + key: bd_psnr(ra, pa, rb, pb)}
        except ConfigError as exc:
            out[name] = {"bd_rate": None, "bd_" + key: None, "note": str(exc)}
    return out


def bench_clip(video: Path, cfg: CodecBenchConfig, on_progress: Progress | None = None) -> dict[str, Any]:
    from adasr.modelfile import load_model
    from adasr.nn.registry import build_model
    from adasr.paths import bundled_model
    from adasr.stream.encoder import pick_device

    say = on_progress or (lambda *a: None)
    device = pick_device(cfg.device)
    k = cfg.scale
    hr, fps = load_clip(video, k, cfg.max_frames, cfg.crop_hw)
    n, h, w = hr.shape[:3]
    duration = n / float(fps)
    qa = (k, cfg.ssim_every)
    curves: dict[str, list[dict]] = {}
    timing: dict[str, Any] = {}

    for codec, name in (("h264", "HR H.264 slow"), ("h265", ANCHOR)):
        for j, crf in enumerate(cfg.hr_crfs):
            say(name, j, len(cfg.hr_crfs))
            t0 = time.perf_counter()
            data, dec = encode_content(hr, fps, codec, crf, "slow")
            secs = time.perf_counter() - t0
            q = Quality(hr, *qa)
            for i in range(n):
                q.add(i, dec[i])
            curves.setdefault(name, []).append(_point(8 * len(data), n, h, w, duration, q.result(), crf=crf,
                                                      encode_s=secs))
            say(name, j + 1, len(cfg.hr_crfs))

    lr = downsample(hr, k)
    bicubic = build_model("bicubic", scale=k).to(device)
    generic = load_model(bundled_model(k), device=device)[0]
    stream_settings = EncodeSettings(scale=k, tau=cfg.tau, device=str(device), delta_dtype=cfg.values,
                                     updates="always",
                                     adapt=AdaptConfig(eta=cfg.eta, steps=cfg.steps, lr=cfg.lr, patch=cfg.patch,
                                                       seed=cfg.seed, precision=cfg.precision))
    oneshot_settings = replace(stream_settings, tau=math.inf, init_steps=cfg.oneshot_steps,
                               adapt=replace(stream_settings.adapt, steps=0))
    decoded = {}
    for j, crf in enumerate(cfg.lr_crfs):
        say("LR H.265 points", j, len(cfg.lr_crfs))
        t0, c0 = time.perf_counter(), time.process_time()
        content, dec = encode_content(lr, fps, "h265", crf, "slow")
        content_s, content_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        decoded[crf] = (content, dec)
        bits = 8 * len(content)
        for model, name in ((bicubic, "LR H.265 + bicubic"), (generic, "LR H.265 + generic SR")):
            q = Quality(hr, *qa)
            for i in range(n):
                q.add(i, _sr(model, dec[i], device))
            curves.setdefault(name, []).append(_point(bits, n, h, w, duration, q.result(), crf=crf))
        point, _ = _stream_point(dec, hr, fps, oneshot_settings, bits, qa, device)
        curves.setdefault("LR H.265 + one-shot", []).append(dict(point, crf=crf))
        point, ms = _stream_point(dec, hr, fps, stream_settings, bits, qa, device)
        point.update(crf=crf, content_s=content_s, content_cpu_s=content_cpu_s,
                     realtime_factor=duration / (content_s + point["adapt_s"]),
                     realtime_factor_cpu=duration / (content_cpu_s + point["adapt_cpu_s"]))
        curves.setdefault("LR H.265 + adasr stream", []).append(point)
        curves.setdefault(BY_HASH, []).append(_by_hash(point, ms, n, h, w, duration))
        if cfg.rd:
            rd = content_lambda(lr, hr, fps, replace(stream_settings, crf=crf, preset="slow"), content, dec,
                                generic, None, stream_settings.rd_every)
            gated = replace(stream_settings, updates="rd", rd_lambda=rd["lambda"], base_by_hash=True,
                            rd_lookahead=cfg.rd_lookahead)
            point, ms = _stream_point(dec, hr, fps, gated, bits, qa, device)
            point.update(crf=crf, rd=rd, sent=sum(bool(s.get("sent")) for s in ms.segments), base_by_hash=True)
            curves.setdefault(RD_GATED, []).append(point)
        say("LR H.265 points", j + 1, len(cfg.lr_crfs))

    result: dict[str, Any] = {
        "video": str(video), "frames": n, "width": w, "height": h, "fps": float(fps), "duration_s": duration,
        "scale": k, "curves": curves, "bd_psnr": _bd(curves, "psnr"), "bd_ssim": _bd(curves, "ssim"),
        "defaults": {"tau": None if math.isinf(cfg.tau) else cfg.tau, "eta": cfg.eta, "steps": cfg.steps,
                     "lr": cfg.lr, "patch": cfg.patch, "strategy": stream_settings.adapt.strategy,
                     "values": stream_settings.delta_dtype,
                     "precision": resolved_precision(cfg.precision, device)},
        "timing": timing,
    }
    streams = curves["LR H.265 + adasr stream"]
    result["default_stream"] = {
        "model_kbps_mean": float(np.mean([p["model_kbps"] for p in streams])),
        "model_delta_kbps_mean": float(np.mean([p["model_delta_kbps"] for p in streams])),
        "model_kbps_base_by_hash_mean": float(np.mean([p["model_kbps"] for p in curves[BY_HASH]])),
        "realtime_factor_mean": float(np.mean([p["realtime_factor"] for p in streams])),
        "realtime_factor_cpu_mean": float(np.mean([p["realtime_factor_cpu"] for p in streams])),
    }

    if cfg.sweeps or cfg.package is not None:
        if cfg.sweep_crf in decoded:
            content, dec = decoded[cfg.sweep_crf]
        else:
            content, dec = encode_content(lr, fps, "h265", cfg.sweep_crf, "slow")
        bits = 8 * len(content)
    if cfg.sweeps:
        sweeps: dict[str, list[dict]] = {"eta": [], "tau": [], "strategy": []}
        runs = ([("eta", e, None, "gradient") for e in cfg.etas] + [("tau", cfg.eta, t, "gradient") for t in cfg.taus]
                + [("strategy", e, None, s) for e in cfg.strategy_etas for s in cfg.strategies])
        for j, (kind, eta, tau, strategy) in enumerate(runs):
            say("sweeps", j, len(runs))
            s = replace(stream_settings, tau=cfg.tau if tau is None else tau,
                        adapt=replace(stream_settings.adapt, eta=eta, strategy=strategy))
            point, _ = _stream_point(dec, hr, fps, s, bits, qa, device)
            sweeps[kind].append(dict(point, eta=eta, tau=None if math.isinf(s.tau) else s.tau, strategy=strategy,
                                     crf=cfg.sweep_crf))
        q = Quality(hr, *qa)
        for i in range(n):
            q.add(i, _sr(generic, dec[i], device))
        sweeps["no_adaptation"] = _point(bits, n, h, w, duration, q.result(), crf=cfg.sweep_crf)
        result["sweeps"] = sweeps

    if cfg.package is not None:
        say("package", 0, 1)
        result["package"] = _bench_package(cfg, dec, hr, fps, bits, device, stream_settings)
    return result


def _bench_package(cfg, dec, hr, fps, content_bits, device, stream_settings) -> dict[str, Any]:
    """Adapt a package's supernet for all its levels at once; every level's PSNR before and after."""
    s = replace(stream_settings, model=str(cfg.package),
                adapt=replace(stream_settings.adapt, steps=cfg.package_steps, batch=4))
    base = initial_model(s)
    model, levels = base[0].to(device), base[2]
    n = len(hr)
    every = cfg.ssim_every
    before = [video_psnr([_y_mse(_sr(model, dec[i], device, c), hr[i], cfg.scale) for i in range(0, n, every)])
              for c in levels]
    per_level: list[list[float]] = [[] for _ in levels]

    def on_segment(t, m, a, b):
        for j, c in enumerate(levels):
            for i in range(a + (-a) % every, b, every):
                per_level[j].append(_y_mse(_sr(m, dec[i], device, c), hr[i], cfg.scale))

    started = time.perf_counter()
    ms = build_model_stream(dec, hr, fps, s, on_segment=on_segment, base=base)
    after = [video_psnr(v) for v in per_level]
    duration = n / float(fps)
    return {
        "package": str(cfg.package), "levels": [c.id for c in levels], "psnr_before": before, "psnr_after": after,
        "gain": [a - b for a, b in zip(after, before)], "all_levels_better": all(a > b for a, b in zip(after, before)),
        "params": ms.info["params"], "model_init_kbps": 8 * len(ms.init) / duration / 1000,
        "model_delta_kbps": 8 * sum(map(len, ms.deltas)) / duration / 1000, "adapt_s": ms.seconds,
        "wall_s": time.perf_counter() - started, "eta": s.adapt.eta, "steps": s.adapt.steps,
        "frames_every": every,
    }


def run_codec_bench(videos: Sequence[Path], out_dir: Path, cfg: CodecBenchConfig,
                    on_progress: Progress | None = None) -> dict[str, Any]:
    from adasr._jsonfile import write_json

    started = time.perf_counter()
    stamp = provenance()
    clips = []
    for video in videos:
        clips.append(bench_clip(Path(video), cfg, on_progress))
        device = torch.device("cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu")
        result = {"config": _cfg_dict(cfg), "device": str(device), "videos": [str(v) for v in videos],
                  "threads": torch.get_num_threads(), "clips": clips, "wall_s": time.perf_counter() - started,
                  "provenance": stamp}
        write_json(out_dir / "codec.json", result)  # after every clip: a long run keeps what it has
    _plots(result, out_dir)
    return result


def _cfg_dict(cfg: CodecBenchConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["package"] = str(cfg.package) if cfg.package else None
    d["tau"] = None if math.isinf(cfg.tau) else cfg.tau
    d["taus"] = [None if math.isinf(t) else t for t in cfg.taus]
    return d


def _plots(result: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adasr._atomic import atomic_path

    for clip in result["clips"]:
        stem = Path(clip["video"]).stem
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, pts in clip["curves"].items():
            pts = sorted(pts, key=lambda p: p["bpp"])
            for ax, key in zip(axes, ("psnr", "ssim")):
                ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], "o-", label=name, ms=4)
        for ax, key in zip(axes, ("PSNR-Y (dB)", "SSIM-Y")):
            ax.set_xscale("log")
            ax.set_xlabel("bits per pixel (HR)")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{stem}: {clip['frames']} frames {clip['width']}x{clip['height']}, x{clip['scale']}")
        fig.tight_layout()
        with atomic_path(out_dir / f"rd_{stem}.png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        if "sweeps" not in clip:
            continue
        sw = clip["sweeps"]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        ax = axes[0]
        ax.plot([p["model_kbps"] for p in sw["eta"]], [p["psnr"] for p in sw["eta"]], "o-")
        for p in sw["eta"]:
            ax.annotate(f"{p['eta'] * 100:g}%", (p["model_kbps"], p["psnr"]), fontsize=8)
        ax.axhline(sw["no_adaptation"]["psnr"], color="gray", ls="--", label="generic SR, no stream")
        ax.set_xlabel("model stream kbps")
        ax.set_ylabel("PSNR-Y (dB)")
        ax.set_title("eta sweep")
        ax.legend(fontsize=8)
        ax = axes[1]
        labels = [("inf" if p["tau"] is None else f"{p['tau']:g}") for p in sw["tau"]]
        ax.bar(labels, [p["psnr"] for p in sw["tau"]])
        ax.set_ylim(min(p["psnr"] for p in sw["tau"]) - 0.3, max(p["psnr"] for p in sw["tau"]) + 0.2)
        ax.set_xlabel("tau (s)")
        ax.set_title("update interval")
        ax = axes[2]
        strategies = sorted({p["strategy"] for p in sw["strategy"]}, key=[p["strategy"] for p in sw["strategy"]].index)
        etas = sorted({p["eta"] for p in sw["strategy"]})
        width = 0.8 / max(1, len(etas))
        for j, e in enumerate(etas):
            vals = [next(p["psnr"] - sw["no_adaptation"]["psnr"] for p in sw["strategy"]
                         if p["eta"] == e and p["strategy"] == s)
                    for s in strategies]
            ax.bar(np.arange(len(strategies)) + j * width, vals, width, label=f"eta {e * 100:g}%")
        ax.set_xticks(np.arange(len(strategies)) + width * (len(etas) - 1) / 2, strategies, rotation=20)
        ax.set_ylabel("PSNR gain over no adaptation (dB)")
        ax.set_title("selection strategy")
        ax.legend(fontsize=8)
        fig.suptitle(f"{stem}: sweeps at LR CRF {sw['eta'][0]['crf']}")
        fig.tight_layout()
        with atomic_path(out_dir / f"sweeps_{stem}.png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for clip in result["clips"]:
        lines.append(f"{Path(clip['video']).name}: {clip['frames']} frames {clip['width']}x{clip['height']} "
                     f"({clip['duration_s']:.1f} s), x{clip['scale']}")
        for name, bd in clip["bd_psnr"].items():
            if bd["bd_rate"] is None:
                lines.append(f"  {name:<38} BD-rate n/a ({bd.get('note', '')})")
            else:
                lines.append(f"  {name:<38} BD-rate {bd['bd_rate']:+7.1f} %  BD-PSNR {bd['bd_psnr']:+.2f} dB")
        d = clip["default_stream"]
        lines.append(f"  adasr stream: model {d['model_kbps_mean']:.1f} kbps "
                     f"(updates {d['model_delta_kbps_mean']:.1f}; base by hash "
                     f"{d['model_kbps_base_by_hash_mean']:.1f}), "
                     f"encode {d['realtime_factor_mean']:.2f}x real time (wall), "
                     f"{d['realtime_factor_cpu_mean']:.2f}x (CPU time)")
        if "sweeps" in clip:
            base = clip["sweeps"]["no_adaptation"]["psnr"]
            for p in clip["sweeps"]["strategy"]:
                lines.append(f"  eta {p['eta'] * 100:4g}% {p['strategy']:<11} {p['psnr']:.2f} dB "
                             f"({p['psnr'] - base:+.2f})")
        if "package" in clip:
            pk = clip["package"]
            gains = ", ".join(f"{g:+.2f}" for g in pk["gain"])
            lines.append(f"  supernet levels gain (dB): {gains}; all better: {pk['all_levels_better']}")
    return lines
