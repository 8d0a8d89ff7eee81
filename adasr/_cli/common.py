"""What every CLI module shares: the two consoles, --threads, WxH parsing and the ranges of the
numeric options."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from adasr.errors import ConfigError

if TYPE_CHECKING:
    import click

__all__ = ["MAX_SIDE", "MAX_THREADS", "RANGES", "Range", "bound_commands", "check_options", "console", "explicit",
           "out", "parse_hw", "parse_ints", "parse_shares", "range_for", "set_threads"]

console = Console(stderr=True)  # progress, live views, errors
out = Console(soft_wrap=True)   # results (whole lines, also when not a terminal)

MAX_THREADS = 256  # far above any core count here; libgomp aborts on absurd thread counts
MAX_SIDE = 16384   # pixels per side of any WxH option
_BIG = 10_000_000  # steps, frames, intervals: a bound no real run reaches


@dataclass(frozen=True)
class Range:
    """Closed interval [lo, hi]; `lo_open` / `hi_open` exclude an end (e.g. a rate > 0)."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def describe(self) -> str:
        lo = f"above {self.lo:g}" if self.lo_open else f"at least {self.lo:g}"
        hi = f"below {self.hi:g}" if self.hi_open else f"at most {self.hi:g}"
        return f"{lo} and {hi}"


