"""Sub-network configurations and the search space they are drawn from: values, never dicts.

A `SubnetConfig` names one sub-network ("level") of the SR supernet; a `SearchSpace` names the
choices a supernet offers. Both are frozen, hashable, validated on construction (a bad value
raises `ConfigError` naming the field) and round-trip through JSON (`to_dict`/`from_dict`).

Config id (stable, compact, parsed back by `SubnetConfig.from_id`)::

    x2-d4-w32-e2-k3-s1-b:r,c,i+esa,m.s5-up:ps
    |  |  |   |  |  |  |                 upsampler: ps (pixel shuffle), tc (transposed conv),
    |  |  |   |  |  |  |                            bic (pixel shuffle + bicubic global skip)
    |  |  |   |  |  |  block per active position (depth of them), see `adasr.nn.blocks`:
    |  |  |   |  |  |    r residual, c RCAB (channel attention), i / i+esa / i+cca distillation,
    |  |  |   |  |  |    m.<op> DLSR mixed residual block, op in c1 c3 c5 s3 s5 s7 d3 d5
    |  |  |   |  |  s: block-level identity (residual) paths on (1) or off (0)
    |  |  |   |  k: kernel size of the blocks' main convolutions
    |  |  |   e: expansion ratio (mid width = round(width * e)), a multiple of 1/8
    |  |  w: feature width (channels)
    |  d: depth (number of active body blocks; later positions are skipped)
    x: scale

Block tokens are checked and choices ranked by cost with the torch-free spec (`adasr.spec`), so
importing `adasr.space` does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from adasr import spec
from adasr.errors import ConfigError

__all__ = ["DIMENSIONS", "KERNELS", "MAX_DEPTH", "MAX_EXPANSION", "MAX_WIDTH", "MIN_WIDTH", "SCALES", "SearchSpace",
           "SubnetConfig", "UPSAMPLERS", "mid_width"]

SCALES = (2, 3, 4)
UPSAMPLERS = ("ps", "tc", "bic")
KERNELS = (1, 3, 5, 7)
MIN_WIDTH = 4
MAX_WIDTH = 1024
MAX_DEPTH = 64
MAX_EXPANSION = 8
# The elastic dimensions, as progressive-shrinking phases name them (`SearchSpace.restrict`).
DIMENSIONS = ("width", "depth", "expansion", "kernel", "block", "skip", "upsampler")
# Nominal LR size for ranking choices by cost (`smallest`/`largest`); only the order matters.
_RANK_HW = (64, 64)


def mid_width(width: int, expansion: float) -> int:
    """Channels inside a block: round(width * expansion), half up, at least 1."""
    return max(1, math.floor(width * expansion + 0.5))


# -- field checks ------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> int:
    if not _is_int(value) or not lo <= value <= hi:
        raise ConfigError(f"{owner}.{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_scale(owner: str, value: Any) -> int:
    if not _is_int(value) or value not in SCALES:
        raise ConfigError(f"{owner}.scale must be one of {SCALES}, got {value!r}")
    return value


def _check_kernel(owner: str, name: str, value: Any) -> int:
    if not _is_int(value) or value not in KERNELS:
        raise ConfigError(f"{owner}.{name} must be one of {KERNELS}, got {value!r}")
    return value


def _check_expansion(owner: str, name: str, value: Any) -> float:
    """Positive multiple of 1/8 up to 8, returned as int when integral (so 2.0 == 2 hashes alike)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= MAX_EXPANSION or (value * 8) != int(value * 8):
        raise ConfigError(f"{owner}.{name} must be a positive multiple of 0.125 up to {MAX_EXPANSION}, "
                          f"got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


def _check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be true or false, got {value!r}")
    return value


def _check_upsampler(owner: str, name: str, value: Any) -> str:
    if value not in UPSAMPLERS:
        raise ConfigError(f"{owner}.{name} must be one of {UPSAMPLERS}, got {value!r}")
    return value


def _check_token(owner: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{owner}.{name} must be a block token string, got {value!r}")
    try:
        spec.parse_token(value)
    except ValueError as exc:
        raise ConfigError(f"{owner}.{name}: {exc}") from None
    return value


def _check_choices(owner: str, name: str, value: Any, check, order=None) -> tuple:
    """Non-empty, duplicate-free tuple of valid choices, in canonical (sorted) order."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{owner}.{name} must be a list of choices, got {value!r}")
    items = tuple(check(owner, f"{name}[{i}]", v) for i, v in enumerate(value))
    if not items:
        raise ConfigError(f"{owner}.{name} must not be empty")
    if len(set(items)) != len(items):
        raise ConfigError(f"{owner}.{name} has duplicate choices: {list(items)}")
    return tuple(sorted(items, key=order))


def _from_mapping(cls, data: Any, owner: str, list_fields: Iterable[str]):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{owner} must be a JSON object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{owner} has unknown field(s): {', '.join(map(str, unknown))}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{owner} is missing field(s): {', '.join(missing)}")
    kwargs = dict(data)
    for name in list_fields:
        if name in kwargs and isinstance(kwargs[name], list):
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)


# -- SubnetConfig ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SubnetConfig:
    """One sub-network of the supernet. `depth` is `len(blocks)`; see the module doc for the id."""

    scale: int
    width: int
    expansion: float
    kernel: int
    blocks: tuple[str, ...]
    skip: bool = True
    upsampler: str = "ps"

    def __post_init__(self) -> None:
        own = "SubnetConfig"
        _check_scale(own, self.scale)
        _check_int(own, "width", self.width, MIN_WIDTH, MAX_WIDTH)
        object.__setattr__(self, "expansion", _check_expansion(own, "expansion", self.expansion))
        _check_kernel(own, "kernel", self.kernel)
        if isinstance(self.blocks, (str, bytes)) or not isinstance(self.blocks, Iterable):
            raise ConfigError(f"{own}.blocks must be a list of block tokens, got {self.blocks!r}")
        blocks = tuple(self.blocks)
        if not 1 <= len(blocks) <= MAX_DEPTH:
            raise ConfigError(f"{own}.blocks must hold 1 to {MAX_DEPTH} blocks (the depth), got {len(blocks)}")
        for i, token in enumerate(blocks):
            _check_token(own, f"blocks[{i}]", token)
        object.__setattr__(self, "blocks", blocks)
        _check_bool(own, "skip", self.skip)
        _check_upsampler(own, "upsampler", self.upsampler)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def mid(self) -> int:
        """Width inside the blocks (expansion applied)."""
        return mid_width(self.width, self.expansion)

    @cached_property
    def id(self) -> str:  # noqa: A003 - the name the design uses
        return (f"x{self.scale}-d{self.depth}-w{self.width}-e{self.expansion:g}-k{self.kernel}"
                f"-s{int(self.skip)}-b:{','.join(self.blocks)}-up:{self.upsampler}")

    def __str__(self) -> str:
        return self.id

    @classmethod
    def from_id(cls, text: str) -> SubnetConfig:
        """Parse an id written by `.id` (fields in that order)."""
        if not isinstance(text, str):
            raise ConfigError(f"a subnet id must be a string, got {type(text).__name__}")
        fields = text.strip().split("-")
        prefixes = ("x", "d", "w", "e", "k", "s", "b:", "up:")
        if len(fields) != len(prefixes) or not all(f.startswith(p) for f, p in zip(fields, prefixes)):
            raise ConfigError(f"bad subnet id {text!r}: expected x<scale>-d<depth>-w<width>-e<expansion>"
                              f"-k<kernel>-s<0|1>-b:<block,...>-up:<upsampler>")
        values = [f[len(p):] for f, p in zip(fields, prefixes)]

        def number(name: str, raw: str, kind=int):
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"bad subnet id {text!r}: {name} {raw!r} is not a number") from None

        expansion = number("expansion", values[3], float)
        skip = {"1": True, "0": False}.get(values[5])
        if skip is None:
            raise ConfigError(f"bad subnet id {text!r}: skip must be s0 or s1")
        cfg = cls(scale=number("scale", values[0]), width=number("width", values[2]),
                  expansion=int(expansion) if expansion.is_integer() else expansion,
                  kernel=number("kernel", values[4]), blocks=tuple(values[6].split(",")),
                  skip=skip, upsampler=values[7])
        if cfg.depth != number("depth", values[1]):
            raise ConfigError(f"bad subnet id {text!r}: depth d{values[1]} but {cfg.depth} blocks listed")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "width": self.width, "expansion": self.expansion,
                "kernel": self.kernel, "blocks": list(self.blocks), "skip": self.skip,
                "upsampler": self.upsampler}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetConfig:
        return _from_mapping(cls, data, "SubnetConfig", ["blocks"])

    @classmethod
    def coerce(cls, value: SubnetConfig | str | Mapping[str, Any]) -> SubnetConfig:
        """Accept a config, its id or its dict."""
        if isinstance(value, SubnetConfig):
            return value
        if isinstance(value, str):
            return cls.from_id(value)
        return cls.from_dict(value)

    def replace(self, **changes: Any) -> SubnetConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# -- SearchSpace -------------------------------------------------------------------------------

def _rank(value: bool) -> int:
    return int(value)


@dataclass(frozen=True)
class SearchSpace:
    """The choices of one supernet. Choice tuples are stored sorted (canonical order).

    The body has `max(depths)` block positions; every position offers every token in `blocks`.
    `size()` counts distinct configs (ids); a few of them compute the same function (e.g. the
    kernel choice of a net built only of mixed blocks, whose ops fix their own kernels).
    """

    scale: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    expansions: tuple[float, ...]
    kernels: tuple[int, ...]
    blocks: tuple[str, ...]
    skips: tuple[bool, ...] = (True,)
    upsamplers: tuple[str, ...] = ("ps",)

    def __post_init__(self) -> None:
        own = "SearchSpace"
        _check_scale(own, self.scale)
        width = lambda o, n, v: _check_int(o, n, v, MIN_WIDTH, MAX_WIDTH)  # noqa: E731
        depth = lambda o, n, v: _check_int(o, n, v, 1, MAX_DEPTH)  # noqa: E731
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("widths", _check_choices(own, "widths", self.widths, width))
        set_("depths", _check_choices(own, "depths", self.depths, depth))
        set_("expansions", _check_choices(own, "expansions", self.expansions, _check_expansion))
        set_("kernels", _check_choices(own, "kernels", self.kernels, _check_kernel))
        set_("blocks", _check_choices(own, "blocks", self.blocks, _check_token))
        set_("skips", _check_choices(own, "skips", self.skips, _check_bool, order=_rank))
        set_("upsamplers", _check_choices(own, "upsamplers", self.upsamplers, _check_upsampler,
                                          order=UPSAMPLERS.index))

    # -- shape of the space --

    @property
    def max_width(self) -> int:
        return self.widths[-1]

    @property
    def max_depth(self) -> int:
        return self.depths[-1]

    @property
    def max_mid(self) -> int:
        return mid_width(self.max_width, self.expansions[-1])

    def size(self) -> int:
        """Number of distinct configs (ids) in the space."""
        per_depth = sum(len(self.blocks) ** d for d in self.depths)
        return (len(self.widths) * len(self.expansions) * len(self.kernels) * len(self.skips)
                * len(self.upsamplers) * per_depth)

    # -- membership --

    def validate(self, cfg: SubnetConfig) -> SubnetConfig:
        """Return `cfg` if it fits the space, else raise ConfigError naming the field."""
        if not isinstance(cfg, SubnetConfig):
            raise ConfigError(f"expected a SubnetConfig, got {type(cfg).__name__}")
        checks = [("scale", cfg.scale, (self.scale,)), ("width", cfg.width, self.widths),
                  ("depth", cfg.depth, self.depths), ("expansion", cfg.expansion, self.expansions),
                  ("kernel", cfg.kernel, self.kernels), ("skip", cfg.skip, self.skips),
                  ("upsampler", cfg.upsampler, self.upsamplers)]
        for name, value, choices in checks:
            if value not in choices:
                raise ConfigError(f"{name} {value!r} of {cfg.id} is not in the space's choices {list(choices)}")
        for i, token in enumerate(cfg.blocks):
            if token not in self.blocks:
                raise ConfigError(f"blocks[{i}] {token!r} of {cfg.id} is not in the space's blocks {list(self.blocks)}")
        return cfg

    def contains(self, cfg: SubnetConfig) -> bool:
        try:
            self.validate(cfg)
        except ConfigError:
            return False
        return True

    def __contains__(self, cfg: object) -> bool:
        return isinstance(cfg, SubnetConfig) and self.contains(cfg)

    # -- random choices (always a local rng) --

    @staticmethod
    def _check_rng(rng: Any) -> random.Random:
        if not isinstance(rng, random.Random):
            raise TypeError(f"pass a local random.Random, not {type(rng).__name__} (no global state)")
        return rng

    def sample(self, rng: random.Random) -> SubnetConfig:
        """A uniformly random config: each dimension independently, each position independently."""
        rng = self._check_rng(rng)
        width = rng.choice(self.widths)
        expansion = rng.choice(self.expansions)
        kernel = rng.choice(self.kernels)
        depth = rng.choice(self.depths)
        blocks = tuple(rng.choice(self.blocks) for _ in range(depth))
        skip = rng.choice(self.skips)
        upsampler = rng.choice(self.upsamplers)
        return SubnetConfig(self.scale, width, expansion, kernel, blocks, skip, upsampler)

    def mutate(self, cfg: SubnetConfig, rng: random.Random, prob: float = 0.1) -> SubnetConfig:
        """Resample each dimension (and each block position) with probability `prob`."""
        rng = self._check_rng(rng)
        self.validate(cfg)
        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"mutation prob must be in [0, 1], got {prob!r}")
        pick = lambda current, choices: rng.choice(choices) if rng.random() < prob else current  # noqa: E731
        width = pick(cfg.width, self.widths)
        expansion = pick(cfg.expansion, self.expansions)
        kernel = pick(cfg.kernel, self.kernels)
        depth = pick(cfg.depth, self.depths)
        blocks = [pick(t, self.blocks) for t in cfg.blocks[:depth]]
        blocks += [rng.choice(self.blocks) for _ in range(depth - len(blocks))]
        skip = pick(cfg.skip, self.skips)
        upsampler = pick(cfg.upsampler, self.upsamplers)
        return SubnetConfig(self.scale, width, expansion, kernel, tuple(blocks), skip, upsampler)

    def crossover(self, a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
        """Each dimension from either parent; block i from a parent that has position i."""
        rng = self._check_rng(rng)
        self.validate(a)
        self.validate(b)
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        width = pick(a.width, b.width)
        expansion = pick(a.expansion, b.expansion)
        kernel = pick(a.kernel, b.kernel)
        depth = pick(a.depth, b.depth)
        blocks = []
        for i in range(depth):
            options = [p.blocks[i] for p in (a, b) if i < p.depth]
            blocks.append(options[0] if len(options) == 1 else pick(*options))
        skip = pick(a.skip, b.skip)
        upsampler = pick(a.upsampler, b.upsampler)
        return SubnetConfig(self.scale, width, expansion, kernel, tuple(blocks), skip, upsampler)

    # -- extremes --

    def _ranked(self, width: int, expansion: float, kernel: int, depth: int, skip: bool):
        """Tokens and upsamplers ordered by MACs at the given dims (ties keep canonical order)."""
        def macs(token: str, upsampler: str) -> int:
            cfg = SubnetConfig(self.scale, width, expansion, kernel, (token,) * depth, skip, upsampler)
            return spec.subnet_cost(cfg, _RANK_HW)[1]

        tokens = sorted(self.blocks, key=lambda t: macs(t, self.upsamplers[0]))
        ups = sorted(self.upsamplers, key=lambda u: macs(self.blocks[0], u))
        return tokens, ups

    def smallest(self) -> SubnetConfig:
        """Minimum width, expansion, kernel and depth; the cheapest block and upsampler."""
        return self._extremes[0]

    def largest(self) -> SubnetConfig:
        """Maximum width, expansion, kernel and depth; the costliest block and upsampler.

        Ties go to the later choice in canonical order (so "bic" beats "ps", which costs the same).
        """
        return self._extremes[1]

    @cached_property
    def _extremes(self) -> tuple[SubnetConfig, SubnetConfig]:
        # Cached: training asks for both every step. Identity paths cost nothing, so both keep
        # them when the space allows (skips[-1] is True then).
        skip = self.skips[-1]
        lo = (self.widths[0], self.expansions[0], self.kernels[0], self.depths[0])
        hi = (self.widths[-1], self.expansions[-1], self.kernels[-1], self.depths[-1])
        tokens, ups = self._ranked(*lo, skip)
        smallest = SubnetConfig(self.scale, lo[0], lo[1], lo[2], (tokens[0],) * lo[3], skip, ups[0])
        tokens, ups = self._ranked(*hi, skip)  # ascending, stable: the last is the latest tie
        largest = SubnetConfig(self.scale, hi[0], hi[1], hi[2], (tokens[-1],) * hi[3], skip, ups[-1])
        return smallest, largest

    # -- derived spaces --

    def restrict(self, elastic: Iterable[str]) -> SearchSpace:
        """The sub-space where only the `elastic` dimensions vary (the rest fixed to `largest()`).

        For progressive shrinking: e.g. ("kernel",), then ("kernel", "depth"), ... An empty
        `elastic` means every dimension varies (the space itself).
        """
        elastic = tuple(elastic)
        unknown = sorted(set(elastic) - set(DIMENSIONS))
        if unknown:
            raise ConfigError(f"unknown elastic dimension(s) {unknown}; known: {list(DIMENSIONS)}")
        if not elastic:
            return self
        top = self.largest()
        fixed = {"width": ("widths", (top.width,)), "depth": ("depths", (top.depth,)),
                 "expansion": ("expansions", (top.expansion,)), "kernel": ("kernels", (top.kernel,)),
                 "block": ("blocks", (top.blocks[0],)), "skip": ("skips", (top.skip,)),
                 "upsampler": ("upsamplers", (top.upsampler,))}
        changes = dict(v for k, v in fixed.items() if k not in elastic)
        return dataclasses.replace(self, **changes)

    # -- JSON --

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "widths": list(self.widths), "depths": list(self.depths),
                "expansions": list(self.expansions), "kernels": list(self.kernels),
                "blocks": list(self.blocks), "skips": list(self.skips),
                "upsamplers": list(self.upsamplers)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        return _from_mapping(cls, data, "SearchSpace",
                             ["widths", "depths", "expansions", "kernels", "blocks", "skips", "upsamplers"])

    # -- named spaces --

    @staticmethod
    def names() -> list[str]:
        return sorted({*_NAMED, *_data_spaces()})

    @classmethod
    def from_file(cls, path) -> SearchSpace:
        """A space from a JSON file of `to_dict`'s fields (how a user widens a space for a GPU)."""
        from adasr._jsonfile import loads
        from adasr.safepath import read_bounded

        data = loads(read_bounded(path, 1 << 20, "search space file", ConfigError), f"search space file {path}",
                     ConfigError)
        return cls.from_dict(data)

    @classmethod
    def named(cls, name: str, scale: int | None = None) -> SearchSpace:
        """A space shipped with the library. `scale` overrides "tiny"'s scale; for the base spaces
        it must match the name's (x2/x3/x4)."""
        if name not in _NAMED and name not in _data_spaces():
            raise ConfigError(f"unknown search space {name!r}; known: {', '.join(SearchSpace.names())}")
        space = _NAMED[name]() if name in _NAMED else _data_spaces()[name]()
        if scale is not None and scale != space.scale:
            if name != "tiny":
                raise ConfigError(f"scale {scale!r} does not match search space {name!r} (x{space.scale})")
            space = dataclasses.replace(space, scale=scale)
        return space


# Every block token the registry knows, in canonical order; the named spaces offer all of them.
def _all_tokens() -> tuple[str, ...]:
    return tuple(spec.all_tokens())


def _tiny() -> SearchSpace:
    # For tests: 16x16 inputs, every block token and upsampler, seconds per test.
    return SearchSpace(scale=2, widths=(8, 16), depths=(1, 2, 3), expansions=(1, 2), kernels=(3, 5),
                       blocks=_all_tokens(), skips=(False, True), upsamplers=UPSAMPLERS)


def _base(scale: int) -> SearchSpace:
    # CPU training and 320x180 LR input on 2 cores. Measured (x2, torch 2.13 CPU, 2 threads,
    # inference_mode, median of 10, NCHW input): smallest x2-d1-w8-e1-k1-s1-b:m.c1-up:tc
    # 1.3K params, 0.07 GMAC, ~14 ms; largest x2-d6-w32-e2-k3-s1-b:c,c,c,c,c,c-up:bic 239K
    # params, 13.5 GMAC, ~270 ms (channels_last input: ~5 ms and ~210 ms). Identity paths stay on:
    # switching them off saves one add per block, so such levels are never Pareto-optimal and
    # would only disturb the shared weights' training (the tiny space keeps both for coverage).
    # The mixed block's 5x5 conv (m.c5) is left out: it would force the shared first conv of
    # every position to store 5x5 kernels, 2.8x the weights the 3x3 levels use, and so more than
    # double the supernet for one rarely-Pareto op (measured: 534K -> 337K parameters without it).
    blocks = tuple(t for t in _all_tokens() if t != "m.c5")
    return SearchSpace(scale=scale, widths=(8, 16, 24, 32), depths=(1, 2, 3, 4, 5, 6),
                       expansions=(1, 2), kernels=(1, 3), blocks=blocks, skips=(True,),
                       upsamplers=UPSAMPLERS)


_SPACES_DIR = __import__("pathlib").Path(__file__).parent / "spaces"


def _data_spaces() -> dict:
    """The spaces shipped as JSON data files in `adasr/spaces/` (name = file stem)."""
    return {p.stem: (lambda p=p: SearchSpace.from_file(p)) for p in sorted(_SPACES_DIR.glob("*.json"))}


_NAMED = {
    "tiny": _tiny,
    "base-x2": lambda: _base(2),
    "base-x3": lambda: _base(3),
    "base-x4": lambda: _base(4),
}
