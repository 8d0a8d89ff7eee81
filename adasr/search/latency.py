"""Per-op latency look-up table (Dynamic-OFA's format), its additive predictor, and cost models.

What an "op" is here: one *unit* of the supernet's decomposition, the granularity at which a
sub-network is a sequence of independent calls:

- ``head``   the 3 -> width input conv;
- ``block``  one body block (its type, its ops' shapes, its identity path), e.g. an RCAB with
  its channel attention: the block's own element-wise work (activations, pooling, attention
  gates, concatenation, residual add) is timed with it, which a per-conv table would miss;
- ``tail``   the width -> width conv plus the long skip add;
- ``up``     the upsampler (conv + pixel shuffle, transposed conv, or conv + pixel shuffle +
  bicubic of the input).

A unit's key names everything its latency depends on, the input shape included, and nothing
else (the block's position does not matter; two blocks computing the same shapes share a key)::

    head-input:16x16x3-output:8-kernel:3
    block:r-input:16x16x8-ops:conv_a=16x8k3,conv_b=8x16k3-skip:1
    tail-input:16x16x8
    up:bic-input:16x16x8-scale:2

How a unit is timed: in isolation, on a fixed input of the unit's shape, in the same memory
format the whole-frame measurement uses (channels_last on CPU by default). Given a supernet, a
unit runs as the runtime runs it: the routed plan of a config that contains it (weights sliced
and kernel-transformed on every call; `SuperNet.routing_for`). Without one, it runs as the plain
static layers an extracted sub-network has (`adasr.nn.elastic.static_layer`,
`adasr.nn.supernet.StaticBlock`: the same block forward code), freshly initialised (values do
not change latency) inside `torch.random.fork_rng`, so the global RNG is untouched.
Each sample times enough back-to-back calls to last `min_sample_s` (the timer's resolution would
swamp microsecond ops); an entry keeps {count, mean, std} of the per-call seconds, merged across
builds (Chan's parallel formula).

The table is keyed by (device, load, unit key); JSON::

    {"schema_version": 1, "kind": "adasr-latency-table",
     "tables": {<device key>: {<load name>: {<unit key>: {"count", "mean", "std"}}}}}

`LatencyTable.predict(cfg, lr_hw, load)` sums the means of the config's units (the additive
predictor of Dynamic-OFA); `TableCostModel` binds (lr_hw, load, device) to make it a `CostModel`.
Isolated timing differs a little from a whole frame (Python dispatch between units, caches warm
or cold), either way; `median_abs_error` reports the error against measured frames, and
`TableCostModel.calibrated(cfgs, measured)` fits a linear correction when they are at hand.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from adasr.errors import ConfigError, ModelError
from adasr.family import load_name
from adasr.nn.blocks import Dims, block_type, parse_token
from adasr.nn.elastic import Use, conv_use, static_layer
from adasr.nn.supernet import DEFAULT_LR_HW, StaticBlock, run_upsampler, subnet_cost, upsampler_use
from adasr.search.protocols import Progress
from adasr.space import SearchSpace, SubnetConfig

__all__ = ["LatencyEntry", "LatencyTable", "MacsCostModel", "MeasuredCostModel", "TABLE_KIND", "TABLE_SCHEMA_VERSION",
           "TableCostModel", "Unit", "build_latency_table", "config_units", "family_units", "median_abs_error",
           "space_units", "time_units"]

from adasr.measures import (  # noqa: E402,F401 - re-exported: the table's data is torch-free (adasr.measures)
    TABLE_KIND,
    TABLE_SCHEMA_VERSION,
    LatencyEntry,
    TableData,
)

# -- units ------------------------------------------------------------------------------------------

class Unit(NamedTuple):
    """One independently timed piece of a sub-network (see the module doc)."""

    key: str
    kind: str  # "head" | "block" | "tail" | "up"
    width: int
    lr_hw: tuple[int, int]
    scale: int = 1
    token: str | None = None
    uses: tuple[tuple[str, Use], ...] = ()
    skip: bool = True
    upsampler: str | None = None
    origin: SubnetConfig | None = None  # a config running this unit (to route it in a supernet)
    index: int = 0  # its block position in `origin`


def _shape(lr_hw: tuple[int, int], channels: int) -> str:
    return f"{lr_hw[0]}x{lr_hw[1]}x{channels}"


def config_units(cfg: SubnetConfig, lr_hw: tuple[int, int]) -> list[Unit]:
    """The units `cfg` runs for one (H, W) LR frame, in network order (repeats kept)."""
    lr_hw = (int(lr_hw[0]), int(lr_hw[1]))
    w, d = cfg.width, Dims(cfg.width, cfg.mid, cfg.kernel)
    units = [Unit(f"head-input:{_shape(lr_hw, 3)}-output:{w}-kernel:3", "head", w, lr_hw, origin=cfg)]
    for i, token in enumerate(cfg.blocks):
        v = parse_token(token)
        uses = tuple(sorted(block_type(v.code).uses(v, d, d).items()))  # d as max: static layout
        ops = ",".join(f"{slot}={u.out}x{u.in_total}k{u.kernel}" for slot, u in uses)
        key = f"block:{token}-input:{_shape(lr_hw, w)}-ops:{ops}-skip:{int(cfg.skip)}"
        units.append(Unit(key, "block", w, lr_hw, token=token, uses=uses, skip=cfg.skip, origin=cfg, index=i))
    units.append(Unit(f"tail-input:{_shape(lr_hw, w)}", "tail", w, lr_hw, origin=cfg))
    units.append(Unit(f"up:{cfg.upsampler}-input:{_shape(lr_hw, w)}-scale:{cfg.scale}", "up", w, lr_hw,
                      scale=cfg.scale, upsampler=cfg.upsampler, origin=cfg))
    return units


def family_units(cfgs: Iterable[SubnetConfig], lr_hw: tuple[int, int]) -> list[Unit]:
    """Distinct units of several configs (first-seen order)."""
    seen: dict[str, Unit] = {}
    for cfg in cfgs:
        for unit in config_units(cfg, lr_hw):
            seen.setdefault(unit.key, unit)
    return list(seen.values())


def space_units(space: SearchSpace, lr_hw: tuple[int, int]) -> list[Unit]:
    """Every distinct unit any config of `space` can run: a complete table for the space.

    Small even for large spaces: blocks vary only by (token, width, expansion, kernel, skip).
    """
    depth = space.depths[0]  # a valid depth of the space, so each config routes in its supernet
    cfgs = [SubnetConfig(space.scale, w, e, k, (token,) * depth, skip, up)
            for w in space.widths for e in space.expansions for k in space.kernels for skip in space.skips
            for token in space.blocks for up in space.upsamplers]
    return family_units(cfgs, lr_hw)


def _unit_callable(unit: Unit, supernet: nn.Module | None = None
                   ) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module | None, tuple[int, ...]]:
    """(fn, module holding fresh weights or None, input shape) for a unit.

    With a supernet the unit runs as the supernet runs it (its routed plan: weights sliced and
    kernel-transformed per call, exactly the runtime's work); without one, as the plain layers of
    an extracted sub-network.
    """
    h, w = unit.lr_hw
    shape = (1, unit.width, h, w)
    lr = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    holder = nn.Module()
    holder.register_buffer("lr", lr)
    if supernet is not None:
        routing = supernet.routing_for(unit.origin)
        head, tail, up_op = routing.head, routing.tail, routing.up
        block = routing.blocks[unit.index] if unit.kind == "block" else None
        holder = None if unit.kind != "up" else holder
    else:
        if unit.kind == "head":
            head = holder.layer = static_layer(conv_use(unit.width, 3, 3))
        elif unit.kind == "block":
            block = holder.layer = StaticBlock(parse_token(unit.token), dict(unit.uses), unit.skip)
        elif unit.kind == "tail":
            tail = holder.layer = static_layer(conv_use(unit.width, unit.width, 3))
        else:
            up_op = holder.layer = static_layer(upsampler_use(unit.upsampler, unit.width, unit.scale))
    if unit.kind == "head":
        return head, holder, (1, 3, h, w)
    if unit.kind == "block":
        return block, holder, shape
    if unit.kind == "tail":
        return (lambda y: tail(y) + y), holder, shape  # the long skip add belongs to the tail
    if unit.kind == "up":
        s, kind, box = unit.scale, unit.upsampler, holder
        return (lambda y: run_upsampler(kind, up_op, s, y, box.lr)), holder, shape
    raise AssertionError(f"unknown unit kind {unit.kind!r}")


# -- the table --------------------------------------------------------------------------------------

class LatencyTable(TableData):
    """Per-unit latency statistics keyed by (device, load name, unit key), and the additive
    prediction of a sub-network's latency from them."""

    def predict(self, cfg: SubnetConfig, lr_hw: tuple[int, int] = DEFAULT_LR_HW, load: float | str = 0.0,
                device: str | None = None) -> float:
        """Seconds per LR frame of `cfg`: the sum of its units' mean latencies (additive model)."""
        device = self._device(device)
        name = load_name(load)
        total = 0.0
        for unit in config_units(cfg, lr_hw):
            entry = self._entries.get((device, name, unit.key))
            if entry is None:
                if name not in self.loads(device):
                    raise ModelError(f"latency table has no load {name} (resource level) for {device}; "
                                     f"it has {self.loads(device)}")
                raise ModelError(f"latency table ({device}, load {name}) has no entry for {unit.key} "
                                 f"(of {cfg.id}); build it over this config's space or ops")
            total += entry.mean
        return total

    def cost_model(self, lr_hw: tuple[int, int] = DEFAULT_LR_HW, load: float | str = 0.0,
                   device: str | None = None) -> TableCostModel:
        return TableCostModel(self, lr_hw, float(load_name(load)), self._device(device))


# -- building ---------------------------------------------------------------------------------------

def time_units(table: LatencyTable, units: Sequence[Unit], *, device_label: str, load: float = 0.0,
               device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 2, min_sample_s: float = 0.002,
               channels_last: bool | None = None, supernet: nn.Module | None = None,
               on_unit: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Time each unit under the current conditions (the caller runs any background load) and add
    the samples to `table` under (device_label, load). With `supernet` (on `device`, eval mode
    is set here) units run routed through it, else as static layers. `on_unit(done, total)`
    after each."""
    from adasr.timing import resolve_device

    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, got {repeats!r}")
    dev = resolve_device(device)
    if channels_last is None:
        channels_last = dev.type == "cpu"
    was_training = supernet.training if supernet is not None else False
    if supernet is not None:
        supernet.eval()
    try:
        _time_units(table, units, device_label, load, dev, repeats, warmup, min_sample_s, channels_last, supernet,
                    on_unit)
    finally:
        if supernet is not None:
            supernet.train(was_training)
    return table


def _time_units(table: LatencyTable, units: Sequence[Unit], device_label: str, load: float, dev: torch.device,
                repeats: int, warmup: int, min_sample_s: float, channels_last: bool, supernet: nn.Module | None,
                on_unit: Callable[[int, int], None] | None) -> None:
    from adasr.timing import make_input, time_calls

    for i, unit in enumerate(units, 1):
        with torch.random.fork_rng(devices=[]):
            fn, holder, shape = _unit_callable(unit, supernet)
        if holder is not None:
            holder.to(dev).eval()
        x = make_input(shape, dev, channels_last, seed=i)
        first = time_calls(fn, x, warmup=warmup, repeats=1, device=dev)[0]
        inner = max(1, min(1000, math.ceil(min_sample_s / max(first, 1e-7))))
        table.add(device_label, load, unit.key, time_calls(fn, x, warmup=0, repeats=repeats, inner=inner, device=dev))
        if on_unit:
            on_unit(i, len(units))


def build_latency_table(space: SearchSpace | None = None, lr_hw: tuple[int, int] = DEFAULT_LR_HW, *,
                        supernet: nn.Module | None = None, configs: Iterable[SubnetConfig] | None = None,
                        loads: Sequence[float] = (0.0,),
                        device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 2,
                        threads: int | None = None, channels_last: bool | None = None,
                        device_label: str | None = None, load_workers: int | None = None,
                        table: LatencyTable | None = None, on_progress: Progress | None = None) -> LatencyTable:
    """Time the units of `configs` (e.g. sampled sub-networks), or of the whole `space` when no
    configs are given, at each load (a background `CpuLoad` share; 0 = idle).

    With `supernet` (default space: its space) units run routed through it, as the runtime runs
    them; without, as an extracted sub-network's static layers. `device_label` defaults to
    `device_key(device, threads)`. Adds to `table` if given.
    """
    from adasr.cpuload import CpuLoad
    from adasr.timing import check_lr_hw, device_key, torch_threads

    lr_hw = check_lr_hw(lr_hw)
    if space is None and supernet is not None:
        space = supernet.space
    if configs is not None:
        units = family_units(configs, lr_hw)
    elif space is not None:
        units = space_units(space, lr_hw)
    else:
        raise ConfigError("build_latency_table needs a space or configs")
    shares = [float(load_name(s)) for s in loads]
    table = LatencyTable() if table is None else table
    with torch_threads(threads) as n:
        label = device_label or device_key(device, n)
        total = len(units) * len(shares)
        for j, share in enumerate(shares):
            load = CpuLoad(share, load_workers) if share > 0 else contextlib.nullcontext()

            def tick(i: int, _n: int, base: int = j * len(units), stage: str = f"ops {load_name(share)}") -> None:
                if on_progress:
                    on_progress(stage, base + i, total)

            with load:
                time_units(table, units, device_label=label, load=share, device=device, repeats=repeats,
                           warmup=warmup, channels_last=channels_last, supernet=supernet, on_unit=tick)
    return table


# -- cost models ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableCostModel:
    """A `CostModel` on a latency table: seconds = scale * sum(unit means) + offset_s."""

    table: LatencyTable
    lr_hw: tuple[int, int]
    load: float = 0.0
    device: str | None = None
    scale: float = 1.0
    offset_s: float = 0.0

    def cost(self, cfg: SubnetConfig) -> float:
        return self.scale * self.table.predict(cfg, self.lr_hw, self.load, self.device) + self.offset_s

    def calibrated(self, cfgs: Sequence[SubnetConfig], measured: Sequence[float] | Mapping[str, Any]) -> TableCostModel:
        """A copy with (scale, offset) fitted by least squares to measured frame latencies."""
        cfgs = list(cfgs)
        y = np.asarray(_measured_values(cfgs, measured), dtype=np.float64)
        x = np.asarray([self.table.predict(c, self.lr_hw, self.load, self.device) for c in cfgs], dtype=np.float64)
        if len(cfgs) < 2 or np.ptp(x) == 0:
            scale, offset = (float(y.mean() / x.mean()) if x.mean() > 0 else 1.0), 0.0
        else:
            scale, offset = (float(v) for v in np.polyfit(x, y, 1))
        return TableCostModel(self.table, self.lr_hw, self.load, self.device, scale, offset)


@dataclass(frozen=True)
class MacsCostModel:
    """Analytic `CostModel`: seconds = overhead_s + MACs / macs_per_s (no device needed)."""

    lr_hw: tuple[int, int] = DEFAULT_LR_HW
    macs_per_s: float = 2e10
    overhead_s: float = 1e-4
    load: float = 0.0

    def cost(self, cfg: SubnetConfig) -> float:
        return self.overhead_s + subnet_cost(cfg, self.lr_hw)[1] / self.macs_per_s


class MeasuredCostModel:
    """`CostModel` by measurement: median frame latency of the sub-network (cached per config).

    Runs under whatever load the caller arranges; `load` names it.
    """

    def __init__(self, supernet: nn.Module, lr_hw: tuple[int, int] = DEFAULT_LR_HW, *, repeats: int = 5,
                 warmup: int = 2, load: float = 0.0, device: str | torch.device = "cpu",
                 channels_last: bool | None = None) -> None:
        self.supernet, self.lr_hw, self.repeats, self.warmup = supernet, tuple(lr_hw), repeats, warmup
        self.load, self.device, self.channels_last = load, device, channels_last
        self._cache: dict[str, float] = {}

    def cost(self, cfg: SubnetConfig) -> float:
        from adasr.timing import measure_latency

        if cfg.id not in self._cache:
            sample = measure_latency(self.supernet, cfg, self.lr_hw, warmup=self.warmup, repeats=self.repeats,
                                     device=self.device, channels_last=self.channels_last)
            self._cache[cfg.id] = sample.median_s
        return self._cache[cfg.id]


# -- error report -----------------------------------------------------------------------------------

def _measured_values(cfgs: Sequence[SubnetConfig], measured: Sequence[Any] | Mapping[str, Any]) -> list[float]:
    def seconds(v: Any) -> float:
        if isinstance(v, Mapping):
            return float(v["median_s"])
        return float(getattr(v, "median_s", v))

    if isinstance(measured, Mapping):
        missing = [c.id for c in cfgs if c.id not in measured]
        if missing:
            raise ConfigError(f"no measured latency for {missing[:3]}")
        return [seconds(measured[c.id]) for c in cfgs]
    values = list(measured)
    if len(values) != len(cfgs):
        raise ConfigError(f"{len(cfgs)} configs but {len(values)} measured latencies")
    return [seconds(v) for v in values]


def median_abs_error(predictor: Any, cfgs: Sequence[SubnetConfig], measured: Sequence[Any] | Mapping[str, Any],
                     *, relative: bool = False) -> float:
    """Median |predicted - measured| over `cfgs`, in seconds (or relative to measured).

    `predictor` is a `CostModel`; `measured` is a sequence aligned with `cfgs` or a mapping by
    config id, of seconds, `LatencySample`s or their dicts.
    """
    cfgs = list(cfgs)
    if not cfgs:
        raise ConfigError("median_abs_error needs at least one config")
    y = np.asarray(_measured_values(cfgs, measured), dtype=np.float64)
    p = np.asarray([predictor.cost(c) for c in cfgs], dtype=np.float64)
    err = np.abs(p - y)
    if relative:
        err = err / y
    return float(np.median(err))
