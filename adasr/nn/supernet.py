"""The weight-sharing SR supernet (DySR's meta-graph) and its static sub-networks.

Meta-graph, for LR input x (B, 3, H, W) in [0, 1]::

    h = head(x)                            3x3 conv, 3 -> width            (fixed)
    y = blocks[0 .. depth-1](h)            body positions, any block token (later ones skipped)
    y = tail(y) + h                        3x3 conv, width -> width, long skip (fixed)
    out = upsampler(y)                     ps:  3x3 conv -> 3 s^2 channels, pixel shuffle
                                           tc:  transposed conv -> 3, kernel 2s, stride s
                                           bic: its own ps branch + bicubic(x) (global skip)

Elastic dimensions: depth, width (channel prefix of every op), expansion (mid width inside the
blocks), kernel size (once-for-all: stored max kernel, centre crop + learned transform), block
type per position (`adasr.nn.blocks`), attention and identity paths, upsampler. All
sub-networks are slices of the same parameters; ops of the same role and shape at the same
position are one op (DySR). The "ps" and "bic" branches are separate ops on purpose: one
predicts the image, the other a residual on top of bicubic.

Switching (`SuperNet.set_active`) builds, or fetches from a cache keyed by config id, an
immutable `Routing` (a tuple of per-layer plans: which op, which slice, which kernel) and swaps
it in with one reference assignment; `forward` reads `self._routing` once, so a forward running
in another thread finishes on the routing it started with. Building a routing runs no tensor
operation at all; slices are taken (as views) at forward time.

No batch norm: BN hurts SR quality and would need per-sub-network statistics (see
`adasr.nn.elastic`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from adasr.errors import ConfigError
from adasr.nn.blocks import BlockType, BlockVariant, Dims, block_type, parse_token
from adasr.nn.elastic import Plan, SlotSpec, Use, conv_use, elastic_op, static_layer
from adasr.nn.registry import register_model
from adasr.nn.upsample import bicubic_phases
from adasr.space import SearchSpace, SubnetConfig
from adasr.spec import (  # noqa: F401 - re-exported: layout and cost are torch-free (adasr.spec)
    DEFAULT_LR_HW,
    Layout,
    layout,
    op_keys,
    shared_ops,
    subnet_cost,
    upsampler_use,
)

__all__ = ["BlockPlan", "Routing", "StaticBlock", "SubNet", "SuperNet", "build_subnet", "build_supernet", "run_network",
           "run_upsampler", "spread_configs", "trim_supernet"]

# -- running a network (the one forward both the supernet and static sub-networks use) ------------

def run_network(head, blocks: Iterable, tail, upsampler: str, up, scale: int, x: torch.Tensor,
                phases: bool = False) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, sH, sW); head/tail/up and each block are callables on tensors.

    phases=True (upsamplers ps and bic only): return the (B, 3*s*s, H, W) tensor before the
    pixel shuffle. The bicubic skip is added at LR size as s*s sub-pixel phases
    (`adasr.nn.upsample`), equal to bicubic upsampling at output size to float rounding."""
    h = head(x)
    y = h
    for block in blocks:
        y = block(y)
    y = tail(y).add_(h)  # in place on a fresh conv output (its backward needs no output)
    return run_upsampler(upsampler, up, scale, y, x, phases)


def run_upsampler(upsampler: str, up, scale: int, y: torch.Tensor, x: torch.Tensor,
                  phases: bool = False) -> torch.Tensor:
    """The upsampler `upsampler` ("tc", "ps" or "bic") with layer `up` on features `y` of the LR
    input `x`: (B, C, H, W) -> (B, 3, sH, sW), or the phases before the shuffle (see
    `run_network`). The latency table times this same function."""
    if upsampler == "tc":
        if phases:
            raise ValueError("phases=True needs a pixel-shuffle upsampler (ps or bic), not tc")
        return up(y)
    z = up(y)
    if upsampler == "bic":
        if z.dtype != x.dtype:  # autocast (bf16 steps): the sum carries the whole image, so it is x's float32
            with torch.autocast(x.device.type, enabled=False):
                z = z.to(x.dtype) + bicubic_phases(x, scale)
        else:
            z = z.add_(bicubic_phases(x, scale))
    return z if phases else F.pixel_shuffle(z, scale)


