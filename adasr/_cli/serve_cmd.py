"""`adasr serve` (the live AMS server), `adasr play http://...` (its client) and `adasr bench live`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from adasr._cli.common import Range, console, out, parse_hw, parse_ints
from adasr._cli.common import set_threads as _threads
from adasr.errors import ConfigError

__all__ = ["SCHEME_NAMES", "bench_live", "register", "run_play_live", "serve"]

SCHEME_NAMES = ("none", "one_time", "jit", "ams", "ams_asr_atr")


def _trainer_config(scheme: str, t_update: float, t_horizon: float, k: int, eta: float, seed: int,
                    on_cut: str = "keep", lr: float = 1e-3, rate: float | None = None, values: str = "int8",
                    patch: int = 32, precision: str = "auto"):
    from adasr.serve.config import DELTA_DTYPES, ASRConfig, ATRConfig, TrainerConfig

    if scheme not in SCHEME_NAMES:
        raise ConfigError(f"--scheme must be one of {', '.join(SCHEME_NAMES)}, got {scheme!r}")
    if values not in DELTA_DTYPES:
        raise ConfigError(f"--values must be one of {', '.join(DELTA_DTYPES)}, got {values!r}")
    kw: dict[str, Any] = dict(t_update=t_update, t_horizon=t_horizon, k=k, eta=eta, seed=seed, on_cut=on_cut, lr=lr,
                              delta_dtype=values, patch=patch, precision=precision)
    asr = ASRConfig(enabled=scheme == "ams_asr_atr")
    if rate is not None:  # the buffer's sampling rate (ASR's start when it is on)
        asr = asr.with_rate(rate)
    if scheme == "ams_asr_atr":
        return TrainerConfig(scheme="ams", asr=asr,
                             atr=ATRConfig(enabled=True, tau_min=t_update, tau_max=max(t_update, t_horizon)), **kw)
    return TrainerConfig(scheme=scheme, asr=asr, **kw)


def serve(
    sources: Annotated[list[str], typer.Argument(help="HR sources, one channel each: video files (played at their frame rate, looping) or URLs PyAV opens.")],
    name: Annotated[Optional[list[str]], typer.Option(help="Channel names, one per source (default: the file stems).")] = None,
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind: 127.0.0.1 (default, this machine only), or an address of this machine (0.0.0.0: all) to serve other machines; then an access token is required (--token) for everything but the status page. Put TLS in front with a reverse proxy (docs/LIVE.md).")] = "127.0.0.1",
    token: Annotated[Optional[str], typer.Option(help="Access token clients send (adasr play --token); with a non-loopback --host and no --token, one is made and printed once. 16-256 characters of A-Z a-z 0-9 - _ . ~")] = None,
    max_per_address: Annotated[int, typer.Option(help="Requests one client address may have in flight (429 beyond).")] = 32,
    max_requests: Annotated[int, typer.Option(help="Requests the server answers at once (503 beyond).")] = 1024,
    scale: Annotated[int, typer.Option(help="SR factor: LR segments are the source shrunk by this.")] = 2,
    crop: Annotated[Optional[str], typer.Option(help="Centre crop WxH of each source (HR pixels).")] = None,
    model: Annotated[str, typer.Option(help="Model the clients run: generic (bundled), srvc, a model file or a package.")] = "generic",
    levels: Annotated[str, typer.Option(help="Package model: the levels the channels offer (and adapt): 'all', level indices, and sub-networks of the package's supernet as dD-wW (depth, width), comma-separated; e.g. all,d6-w16 adds a 32K-param level on the shared weights for the web player.")] = "all",
    scheme: Annotated[str, typer.Option(help="Training: none, one_time, jit, ams or ams_asr_atr.")] = "ams",
    scheduler: Annotated[str, typer.Option(help="Sharing compute among channels: round_robin or gain.")] = "round_robin",
    segment_s: Annotated[float, typer.Option(help="LR segment length in seconds.")] = 1.0,
    t_update: Annotated[float, typer.Option(help="Seconds between model updates (T_update; ATR's tau_min).")] = 2.0,
    t_horizon: Annotated[float, typer.Option(help="Training horizon in seconds (T_horizon).")] = 16.0,
    k: Annotated[int, typer.Option(help="Adam iterations per update (K).")] = 20,
    eta: Annotated[float, typer.Option(help="Fraction of the parameters an update may change.")] = 0.05,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the updates.")] = 1e-3,
    patch: Annotated[int, typer.Option(help="LR side of the training crops (8 a step); 48 gains more per update at 2.25x the compute.")] = 32,
    on_cut: Annotated[str, typer.Option(help="At a scene cut (consecutive samples far apart): keep (the horizon forgets the old scene in its own time), reset (train on the new scene only, Adam restarted) or base (as reset, and the clients go back to the base model first).")] = "keep",
    crf: Annotated[int, typer.Option(help="LR segment quality (H.264 CRF).")] = 28,
    rate: Annotated[Optional[float], typer.Option(help="Frames per second that join the training buffer (ASR's r; its starting value with ams_asr_atr). Default 2; the source's frame rate trains on every frame.")] = None,
    values: Annotated[str, typer.Option(help="The updates' values: int8 or int4 (one float32 scale per update; int4 carries about twice the parameters per bit at the same gain, docs/LIVE.md), float16 or float32.")] = "int8",
    train_precision: Annotated[str, typer.Option(help="Arithmetic of the training steps: auto (bf16 where the CPU or GPU computes it natively, about 1.7x faster on a CPU with AVX512-BF16; else fp32), bf16 or fp32. The weights and the updates are the same kind either way.")] = "auto",
    hold: Annotated[int, typer.Option(help="Segments held back before they are published: the trainer gets each segment this many segments before the clients, so an update can be trained on the frames it is applied to; the clients lag the source by hold x --segment-s more. 0 = publish at once.")] = 0,
    seconds: Annotated[float, typer.Option(help="Stop serving after this many seconds.")] = 3600.0,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    train_threads: Annotated[int, typer.Option(help="Torch threads of the training (and segment-encoding) worker. 1 leaves a core for HTTP on a 2-core server; more trains faster where the cores are free.")] = 1,
    quiet: Annotated[bool, typer.Option(help="No status lines while serving.")] = False,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Train each channel in a Ray actor (needs adasr\\[cluster]): auto (join the Ray that `ray start --head` runs on this machine, else start one here) or HOST:PORT of a cluster's head (GCS port, e.g. 10.0.0.1:6379). Default: in this process, no Ray. The HTTP front stays here; see docs/CLUSTER.md.")] = None,
    ray_cpus: Annotated[Optional[int], typer.Option(help="CPUs of a Ray that --ray auto starts here (default: all).")] = None,
    zoo: Annotated[Optional[Path], typer.Option(help="Model reuse (RECL): answer each scene change first with the best expert of the model zoo in this folder (loaded if there, else started; saved as experts enter or leave), then by retraining. Off by default.")] = None,
    zoo_k: Annotated[int, typer.Option(help="Reuse: experts the gating network proposes per scene change (top-K).")] = 10,
    zoo_alpha: Annotated[float, typer.Option(help="Reuse: dB a retrained model must beat the zoo's proposals by to enter the zoo.")] = 0.05,
    zoo_gamma: Annotated[int, typer.Option(help="Reuse: promising models that enter the zoo together.")] = 1,
    zoo_eta: Annotated[int, typer.Option(help="Reuse: an expert chosen fewer times than this in the last --zoo-q selections is pruned.")] = 1,
    zoo_q: Annotated[int, typer.Option(help="Reuse: the pruning window, in selections.")] = 24,
    zoo_cut: Annotated[float, typer.Option(help="Reuse: scene-change threshold (1 - intersection of consecutive samples' colour histograms, in (0, 1]).")] = 0.35,
) -> None:
    """Serve live channels: LR segments plus sparse model updates trained on the live source (AMS)."""
    from adasr.serve.channel import Channel, ChannelConfig, Hub, NamedModel
    from adasr.serve.media import LiveSource
    from adasr.serve.scheduler import make_scheduler
    from adasr.serve.server import LiveServer

    _threads(threads)
    token = _access_token(host, token)
    names = list(name or [])
    if names and len(names) != len(sources):
        raise ConfigError(f"--name is given {len(names)} times for {len(sources)} sources")
    if not names:
        names = [Path(s).stem.replace(".", "_")[:64] or f"ch{i}" for i, s in enumerate(sources)]
    if len(set(names)) != len(names):
        raise ConfigError(f"channel names must differ, got {', '.join(names)} (use --name)")
    size = None if crop is None else parse_hw(crop, "--crop", minimum=16)
    cfg = _trainer_config(scheme, t_update, t_horizon, k, eta, seed, on_cut, lr, rate, values, patch, train_precision)
    if ray is not None and zoo is not None:
        raise ConfigError("--zoo and --ray cannot be combined yet: model reuse needs the trainers in this process")
    sources_ = [LiveSource(s, scale=scale, crop_hw=size) for s in sources]
    session = factory = None
    if ray is not None:
        from adasr.serve.ray_trainer import RaySession, RayTrainerFactory

        session = RaySession(ray, num_cpus=ray_cpus).start()
        cpus = session.cpus()
        factory = RayTrainerFactory(num_cpus=min(1.0, max(cpus, 0.01) / len(sources_)))
        out.print(f"Ray: {session.how}, {cpus:g} CPUs in the cluster; {len(sources_)} trainer actor(s) of "
                  f"{factory.num_cpus:g} CPU each", highlight=False)
    try:
        channels = [Channel(n, src, cfg, model_source=NamedModel(model, levels=levels), trainer_factory=factory,
                            config=ChannelConfig(segment_s=segment_s, crf=crf, hold=hold))
                    for n, src in zip(names, sources_)]
        if factory is not None:  # serve once every trainer actor is up (bounded: RayTrainer's start deadline)
            started = time.monotonic()
            for ch in channels:
                ch.trainer.ready(None)
            out.print(f"Ray: {len(channels)} trainer actor(s) up in {time.monotonic() - started:.1f} s", highlight=False)
        hub = Hub(channels, make_scheduler(scheduler))
        reuse = None
        if zoo is not None:
            from adasr.reuse.live import LiveReuse, LiveReuseConfig

            reuse = LiveReuse.attach(hub, zoo, LiveReuseConfig(cut=zoo_cut, k=zoo_k, alpha=zoo_alpha, gamma=zoo_gamma,
                                                               eta=zoo_eta, q=zoo_q, seed=seed))
            out.print(f"model zoo {zoo}: {reuse.stats()['zoo']} expert(s)", highlight=False)
        server = LiveServer(hub, host=host, port=port, duration_s=seconds, token=token,
                            max_per_address=max_per_address, max_requests=max_requests, train_threads=train_threads)
        _serve(server, channels, seconds, quiet, reuse, zoo)
    finally:
        if factory is not None:
            factory.close()
        if session is not None:
            session.close()


def _access_token(host: str, token: str | None) -> str | None:
    """The token `serve` requires: `token`, or for a non-loopback `host` a new one (printed once,
    with a one-line warning that the service is reachable from other machines)."""
    import secrets

    from adasr.serve.server import check_token, is_loopback

    check_token(token)
    if is_loopback(host):
        return token
    if token is None:
        token = secrets.token_urlsafe(24)
        out.print(f"access token (give it to viewers: adasr play URL --token ...): {token}", highlight=False,
                  soft_wrap=True)
    console.print(f"[yellow]warning:[/yellow] binding {host}: the channels are reachable from other machines, "
                  f"over plain HTTP unless a TLS proxy is in front (docs/LIVE.md); a token is required", highlight=False,
                  soft_wrap=True)
    return token


def _serve(server, channels, seconds: float, quiet: bool, reuse=None, zoo=None) -> None:
    server.start()
    try:
        out.print(f"serving {len(channels)} channel(s) on {server.url} for at most {seconds:g} s: "
                  + ", ".join(f"{server.url}/channel/{c.name}" for c in channels), highlight=False)
        out.print(f"  status page {server.url}/  (JSON {server.url}/status); Ctrl-C stops", highlight=False)
        end = time.monotonic() + seconds
        while time.monotonic() < end and not server.wait(timeout=5.0 if not quiet else 30.0):
            if not quiet:
                for s in server.hub.status()["channels"]:
                    console.print(f"  {s['name']}: {s['video_s']:.0f} s, {s['segments']} segments, {s['updates']} "
                                  f"updates, {s['clients']} clients, down {s['down_kbps']:.0f} kbps, gain "
                                  f"{s['psnr_gain_db']:+.2f} dB" + (f", expert {s['expert']}" if "expert" in s else ""),
                                  highlight=False)
        if server.worker_error is not None:
            raise server.worker_error
    finally:
        server.stop()
        if reuse is not None:
            reuse.close()
            r = reuse.stats()
            out.print(f"model zoo {zoo}: {r['zoo']} expert(s), {r['reuses']} of {r['selections']} scene changes "
                      f"answered from the zoo, {r['admitted']} admitted, {r['pruned']} pruned", highlight=False)
    out.print("stopped: " + json.dumps([{k: s[k] for k in ("name", "video_s", "segments", "updates")}
                                        for s in server.hub.status()["channels"]]), highlight=False)


def run_play_live(url: str, *, base: str | None, target_fps: float | None, policy: str, output: Path | None,
                  json_out: Path | None, max_frames: int | None, quiet: bool,
                  token: str | None = None, precision: str = "fp32") -> dict[str, Any]:
    """`adasr play http(s)://HOST:PORT/channel/NAME`."""
    from rich.live import Live

    from adasr._atomic import check_writable, write_bytes_atomic
    from adasr._cli.play_cmd import LiveView, print_summary
    from adasr.serve.client import LiveClient

    for path in (output, json_out):
        if path is not None:
            check_writable(path)
    client = LiveClient(url, have_model=base, token=token, precision=precision).start()
    if quiet:
        result = client.run(target_fps=target_fps, policy=policy, out=None if output is None else str(output),
                            max_frames=max_frames)
    else:
        fps = float(client.manifest["fps"]) if target_fps is None else target_fps
        view = LiveView(client.swap.active, fps)
        with Live(view.table(), console=console, refresh_per_second=4, transient=False) as live:
            view.live = live
            result = client.run(target_fps=target_fps, policy=policy, out=None if output is None else str(output),
                                on_frame=view.on_frame, max_frames=max_frames)
            live.update(view.table())
    summary = result.to_dict()
    if json_out is not None:
        write_bytes_atomic(json_out, json.dumps(summary, indent=1).encode("utf-8"))
    print_summary(summary, out, f"{url}: live, {result.stats.segments} segments, {result.stats.updates_applied} "
                                f"updates applied")
    s = result.stats
    out.print(f"  received {s.bytes_down / 1e3:.1f} kB (segments {s.segment_bytes / 1e3:.1f}, model "
              f"{s.model_bytes / 1e3:.1f}), sent {s.bytes_up / 1e3:.1f} kB; refused {s.refused} updates, skipped "
              f"{s.skipped_segments} segments, {s.reconnects} reconnects"
              + ("; base model named by hash" if s.base_by_hash else ""), highlight=False)
    return summary


def bench_live(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for live.json.")] = Path("out/live"),
    videos: Annotated[Optional[list[Path]], typer.Option("--video", help="Clips played back to back as one live session (default: bigbuckbunny, megamind, vtest from the shared data; bikes, megamind, bigbuckbunny for crops at most 272 high).")] = None,
    schemes: Annotated[str, typer.Option(help="Comma-separated schemes: none, one_time, jit, ams, ams_asr_atr.")] = "none,one_time,jit,ams,ams_asr_atr",
    rows: Annotated[Optional[list[str]], typer.Option("--row", help="One more session after the schemes, with settings of its own: SCHEME:NAME=VALUE,... as bench adapt takes it (repeatable), e.g. ams:k=40,t_horizon=4.")] = None,
    clients: Annotated[int, typer.Option(help="Clients watching each channel.")] = 1,
    channels: Annotated[str, typer.Option(help="Channel counts for the scaling run (e.g. 1,2,3; empty: skip).")] = "",
    scheduler: Annotated[str, typer.Option(help="Scheduler of the scaling run: round_robin, gain or both.")] = "both",
    crop: Annotated[str, typer.Option(help="Centre crop WxH of every clip (HR pixels; the clients get half or a third of it).")] = "640x360",
    seconds: Annotated[float, typer.Option(help="Length of each live session in seconds (bounded).")] = 60.0,
    t_update: Annotated[float, typer.Option(help="T_update seconds.")] = 2.0,
    k: Annotated[int, typer.Option(help="Adam iterations per update (K).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    setting: Annotated[Optional[list[str]], typer.Option("--set", help="A trainer setting NAME=VALUE for every scheme (repeatable; the names of bench adapt's rows: k, eta, lr, t_horizon, on_cut, ...).")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Run every scaling session once more with the trainers as Ray actors (needs adasr\\[cluster]): auto (a Ray on this machine) or HOST:PORT of a cluster's head.")] = None,
    ray_cpus: Annotated[Optional[int], typer.Option(help="CPUs of a Ray that --ray auto starts here (default: all).")] = None,
    train_threads: Annotated[int, typer.Option(help="Torch threads of the server's training worker (adasr serve --train-threads); 2 with --client-sr after gives it both cores.")] = 1,
    client_sr: Annotated[str, typer.Option(help="Where the clients upscale: inline (here, every frame as it plays, on the server's cores) or after (the clients fetch, decode and swap models in real time and record which model each segment played with; their frames are upscaled and scored after the session, as if each client had a device of its own).")] = "inline",
    client_precision: Annotated[str, typer.Option(help="The clients' upscaling arithmetic: fp32, bf16 (about 2x faster on a CPU with AVX512-BF16 or AMX, within 0.01 dB) or auto (bf16 where native); adasr play --precision for a live channel.")] = "fp32",
) -> None:
    """Live AMS on loopback: server + clients, Table 4.1's schemes in SR form; PSNR gain, kbps, server CPU."""
    from adasr._atomic import check_not_input
    from adasr.bench.live import CLIENT_SR, LiveBenchConfig, run_live_bench, summary_lines
    from adasr.serve.config import parse_row

    if client_sr not in CLIENT_SR:
        raise ConfigError(f"--client-sr must be one of {', '.join(CLIENT_SR)}, got {client_sr!r}")
    size = parse_hw(crop, "--crop", minimum=32)
    names = tuple(s.strip() for s in schemes.split(",") if s.strip()) + tuple(rows or ())
    overrides = parse_row("ams:" + ",".join(setting or [])).overrides
    counts = tuple(int(c) for c in channels.split(",") if c.strip()) if channels.strip() else ()
    cfg = LiveBenchConfig(videos=tuple(videos) if videos else None, schemes=names, clients=clients, crop_hw=size,
                          seconds=seconds, t_update=t_update, k=k, seed=seed, channel_counts=counts,
                          schedulers=("round_robin", "gain") if scheduler == "both" else (scheduler,),
                          ray=ray, ray_cpus=ray_cpus, overrides=overrides, client_sr=client_sr,
                          client_precision=client_precision,
                          train_threads=train_threads)
    if ray is not None and not counts:
        raise ConfigError("--ray compares the scaling run's channels: give --channels too (e.g. --channels 1,2)")
    check_not_input([out_dir], list(videos or []))
    result = run_live_bench(cfg, out_dir, on_progress=lambda text: console.print(text, highlight=False, soft_wrap=True))
    for line in summary_lines(result):
        out.print(line, highlight=False)
    out.print(f"wrote {out_dir / 'live.json'}")


