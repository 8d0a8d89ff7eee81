"""`adasr encode`, `adasr decode` and `adasr bench codec`: model streaming on the command line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import RANGES, console, out, parse_hw, parse_ints
from adasr._cli.common import set_threads as _threads
from adasr.errors import ConfigError, InputError

__all__ = ["bench_codec", "decode", "encode", "register"]

DELTA_VALUES = ("float16", "int8", "int4", "float32")


def _crop(text: str | None) -> tuple[int, int] | None:
    return None if text is None else parse_hw(text, "--crop", minimum=16)


def _tau(text: str) -> float:
    if text.lower() in ("inf", "none"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--tau wants seconds or 'inf', got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"--tau must be positive, got {text}")
    return value


def _stage_printer(quiet: bool):
    last = {"stage": None}

    def progress(stage: str, done: int, total: int) -> None:
        if quiet:
            return
        if stage != last["stage"] or done == total or done % 5 == 0:
            console.print(f"  {stage}: {done}/{total}", highlight=False)
            last["stage"] = stage

    return progress


def encode(
    video: Annotated[Path, typer.Argument(help="HR source video.")],
    stream: Annotated[Path, typer.Argument(help="Stream to write: a folder, or a single file ending in .adasrs.")],
    scale: Annotated[int, typer.Option(help="Downsampling factor k (the SR model's scale).")] = 2,
    codec: Annotated[str, typer.Option(help="Content codec: h265 or h264.")] = "h265",
    crf: Annotated[int, typer.Option(help="Content quality (constant rate factor, lower = better).")] = 30,
    preset: Annotated[str, typer.Option(help="Content encoder preset.")] = "slow",
    tau: Annotated[str, typer.Option(help="Segment length in seconds (one model update each), or inf.")] = "5",
    eta: Annotated[float, typer.Option(help="Fraction of the parameters a segment may change.")] = 0.01,
    strategy: Annotated[str, typer.Option(help="Which parameters: gradient (SRVC), ams (Algorithm 3), random, first, last, first_last, full.")] = "gradient",
    model: Annotated[str, typer.Option(help="generic (bundled model), srvc (SRVC's model), a model file, or a package (folder/.adasr).")] = "generic",
    levels: Annotated[str, typer.Option(help="Package model: levels to adapt together: 'all', indices like 0,5,10, and sub-networks of its supernet as dD-wW (depth, width), comma-separated.")] = "all",
    steps: Annotated[int, typer.Option(help="Adam steps per segment.")] = 60,
    batch: Annotated[int, typer.Option(help="Crops per step.")] = 8,
    patch: Annotated[int, typer.Option(help="LR crop side in pixels.")] = 48,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    init_steps: Annotated[int, typer.Option(help="Full-model steps on the whole clip before the first model is sent (one-shot customisation).")] = 0,
    values: Annotated[str, typer.Option(help="Delta values: int8 or int4 (one float32 scale per record), float16 or float32.")] = "int8",
    train_precision: Annotated[str, typer.Option(help="Arithmetic of the adaptation steps: auto (bf16 where the CPU or GPU computes it natively, else fp32), bf16 or fp32. The stream is decoded exactly either way.")] = "auto",
    base_by_hash: Annotated[bool, typer.Option(help="The receiver already holds the --model (generic, or the same model file / package): the first record names it by hash instead of carrying it, so only the updates travel; decode/play then need --base.")] = False,
    updates: Annotated[str, typer.Option(help="Which segment updates are sent: always, or rd (only as far as they pay: the whole update, its largest half or quarter, or nothing, whichever removes the most error net of its bits at the content's own rate-distortion slope, measured by a second encode at CRF+2; nothing sends an empty record).")] = "rd",
    rd_lambda: Annotated[Optional[float], typer.Option(help="--updates rd: the exchange rate instead of the measured slope (HR luma squared error per bit).")] = None,
    rd_lookahead: Annotated[int, typer.Option(help="--updates rd: also count what an update saves on the next N segments, where the receiver still holds it (0 = its own segment only).")] = 2,
    max_frames: Annotated[Optional[int], typer.Option(help="Encode only the first N frames.")] = None,
    crop: Annotated[Optional[str], typer.Option(help="Centre crop WxH of the source before encoding.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N] for the adaptation.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
) -> None:
    """Encode a video as an LR content stream plus a model stream of per-segment sparse updates (SRVC)."""
    from adasr.stream.adapt import AdaptConfig
    from adasr.stream.encoder import EncodeSettings, encode_video

    _threads(threads)
    if not video.is_file():
        raise InputError(f"video not found: {video}")
    if codec.lower() not in ("h264", "h265", "hevc", "avc"):
        raise ConfigError(f"--codec must be h264 or h265, got {codec!r}")
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {max_frames}")
    settings = EncodeSettings(scale=scale, codec=codec, crf=crf, preset=preset, tau=_tau(tau), model=model,
                              levels=levels, init_steps=init_steps, delta_dtype=values, device=device,
                              base_by_hash=base_by_hash, updates=updates, rd_lambda=rd_lambda,
                              rd_lookahead=rd_lookahead,
                              adapt=AdaptConfig(eta=eta, steps=steps, batch=batch, patch=patch, lr=lr,
                                                strategy=strategy, seed=seed, precision=train_precision))
    if values not in DELTA_VALUES:
        raise ConfigError(f"--values must be one of {', '.join(DELTA_VALUES)}, got {values!r}")
    m = encode_video(video, stream, settings, max_frames=max_frames, crop_hw=_crop(crop),
                     on_progress=_stage_printer(quiet))
    k, t = m["kbps"], m["timing"]
    out.print(f"wrote {stream}: {m['frames']} frames {m['width']}x{m['height']} (content {m['lr_width']}x"
              f"{m['lr_height']} {codec} crf {crf}), {len(m['segments'])} segment{'' if len(m['segments']) == 1 else 's'}", highlight=False)
    out.print(f"  content {k['content']:.1f} kbps, model {k['model_init'] + k['model_deltas']:.1f} kbps "
              f"(first model {k['model_init']:.1f}{' named by hash' if base_by_hash else ''}, updates "
              f"{k['model_deltas']:.1f}), total {k['total']:.1f} kbps, "
              f"{m['bpp']['total']:.4f} bits per pixel", highlight=False)
    if "rate_distortion" in m or updates == "rd":
        sent = sum(bool(seg.get("sent")) for seg in m["segments"])
        lam = m["settings"]["rd_lambda"]
        out.print(f"  updates that pay: {sent} of {len(m['segments'])} sent (lambda {lam:.4g} squared error per bit"
                  f"{', the content' + chr(39) + 's slope' if 'rate_distortion' in m else ''})", highlight=False)
    out.print(f"  encoded in {t['encode_s']:.1f} s = {t['realtime_factor']:.2f}x real time", highlight=False)


def decode(
    stream: Annotated[Path, typer.Argument(help="Stream folder or .adasrs file.")],
    output: Annotated[Path, typer.Argument(help="HR video to write (.mp4, .mkv, .mov).")],
    level: Annotated[Optional[int], typer.Option(help="Package stream: level to run (default the largest).")] = None,
    codec: Annotated[str, typer.Option(help="Output codec: h264, h265 or av1.")] = "h264",
    crf: Annotated[int, typer.Option(help="Output quality.")] = 18,
    preset: Annotated[Optional[str], typer.Option(help="Output encoder preset.")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after N frames.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    base: Annotated[Optional[str], typer.Option(help="The base model of a stream encoded with --base-by-hash (generic, srvc, a model file or a package); a mismatching hash is refused.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
) -> None:
    """Decode a stream: content frames super-resolved by the model, updated at each segment boundary."""
    from adasr.stream.reader import decode_stream

    _threads(threads)
    printer = _stage_printer(quiet)
    s = decode_stream(stream, output, level=level, codec=codec, crf=crf, preset=preset, device=device,
                      max_frames=max_frames, base=base,
                      on_frame=lambda d, t: printer("decode", d, t) if d % 25 == 0 or d == t else None)
    out.print(f"wrote {output}: {s.frames} frames {s.width}x{s.height}, {s.segments} model updates applied, "
              f"{s.fps:.1f} frames/s", highlight=False)


def bench_codec(
    videos: Annotated[list[Path], typer.Argument(help="Real clips (each one is benchmarked).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for codec.json and the PNGs.")] = Path("out/codec"),
    max_frames: Annotated[Optional[int], typer.Option(help="Use the first N frames of each clip.")] = 250,
    crop: Annotated[Optional[str], typer.Option(help="Centre crop WxH of each clip.")] = None,
    hr_crfs: Annotated[str, typer.Option(help="CRFs of the HR H.264/H.265 curves.")] = "26,30,34,38,42",
    lr_crfs: Annotated[str, typer.Option(help="CRFs of the LR H.265 curves.")] = "18,22,26,30,34",
    sweep_crf: Annotated[int, typer.Option(help="LR CRF of the eta / tau / strategy sweeps.")] = 26,
    sweeps: Annotated[bool, typer.Option(help="Run the eta, tau and strategy sweeps.")] = True,
    package: Annotated[Optional[Path], typer.Option(help="Also adapt this package's supernet (all levels) and report per-level PSNR.")] = None,
    tau: Annotated[str, typer.Option(help="Segment seconds of the adasr stream.")] = "5",
    eta: Annotated[float, typer.Option(help="Parameter fraction per update of the adasr stream.")] = 0.01,
    steps: Annotated[int, typer.Option(help="Adam steps per segment.")] = 60,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the adasr stream's updates.")] = 1e-3,
    patch: Annotated[int, typer.Option(help="LR crop side of the adasr stream's training crops.")] = 48,
    oneshot_steps: Annotated[int, typer.Option(help="Steps of the one-shot customisation.")] = 100,
    ssim_every: Annotated[int, typer.Option(help="SSIM on every N-th frame (PSNR on all).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    values: Annotated[str, typer.Option(help="Delta values of the adasr stream: int8, int4, float16 or float32.")] = "int8",
    train_precision: Annotated[str, typer.Option(help="Arithmetic of the streams' adaptation steps: auto, bf16 or fp32 (encode --train-precision).")] = "auto",
    rd: Annotated[bool, typer.Option(help="Also the stream that sends only the updates that pay (encode --updates rd).")] = True,
    rd_lookahead: Annotated[int, typer.Option(help="That stream's look-ahead: the segments after its own an update is judged on (encode --rd-lookahead).")] = 2,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Rate-distortion of model streaming vs HR H.264/H.265: PSNR/SSIM vs bpp, BD-rate, sweeps; JSON + PNG."""
    from adasr.bench.codec import CodecBenchConfig, run_codec_bench, summary_lines

    _threads(threads)

    def ints(text: str, name: str) -> tuple[int, ...]:
        return parse_ints(text, f"--{name}", RANGES["crf"])

    cfg = CodecBenchConfig(max_frames=max_frames, crop_hw=_crop(crop), hr_crfs=ints(hr_crfs, "hr-crfs"),
                           lr_crfs=ints(lr_crfs, "lr-crfs"), sweep_crf=sweep_crf, sweeps=sweeps, package=package,
                           tau=_tau(tau), eta=eta, steps=steps, lr=lr, patch=patch, oneshot_steps=oneshot_steps,
                           ssim_every=ssim_every, seed=seed, device=device, values=values, rd=rd,
                           rd_lookahead=rd_lookahead, precision=train_precision)
    if values not in DELTA_VALUES:
        raise ConfigError(f"--values must be one of {', '.join(DELTA_VALUES)}, got {values!r}")
    from adasr._atomic import check_not_input

    check_not_input([out_dir], [*videos, package])
    out_dir.mkdir(parents=True, exist_ok=True)
    result = run_codec_bench(videos, out_dir, cfg, on_progress=_stage_printer(False))
    for line in summary_lines(result):
        out.print(line, highlight=False)
    out.print(f"wrote {out_dir / 'codec.json'} and PNGs")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the streaming commands to the `adasr` app and its `bench` group."""
    app.command("encode")(encode)
    app.command("decode")(decode)
    bench_app.command("codec")(bench_codec)
