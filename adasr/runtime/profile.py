"""Package profiling, and the profile a runtime uses on this device.

The timing tools (`measure_latency`, `time_calls`, `device_key`, ...) live in `adasr.timing` and
the profile file's schema (`check_profile`) with the package (`adasr.package`); both are
re-exported here.

`profile_package` measures every level of a package under each load (background
`CpuLoad` shares), and optionally fills a per-op latency table for the same conditions; the
result is the JSON-ready dict `Package.add_profile(device_key(), profile)` stores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import torch

from adasr.errors import ConfigError
from adasr.family import check_loads, load_name
from adasr.package import PROFILE_KIND, PROFILE_SCHEMA_VERSION, check_profile  # noqa: F401 - re-exported
from adasr.runtime.profile_cache import (  # noqa: F401 - re-exported (torch-free)
    cache_profile,
    package_id,
    profile_cache_path,
)
from adasr.runtime.profile_cache import resolve_family as resolve_cached
from adasr.search.protocols import Progress
from adasr.timing import (  # noqa: F401 - re-exported: the timing tools live in adasr.timing
    LatencySample,
    check_lr_hw,
    cpu_name,
    device_key,
    make_input,
    measure_latency,
    resolve_device,
    time_calls,
    torch_threads,
)
from adasr.timing import model_device as _model_device

if TYPE_CHECKING:
    from adasr.package import Package

__all__ = ["cache_profile", "package_id", "profile_cache_path", "profile_package", "resolve_family"]


# -- package profiling ------------------------------------------------------------------------------

def profile_package(package: Package, loads: Sequence[float] = (0.0, 0.5), repeats: int = 20,
                    on_progress: Progress | None = None, *, lr_hw: tuple[int, int] | None = None,
                    warmup: int = 3, threads: int | None = None, device: str | torch.device = "cpu",
                    channels_last: bool | None = None, table: bool = True, table_repeats: int = 5,
                    load_workers: int | None = None, thread_rule: str = "auto",
                    rounds: int = 1) -> dict[str, Any]:
    """Measure every level of `package` under each background CPU load share in `loads`.

    rounds: measure every level this many times, the levels interleaved (a burst of noise from
    the rest of the machine then lands on one round of every level, not on all of one level's
    frames), keeping each level's round with the lowest median.

    Returns the profile dict (JSON-ready) that `package.add_profile(key, profile)` stores::

        {"schema_version", "kind", "device": <device key>, "device_name", "threads",
         "lr_hw", "channels_last", "repeats", "created",
         "levels": {"0.00": {"share": 0.0, "measured": {<config id>: LatencySample dict}}, ...},
         (the file format's key "levels" holds the loads, by `load_name`; bundled packages carry it)
         "latency_table": LatencyTable dict (the units of the package's levels, timed routed
                          through the supernet under the same loads) or None}

    A share above 0 runs a `CpuLoad(share, load_workers)` around that level's measurements.
    thread_rule "auto" measures as the runtime's `auto_threads` rule runs: the idle column with
    `threads` (default: torch's setting), columns under background load with one thread;
    "fixed" measures every column with `threads`.
    `on_progress(stage, done, total)` is called after each measurement.
    """
    from adasr.cpuload import CpuLoad
    from adasr.search.latency import LatencyTable, family_units, time_units

    if thread_rule not in ("auto", "fixed"):
        raise ConfigError(f"thread_rule must be 'auto' or 'fixed', got {thread_rule!r}")
    dev = resolve_device(device)
    family = package.family
    lr_hw = check_lr_hw(tuple(lr_hw or family.lr_hw))
    shares = list(check_loads(loads, "loads"))
    if shares and max(shares) > 0 and dev.type != "cpu":
        raise ConfigError("background CPU loads need device cpu (GPU contention is not generated)")
    net = package.supernet
    where = _model_device(net)
    if where is not None and where.type != dev.type:
        raise ConfigError(f"the package's supernet is on {where}, not on {dev}: load it onto {dev}")
    with torch_threads(threads) as n:
        key = device_key(dev, n)
        units = family_units(family.configs, lr_hw) if table else []
        if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= 10_000:
            raise ConfigError(f"rounds must be an integer in [1, 10000], got {rounds!r}")
        total = len(shares) * (rounds * len(family) + len(units))
        done = 0
        lut = LatencyTable() if table else None
        out_loads: dict[str, Any] = {}
        for share in shares:
            name = load_name(share)
            background = CpuLoad(share, load_workers) if share > 0 else contextlib.nullcontext()
            measured = {}
            one = thread_rule == "auto" and share > 0 and dev.type == "cpu"
            with background, torch_threads(1 if one else None):
                best: dict[str, Any] = {}
                for _ in range(rounds):
                    for lvl in family:
                        own = package.own.get(lvl.config.id)  # a level with its own weights runs its own module
                        sample = measure_latency(net if own is None else own, lvl.config if own is None else None,
                                                 lr_hw, warmup=warmup, repeats=repeats, device=dev,
                                                 channels_last=channels_last)
                        cid = lvl.config.id
                        if cid not in best or sample.median_s < best[cid].median_s:
                            best[cid] = sample
                        done += 1
                        if on_progress:
                            on_progress(f"measure {name}", done, total)
                measured = {cid: sample.to_dict() for cid, sample in best.items()}
                if lut is not None:
                    def tick(i: int, _n: int, base: int = done, stage: str = f"ops {name}") -> None:
                        if on_progress:
                            on_progress(stage, base + i, total)

                    time_units(lut, units, device_label=key, load=share, device=dev, repeats=table_repeats,
                               channels_last=channels_last, supernet=net, on_unit=tick)
                    done += len(units)
            out_loads[name] = {"share": share, "measured": measured}
    return {
        "schema_version": PROFILE_SCHEMA_VERSION, "kind": PROFILE_KIND, "device": key,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "threads": n, "thread_rule": thread_rule, "lr_hw": list(lr_hw),
        "channels_last": bool(dev.type == "cpu" if channels_last is None else channels_last),
        "repeats": repeats, "rounds": rounds, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "levels": out_loads, "latency_table": None if lut is None else lut.to_dict(),
    }


# -- the profile a runtime uses on this device (the torch-free part: adasr.runtime.profile_cache) ----------

def resolve_family(package: Package, device_key_: str | None = None, *, profile_if_missing: bool = True,
                   repeats: int = 5, on_progress: Progress | None = None) -> tuple[Any, str]:
    """The family the torch runtime should use here, and where its latencies came from
    (`adasr.runtime.profile_cache.resolve_family` with torch's device key, `device_key` with
    torch's current thread count unless `device_key_` names one, and `profile_package` as the
    quick measurement: idle and 50% background load, `repeats` frames per level, no table)."""
    def measure() -> dict[str, Any]:
        return profile_package(package, repeats=repeats, warmup=2, table=False, on_progress=on_progress)

    return resolve_cached(package, device_key_ or device_key(), measure if profile_if_missing else None)
