"""`adasr bench adapt`: the live trainer's schemes and settings side by side, emulated offline.

A live run (`adasr bench live`) measures one setting at a time in real time, and on a shared
2-core machine its result also depends on what else runs. This bench answers the other question
- which training per update, horizon and scene-cut rule make adaptation pay - for many settings
on the same session, deterministically and faster:

* the session is what `bench live` plays (the shared clips cropped to one size, back to back);
* a `Channel` with its real trainer ingests it on a simulated clock: every segment is encoded
  and decoded exactly as the server does (downscale, codec, CRF), its frames are offered to the
  trainer, and every due update is trained at once;
* each frame is scored with the model the clients hold when its segment arrives (every update
  made before that segment), against the base model on the same decoded LR. That is the live
  system with no training delay: an upper bound on what the live run can reach with the same
  setting, which is why the table also gives each row's training CPU per video second (a row
  above about one core-second per second cannot keep up live on this 2-core server; `feasible`
  says so).

Scores: the gain is the PSNR-Y of the mean MSE of the adapted frames minus that of the base
model's on the same frames (finite whatever a frame scores), per clip of the session and over
all; the CDF of per-frame gains (each frame's PSNR capped at `PSNR_CAP`); model downlink kbps
(the update records' bytes over the video's seconds).

`ceiling_steps` adds rows that are not a scheme: the ceiling of content adaptation for the base
model (`_ceiling_run`: every parameter trained on each segment before that segment is scored).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from adasr.errors import ConfigError
from adasr.metrics import PSNR_CAP, psnr_of_mean_mse
from adasr.serve.config import Row, parse_row

__all__ = ["ABLATION_ROWS", "AdaptBenchConfig", "Row", "parse_row", "run_adapt_bench", "summary_lines"]

MAX_ROWS = 32

#: The ablation table: Table 4.1's schemes, then AMS with one thing changed at a time.
ABLATION_ROWS = (
    "none", "one_time", "jit", "ams", "ams_asr_atr",
    "ams:k=60", "ams:lr=0.003", "ams:eta=0.25", "ams:eta=1", "ams:t_horizon=4", "ams:t_horizon=60",
    "ams:on_cut=reset", "ams:on_cut=base",
)


@dataclass(frozen=True)
class AdaptBenchConfig:
    videos: tuple[Path, ...] | None = None
    rows: tuple[Row, ...] = field(default_factory=lambda: tuple(parse_row(r) for r in ABLATION_ROWS))
    crop_hw: tuple[int, int] = (360, 640)
    seconds: float = 60.0
    clip_seconds: float = 30.0
    segment_s: float = 1.0
    codec: str = "h264"
    crf: int = 28
    model: str = "generic"
    seed: int = 0
    cpu_budget: float = 1.0  # core-seconds of training per video second a live server can give one channel
    ceiling_steps: tuple[int, ...] = ()  # also the ceiling rows (`_ceiling_run`), one per step count

    def __post_init__(self) -> None:
        if not 1 <= len(self.rows) <= MAX_ROWS:
            raise ConfigError(f"give 1..{MAX_ROWS} rows")
        if not 2 <= self.seconds <= 600:
            raise ConfigError("a session lasts 2..600 seconds here")
        if any(not 1 <= n <= 10_000 for n in self.ceiling_steps) or len(self.ceiling_steps) > 8:
            raise ConfigError("ceiling steps: at most 8 counts, each 1..10000 steps per segment")


def _session_run(clip: Path, row: Row, cfg: AdaptBenchConfig, bounds: list[tuple[str, int]],
                 base_scores: dict[int, float]) -> dict[str, Any]:
    """One row on the session. `base_scores` (frame number -> the base model's PSNR-Y) is shared by
    the rows: the session's segments are the same bytes every time, so the base is scored once."""
    import torch

    from adasr.metrics import psnr_y
    from adasr.runtime.engine import frame_to_tensor, tensor_to_frame
    from adasr.serve.channel import Channel, ChannelConfig, NamedModel
    from adasr.serve.media import LiveSource

    fps = 25.0
    src = LiveSource(clip, scale=2, max_frames=int(cfg.seconds * fps), loops=10)
    ch = Channel("bench", src, row.trainer_config(cfg.seed), model_source=NamedModel(cfg.model),
                 config=ChannelConfig(segment_s=cfg.segment_s, codec=cfg.codec, crf=cfg.crf, max_segments=4,
                                      hold=row.hold))
    trainer = ch.trainer
    pairs: list[tuple[float, float]] = []  # (adapted, base) PSNR-Y per frame, in session order

    def score(_ch, _seg, shown, hr) -> None:
        unchanged = trainer.state.hash == trainer.state.base_hash  # the clients still run the base model
        with torch.inference_mode():
            for lr, h in zip(shown, hr):
                n = len(pairs)
                x = frame_to_tensor(lr, channels_last=False)
                if n not in base_scores:
                    base_scores[n] = psnr_y(tensor_to_frame(trainer.base(x)), h, 2)
                mine = base_scores[n] if unchanged else psnr_y(tensor_to_frame(trainer.state.model(x)), h, 2)
                pairs.append((mine, base_scores[n]))

    ch.on_publish.append(score)  # a segment is scored when the clients get it (`hold` segments after encoding)
    started = time.monotonic()
    for i in range(int(cfg.seconds * fps) + 2 * int(fps)):  # bounded: the session's frames and a margin
        if ch.ended:
            break
        ch.pump(i / fps)
        for _ in range(1000):  # every due update (JIT may queue a few)
            if not ch.train_due():
                break
            ch.train()
    video_s = max(ch.video_time, 1e-9)
    model_bytes = sum(len(u.record) for u in trainer.updates)
    per_clip = []
    for name, (lo, hi) in _clip_spans(bounds, len(pairs)):
        part = pairs[lo:hi]
        if part:
            per_clip.append({"clip": name, "frames": len(part), **_gain(part)})
    train_cpu = trainer.train_cpu_s / video_s
    return {"row": row.label, "scheme": row.scheme, "overrides": dict(row.overrides), "video_s": ch.video_time,
            "frames_scored": len(pairs), **_gain(pairs), "cdf": _cdf(pairs), "per_clip": per_clip,
            "updates": len(trainer.updates), "cuts": trainer.cuts, "model_kbps": 8e-3 * model_bytes / video_s,
            "hold_s": row.hold * cfg.segment_s, "precision": trainer.adapter.precision,
            "train_cpu_per_video_s": train_cpu, "encode_cpu_per_video_s": ch.encode_cpu_s / video_s,
            "feasible": bool(train_cpu <= cfg.cpu_budget), "wall_s": time.monotonic() - started}


def _ceiling_run(clip: Path, steps: int, cfg: AdaptBenchConfig, bounds: list[tuple[str, int]],
                 base_scores: dict[int, float]) -> dict[str, Any]:
    """The ceiling of content adaptation for this model: before each segment is scored, every
    parameter is trained for `steps` Adam steps on that very segment (its decoded LR and its HR:
    what SRVC's encoder does, with no bit or CPU limit), continuing from the previous segment's
    model. It is not causal and not streamable; no scheme that trains on frames already shown and
    sends a fraction of the parameters can beat it by much at the same training per segment."""
    import copy

    import torch

    from adasr.metrics import psnr_y
    from adasr.runtime.engine import frame_to_tensor, tensor_to_frame
    from adasr.serve.channel import Channel, ChannelConfig, NamedModel
    from adasr.serve.media import LiveSource
    from adasr.stream.adapt import AdaptConfig, PatchSampler, SparseAdapter

    fps = 25.0
    src = LiveSource(clip, scale=2, max_frames=int(cfg.seconds * fps), loops=10)
    ch = Channel("bench", src, parse_row("none").trainer_config(cfg.seed), model_source=NamedModel(cfg.model),
                 config=ChannelConfig(segment_s=cfg.segment_s, codec=cfg.codec, crf=cfg.crf, max_segments=4))
    base = ch.trainer.base
    model = copy.deepcopy(base).requires_grad_(True)
    adapter = SparseAdapter(model, AdaptConfig(strategy="full", eta=1.0, steps=steps, seed=cfg.seed))
    pairs: list[tuple[float, float]] = []
    state = {"segments": 0, "cpu": 0.0}

    def score(_ch, _seg, shown, hr) -> None:
        t0 = time.thread_time()
        with torch.inference_mode(False), torch.enable_grad():
            adapter.adapt(PatchSampler(np.stack(shown), np.stack(hr), 2, 48, 8, torch.device("cpu")),
                          state["segments"])
        state["cpu"] += time.thread_time() - t0
        state["segments"] += 1
        with torch.inference_mode():
            for lr, h in zip(shown, hr):
                n = len(pairs)
                x = frame_to_tensor(lr, channels_last=False)
                if n not in base_scores:
                    base_scores[n] = psnr_y(tensor_to_frame(base(x)), h, 2)
                pairs.append((psnr_y(tensor_to_frame(model(x)), h, 2), base_scores[n]))

    ch.on_segment.append(score)
    started = time.monotonic()
    for i in range(int(cfg.seconds * fps) + 2 * int(fps)):  # bounded: the session's frames and a margin
        if ch.ended:
            break
        ch.pump(i / fps)
    video_s = max(ch.video_time, 1e-9)
    per_clip = []
    for name, (lo, hi) in _clip_spans(bounds, len(pairs)):
        part = pairs[lo:hi]
        if part:
            per_clip.append({"clip": name, "frames": len(part), **_gain(part)})
    return {"row": f"ceiling:steps={steps}", "scheme": "ceiling", "overrides": {"steps": steps},
            "video_s": ch.video_time, "frames_scored": len(pairs), **_gain(pairs), "cdf": _cdf(pairs),
            "per_clip": per_clip, "updates": state["segments"], "cuts": 0, "model_kbps": None,
            "train_cpu_per_video_s": state["cpu"] / video_s, "encode_cpu_per_video_s": ch.encode_cpu_s / video_s,
            "feasible": False, "wall_s": time.monotonic() - started}


def _clip_spans(bounds: list[tuple[str, int]], total: int):
    """(clip name, (first, end) frame) of each clip in the session, repeating as the source loops."""
    start = 0
    for _ in range(10_000):
        for name, n in bounds:
            if start >= total:
                return
            yield name, (start, min(total, start + n))
            start += n


def _gain(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    a, b = psnr_of_mean_mse([p for p, _ in pairs]), psnr_of_mean_mse([q for _, q in pairs])
    return {"psnr_db": _finite(a), "base_psnr_db": _finite(b), "gain_db": _finite(a - b)}


def _cdf(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    g = np.array([min(p, PSNR_CAP) - min(q, PSNR_CAP) for p, q in pairs])
    return {f"p{q}": _finite(np.percentile(g, q)) if len(g) else None for q in (10, 50, 90)}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def run_adapt_bench(cfg: AdaptBenchConfig, out_dir: str | Path,
                    on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every row on the same session; adapt.json in `out_dir` after each row (valid JSON)."""
    import torch

    from adasr._atomic import write_bytes_atomic
    from adasr.bench.live import DEFAULT_REAL_CLIPS, session_clip
    from adasr.paths import data_root
    from adasr.timing import provenance

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = list(cfg.videos) if cfg.videos else [data_root() / "video" / v for v in DEFAULT_REAL_CLIPS]
    threads = torch.get_num_threads()
    started = time.time()
    conf = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    conf.update(videos=[str(v) for v in videos], rows=[r.label for r in cfg.rows])
    result: dict[str, Any] = {"bench": "adapt", "config": conf, "rows": [], "provenance": provenance()}

    def save() -> None:
        result["wall_s"] = time.time() - started
        write_bytes_atomic(out_dir / "adapt.json", json.dumps(result, indent=1, default=str, allow_nan=False).encode())

    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="adasr-adapt-") as tmp:
            bounds: list[tuple[str, int]] = []
            clip = session_clip(videos, cfg.crop_hw, Path(tmp) / "session.mp4", clip_seconds=cfg.clip_seconds,
                                counts=bounds)
            result["clips"] = [{"clip": n, "frames": f} for n, f in bounds]
            base_scores: dict[int, float] = {}
            runs = [(lambda row=row: _session_run(clip, row, cfg, bounds, base_scores)) for row in cfg.rows]
            runs += [(lambda n=n: _ceiling_run(clip, n, cfg, bounds, base_scores)) for n in cfg.ceiling_steps]
            for run in runs:
                r = run()
                result["rows"].append(r)
                save()
                if on_progress:
                    on_progress(_line(r))
    finally:
        torch.set_num_threads(threads)
    save()
    return result


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _line(r: dict[str, Any]) -> str:
    clips = " ".join(f"{c['clip'].split('_')[0]} {_fmt(c['gain_db'], '+.2f')}" for c in r["per_clip"][:6])
    return (f"  {r['row']:<22} gain {_fmt(r['gain_db'], '+.3f')} dB  p50 {_fmt(r['cdf']['p50'], '+.2f')}  "
            f"model {_fmt(r['model_kbps'], '.1f')} kbps  train CPU {r['train_cpu_per_video_s']:.2f} s/s"
            f"{'' if r['feasible'] else ' (not live)'}  [{clips}]")


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"{'row':<22} {'gain dB':>8} {'p10':>6} {'p50':>6} {'p90':>6} {'model kbps':>10} {'updates':>7} "
             f"{'train CPU s/s':>13} live"]
    for r in result["rows"]:
        c = r["cdf"]
        lines.append(f"{r['row']:<22} {_fmt(r['gain_db'], '>+8.3f')} {_fmt(c['p10'], '>+6.2f')} "
                     f"{_fmt(c['p50'], '>+6.2f')} {_fmt(c['p90'], '>+6.2f')} {_fmt(r['model_kbps'], '.1f'):>10} "
                     f"{r['updates']:>7d} {r['train_cpu_per_video_s']:>13.2f} {'yes' if r['feasible'] else 'no'}")
    return lines
