"""Latency measurement of models and sub-networks, device keys, and package profiling.

`measure_latency` times whole frames: warm-up, then `repeats` single-frame forwards (DySR
profiles each model with 20 frames), inside `torch.inference_mode()`, in eval mode. On CPU it
uses `time.perf_counter` and records the intra-op thread count; on CUDA it times every frame
with a pair of `torch.cuda.Event`s (kernel time, not launch time). Input is channels_last by
default on CPU: measured 1.3-1.7x faster for these nets with the supernet's sliced weights
(the supernet produces the same output either way; see tests).

A sub-network of a supernet is timed through its routing (`SuperNet.routing_for(cfg)`), which
is exactly what `set_active(cfg)` followed by `forward(x)` runs, without changing the active
level of a supernet another thread may be using.

`profile_package` measures every level of a package under each resource level (background
`CpuLoad` shares), and optionally fills a per-op latency table for the same conditions; the
result is the JSON-ready dict `Package.add_profile(device_key(), profile)` stores.
"""

from __future__ import annotations

import contextlib
import math
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from adasr.errors import ConfigError
from adasr.nn.supernet import DEFAULT_LR_HW
from adasr.search.protocols import Progress, level_name

if TYPE_CHECKING:
    from adasr.package import Package
    from adasr.space import SubnetConfig

PROFILE_SCHEMA_VERSION = 1
PROFILE_KIND = "adasr-device-profile"