# The range of every int/float option of every command, by option name; "command:name" entries
# override the plain name for one command (the command's own name: `pipeline` for `bench pipeline`).
# tests/test_failures.py checks that every numeric option of the CLI has an entry here.
RANGES: dict[str, Range] = {
    "threads": Range(1, MAX_THREADS),
    "train_threads": Range(1, MAX_THREADS),
    "scale": Range(2, 4),
    "steps": Range(1, _BIG),
    "encode:steps": Range(0, 100_000),       # Adam steps per segment; 0 sends the model unadapted
    "batch_size": Range(1, 4096),
    "batch": Range(1, 4096),
    "patch": Range(8, 1024),
    "encode:patch": Range(4, 1024),
    "small_steps": Range(0, 16),
    "grad_clip": Range(0, 1e6),
    "small_patch": Range(4, 512),
    "small_until": Range(0, 1, lo_open=True),
    "lr": Range(0, 10, lo_open=True),
    "hfen_weight": Range(0, 1000),
    "ema": Range(0, 1, hi_open=True),
    "val_every": Range(1, _BIG),
    "ckpt_every": Range(1, _BIG),
    "seed": Range(0, 2**32 - 1),
    "max_minutes": Range(0, 1e6, lo_open=True),
    "spread": Range(2, 1000),
    "target_fps": Range(0, 10_000, lo_open=True),
    "crf": Range(0, 63),
    "sweep_crf": Range(0, 63),
    "tile": Range(8, MAX_SIDE),
    "max_frames": Range(1, _BIG),
    "upscale:start": Range(0, 1e7),            # seconds into a video
    "upscale:duration": Range(0, 1e7, lo_open=True),
    "pipeline:max_frames": Range(2, _BIG),
    "repeats": Range(1, 10_000),
    "predictor_samples": Range(0, 100_000),
    "reference_every": Range(0, _BIG),
    "eta": Range(0, 1, lo_open=True),
    "rate": Range(0.01, 120),                 # serve: frames per second that join the training buffer
    "hold": Range(0, 30),                     # serve: segments held back before publication
    "rd_lookahead": Range(0, 1000),           # encode --updates rd: segments an update is judged on after its own
    "rd_lambda": Range(0, 1e12),              # encode --updates rd: HR squared error per bit
    "init_steps": Range(0, 1_000_000),
    "oneshot_steps": Range(0, 1_000_000),
    "ssim_every": Range(1, _BIG),
    "levels": Range(2, 1000),
    "seconds": Range(0, 86_400, lo_open=True),
    "rounds": Range(1, 10_000),
    "level": Range(0, 1000),
    "warmup": Range(0, _BIG),                 # search-dlsr: weight-only steps first
    "search-dlsr:width": Range(4, 256),
    "search-dlsr:cells": Range(1, 32),
    "arch_lr": Range(0, 10, lo_open=True),
    "search-dlsr:lam": Range(0, 1000),
    "l1_weight": Range(0, 1000),
    "search-dlsr:mu": Range(0, 1000),
    "search-dlsr:gamma": Range(0, 1000),
    "val_fraction": Range(0, 1, lo_open=True, hi_open=True),
    "snapshot": Range(1, _BIG),
    "log_every": Range(1, _BIG),
    "max_images": Range(1, _BIG),
    "peers:crop": Range(8, 4096),             # LR pixels per side of the scored corner
    "nproc": Range(1, 256),                   # data-parallel processes (train, search-dlsr)
    "dist_timeout": Range(0, 24 * 60, lo_open=True),  # minutes
    "port": Range(0, 65535),
    "segment_s": Range(0.04, 30),
    "t_update": Range(0.1, 3600),
    "t_horizon": Range(0.1, 86_400),
    "k": Range(1, 10_000),
    "clients": Range(1, 64),
    "reuse:sessions": Range(2, 8),                  # bench reuse: concurrent sessions
    "reuse:windows": Range(1, 200),
    "reuse:scene_windows": Range(1, 200),
    "reuse:recur": Range(2, 6),                     # segments per kind of scene
    "reuse:budget": Range(1, 100),                  # micro-windows per session per window
    "reuse:k": Range(1, 1000),                      # top-K of the gating network
    "reuse:alpha": Range(0, 100),                   # admission margin, dB
    "reuse:gamma": Range(1, 1000),                  # admission queue length
    "reuse:eta": Range(0, 100_000),           # pruning: picks needed in the last q selections
    "reuse:q": Range(1, 1_000_000),
    "reuse:profile": Range(1, 100),                 # bench reuse: Ekya-style profiling micro-windows
    "ray_cpus": Range(1, 1024),                    # serve / bench live --ray: CPUs of a Ray started here
    "backends:tolerance_db": Range(0, 10),        # bench backends --save-profile: int8 PSNR loss allowed
    "backends:calib_frames": Range(1, 64),    # int8 calibration frames of `bench backends`
    "serve:zoo_k": Range(1, 1000),            # serve --zoo: model reuse on the live channels
    "serve:zoo_alpha": Range(0, 100),
    "serve:zoo_gamma": Range(1, 1000),
    "serve:zoo_eta": Range(0, 100_000),
    "serve:zoo_q": Range(1, 1_000_000),
    "serve:zoo_cut": Range(0, 1, lo_open=True),
    "serve:patch": Range(8, 512),                 # the live trainer's crops (TrainerConfig.patch)
    "serve:max_per_address": Range(1, 100_000),   # requests in flight from one address
    "serve:max_requests": Range(1, 1_000_000),    # requests in flight in all
    "eval:frames": Range(1, 300),                 # eval --degradation: frames per clip / pan
    "crops": Range(1, 4096),                      # search: validation crops of the fast evaluator
    "min_step": Range(0, 10),                     # search: dB a level must gain over the next faster one
    "browser:play_threads": Range(1, 16),         # bench browser: WASM threads of the two playbacks
    "browser:burst_s": Range(0.1, 60),            # bench browser: the in-page load's on/off windows
    "browser:fps": Range(0, 1000, lo_open=True),
    "browser:quality_frames": Range(1, 50),       # bench browser: frames scoring int8 against float32
    "complexity:train_iters": Range(0, 1_000_000),  # mimo complexity: MMNet's online iterations per channel
    "estimate:frames": Range(1, 10_000),          # bench estimate: frames per input
    "estimate:load": Range(0, 1),                 # bench estimate: background share of every core
}


def range_for(command: str, name: str) -> Range | None:
    return RANGES.get(f"{command}:{name}", RANGES.get(name))


def _numbers(value: Any) -> list[float] | None:
    """The numbers in an option's value (a list for repeatable options); None if not numeric."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        return items
    return None


def check_options(command: str, values: dict[str, Any], flags: dict[str, str] | None = None) -> None:
    """Refuse (ConfigError: one line, exit 5) any numeric option outside its range in RANGES.

    Runs before every command (see `bound_commands`), so no value reaches torch, libgomp or an
    allocator unchecked."""
    for name, value in values.items():
        numbers = None if value is None else _numbers(value)
        if not numbers:
            continue
        allowed = range_for(command, name)
        if allowed is None:
            continue
        for v in numbers:
            if v not in allowed:
                flag = (flags or {}).get(name) or f"--{name.replace('_', '-')}"
                raise ConfigError(f"{flag} must be {allowed.describe()}, got {v:g}")


def _takes_path(annotation: Any) -> bool:
    """True if a parameter's annotation is a Path (or Optional / a list of one)."""
    import typing
    from pathlib import PurePath

    if isinstance(annotation, type):
        return issubclass(annotation, PurePath)
    return any(_takes_path(a) for a in typing.get_args(annotation))


