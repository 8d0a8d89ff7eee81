"""Levels and families: the data model the search writes and the package and runtime read.

A `Level` is one sub-network of a family (its `SubnetConfig`, PSNR, params, MACs and latency
under each CPU load); a `Family` is the levels ordered by cost, with a JSON round-trip (the
`family.json` of a package). `pareto_front` / `pareto_ranks` are the (cost, quality) maths
search and selection share. A CPU load share keys latency dicts by `load_name(share)`.

This module imports no torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adasr._jsonfile import check_header, header, read_json, write_json
from adasr.errors import ConfigError, ModelError
from adasr.space import SearchSpace, SubnetConfig
from adasr.spec import DEFAULT_LR_HW

__all__ = ["FAMILY_KIND", "FAMILY_SCHEMA_VERSION", "MAX_LEVELS", "MAX_LR_SIDE", "Family", "Level", "check_loads",
           "load_name", "parse_loads", "pareto_front", "pareto_ranks"]

FAMILY_SCHEMA_VERSION = 1
FAMILY_KIND = "adasr-family"
MAX_LEVELS = 1024  # levels a family file may hold
MAX_LR_SIDE = 4096  # pixels of a side of the LR size the costs refer to (profiling runs frames of it)


def check_loads(shares: Any, what: str = "loads", most: int | None = None) -> tuple[float, ...]:
    """Background CPU load shares as floats: each in [0, 1], at most `most` of them (None: any
    number, at least one), no two with the same `load_name`. ConfigError names `what`."""
    try:
        values = tuple(float(s) for s in shares)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} wants numbers like 0,0.5; got {shares!r}") from None
    if not values or (most is not None and len(values) > most):
        raise ConfigError(f"{what} takes 1 to {most} load shares, got {len(values)}" if most is not None
                          else f"{what} needs at least one load share")
    bad = [s for s in values if not (math.isfinite(s) and 0.0 <= s <= 1.0)]
    if bad:
        raise ConfigError(f"{what}: load shares are fractions of the CPU in [0, 1], got {bad[0]:g}")
    names = [load_name(s) for s in values]
    if len(set(names)) != len(names):
        raise ConfigError(f"{what}: duplicate load shares {sorted({n for n in names if names.count(n) > 1})}")
    return values


def parse_loads(text: str, what: str = "--loads", most: int | None = 16) -> tuple[float, ...]:
    """'0,0.5' -> (0.0, 0.5): `check_loads` of a comma-separated list."""
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"{what} wants numbers like 0,0.5; got {text!r}") from None
    return check_loads(values, what, most)


def load_name(share: float | str) -> str:
    """The name of a load (a background CPU load share in [0, 1], DySR's "resource level"):
    "0.00", "0.50"."""
    if isinstance(share, str):
        try:
            share = float(share)
        except ValueError:
            raise ConfigError(f"a load is a CPU share in [0, 1], got {share!r}") from None
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) \
            or not 0.0 <= share <= 1.0:
        raise ConfigError(f"a load is a CPU share in [0, 1], got {share!r}")
    return f"{float(share):.2f}"




# -- Pareto ---------------------------------------------------------------------------------------

def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other point dominates (lower cost is better,
    higher quality is better), ordered by cost. Of exactly equal points the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_ranks(points: Sequence[tuple[float, float]]) -> list[int]:
    """Non-dominated sorting: 0 for the front, 1 for the front of the rest, and so on."""
    ranks = [-1] * len(points)
    left = list(range(len(points)))
    rank = 0
    while left:  # each pass removes at least one point
        sub = [points[i] for i in left]
        front = {left[j] for j in pareto_front(sub)}
        # equal points share the rank of the kept one
        front |= {i for i in left if any(points[i] == points[f] for f in front)}
        for i in front:
            ranks[i] = rank
        left = [i for i in left if i not in front]
        rank += 1
    return ranks


# -- levels and families --------------------------------------------------------------------------

def _seconds_map(data: Any, what: str) -> dict[str, float]:
    if not isinstance(data, Mapping):
        raise ModelError(f"{what} must be an object of level name -> seconds")
    out = {}
    for k, v in data.items():
        try:
            name, value = load_name(k), float(v)
        except (ConfigError, TypeError, ValueError):
            raise ModelError(f"{what}: bad entry {k!r}: {v!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise ModelError(f"{what}: latency must be positive seconds, got {v!r}")
        out[name] = value
    return out


@dataclass(frozen=True)
class Level:
    """One sub-network of a family: its config, quality, size and latency under each load.

    latency_s: predicted seconds per LR frame by load name ("0.00", "0.50", ...).
    measured_s: measured (median) seconds by load name on one device, or None.
    """

    config: SubnetConfig
    psnr: float
    params: int
    macs: int
    latency_s: dict[str, float] = field(default_factory=dict)
    measured_s: dict[str, float] | None = None

    def seconds(self, load: float | str = 0.0, measured: bool = True) -> float | None:
        """Measured latency under `load` if known (and asked for), else predicted, else None."""
        name = load_name(load)
        if measured and self.measured_s and name in self.measured_s:
            return self.measured_s[name]
        return self.latency_s.get(name)

    def fps(self, load: float | str = 0.0, measured: bool = True) -> float | None:
        s = self.seconds(load, measured)
        return None if s is None else 1.0 / s

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.id, "psnr": self.psnr, "params": self.params, "macs": self.macs,
                "latency_s": dict(sorted(self.latency_s.items())),
                "measured_s": None if self.measured_s is None else dict(sorted(self.measured_s.items()))}

    @classmethod
    def from_dict(cls, data: Any) -> Level:
        if not isinstance(data, Mapping):
            raise ModelError("a family level must be a JSON object")
        try:
            cfg = SubnetConfig.coerce(data["config"])
            psnr, params, macs = float(data["psnr"]), int(data["params"]), int(data["macs"])
        except ConfigError as exc:
            raise ModelError(f"family level has a bad config: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"family level lacks or mangles field {exc}") from None
        measured = data.get("measured_s")
        return cls(cfg, psnr, params, macs, _seconds_map(data.get("latency_s", {}), f"{cfg.id} latency_s"),
                   None if measured is None else _seconds_map(measured, f"{cfg.id} measured_s"))


@dataclass(frozen=True)
class Family:
    """Levels ordered by cost: predicted latency at `reference` (a level name) where every level
    has one, else MACs. Config ids are unique.

    lr_hw: the LR frame size (H, W) the costs refer to. search: how it was found (strategy,
    parameters, seed, counts of evaluations and cost calls), free-form JSON.
    """

    levels: tuple[Level, ...]
    scale: int
    lr_hw: tuple[int, int] = DEFAULT_LR_HW
    reference: str = "0.00"
    search: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        levels = tuple(self.levels)
        ids = [lv.config.id for lv in levels]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"family has duplicate levels: {dupes[:3]}")
        bad = [lv.config.id for lv in levels if lv.config.scale != self.scale]
        if bad:
            raise ConfigError(f"family of scale x{self.scale} has levels of another scale: {bad[:3]}")
        object.__setattr__(self, "reference", load_name(self.reference))
        object.__setattr__(self, "lr_hw", (int(self.lr_hw[0]), int(self.lr_hw[1])))
        if all(self.reference in lv.latency_s for lv in levels):
            key = lambda lv: (lv.latency_s[self.reference], lv.macs, lv.config.id)  # noqa: E731
        else:
            key = lambda lv: (lv.macs, lv.config.id)  # noqa: E731
        object.__setattr__(self, "levels", tuple(sorted(levels, key=key)))

    def __len__(self) -> int:
        return len(self.levels)

    def __iter__(self) -> Iterator[Level]:
        return iter(self.levels)

    def __getitem__(self, index: int) -> Level:
        return self.levels[index]

    @property
    def configs(self) -> list[SubnetConfig]:
        return [lv.config for lv in self.levels]

    def validate(self, space: SearchSpace) -> Family:
        """Raise ModelError unless every level is a config of `space`."""
        if not self.levels:
            raise ModelError("family has no levels")
        for lv in self.levels:
            try:
                space.validate(lv.config)
            except ConfigError as exc:
                raise ModelError(f"family level does not fit the supernet's space: {exc}") from None
        return self

    def with_measured(self, measured: Mapping[str, Mapping[str, float]]) -> Family:
        """A copy with `measured_s` filled from {level name: {config id: seconds}} (levels not
        measured keep None)."""
        levels = []
        for lv in self.levels:
            m = {load_name(name): float(per[lv.config.id]) for name, per in measured.items() if lv.config.id in per}
            levels.append(Level(lv.config, lv.psnr, lv.params, lv.macs, dict(lv.latency_s), m or None))
        return Family(tuple(levels), self.scale, self.lr_hw, self.reference, dict(self.search))

    # -- JSON --

    def to_dict(self) -> dict[str, Any]:
        return {**header(FAMILY_KIND, FAMILY_SCHEMA_VERSION), "scale": self.scale,
                "lr_hw": list(self.lr_hw), "reference": self.reference, "search": self.search,
                "levels": [lv.to_dict() for lv in self.levels]}

    @classmethod
    def from_dict(cls, data: Any) -> Family:
        check_header(data, FAMILY_KIND, FAMILY_SCHEMA_VERSION, "family")
        levels = data.get("levels")
        if not isinstance(levels, list) or not levels:
            raise ModelError("family has no levels (its 'levels' list is missing or empty)")
        if len(levels) > MAX_LEVELS:
            raise ModelError(f"family has {len(levels):,} levels (at most {MAX_LEVELS})")
        try:
            lr_hw = tuple(int(v) for v in data["lr_hw"])
            if len(lr_hw) != 2:
                raise ValueError(lr_hw)
            if not all(1 <= v <= MAX_LR_SIDE for v in lr_hw):
                raise ModelError(f"family lr_hw {list(lr_hw)} is outside [1, {MAX_LR_SIDE}] pixels a side")
            search = data.get("search", {})
            if not isinstance(search, dict):
                raise TypeError("search")
            return cls(tuple(Level.from_dict(lv) for lv in levels), int(data["scale"]), lr_hw,
                       data.get("reference", "0.00"), search)
        except ConfigError as exc:
            raise ModelError(f"bad family: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"family lacks or mangles field {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Family:
        return cls.from_dict(read_json(path, "family"))
