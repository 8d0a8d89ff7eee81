"""`adasr bench live`: live AMS on loopback, the SR form of thesis Table 4.1.

One live session = the shared clips cropped to one size and played back to back (real scene
changes at each cut), served live by a `LiveServer` on 127.0.0.1 and watched by `clients`
`LiveClient`s that play through the runtime. Every scheme runs the same session in turn:

* ``none``: the bundled generic model, never updated (the reference);
* ``one_time``: one full-parameter update after `one_time_s`, then nothing;
* ``jit``: Just-In-Time (train on the newest frame until +`jit_gain_db` over the base model);
* ``ams``: Algorithm 2 (T_horizon, T_update, K, 5 % gradient-guided, Algorithm 3);
* ``ams_asr_atr``: AMS with adaptive sampling (Eq. 4.1) and training rate (Eq. B.1).

Scores: every frame a client shows is compared with the server's HR frame (PSNR-Y, border =
scale); the gain is over the base model on the same decoded LR frame (computed after the
session, outside the live run). Downlink/uplink kbps: every byte the client received/sent
(bodies counted exactly, each response/request head as a fixed estimate) over the session's
seconds. Server CPU: the hub worker's thread CPU time (sources, segment encoding, training) per
second of video (the worker thread's own CPU time: with `train_threads` above 1, torch's other
threads are not in it; `process_cpu_per_video_s` is every thread of the process during the
session, clients included). The scaling run puts 1, 2, ... channels (the session rotated, so channels see
different content) on the one server and reports the mean gain per channel count and scheduler.

With `ray` (`--ray auto|HOST:PORT`), every scaling session runs twice: the trainers in the
server's process (one training thread, the channels take turns) and as Ray actors
(`adasr.serve.ray_trainer`; each actor min(1, CPUs / channels) CPUs, all started before the
session). Training CPU: the trainers' own thread CPU time per second of video (in the actors for
Ray, where the server's CPU is then the ingest, encoding and publishing alone).

Where the clients upscale (`client_sr`): "inline" (the default), each client plays through the
runtime here and upscales every frame as it plays, on the same cores as the server; "after",
each client fetches, decodes and paces its playout here in real time and swaps to each update
between frames, as in "inline", but records which model it held for every frame instead of
upscaling; its frames are upscaled and scored after the session. "after" stands for a client on
a device of its own, which is what a real client is; the server then has the machine to itself
but for the clients' fetching and decoding.

Clients start with `have_model="generic"`: the server names the base model by hash and only
deltas travel (the first model's bytes would be ~half a megabyte otherwise).
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adasr.errors import ConfigError
from adasr.metrics import PSNR_CAP, psnr_of_mean_mse
from adasr.timing import provenance

__all__ = ["DEFAULT_CLIPS", "LiveBenchConfig", "run_live_bench", "session_clip", "summary_lines"]

DEFAULT_CLIPS = ("bikes_640x272.mp4", "megamind_720x528.avi", "bigbuckbunny_720p.mp4")
#: the clips a real-size session (640x360 HR, 320x180 LR) can crop: bikes is only 272 rows high
DEFAULT_REAL_CLIPS = ("bigbuckbunny_720p.mp4", "megamind_720x528.avi", "vtest_768x576.avi")
#: where the bench's clients upscale (LiveBenchConfig.client_sr)
CLIENT_SR = ("inline", "after")


@dataclass(frozen=True)
class LiveBenchConfig:
    videos: tuple[Path, ...] | None = None
    schemes: tuple[str, ...] = ("none", "one_time", "jit", "ams", "ams_asr_atr")
    clients: int = 1
    crop_hw: tuple[int, int] = (360, 640)  # HR; the clients get 320x180 LR
    seconds: float = 60.0
    clip_seconds: float = 30.0  # at most this much of each clip goes into the session
    t_update: float = 2.0
    k: int = 20
    one_time_s: float = 6.0
    segment_s: float = 1.0
    seed: int = 0
    channel_counts: tuple[int, ...] = ()
    schedulers: tuple[str, ...] = ("round_robin", "gain")
    model: str = "generic"
    ray: str | None = None  # the scaling run once more with the trainers as Ray actors (auto or HOST:PORT)
    ray_cpus: int | None = None  # CPUs of a Ray that `ray="auto"` starts here
    overrides: tuple[tuple[str, Any], ...] = ()  # TrainerConfig settings for every scheme (bench adapt's rows)
    min_real_time: float = 0.95  # a session whose server fell below this fraction of real time is invalid
    client_sr: str = "inline"  # where the clients upscale: inline (here, as they play) or after (the session)
    train_threads: int = 1  # torch threads of the server's worker (LiveServer.train_threads)
    client_precision: str = "fp32"  # the clients' upscaling: fp32, bf16 or auto (LiveClient.precision)

    def __post_init__(self) -> None:
        from adasr.serve.config import parse_row

        for s in self.schemes:  # a scheme name, or a bench adapt row: SCHEME:NAME=VALUE,...
            parse_row(s)
        if not 1 <= self.clients <= 16:
            raise ConfigError("clients must be in [1, 16]")
        if not 2 <= self.seconds <= 600:
            raise ConfigError("a live session lasts 2..600 seconds here")
        if any(not 1 <= n <= 16 for n in self.channel_counts):
            raise ConfigError("channel counts must be in [1, 16]")
        if self.client_sr not in CLIENT_SR:
            raise ConfigError(f"client_sr must be one of {', '.join(CLIENT_SR)}, got {self.client_sr!r}")
        from adasr.threads import PRECISIONS

        if self.client_precision not in PRECISIONS:
            raise ConfigError(f"client_precision must be one of {', '.join(PRECISIONS)}, got {self.client_precision!r}")


def session_clip(videos: list[Path], crop_hw: tuple[int, int], out: Path, fps: float = 25.0,
                 clip_seconds: float = 10.0, counts: list[tuple[str, int]] | None = None) -> Path:
    """The clips centre-cropped to `crop_hw` (H, W) and written back to back at `fps` (one H.264 file);
    `counts`, if given, receives (clip name, frames written) per clip."""
    from adasr.serve.media import LiveSource
    from adasr.video import VideoWriter, read_frames

    h, w = crop_hw
    with VideoWriter(out, w, h, fps, codec="h264", crf=14, preset="veryfast") as writer:
        for v in videos:
            src = LiveSource(v, scale=2, crop_hw=crop_hw, loops=1)
            n = 0
            for f in read_frames(v, max_frames=int(clip_seconds * fps)):
                writer.write(np.ascontiguousarray(f[src.y0:src.y0 + h, src.x0:src.x0 + w]))
                n += 1
                if n >= clip_seconds * fps:
                    break
            if counts is not None:
                counts.append((Path(v).stem, n))
    return out


def _hold(scheme: str, cfg: LiveBenchConfig) -> int:
    """Segments the channel holds back (ChannelConfig.hold): the row's, else the session's `--set hold=N`."""
    from adasr.serve.config import parse_row

    row = dict(parse_row(scheme).overrides)
    return int(row.get("hold", dict(cfg.overrides).get("hold", 0)))


def _trainer_config(scheme: str, cfg: LiveBenchConfig):
    """The trainer of `scheme` (a name, or a row "ams:k=40,..."): the session's settings, then
    `cfg.overrides`, then the row's own."""
    from adasr.serve.config import ASRConfig, ATRConfig, TrainerConfig, parse_row

    row = parse_row(scheme)
    kw = dict(t_update=cfg.t_update, k=cfg.k, one_time_s=cfg.one_time_s, seed=cfg.seed)
    kw.update(dict(cfg.overrides))
    kw.update(dict(row.overrides))
    kw.pop("hold", None)  # the channel's (`_hold`)
    rate = kw.pop("rate", None)
    asr = ASRConfig(enabled=row.scheme == "ams_asr_atr")
    if rate is not None:  # the buffer's sampling rate (ASR's start when it is on)
        asr = asr.with_rate(rate)
    if row.scheme == "ams_asr_atr":
        return TrainerConfig(scheme="ams", asr=asr, atr=ATRConfig(enabled=True, tau_min=kw["t_update"]), **kw)
    return TrainerConfig(scheme=row.scheme, asr=asr, **kw)