class BlockPlan(NamedTuple):
    """A routed block: its type, its routed ops by slot name, its variant and identity flag."""

    kind: BlockType
    ops: Mapping[str, Plan]
    variant: BlockVariant
    skip: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.kind.forward(self.ops, x, self.variant, self.skip)


class Routing(NamedTuple):
    """Everything a forward needs for one sub-network; immutable, built without tensor ops."""

    config: SubnetConfig
    head: Plan
    blocks: tuple[BlockPlan, ...]
    tail: Plan
    up: Plan

    def __call__(self, x: torch.Tensor, phases: bool = False) -> torch.Tensor:
        cfg = self.config
        return run_network(self.head, self.blocks, self.tail, cfg.upsampler, self.up, cfg.scale, x, phases)


# -- static sub-network --------------------------------------------------------------------------

class StaticBlock(nn.Module):
    """One body block of a static sub-network: plain layers in `ops`, the block type's forward."""

    def __init__(self, variant: BlockVariant, uses: Mapping[str, Use], skip: bool) -> None:
        super().__init__()
        self.variant, self.skip, self.kind = variant, skip, block_type(variant.code)
        self.ops = nn.ModuleDict({name: static_layer(use) for name, use in uses.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kind.forward(self.ops, x, self.variant, self.skip)

    def extra_repr(self) -> str:
        return f"{self.variant.token}, skip={self.skip}"


class SubNet(nn.Module):
    """A static sub-network: ordinary Conv2d / ConvTranspose2d layers, no slicing, no routing.

    Built fresh from a config (random weights) or by `SuperNet.extract` (weights copied).
    """

    def __init__(self, cfg: SubnetConfig) -> None:
        super().__init__()
        self.config = cfg
        self.scale = cfg.scale
        lay = layout(cfg)
        self.head = static_layer(lay.head)
        self.body = nn.ModuleList(StaticBlock(v, uses, cfg.skip) for v, uses in lay.blocks)
        self.tail = static_layer(lay.tail)
        self.up = static_layer(lay.up)

    def forward(self, x: torch.Tensor, phases: bool = False) -> torch.Tensor:
        return run_network(self.head, self.body, self.tail, self.config.upsampler, self.up, self.scale, x, phases)


# -- the supernet ----------------------------------------------------------------------------------

def _max_dims(space: SearchSpace) -> Dims:
    return Dims(space.max_width, space.max_mid, space.kernels[-1])


def _slot_requirements(space: SearchSpace) -> dict[tuple, tuple[SlotSpec, int, int, frozenset[int]]]:
    """(place, slot) -> (spec, in_max, out_max, kernels) covering every config of the space."""
    req: dict[tuple, tuple[SlotSpec, int, int, frozenset[int]]] = {}

    def add(key: tuple, use: Use) -> None:
        spec, in_max, out_max, kernels = req.get(key, (use.spec, 0, 0, frozenset()))
        if spec != use.spec:
            raise AssertionError(f"slot {key} is used with two specs: {spec} and {use.spec}")
        end = max(b for _, b in use.in_ranges)
        req[key] = (spec, max(in_max, end), max(out_max, use.out), kernels | {use.kernel})

    m = _max_dims(space)
    for kernel in space.kernels:  # every use is largest at the max width and expansion
        d = Dims(m.width, m.mid, kernel)
        for token in space.blocks:
            v = parse_token(token)
            for name, use in block_type(v.code).uses(v, d, m).items():
                add(("body", name), use)
    add(("head",), conv_use(m.width, 3, 3))
    add(("tail",), conv_use(m.width, m.width, 3))
    for kind in space.upsamplers:
        add(("up", kind), upsampler_use(kind, m.width, space.scale))
    return req


class SuperNet(nn.Module):
    """The meta-graph of a `SearchSpace`: every sub-network a slice of the same parameters.

    `forward(x)` runs the active sub-network (initially `space.largest()`); `forward(x, cfg=c)`
    runs `c` without touching the active one (thread-safe; for one-shot training).
    """

    cache_size = 64  # routings kept for O(1) switching back (levels are few; sampled configs many)

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        if not isinstance(space, SearchSpace):
            raise ConfigError(f"SuperNet takes a SearchSpace, got {type(space).__name__}")
        self.space = space
        self.scale = space.scale
        self.max_dims = _max_dims(space)
        req = _slot_requirements(space)
        self.head = elastic_op(*req[("head",)])
        body_slots = sorted(key[1] for key in req if key[0] == "body")
        self.body = nn.ModuleList(
            nn.ModuleDict({name: elastic_op(*req[("body", name)]) for name in body_slots})
            for _ in range(space.max_depth))
        self.tail = elastic_op(*req[("tail",)])
        self.up = nn.ModuleDict({kind: elastic_op(*req[("up", kind)]) for kind in space.upsamplers})
        self._init_routing(space.largest())

    # -- routing --

    def _init_routing(self, cfg: SubnetConfig) -> None:
        self._cache_lock = threading.Lock()
        self._routing_cache: OrderedDict[str, Routing] = OrderedDict()
        self._routing: Routing | None = None
        self.set_active(cfg)

    def _build_routing(self, cfg: SubnetConfig) -> Routing:
        """Plans for `cfg` (validated by the caller): pure Python, no tensor is touched."""
        lay = layout(cfg, self.max_dims)

        def plan(op: nn.Module, use: Use) -> Plan:
            if not op.fits(use):  # a bug, not a user error: the slots cover the whole space
                raise AssertionError(f"{cfg.id}: {use} does not fit {op}")
            return Plan(op, use)

        blocks = tuple(
            BlockPlan(block_type(v.code),
                      MappingProxyType({name: plan(self.body[i][name], use) for name, use in uses.items()}),
                      v, cfg.skip)
            for i, (v, uses) in enumerate(lay.blocks))
        return Routing(cfg, plan(self.head, lay.head), blocks, plan(self.tail, lay.tail),
                       plan(self.up[cfg.upsampler], lay.up))

    def routing_for(self, cfg: SubnetConfig | str) -> Routing:
        """The routing of `cfg`, from the cache or freshly built (not stored; self is unchanged)."""
        cfg = SubnetConfig.coerce(cfg)
        routing = self._routing_cache.get(cfg.id)
        if routing is None:
            routing = self._build_routing(self.space.validate(cfg))
        return routing

    def set_active(self, cfg: SubnetConfig | str) -> None:
        """Make `cfg` the active sub-network: one reference assignment of a prebuilt routing.

        Safe between frames from another thread; allocates no tensors (routings are plain
        Python objects, cached per config id so switching back costs a dict lookup).
        """
        cfg = SubnetConfig.coerce(cfg)
        key = cfg.id
        routing = self._routing_cache.get(key)
        if routing is None:
            routing = self._build_routing(self.space.validate(cfg))
        with self._cache_lock:
            self._routing_cache[key] = routing
            self._routing_cache.move_to_end(key)
            while len(self._routing_cache) > self.cache_size:
                self._routing_cache.popitem(last=False)
        self._routing = routing  # the switch

    @property
    def active(self) -> SubnetConfig:
        return self._routing.config

    @property
    def routing(self) -> Routing:
        return self._routing

    def forward(self, x: torch.Tensor, cfg: SubnetConfig | str | None = None, *, phases: bool = False) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, sH, sW) through the active (or the given) sub-network
        (phases=True: the (B, 3*s*s, H, W) tensor before the pixel shuffle; see `run_network`)."""
        routing = self._routing if cfg is None else self.routing_for(cfg)  # read once
        return routing(x, phases)

    # -- static export and accounting --

    def extract(self, cfg: SubnetConfig | str | None = None) -> SubNet:
        """A plain static module computing the same function as sub-network `cfg` (default: the
        active one), with weights cloned from the slices and kernel transforms baked in."""
        routing = self._routing if cfg is None else self.routing_for(cfg)
        net = SubNet(routing.config).to(device=self.head.weight.device, dtype=self.head.weight.dtype)
        pairs = [(net.head, routing.head), (net.tail, routing.tail), (net.up, routing.up)]
        for block, bplan in zip(net.body, routing.blocks):
            pairs += [(block.ops[name], p) for name, p in bplan.ops.items()]
        with torch.no_grad():
            for layer, p in pairs:
                layer.weight.copy_(p.op.weight_for(p.use))
                if layer.bias is not None:
                    layer.bias.copy_(p.op.bias[: p.use.out])
        return net.train(self.training)

    def cost(self, cfg: SubnetConfig | str | None = None,
             lr_hw: tuple[int, int] = DEFAULT_LR_HW) -> tuple[int, int]:
        """(params, MACs) of sub-network `cfg` (default: active) for one (H, W) LR frame."""
        cfg = self.active if cfg is None else self.space.validate(SubnetConfig.coerce(cfg))
        return subnet_cost(cfg, lr_hw)

    def shared_ops(self, a: SubnetConfig, b: SubnetConfig) -> int:
        return shared_ops(a, b)

    def supernet_bytes(self) -> int:
        """Bytes of all parameters and buffers (what a device holds for every level at once)."""
        tensors = list(self.parameters()) + list(self.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    def assembled_bytes(self, cfgs: Sequence[SubnetConfig]) -> int:
        """Bytes the extracted sub-networks `cfgs` would hold as separate models (no sharing)."""
        itemsize = self.head.weight.element_size()
        return sum(subnet_cost(self.space.validate(SubnetConfig.coerce(c)))[0] for c in cfgs) * itemsize

    # -- copying and pickling: routings hold module references; rebuild them, never copy them --

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_active_config"] = state.pop("_routing").config
        state.pop("_routing_cache")
        state.pop("_cache_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        active = state.pop("_active_config")
        super().__setstate__(state)
        self._init_routing(active)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, max_depth={self.space.max_depth}, active={self.active.id}"


# -- trimming to a family -----------------------------------------------------------------------------

def trim_supernet(supernet: SuperNet, configs: Sequence[SubnetConfig]) -> SuperNet:
    """A smaller SuperNet that computes exactly what `supernet` computes for every config of
    `configs`, holding only the ops they use.

    The space keeps only the block tokens and upsamplers the configs use (its other dimensions
    are left as they are), so the ops of unused block types and upsamplers are never built.
    Tensors are copied by name, keeping their leading channels when an op shrinks (ops are used
    from their first channels); an elastic conv whose largest kernel shrinks (say 7 to 3 once no
    config uses the 7x7 separable op) stores the old op's effective kernel at the new size (the
    centre crops and kernel transforms applied) and keeps the transforms below it, so every
    remaining kernel size gives the same weights as before. Raises ConfigError when a tensor
    cannot be carried over.
    """
    from dataclasses import replace

    from adasr.nn.elastic import ElasticConv2d, shrink_kernel

    cfgs = [supernet.space.validate(SubnetConfig.coerce(c)) for c in configs]
    if not cfgs:
        raise ConfigError("trim_supernet needs at least one config")
    used_blocks = {b for c in cfgs for b in c.blocks}
    used_ups = {c.upsampler for c in cfgs}
    space = replace(supernet.space, blocks=tuple(b for b in supernet.space.blocks if b in used_blocks),
                    upsamplers=tuple(u for u in supernet.space.upsamplers if u in used_ups))
    trimmed = SuperNet(space).to(supernet.head.weight.device)
    old_modules = dict(supernet.named_modules())
    src = supernet.state_dict()

    def fit(tensor: torch.Tensor, shape: torch.Size, key: str) -> torch.Tensor:
        # ops are sliced from their first channels, so a smaller op keeps the leading block
        if tensor.dim() != len(shape) or any(n > m for n, m in zip(shape, tensor.shape)):
            raise ConfigError(f"cannot carry tensor {key} over to the trimmed supernet")
        return tensor[tuple(slice(0, n) for n in shape)]

    done: set[str] = set()
    with torch.no_grad():
        for name, module in trimmed.named_modules():
            old = old_modules.get(name)
            if not (isinstance(module, ElasticConv2d) and isinstance(old, ElasticConv2d)
                    and module.kernels[-1] < old.kernels[-1]):
                continue
            effective = shrink_kernel(old.weight, module.kernels[-1], old.kernels, old.transforms)
            module.weight.copy_(fit(effective, module.weight.shape, f"{name}.weight"))
            done.add(f"{name}.weight")
        for key, tensor in trimmed.state_dict().items():
            if key in done:
                continue
            if key not in src:
                raise ConfigError(f"cannot carry tensor {key} over to the trimmed supernet")
            tensor.copy_(fit(src[key], tensor.shape, key))
    trimmed.train(supernet.training)
    trimmed.set_active(cfgs[0])
    return trimmed


# -- registry builders -------------------------------------------------------------------------------

def _space_arg(space: Mapping[str, Any] | str, scale: int | None) -> SearchSpace:
    if isinstance(space, str):
        return SearchSpace.named(space, scale)
    result = SearchSpace.from_dict(space)
    if scale is not None and scale != result.scale:
        raise ConfigError(f"scale {scale!r} does not match the search space's scale {result.scale}")
    return result


@register_model("supernet")
def build_supernet(space: Mapping[str, Any] | str = "tiny", scale: int | None = None) -> SuperNet:
    """The supernet of `space`: a `SearchSpace.to_dict()` (robust in model files) or a named
    space ("tiny", "base-x2", ...). `scale` must agree with the space (or picks tiny's)."""
    return SuperNet(_space_arg(space, scale))


@register_model("subnet")
def build_subnet(config: Mapping[str, Any] | str | None = None, scale: int | None = None) -> SubNet:
    """A static sub-network from a config id or dict (fresh weights; load an extracted state
    dict into it). Default: the tiny space's smallest config."""
    cfg = SearchSpace.named("tiny", scale).smallest() if config is None else SubnetConfig.coerce(config)
    if scale is not None and scale != cfg.scale:
        raise ConfigError(f"scale {scale!r} does not match the config's scale {cfg.scale}")
    return SubNet(cfg)


def spread_configs(space: SearchSpace, n: int, seed: int = 0, candidates: int = 512,
                   lr_hw: tuple[int, int] = DEFAULT_LR_HW) -> list[SubnetConfig]:
    """`n` distinct configs from smallest to largest, evenly spaced in log MACs (for reports).

    Draws `candidates` random configs with a seeded local RNG and picks the one nearest to each
    log-MAC quantile; the ends are exactly `space.smallest()` and `space.largest()`.
    """
    import math
    import random

    if n < 2:
        raise ConfigError(f"spread needs at least 2 configs, got {n}")
    rng = random.Random(seed)
    pool = {c.id: c for c in (space.sample(rng) for _ in range(candidates))}
    lo, hi = space.smallest(), space.largest()
    pool.pop(lo.id, None)
    pool.pop(hi.id, None)
    logs = {cid: math.log(subnet_cost(c, lr_hw)[1]) for cid, c in pool.items()}
    a, b = math.log(subnet_cost(lo, lr_hw)[1]), math.log(subnet_cost(hi, lr_hw)[1])
    picked = [lo]
    for i in range(1, n - 1):
        goal = a + (b - a) * i / (n - 1)
        best = min((cid for cid in logs if cid not in {p.id for p in picked}), key=lambda cid: abs(logs[cid] - goal))
        picked.append(pool[best])
    return picked + [hi]