def _refuse_empty_path(param: Any) -> None:
    """Make a path parameter refuse an empty value (Path("") is ".", the current folder) in one line."""
    descriptor = getattr(param, "type_descriptor", None)
    process = getattr(param, "process_value", None)
    if descriptor is None or process is None or getattr(process, "_adasr_nonempty", False) \
            or not _takes_path(descriptor.annotation):
        return
    flag = param.opts[0] if param.opts else param.name

    def checked(ctx: Any, value: Any) -> Any:
        from adasr.safepath import user_path

        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str):
                user_path(item, flag)
        return process(ctx, value)

    checked._adasr_nonempty = True  # type: ignore[attr-defined]
    param.process_value = checked


def bound_commands(command: Any, path: tuple[str, ...] = ()) -> None:
    """Wrap the callback of every (sub)command of the click `command` tree with `check_options`,
    and make every path parameter refuse an empty value."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        for name, sub in subcommands.items():
            bound_commands(sub, (*path, name))
        return
    callback: Callable[..., Any] | None = command.callback
    if callback is None or getattr(callback, "_adasr_bounded", False):
        return
    name = path[-1] if path else command.name
    for param in getattr(command, "params", []):
        _refuse_empty_path(param)
    # the flag a user typed (e.g. --lambda for the parameter `lam`) names the option in errors
    flags = {p.name: p.opts[0] for p in getattr(command, "params", []) if p.name and p.opts}

    def checked(*args: Any, **kwargs: Any) -> Any:
        check_options(name, kwargs, flags)
        return callback(*args, **kwargs)

    checked._adasr_bounded = True  # type: ignore[attr-defined]
    command.callback = checked


def set_threads(threads: int | None) -> None:
    """Apply --threads (None: leave torch's default)."""
    if threads is not None:
        import torch

        if not 1 <= threads <= MAX_THREADS:
            raise ConfigError(f"--threads must be at least 1 and at most {MAX_THREADS}, got {threads}")
        torch.set_num_threads(threads)


def parse_hw(text: str, option: str, minimum: int = 8) -> tuple[int, int]:
    """'320x180' (WxH, as the CLI writes sizes) -> (180, 320), the (H, W) the library takes;
    ConfigError naming `option` otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{option} must look like 320x180, got {text!r}") from None
    if w < minimum or h < minimum:
        raise ConfigError(f"{option} too small: {text} (at least {minimum}x{minimum})")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise ConfigError(f"{option} too large: {text} (at most {MAX_SIDE}x{MAX_SIDE})")
    return h, w


def parse_shares(text: str, option: str = "--loads", most: int = 16) -> tuple[float, ...]:
    """'0,0.5' -> (0.0, 0.5): background CPU load shares, each in [0, 1], at most `most` of them
    (`adasr.family.parse_loads`, the check the library applies too)."""
    from adasr.family import parse_loads

    return parse_loads(text, option, most)


def parse_ints(text: str, option: str, allowed: Range, most: int = 32) -> tuple[int, ...]:
    """'24,28,32' -> (24, 28, 32), each in `allowed`, at most `most` of them."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} wants integers like 24,28,32; got {text!r}") from None
    if not 1 <= len(values) <= most:
        raise ConfigError(f"{option} takes 1 to {most} values, got {len(values)}")
    for v in values:
        if v not in allowed:
            raise ConfigError(f"{option} values must be {allowed.describe()}, got {v}")
    return values


def explicit(ctx: click.Context, names: Iterable[str]) -> list[str]:
    """Which of the parameters `names` the user gave on the command line (or in the environment)."""
    given = ("COMMANDLINE", "ENVIRONMENT")  # click's ParameterSource names
    return [n for n in names if getattr(ctx.get_parameter_source(n), "name", None) in given]