@dataclass(frozen=True)
class LatencySample:
    """Per-frame latency statistics of one measurement (seconds); `threads` is torch's intra-op
    thread count during the measurement (0 on CUDA), `device` "cpu" or "cuda"."""

    median_s: float
    p90_s: float
    mean_s: float
    std_s: float
    repeats: int
    threads: int
    device: str

    @property
    def fps(self) -> float:
        return 1.0 / self.median_s if self.median_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencySample:
        try:
            return cls(float(data["median_s"]), float(data["p90_s"]), float(data["mean_s"]), float(data["std_s"]),
                       int(data["repeats"]), int(data["threads"]), str(data["device"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad latency sample {data!r}: {exc}") from None

    @classmethod
    def from_times(cls, times: Sequence[float], threads: int, device: str) -> LatencySample:
        arr = np.asarray(times, dtype=np.float64)
        return cls(float(np.median(arr)), float(np.percentile(arr, 90)), float(arr.mean()), float(arr.std()),
                   len(arr), threads, device)


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


def _model_device(model: nn.Module) -> torch.device | None:
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
    where = _model_device(model)
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

def _slug(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "unknown"


def cpu_name() -> str:
    """The CPU model name (Linux /proc/cpuinfo, else `platform`)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def device_key(device: str | torch.device = "cpu", threads: int | None = None) -> str:
    """A file-name-safe key naming the device a profile belongs to.

    CPU: ``cpu-<model name slug>-<threads>t`` (threads default: torch's current count);
    CUDA: ``cuda-<gpu name slug>``.
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda-{_slug(torch.cuda.get_device_name(dev))}"
    threads = torch.get_num_threads() if threads is None else threads
    return f"cpu-{_slug(cpu_name())}-{threads}t"


# -- package profiling ------------------------------------------------------------------------------

def profile_package(package: Package, levels: Sequence[float] = (0.0, 0.5), repeats: int = 20,
                    on_progress: Progress | None = None, *, lr_hw: tuple[int, int] | None = None,
                    warmup: int = 3, threads: int | None = None, device: str | torch.device = "cpu",
                    channels_last: bool | None = None, table: bool = True, table_repeats: int = 5,
                    load_workers: int | None = None, thread_rule: str = "auto") -> dict[str, Any]:
    """Measure every level of `package` under each background CPU load share in `levels`.

    Returns the profile dict (JSON-ready) that `package.add_profile(key, profile)` stores::

        {"schema_version", "kind", "device": <device key>, "device_name", "threads",
         "lr_hw", "channels_last", "repeats", "created",
         "levels": {"0.00": {"share": 0.0, "measured": {<config id>: LatencySample dict}}, ...},
         "latency_table": LatencyTable dict (the units of the package's levels, timed routed
                          through the supernet under the same loads) or None}

    A share above 0 runs a `CpuLoad(share, load_workers)` around that level's measurements.
    thread_rule "auto" measures as the runtime's `auto_threads` rule runs: the idle column with
    `threads` (default: torch's setting), columns under background load with one thread;
    "fixed" measures every column with `threads`.
    `on_progress(stage, done, total)` is called after each measurement.
    """
    from adasr.runtime.load import CpuLoad
    from adasr.search.latency import LatencyTable, family_units, time_units

    if thread_rule not in ("auto", "fixed"):
        raise ConfigError(f"thread_rule must be 'auto' or 'fixed', got {thread_rule!r}")
    dev = resolve_device(device)
    family = package.family
    lr_hw = check_lr_hw(tuple(lr_hw or family.lr_hw))
    shares = [float(s) for s in levels]
    for s in shares:
        if not 0.0 <= s <= 1.0:
            raise ConfigError(f"resource levels are CPU load shares in [0, 1], got {s!r}")
    if len(set(map(level_name, shares))) != len(shares):
        raise ConfigError(f"duplicate resource levels: {shares}")
    if shares and max(shares) > 0 and dev.type != "cpu":
        raise ConfigError("background CPU load levels need device cpu (GPU contention is not generated)")
    net = package.supernet
    where = _model_device(net)
    if where is not None and where.type != dev.type:
        raise ConfigError(f"the package's supernet is on {where}, not on {dev}: load it onto {dev}")
    with torch_threads(threads) as n:
        key = device_key(dev, n)
        units = family_units(family.configs, lr_hw) if table else []
        total = len(shares) * (len(family) + len(units))
        done = 0
        lut = LatencyTable() if table else None
        out_levels: dict[str, Any] = {}
        for share in shares:
            name = level_name(share)
            load = CpuLoad(share, load_workers) if share > 0 else contextlib.nullcontext()
            measured = {}
            one = thread_rule == "auto" and share > 0 and dev.type == "cpu"
            with load, torch_threads(1 if one else None):
                for lvl in family:
                    sample = measure_latency(net, lvl.config, lr_hw, warmup=warmup, repeats=repeats, device=dev,
                                             channels_last=channels_last)
                    measured[lvl.config.id] = sample.to_dict()
                    done += 1
                    if on_progress:
                        on_progress(f"measure {name}", done, total)
                if lut is not None:
                    def tick(i: int, _n: int, base: int = done, stage: str = f"ops {name}") -> None:
                        if on_progress:
                            on_progress(stage, base + i, total)

                    time_units(lut, units, device_label=key, level=share, device=dev, repeats=table_repeats,
                               channels_last=channels_last, supernet=net, on_unit=tick)
                    done += len(units)
            out_levels[name] = {"share": share, "measured": measured}
    return {
        "schema_version": PROFILE_SCHEMA_VERSION, "kind": PROFILE_KIND, "device": key,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "threads": n, "thread_rule": thread_rule, "lr_hw": list(lr_hw),
        "channels_last": bool(dev.type == "cpu" if channels_last is None else channels_last),
        "repeats": repeats, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "levels": out_levels, "latency_table": None if lut is None else lut.to_dict(),
    }


def check_profile(profile: Any, source: str) -> dict[str, Any]:
    """Validate the structure of a profile dict (as `profile_package` returns); ConfigError if bad."""
    if not isinstance(profile, dict):
        raise ConfigError(f"{source}: a profile must be a JSON object")
    if profile.get("kind") != PROFILE_KIND or profile.get("schema_version") != PROFILE_SCHEMA_VERSION:
        raise ConfigError(f"{source}: not an adasr device profile of schema version {PROFILE_SCHEMA_VERSION} "
                          f"(kind {profile.get('kind')!r}, version {profile.get('schema_version')!r})")
    levels = profile.get("levels")
    if not isinstance(levels, dict):
        raise ConfigError(f"{source}: profile has no 'levels' object")
    for name, entry in levels.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("measured"), dict):
            raise ConfigError(f"{source}: profile level {name!r} has no 'measured' object")
        for sample in entry["measured"].values():
            LatencySample.from_dict(sample)
    table = profile.get("latency_table")
    if table is not None:
        from adasr.search.latency import LatencyTable

        LatencyTable.from_dict(table)
    return profile


# -- the profile a runtime uses on this device --------------------------------------------------------

def package_id(package: Package) -> str:
    """A stable id of a package's weights and family (for cached profiles): 16 hex digits of the
    SHA-256 of the weights' hash recorded in its manifest and the family's JSON."""
    import hashlib

    weights = package.manifest.get("weights", {})
    digest = weights.get("tensors_sha256") or weights.get("sha256")
    if not isinstance(digest, str) or len(digest) < 16:
        raise ConfigError("the package's manifest records no weights hash")
    return hashlib.sha256((digest + package.family.to_json()).encode("utf-8")).hexdigest()[:16]


def profile_cache_path(package: Package, key: str) -> Path:
    from adasr.data.datasets import cache_dir

    return cache_dir() / "profiles" / package_id(package) / f"{key}.json"


def resolve_family(package: Package, device_key_: str | None = None, *, profile_if_missing: bool = True,
                   repeats: int = 5, on_progress: Progress | None = None) -> tuple[Any, str]:
    """The family the runtime should use here, and where its latencies came from.

    Order: the package's own profile for this device (key from `device_key` with torch's current
    thread count, or `device_key_`), then a profile cached in the user's cache folder
    (``$ADASR_CACHE/profiles/<package id>/<key>.json``), then, with `profile_if_missing`, a quick
    profile measured now (idle and 50% background load, `repeats` frames per level, no latency
    table) and cached for the next run; else the stored family (latencies as the search
    predicted them). Returns (family, source) with source "package", "cache", "measured" or
    "predicted". A damaged cache file is ignored and replaced.
    """
    import json

    from adasr._atomic import write_bytes_atomic
    from adasr.errors import AdasrError
    from adasr.safepath import read_bounded

    key = device_key_ or device_key()
    if key in package.profiles:
        return package.family_for(key), "package"
    path = profile_cache_path(package, key)
    if path.is_file():
        try:
            profile = check_profile(json.loads(read_bounded(path, 16 << 20, "cached profile")), str(path))
            package.profiles[key] = profile  # in memory only: the package file is never rewritten
            return package.family_for(key), "cache"
        except (OSError, ValueError, AdasrError, KeyError, TypeError):
            pass
    if not profile_if_missing:
        return package.family, "predicted"
    profile = profile_package(package, repeats=repeats, warmup=2, table=False, on_progress=on_progress)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(profile, indent=1).encode("utf-8"))
    except OSError:
        pass  # an unwritable cache only costs a re-profile next time
    package.profiles[profile["device"]] = profile
    return package.family_for(profile["device"]), "measured"
