"""`adasr` command line: thin wrappers over the library; one-line errors, non-zero exits."""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from adasr._cli.common import console, explicit, out, parse_hw
from adasr._cli.common import set_threads as _threads
from adasr.errors import AdasrError, ConfigError

__all__ = ["app", "bench_app", "main"]  # the commands register on `app`

app = typer.Typer(
    name="adasr",
    help="Adaptive neural super-resolution: train, evaluate and run SR models on images and video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        import adasr

        out.print(f"adasr {adasr.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Adaptive neural super-resolution: train, evaluate and run SR models on images and video."""


@app.command()
def upscale(
    paths: Annotated[list[Path], typer.Argument(help="INPUT... OUTPUT: an image (png, jpg, ...) or video (mp4, mkv, avi, ...) and the output file (its suffix picks the format); or folders and/or several inputs and an output folder (created; every image and video directly in an input folder is upscaled, keeping its name).", metavar="INPUT... OUTPUT")],
    scale: Annotated[int, typer.Option(help="Upscaling factor; picks the bundled model unless --model is given.")] = 2,
    model: Annotated[Optional[Path], typer.Option(help="Package (folder or .adasr) or single model file "
                                                  "(default: the bundled package for --scale).")] = None,
    level: Annotated[Optional[str], typer.Option(help="Package level: best (the default: quality first), an index "
                                                 "(0 = fastest), or auto (videos: the same as --realtime).")] = None,
    time_budget: Annotated[Optional[str], typer.Option(help="Best level whose estimate fits this time: 90s, 2m, 1h, "
                                                       "or 1x / 0.5x (multiples of the clip's length).")] = None,
    strict: Annotated[bool, typer.Option(help="With --time-budget: refuse (exit 5) when even the fastest level "
                                         "does not fit, instead of running it.")] = False,
    realtime: Annotated[bool, typer.Option(help="Live transcoding: the adaptive runtime holds the video's frame "
                                           "rate (or --target-fps), switching levels as the CPU allows.")] = False,
    target_fps: Annotated[Optional[float], typer.Option(help="Frame rate --realtime holds (default: the video's); "
                                                        "implies --realtime.")] = None,
    codec: Annotated[Optional[str], typer.Option(help="Video codec: h264, h265 or av1 (default: h265 for a 10-bit source, av1 for .webm, else h264).")] = None,
    crf: Annotated[int, typer.Option(help="Video quality (constant rate factor, lower = better).")] = 20,
    preset: Annotated[Optional[str], typer.Option(help="Encoder preset (default: the codec's own).")] = None,
    tile: Annotated[int, typer.Option(help="Process frames in tiles of this many LR pixels (bounded memory).")] = 256,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop a video after this many frames (every stream is cut there).")] = None,
    start: Annotated[Optional[float], typer.Option(help="Start a video this many seconds in (every stream is cut there).")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Upscale this many seconds of a video (every stream is cut there).")] = None,
    resume: Annotated[bool, typer.Option(help="Encode a video in chunks kept beside the output (.NAME.adasr-partial/) so that Ctrl-C loses at most one chunk: the same command with --resume then goes on from there, and the result is the same file as an uninterrupted --resume run. A package's levels only, not --realtime.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", "-y", help="Replace an existing output (a batch: upscale again the files whose outputs exist, which are skipped otherwise).")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar and no estimate line (warnings still show).")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help="Print a JSON summary (mode, level histogram, "
                                               "estimated and actual seconds; --realtime: deadline share) "
                                               "instead of a sentence.")] = False,
    precision: Annotated[Optional[str], typer.Option(help="Video level precision: fp32, int8 (every level, forced) or auto (int8 only where this device's profile measured it faster and within its PSNR tolerance); default: fp32 for a file (quality first), the package's own with --realtime (the bundled packages: auto).")] = None,
    family: Annotated[str, typer.Option(help="Which bundled levels run when --model is not given: auto (a lossless image, PNG/BMP/TIFF/PPM: the levels trained on clean LR; a video or a JPEG/WebP: those trained on codec-compressed LR), codec, or clean.")] = "auto",
) -> None:
    """Upscale images and videos: every audio, subtitle and attachment stream, frame time, bit depth and colour
    tag is kept. The best level by default, the best that fits --time-budget, or --realtime; one line up front
    says what runs and about how long it takes here. Without --model the levels follow the input (--family)."""
    from adasr._cli.upscale_cmd import run_upscale

    if len(paths) < 2:
        raise ConfigError("give an input and an output (INPUT... OUTPUT)")
    _threads(threads)
    run_upscale(paths[:-1], paths[-1], quiet=quiet, json_summary=json_summary, overwrite=overwrite, out=out,
                console=console, scale=scale, model=model, codec=codec, crf=crf, preset=preset, tile=tile,
                max_frames=max_frames, level=level, target_fps=target_fps, time_budget=time_budget,
                realtime=realtime, strict=strict, precision=precision, start=start, duration=duration, resume=resume,
                family=family)


@app.command()
def play(
    ctx: typer.Context,
    video: Annotated[str, typer.Argument(help="Video file to play (its frames are the LR input), a model stream "
                                         "(from adasr encode), which carries its own model and LR size, or a live "
                                         "channel http(s)://HOST:PORT/channel/NAME (from adasr serve).")],
    target_fps: Annotated[Optional[float], typer.Option(help="Display rate to hold (default: the video's).")] = None,
    policy: Annotated[str, typer.Option(help="lookup (DySR Algorithm 1 on the profile, calibrated online), reactive "
                                        "(Dynamic-OFA runtime manager) or fixed (one level).")] = "lookup",
    level: Annotated[str, typer.Option(help="Starting level (fixed: the level): auto, best or an index.")] = "auto",
    trace: Annotated[Optional[str], typer.Option(help="Background CPU load to replay while playing: bursty, stable, "
                                                 "random or a CSV file (time,load).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Package (default: the bundled one for --scale).")] = None,
    scale: Annotated[int, typer.Option(help="Upscaling factor (picks the bundled package).")] = 2,
    lr_size: Annotated[Optional[str], typer.Option(help="Resize frames to WxH before SR (e.g. 320x180).")] = None,
    reference_every: Annotated[int, typer.Option(help="With --lr-size: score every N-th frame against the source "
                                                 "(PSNR vs bicubic); 0 = off.")] = 0,
    output: Annotated[Optional[Path], typer.Option("--out", help="Also write the upscaled video here.")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the QoS summary as JSON here.")] = None,
    timeline: Annotated[Optional[Path], typer.Option(help="Write a timeline PNG (level, FPS, latency, load).")] = None,
    quiet: Annotated[bool, typer.Option(help="No live view; print the summary only.")] = False,
    base: Annotated[Optional[str], typer.Option(help="The base model this player already holds (generic, srvc, a model file or a package): a live channel then names it by hash and sends only updates; a model stream encoded with --base-by-hash needs it (a mismatching hash is refused).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="Level precision: fp32, int8 (every level, forced) or auto (int8 only where this device's profile measured it faster and within its PSNR tolerance); default: the package's own (the bundled packages: auto; fp32 when a package says nothing). A live channel: fp32 (default), bf16 (about 2x faster on a CPU with AVX512-BF16 or AMX, within 0.01 dB) or auto (bf16 where native).")] = None,
    family: Annotated[str, typer.Option(help="Which bundled levels run when --model is not given: auto (a video: the levels trained on codec-compressed input), codec, or clean (trained on clean bicubic LR, for a lossless source).")] = "auto",
    token: Annotated[Optional[str], typer.Option(envvar="ADASR_TOKEN", show_envvar=True, help="Access token of a live channel served with adasr serve --host (or set ADASR_TOKEN, which keeps it out of the process list).")] = None,
    pipe: Annotated[bool, typer.Option("--pipe", help="Write the upscaled frames as raw rgb24 to stdout, to watch live: adasr play clip.mp4 --pipe | ffplay -f rawvideo -pixel_format rgb24 -video_size WxH -framerate FPS - (the exact line is printed on stderr).")] = False,
) -> None:
    """Play a video through the adaptive runtime with a live view of level, FPS, load, switches and misses;
    one warning when the target frame rate is out of reach."""
    from adasr._cli.play_cmd import run_play
    from adasr.stream.player import is_stream_path

    if policy not in ("lookup", "reactive", "fixed"):
        raise ConfigError(f"--policy must be lookup, reactive or fixed, got {policy!r}")
    if video.startswith(("http://", "https://")):
        from adasr._cli.serve_cmd import run_play_live

        ignored = explicit(ctx, ("model", "scale", "trace", "lr_size", "reference_every", "level", "timeline"))
        if ignored:
            names = ", ".join("--" + n.replace("_", "-") for n in ignored)
            raise ConfigError(f"{names}: not for a live channel (the channel sets model, scale and LR size); "
                              f"leave {names} out")
        if precision is not None and precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"--precision for a live channel: fp32, bf16 or auto (bf16 where the CPU has it "
                              f"natively), got {precision!r}")
        run_play_live(video, base=base, target_fps=target_fps, policy=policy, output=output, json_out=json_out,
                      max_frames=max_frames, quiet=quiet, token=token, precision=precision or "fp32")
        return
    if getattr(ctx.get_parameter_source("token"), "name", None) == "COMMANDLINE":  # ADASR_TOKEN may stay set
        raise ConfigError("--token: for a live channel (http(s)://HOST:PORT/channel/NAME) only; leave it out")
    from adasr.safepath import user_path

    video = user_path(video, "video")
    if base is not None and not is_stream_path(video):
        raise ConfigError("--base applies to a live channel (http(s)://HOST:PORT/channel/NAME) or a model "
                          "stream only")
    if is_stream_path(video):
        ignored = explicit(ctx, ("model", "scale", "trace", "lr_size", "reference_every", "precision"))
        if ignored:
            names = ", ".join("--" + n.replace("_", "-") for n in ignored)
            verb = "does" if len(ignored) == 1 else "do"
            raise ConfigError(f"{names} {verb} not apply to a model stream ({video} carries its own model, scale and "
                              f"LR size, and plays without a background load); leave {names} out")
    run_play(video, model=model, scale=scale, target_fps=target_fps, policy=policy, level=level, trace=trace,
             lr_hw=None if lr_size is None else _parse_hw(lr_size), output=output, max_frames=max_frames,
             json_out=json_out, timeline=timeline, reference_every=reference_every, quiet=quiet, out=out,
             console=console, base=base, precision=precision, family=family, pipe=pipe)


def _parse_hw(text: str) -> tuple[int, int]:
    return parse_hw(text, "frame size")


from adasr._cli.train_cmd import register as _register_train  # noqa: E402  (train)

_register_train(app)

from adasr._cli.eval_cmd import register as _register_eval  # noqa: E402  (eval, info)

_register_eval(app)

from adasr._cli.search_cmd import register as _register_search  # noqa: E402  (search, profile)

_register_search(app)

from adasr._cli.demo import register as _register_demo  # noqa: E402  (demo)

_register_demo(app)

bench_app = typer.Typer(help="Benchmarks that run competitors side by side and report ratios.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

from adasr._cli.bench_cmd import register as _register_bench  # noqa: E402  (bench protocol, memory, adaptivity, ...)

_register_bench(bench_app)

from adasr._cli.stream_cmd import register as _register_stream  # noqa: E402  (encode, decode, bench codec)

_register_stream(app, bench_app)

from adasr._cli.serve_cmd import register as _register_serve  # noqa: E402  (serve, bench live)

_register_serve(app, bench_app)

from adasr._cli.peers_cmd import register as _register_peers  # noqa: E402  (bench peers)

_register_peers(bench_app)

from adasr._cli.reuse_cmd import register as _register_reuse  # noqa: E402  (bench reuse)

_register_reuse(bench_app)

from adasr._cli.backends_cmd import register as _register_backends  # noqa: E402  (bench backends)

_register_backends(bench_app)

from adasr._cli.export_cmd import register as _register_export  # noqa: E402  (export)

_register_export(app)

from adasr._cli.browser_cmd import register as _register_browser  # noqa: E402  (bench browser)

_register_browser(bench_app)

from adasr._cli.dlsr_cmd import register as _register_dlsr  # noqa: E402  (search-dlsr, plot-dlsr)

_register_dlsr(app)

from adasr._cli.mimo_cmd import register as _register_mimo  # noqa: E402  (mimo channels, bench, train)

_register_mimo(app)
import adasr._cli.mimo_figures_cmd  # noqa: E402,F401  (mimo sweep-phi, complexity: on the mimo group)

_FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

# The optional packages and the extra that installs each (pyproject.toml [project.optional-dependencies]):
# the core install leaves them out, and a command that needs one says how to get it.
# torch: training, search, profiling into a package, encode/decode, eval, int8 and the benches (the core runs
# packages with ONNX Runtime, adasr.runtime.onnx_engine).
EXTRA_OF_MODULE = {"torch": "torch", "aiohttp": "serve", "ray": "cluster", "sionna": "mimo", "scipy": "mimo",
                   "h5py": "mimo", "onnx": "onnx", "cv2": "peers", "pyanime4k": "peers"}


def _fail(message: str, code: int) -> None:
    from adasr._cli.ddp import rank_prefix

    console.print("[red]error:[/red] " + escape(rank_prefix() + message), highlight=False, soft_wrap=True)
    sys.exit(code)


@functools.cache
def _command():
    """The click tree of `adasr`, built once per process (typer builds it from every command's
    signature, about 0.15 s), with every numeric option range-checked before its command runs."""
    from typer.main import get_command

    from adasr._cli.common import bound_commands

    command = get_command(app)
    bound_commands(command)
    return command


def main() -> None:
    """Entry point: every failure is one line on stderr and an exit code from adasr.errors
    (a usage error is an option error, 5; Ctrl-C is 130); a bug is an "internal error", 70."""
    from adasr.errors import OutputError

    command = _command()
    try:
        code = command.main(prog_name="adasr", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors: unknown option, missing argument, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `adasr` / `adasr bench`: the help is the answer
            console.print(exc.format_message(), markup=False, highlight=False)
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path if ctx is not None else 'adasr'} --help)"
        _fail(" ".join(exc.format_message().split()) + hint, ConfigError.exit_code)
    except typer.Abort:  # end of input at a prompt, or an explicit abort
        code = 130
    except KeyboardInterrupt:  # outside the command (startup); inside, typer turns it into exit code 130
        code = 130
    except AdasrError as exc:
        if exc.exit_code == 130:
            console.print(escape(str(exc)), highlight=False, soft_wrap=True)
            sys.exit(130)
        _fail(str(exc), exc.exit_code)
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None or os.environ.get("ADASR_DEBUG"):
            _internal(exc)
        _fail(f"this command needs the optional package {exc.name}: pip install 'adasr[{extra}]' "
              f"(or make setup-dev for every extra)", ConfigError.exit_code)
    except OSError as exc:
        if exc.errno not in _FULL_DISK or os.environ.get("ADASR_DEBUG"):
            _internal(exc)
        where = f" writing {exc.filename}" if exc.filename else ""
        _fail(f"output failed{where}: {exc.strerror or exc} (free some space and run again)", OutputError.exit_code)
    except Exception as exc:
        _internal(exc)
    if code == 130:
        console.print("[red]interrupted[/red]; no partial output was left behind")
    sys.exit(code or 0)


def _internal(exc: BaseException) -> None:
    if os.environ.get("ADASR_DEBUG"):
        raise exc
    first = str(exc).splitlines()[0] if str(exc) else ""
    console.print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(first)} (set ADASR_DEBUG=1 for "
                  f"the traceback)", highlight=False, soft_wrap=True)
    sys.exit(70)
