"""Timing tools: whole-frame latency of models and sub-networks, timed calls, device keys.

`measure_latency` times whole frames: warm-up, then `repeats` single-frame forwards (DySR
profiles each model with 20 frames), inside `torch.inference_mode()`, in eval mode. On CPU it
uses `time.perf_counter` and records the intra-op thread count; on CUDA it times every frame
with a pair of `torch.cuda.Event`s (kernel time, not launch time). Input is channels_last by
default on CPU: measured 1.3-1.7x faster for these nets with the supernet's sliced weights
(the supernet produces the same output either way; see tests).

A sub-network of a supernet is timed through its routing (`SuperNet.routing_for(cfg)`), which
is exactly what `set_active(cfg)` followed by `forward(x)` runs, without changing the active
level of a supernet another thread may be using.

`time_calls` (seconds per call of any callable) is what the latency table's per-op timing uses;
`device_key` names the device a profile or a latency table belongs to. The search, the package
and the runtime all time with these; nothing here knows about packages or families.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from adasr.errors import ConfigError
from adasr.spec import DEFAULT_LR_HW
from adasr.threads import cpu_device_key, cpu_name, slug  # noqa: F401 - cpu_name re-exported (torch-free)

if TYPE_CHECKING:
    from adasr.space import SubnetConfig

from adasr.measures import LatencySample  # noqa: E402,F401 - re-exported (torch-free, adasr.measures)

__all__ = ["LatencySample", "check_lr_hw", "cpu_name", "device_key", "make_input", "measure_latency", "model_device",
           "provenance", "resolve_device", "time_calls", "torch_threads"]


# -- checks and small helpers ---------------------------------------------------------------------

def check_lr_hw(lr_hw: Sequence[int]) -> tuple[int, int]:
    ok = (isinstance(lr_hw, (tuple, list)) and len(lr_hw) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in lr_hw))
    if not ok:
        raise ConfigError(f"LR frame size must be (height, width) with positive integers, got {lr_hw!r}")
    return int(lr_hw[0]), int(lr_hw[1])


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"latency is measured on cpu or cuda, got {device!r}")
    return dev


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    if threads is None:
        yield torch.get_num_threads()
        return
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def time_calls(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, *, warmup: int, repeats: int,
               inner: int = 1, device: torch.device | None = None) -> list[float]:
    """Seconds per call of `fn(x)`: `warmup` untimed calls, then `repeats` samples of `inner`
    back-to-back calls each (the sample is divided by `inner`). Runs under inference mode."""
    device = device or x.device
    cuda = device.type == "cuda"
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        if cuda:
            torch.cuda.synchronize(device)
        for _ in range(repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner):
                    fn(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000.0 / inner)
            else:
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn(x)
                times.append((time.perf_counter() - t0) / inner)
    return times


def make_input(shape: Sequence[int], device: torch.device, channels_last: bool, seed: int = 0) -> torch.Tensor:
    """A fixed random input (local generator) on `device`, in the requested memory format."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def model_device(model: nn.Module) -> torch.device | None:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return None


# -- whole-frame latency --------------------------------------------------------------------------

def measure_latency(model: nn.Module, cfg: SubnetConfig | str | None = None,
                    lr_hw: tuple[int, int] = DEFAULT_LR_HW, *, warmup: int = 3, repeats: int = 20,
                    threads: int | None = None, device: str | torch.device = "cpu",
                    channels_last: bool | None = None, seed: int = 0) -> LatencySample:
    """Latency of one (1, 3, H, W) frame through `model` (or sub-network `cfg` of a supernet).

    The model must already be on `device` (it is not moved: that would mutate the caller's
    model). `threads` sets torch's intra-op threads for the measurement only. `channels_last`
    defaults to True on CPU, False on CUDA.
    """
    lr_hw = check_lr_hw(lr_hw)
    if not isinstance(repeats, int) or repeats < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats!r}, warmup={warmup!r}")
    dev = resolve_device(device)
    where = model_device(model)
    if where is not None and where.type != dev.type:
        raise ConfigError(f"the model is on {where}, not on {dev}: move it before measuring")
    if cfg is None:
        fn = model
    elif hasattr(model, "routing_for"):
        fn = model.routing_for(cfg)
    else:
        raise ConfigError(f"a sub-network config needs a supernet, got {type(model).__name__}")
    if channels_last is None:
        channels_last = dev.type == "cpu"
    x = make_input((1, 3, *lr_hw), dev, channels_last, seed)
    was_training = model.training
    model.eval()
    try:
        with torch_threads(threads) as n:
            times = time_calls(fn, x, warmup=warmup, repeats=repeats, device=dev)
    finally:
        model.train(was_training)
    return LatencySample.from_times(times, n if dev.type == "cpu" else 0, dev.type)


# -- device keys ------------------------------------------------------------------------------------

def device_key(device: str | torch.device = "cpu", threads: int | None = None) -> str:
    """A file-name-safe key naming the device a profile belongs to.

    CPU: ``cpu-<model name slug>-<threads>t`` (threads default: torch's current count);
    CUDA: ``cuda-<gpu name slug>``.
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda-{slug(torch.cuda.get_device_name(dev))}"
    return cpu_device_key(torch.get_num_threads() if threads is None else threads)


def provenance(command: Sequence[str] | None = None) -> dict[str, Any]:
    """Where and when a benchmark ran, for its JSON: the command line (default: this process's, as
    ``adasr ...`` when run through the CLI), the machine (CPU model, logical cores, torch threads,
    the `device_key` of its profiles, the platform) and the UTC date and time.

    ``loadavg_1m`` (the 1-minute load average when this is called, None where the OS has none)
    tells a shared or loaded machine from an idle one."""
    import datetime
    import shlex
    import sys

    if command is None:
        argv = list(sys.argv)
        first = os.path.basename(argv[0]) if argv else ""
        command = ["adasr", *argv[1:]] if first in ("adasr", "__main__.py", "-m") else argv
    return {
        "command": shlex.join(str(c) for c in command),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count() or 1, "torch_threads": torch.get_num_threads(),
                    "device_key": device_key("cpu"), "platform": platform.platform(terse=True),
                    "torch": torch.__version__.split("+")[0], "loadavg_1m": _loadavg()},
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