@dataclass
class _Watch:
    """One client's frames: (segment, index) -> PSNR-Y against the server's HR frame ("after":
    filled after the session from `models`, (segment, index) -> the flat parameters the client held)."""

    psnr: dict[tuple[int, int], float] = field(default_factory=dict)
    models: dict[tuple[int, int], Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None


def _session(clips: list[Path], scheme: str, cfg: LiveBenchConfig, scheduler: str = "round_robin",
             on_progress: Callable[[str], None] | None = None, ray_cpus: float | None = None) -> dict[str, Any]:
    """One live session: len(clips) channels, `cfg.clients` clients each; per-channel scores.
    With `ray_cpus` (the cluster's CPUs; Ray connected), each channel's trainer is a Ray actor of
    min(1, ray_cpus / channels) CPUs, started before the session (its start is not timed in it)."""
    from adasr.serve.channel import Channel, ChannelConfig, NamedModel
    from adasr.serve.media import LiveSource

    tcfg = _trainer_config(scheme, cfg)
    factory, actors_s = None, 0.0
    if ray_cpus is not None:
        from adasr.serve.ray_trainer import RayTrainerFactory

        factory = RayTrainerFactory(num_cpus=min(1.0, ray_cpus / len(clips)))
    channels = []
    try:
        started = time.monotonic()
        for i, clip in enumerate(clips):
            src = LiveSource(clip, scale=2, max_frames=int(cfg.seconds * 25), loops=10)
            channels.append(Channel(f"ch{i}", src, tcfg, model_source=NamedModel(cfg.model), trainer_factory=factory,
                                    config=ChannelConfig(segment_s=cfg.segment_s, keep_hr=True, max_segments=1000,
                                                         hold=_hold(scheme, cfg))))
        if factory is not None:
            for ch in channels:
                ch.trainer.ready(None)
            actors_s = time.monotonic() - started
        out = _run_session(channels, scheme, cfg, scheduler)
    finally:
        if factory is not None:
            factory.close()
    out["hold_s"] = _hold(scheme, cfg) * cfg.segment_s  # how much later the clients get each segment
    out["trainers"] = "in-process" if factory is None else "ray"
    # the training steps' arithmetic as run (auto resolves to bf16 where the hardware has it natively)
    out["precision"] = tcfg.precision if factory is not None else channels[0].trainer.adapter.precision
    out["actors_start_s"] = actors_s
    if on_progress:
        on_progress(f"  {scheme} ({len(clips)} ch, {scheduler}, trainers {out['trainers']}): gain "
                    + ", ".join(_fmt(c["psnr_gain_db"], "+.2f") for c in out["channels"]) + " dB, updates "
                    + ", ".join(str(c["updates"]) for c in out["channels"]) + ", down "
                    + ", ".join(_fmt(c["down_kbps"], ".0f") for c in out["channels"]) + f" kbps, server CPU "
                    f"{out['server_cpu_per_video_s']:.2f} s/s, training CPU {out['train_cpu_per_video_s']:.2f} s/s")
    return out


def _run_session(channels: list, scheme: str, cfg: LiveBenchConfig, scheduler: str) -> dict[str, Any]:
    from adasr.metrics import psnr_y
    from adasr.serve.channel import Channel, Hub
    from adasr.serve.client import LiveClient
    from adasr.serve.scheduler import make_scheduler
    from adasr.serve.server import LiveServer

    hub = Hub(channels, make_scheduler(scheduler))
    watches: list[tuple[Channel, _Watch]] = []
    process_cpu = time.process_time()
    with LiveServer(hub, duration_s=cfg.seconds + 5, train_threads=cfg.train_threads) as server:
        threads = []
        for ch in channels:
            for c in range(cfg.clients):
                w = _Watch()
                watches.append((ch, w))

                def play(ch=ch, w=w, c=c) -> None:
                    def score(seg: int, idx: int, frame: np.ndarray) -> None:
                        hr = ch.hr_frames(seg)
                        if hr is not None and idx < len(hr):
                            w.psnr[(seg, idx)] = psnr_y(frame, hr[idx], 2)

                    try:
                        client = LiveClient(f"{server.url}/channel/{ch.name}", have_model=cfg.model,
                                            client_id=f"{ch.name}-{c}", duration_s=cfg.seconds + 30,
                                            precision=cfg.client_precision)
                        if cfg.client_sr == "after":
                            w.result = _record_play(client, w.models)
                        else:
                            w.result = client.run(policy="fixed", on_output=score)
                    except Exception as exc:  # noqa: BLE001 - reported in the result
                        w.error = f"{type(exc).__name__}: {exc}"

                t = threading.Thread(target=play, daemon=True)
                t.start()
                threads.append(t)
        for t in threads:
            t.join(cfg.seconds + 90)
        server.wait(30)
        if server.worker_error is not None:
            raise server.worker_error
    process_cpu = time.process_time() - process_cpu  # the session: server, clients, HTTP (not the scoring)
    for ch, w in watches:  # "after": the clients' frames upscaled now, each with the model it held
        if w.models:  # upscaled as the client would have, in its precision
            import torch

            from adasr.nn.precision import autocast, autocast_dtype

            with autocast(autocast_dtype(cfg.client_precision, torch.device("cpu"))):
                w.psnr.update(_scores(ch, w.models))
    video_s = max(ch.video_time for ch in channels)
    fractions = [f for f in (ch.real_time_fraction() for ch in channels) if f is not None]
    real_time = min(fractions) if fractions else None
    per_channel = []
    for ch in channels:
        base = _base_psnr(ch)
        pairs, kb_down, kb_up, model_kb, errors = [], [], [], [], []  # pairs: (client, base) PSNR per frame
        for owner, w in watches:
            if owner is not ch:
                continue
            if w.error or w.result is None:
                errors.append(w.error or "no result")
                continue
            pairs += [(p, base[k]) for k, p in w.psnr.items() if k in base]
            s = w.result.stats
            kb_down.append(8e-3 * s.bytes_down / ch.video_time)
            kb_up.append(8e-3 * s.bytes_up / ch.video_time)
            model_kb.append(8e-3 * s.model_bytes / ch.video_time)
        # The mean gain is the PSNR of the mean MSE of the client's frames minus that of the base
        # model on the same frames (an exact frame, e.g. black at a join, no longer makes it inf or
        # NaN); the per-frame gains of the CDF cap each frame's PSNR at PSNR_CAP.
        per_channel.append({
            "channel": ch.name, "video_s": ch.video_time, **frame_gains(pairs),
            "base_psnr_db": _finite(psnr_of_mean_mse(list(base.values()))),
            "down_kbps": _finite(np.mean(kb_down)) if kb_down else None,
            "model_kbps": _finite(np.mean(model_kb)) if model_kb else None,
            "up_kbps": _finite(np.mean(kb_up)) if kb_up else None,
            "updates": len(ch.trainer.updates), "train_cpu_s": ch.trainer.train_cpu_s,
            "sampling_rate_end": ch.trainer.sampling_rate, "t_update_end": ch.trainer.t_update, "errors": errors,
        })
    train_cpu = sum(ch.trainer.train_cpu_s for ch in channels)
    return {"scheme": scheme, "scheduler": scheduler, "channels": per_channel, "video_s": video_s,
            "real_time_fraction": real_time, "valid": real_time is not None and real_time >= cfg.min_real_time,
            "server_cpu_s": hub.worker_cpu_s, "server_cpu_per_video_s": hub.worker_cpu_s / max(video_s, 1e-9),
            "train_cpu_s": train_cpu, "train_cpu_per_video_s": train_cpu / max(video_s, 1e-9),
            # every thread of this process during the session (the worker's torch threads beyond its own,
            # which the thread CPU figures above leave out; the clients' fetching, decoding and, inline,
            # upscaling; HTTP)
            "process_cpu_s": process_cpu, "process_cpu_per_video_s": process_cpu / max(video_s, 1e-9)}


@dataclass
class _Played:
    stats: Any  # the client's ClientStats


def _record_play(client, models: dict[tuple[int, int], Any]) -> _Played:
    """Play `client`'s channel without upscaling ("after"): frames are taken at the manifest's
    frame rate from the first one on (as the runtime paces them), the client swaps to each update
    between two frames once its segment is reached (as `LiveRunner` does), and
    `models[(segment, index)]` gets the flat parameters it held for that frame (one shared tensor
    per model)."""
    from adasr.stream.codec import model_vector

    client.start()
    try:
        period = 1.0 / float(client.manifest["fps"])
        t0, n, vec, held = None, 0, None, None
        for seg, idx, _frame in client.frames():
            now = time.monotonic()
            if t0 is None:
                t0 = now
            elif now < t0 + n * period:
                time.sleep(t0 + n * period - now)
            n += 1
            if client.swap.take(seg) or vec is None:
                held = client.swap.active_module
                vec = model_vector(held).clone()
            models[(seg, idx)] = vec
    finally:
        client.stop()
    client.stats.swaps = client.swap.applied
    return _Played(client.stats)


def _frame_psnr(ch, segments, model_of: Callable[[int, int], Any]) -> dict[tuple[int, int], float]:
    """PSNR-Y of the decoded LR frames of `segments` (those the channel still holds), each upscaled
    by the module `model_of(segment, index)` returns (None: the frame is skipped)."""
    import torch

    from adasr.metrics import psnr_y
    from adasr.runtime.engine import frame_to_tensor, tensor_to_frame
    from adasr.serve.media import decode_segment

    out: dict[tuple[int, int], float] = {}
    for n in segments:
        seg, hr = ch.segment(n), ch.hr_frames(n)
        if seg is None or hr is None:
            continue
        for i, lr in enumerate(decode_segment(seg.data)):
            model = model_of(n, i) if i < len(hr) else None
            if model is None:
                continue
            with torch.inference_mode():
                sr = tensor_to_frame(model(frame_to_tensor(lr, channels_last=False)))
            out[(n, i)] = psnr_y(sr, hr[i], 2)
    return out


def _scores(ch, models: dict[tuple[int, int], Any]) -> dict[tuple[int, int], float]:
    """PSNR-Y of every frame in `models`, each upscaled with the parameters the client held for it."""
    import copy

    import torch

    held, loaded = copy.deepcopy(ch.trainer.base).eval(), [None]

    def model_of(n: int, i: int) -> Any:
        vec = models.get((n, i))
        if vec is not None and vec is not loaded[0]:  # consecutive frames share one tensor per model
            torch.nn.utils.vector_to_parameters(vec, held.parameters())
            loaded[0] = vec
        return None if vec is None else held

    return _frame_psnr(ch, sorted({n for n, _ in models}), model_of)


def _base_psnr(ch) -> dict[tuple[int, int], float]:
    """PSNR-Y of the base model on every decoded LR frame the channel still holds."""
    return _frame_psnr(ch, range(ch.live_edge + 1), lambda n, i: ch.trainer.base)


def run_live_bench(cfg: LiveBenchConfig, out_dir: str | Path,
                   on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    import torch

    from adasr._atomic import write_bytes_atomic
    from adasr.paths import data_root

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = list(cfg.videos) if cfg.videos else [
        data_root() / "video" / v for v in (DEFAULT_CLIPS if cfg.crop_hw[0] <= 272 else DEFAULT_REAL_CLIPS)]
    threads = torch.get_num_threads()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="adasr-live-") as tmp:
        clip = session_clip(videos, cfg.crop_hw, Path(tmp) / "session.mp4", clip_seconds=cfg.clip_seconds) \
            if cfg.schemes else None
        result: dict[str, Any] = {"config": {**asdict(cfg), "videos": [str(v) for v in videos]},
                                  "date": time.strftime("%Y-%m-%d"), "schemes": [], "scaling": [],
                                  "provenance": provenance()}
        torch.set_num_threads(1)

        def save() -> None:  # after every session: a long run stopped early keeps what it measured
            result["wall_s"] = time.time() - started
            write_bytes_atomic(out_dir / "live.json",
                               json.dumps(result, indent=1, default=str, allow_nan=False).encode())

        try:
            for scheme in cfg.schemes:
                result["schemes"].append(_session([clip], scheme, cfg, on_progress=on_progress))
                save()
            if cfg.channel_counts:
                rotated = []
                for i in range(max(cfg.channel_counts)):
                    order = videos[i % len(videos):] + videos[:i % len(videos)]
                    rotated.append(session_clip(order, cfg.crop_hw, Path(tmp) / f"session{i}.mp4",
                                                clip_seconds=cfg.clip_seconds))
                session = None
                if cfg.ray is not None:
                    from adasr.serve.ray_trainer import RaySession

                    session = RaySession(cfg.ray, num_cpus=cfg.ray_cpus).start()
                    result["ray"] = {"address": cfg.ray, "how": session.how, "start_s": session.start_s,
                                     "cpus": session.cpus()}
                try:
                    for sched in cfg.schedulers:
                        for n in cfg.channel_counts:
                            result["scaling"].append(_session(rotated[:n], "ams", cfg, sched, on_progress))
                            save()
                            if session is not None:
                                result["scaling"].append(_session(rotated[:n], "ams", cfg, sched, on_progress,
                                                                  ray_cpus=result["ray"]["cpus"]))
                                save()
                finally:
                    if session is not None:
                        session.close()
        finally:
            torch.set_num_threads(threads)
    save()
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"{'scheme':<13} {'gain dB':>8} {'p10':>6} {'p50':>6} {'p90':>6} {'down kbps':>10} {'model kbps':>10} "
             f"{'up kbps':>8} {'updates':>7} {'server CPU s/s':>14} {'real time':>9}"]
    for s in result["schemes"]:
        c = s["channels"][0]
        cdf = c["gain_cdf"]
        lines.append(f"{s['scheme']:<13} {_fmt(c['psnr_gain_db'], '>+8.3f')} {_fmt(cdf['p10'], '>+6.2f')} "
                     f"{_fmt(cdf['p50'], '>+6.2f')} {_fmt(cdf['p90'], '>+6.2f')} {_fmt(c['down_kbps'], '>10.1f')} "
                     f"{_fmt(c['model_kbps'], '>10.2f')} {_fmt(c['up_kbps'], '>8.2f')} "
                     f"{c['updates']:>7d} {s['server_cpu_per_video_s']:>14.3f} "
                     f"{_fmt(s.get('real_time_fraction'), '>9.3f')}"
                     + ("" if s.get("valid", True) else "  INVALID (below real time)"))
    for s in result["scaling"]:
        gains = [c["psnr_gain_db"] for c in s["channels"] if c["psnr_gain_db"] is not None]
        mean = float(np.mean(gains)) if gains else math.nan
        ups = [c["updates"] for c in s["channels"]]
        where = s.get("trainers", "in-process")
        lines.append(f"scaling {s['scheduler']:<11} {len(gains)} channel(s), trainers {where}: mean gain "
                     f"{mean:+.3f} dB (per channel {', '.join(f'{g:+.2f}' for g in gains)}), updates "
                     f"{', '.join(map(str, ups))}, server CPU {s['server_cpu_per_video_s']:.2f} s/s, training CPU "
                     f"{s.get('train_cpu_per_video_s', math.nan):.2f} s/s")
    if "ray" in result:
        r = result["ray"]
        lines.append(f"Ray: {r['how']} in {r['start_s']:.1f} s, {r['cpus']:g} CPUs; actors started in "
                     + ", ".join(f"{s['actors_start_s']:.1f}" for s in result["scaling"] if s.get("trainers") == "ray")
                     + " s (before each session, not in it)")
    return lines


def frame_gains(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """From (client, base) PSNR-Y pairs of the same frames: the frames scored, the mean gain (the
    PSNR of the client's mean MSE minus the base's, so an exactly reproduced frame cannot make it
    inf or NaN; None when no frame was scored) and the CDF of per-frame gains, each frame's PSNR
    capped at `PSNR_CAP` (stated in the result)."""
    client_db, base_db = psnr_of_mean_mse([p for p, _ in pairs]), psnr_of_mean_mse([b for _, b in pairs])
    g = np.array([min(p, PSNR_CAP) - min(b, PSNR_CAP) for p, b in pairs])
    return {"frames_scored": len(pairs), "psnr_cap_db": PSNR_CAP, "psnr_gain_db": _finite(client_db - base_db),
            "gain_cdf": {f"p{q}": _finite(np.percentile(g, q)) if len(g) else None for q in (10, 50, 90)}}


def _finite(value: float) -> float | None:
    """`value` as a float, or None (JSON null) when it is not finite: live.json stays valid JSON."""
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or "-" (right-aligned to the spec's width) when it is None."""
    if value is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width) if width else 1)
    return format(value, spec)