def bench_adapt(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for adapt.json.")] = Path("out/adapt"),
    videos: Annotated[Optional[list[Path]], typer.Option("--video", help="Clips played back to back as one session (default: bigbuckbunny, megamind, vtest from the shared data).")] = None,
    rows: Annotated[Optional[list[str]], typer.Option("--row", help="A setting: SCHEME[:NAME=VALUE,...] with SCHEME none, one_time, jit, ams or ams_asr_atr and NAME a trainer setting (k, eta, lr, t_horizon, t_update, batch, patch, strategy, on_cut=keep|reset|base, cut_phi, one_time_s, one_time_lr, jit_gain_db, jit_max_steps, delta_dtype=int8|int4|float16|float32) or a channel setting (hold: segments held back, rate: frames a second into the buffer); repeatable. Default: the ablation table (Table 4.1's schemes, then AMS with one setting changed at a time).")] = None,
    crop: Annotated[str, typer.Option(help="Centre crop WxH of every clip (HR pixels).")] = "640x360",
    seconds: Annotated[float, typer.Option(help="Length of the session in seconds (bounded).")] = 60.0,
    crf: Annotated[int, typer.Option(help="CRF of the segments (the server's default).")] = 28,
    model: Annotated[str, typer.Option(help="Base model: generic (the bundled codec-trained model), a model file or a package.")] = "generic",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    ceiling_steps: Annotated[str, typer.Option(help="Also the ceiling of content adaptation for this model, one row per count: every parameter trained for N Adam steps on each segment before that same segment is scored (not causal, not streamable). Comma-separated counts, e.g. 100,400; empty = none.")] = "",
) -> None:
    """Adaptation settings side by side, offline: the live trainer on a simulated clock (no training
    delay, an upper bound on the live run), each frame scored with the model the clients hold when
    it arrives. Gain over the base model per clip, model kbps, training CPU per video second."""
    from adasr._atomic import check_not_input
    from adasr.bench.adapt import ABLATION_ROWS, AdaptBenchConfig, parse_row, run_adapt_bench, summary_lines

    size = parse_hw(crop, "--crop", minimum=32)
    parsed = tuple(parse_row(r) for r in (rows or ABLATION_ROWS))
    cfg = AdaptBenchConfig(videos=tuple(videos) if videos else None, rows=parsed, crop_hw=size, seconds=seconds,
                           crf=crf, model=model, seed=seed,
                           ceiling_steps=parse_ints(ceiling_steps, "--ceiling-steps", Range(1, 10_000), most=8)
                           if ceiling_steps.strip() else ())
    check_not_input([out_dir], list(videos or []))
    result = run_adapt_bench(cfg, out_dir, on_progress=lambda text: console.print(text, highlight=False, soft_wrap=True))
    for line in summary_lines(result):
        out.print(line, highlight=False)
    out.print(f"wrote {out_dir / 'adapt.json'}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("serve")(serve)
    bench_app.command("live")(bench_live)
    bench_app.command("adapt")(bench_adapt)
