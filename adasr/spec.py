"""The architecture spec: block-token grammar, op shapes and analytic cost, without torch.

This is the layer under `adasr.space`: what a sub-network *is* (which ops at which shapes), as
plain values, so that validating a config, ranking choices by cost and counting parameters and
MACs never import torch. How a block *computes* (its forward) lives in `adasr.nn.blocks`, whose
block types subclass the specs here; `adasr.nn.elastic` turns a `Use` into sliced weights.

Tokens (used in `SubnetConfig.blocks`): ``code[.op][+attention]``, see `adasr.nn.blocks`.

Shapes: a `Use` of a conv maps (B, in_total, H, W) to (B, out, H', W') with H' from the stride,
padding and dilation of its `SlotSpec`; "same" padding (the default) keeps H' = H at stride 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:  # annotations only: this module never imports torch
    from adasr.space import SubnetConfig

__all__ = ["BlockType", "BlockVariant", "CONV", "DEFAULT_LR_HW", "DW", "DW_DIL", "Dims", "DistillationBlock",
           "ESA_DOWN", "ESA_POOLED", "FC", "KINDS", "Layout", "MixedResidualBlock", "Ops", "RCAB", "ResidualBlock",
           "SlotSpec", "Use", "all_tokens", "attention_uses", "block_codes", "block_type", "ca_uses", "conv_use",
           "distill_width", "esa_uses", "esa_width", "input_hw", "layout", "named_uses", "op_keys", "parse_token",
           "register_block", "shared_ops", "squeeze_width", "subnet_cost", "upsampler_use", "use_cost"]

KINDS = ("conv", "dw", "tconv")
DEFAULT_LR_HW = (180, 320)  # (H, W): 320x180 LR frames

Ops = Mapping[str, Callable[[Any], Any]]  # slot name -> op on a (B, C, H, W) tensor


# -- ops: what does not change between sub-networks, and one sub-network's use of it -------------

class SlotSpec(NamedTuple):
    """What does not change between the sub-networks that use an op.

    kind: "conv" (dense), "dw" (depthwise: groups = channels) or "tconv" (transposed conv).
    padding: None means "same" for the active kernel (dilation * (k // 2)).
    at: which resolution the op's input has, for cost accounting ("lr": the LR input size,
      "global": 1x1 after global pooling, "esa_pool": ESA's pooled map; see `input_hw`).
    """

    kind: str = "conv"
    stride: int = 1
    dilation: int = 1
    padding: int | None = None
    output_padding: int = 0
    bias: bool = True
    at: str = "lr"


class Use(NamedTuple):
    """One sub-network's use of an op: output channels, input ranges, kernel size."""

    spec: SlotSpec
    out: int
    in_ranges: tuple[tuple[int, int], ...]
    kernel: int

    @property
    def in_total(self) -> int:
        return sum(b - a for a, b in self.in_ranges)

    def padding(self) -> int:
        s = self.spec
        return s.dilation * (self.kernel // 2) if s.padding is None else s.padding


def conv_use(out: int, cin: int, kernel: int, spec: SlotSpec | None = None, start: int = 0) -> Use:
    """Shorthand: a use reading input channels [start, start + cin)."""
    return Use(spec or SlotSpec(), out, ((start, start + cin),), kernel)


def use_cost(use: Use, in_hw: tuple[int, int]) -> tuple[int, int]:
    """(params, MACs) of the static layer a use becomes, for one input of spatial size `in_hw`.

    MACs count multiply-accumulates of the weights only (no bias adds), the way a forward hook
    on Conv2d / ConvTranspose2d counts them.
    """
    s, k, h, w = use.spec, use.kernel, in_hw[0], in_hw[1]
    cin = use.in_total
    if s.kind == "tconv":
        weights = cin * use.out * k * k
        return weights + (use.out if s.bias else 0), h * w * weights
    per_out = 1 if s.kind == "dw" else cin
    weights = use.out * per_out * k * k
    pad = use.padding()
    oh = (h + 2 * pad - s.dilation * (k - 1) - 1) // s.stride + 1
    ow = (w + 2 * pad - s.dilation * (k - 1) - 1) // s.stride + 1
    return weights + (use.out if s.bias else 0), oh * ow * weights


CONV = SlotSpec()
FC = SlotSpec(at="global")  # 1x1 conv on a globally pooled map
DW = SlotSpec(kind="dw", bias=False)  # the following pointwise conv carries the bias
DW_DIL = SlotSpec(kind="dw", dilation=2, bias=False)
ESA_DOWN = SlotSpec(stride=2, padding=0)
ESA_POOLED = SlotSpec(at="esa_pool")


# -- block types: grammar and shapes -------------------------------------------------------------

class Dims(NamedTuple):
    """Active (or maximum) widths of a block: features, mid (expanded) and kernel size."""

    width: int
    mid: int
    kernel: int


class BlockVariant(NamedTuple):
    code: str
    op: str | None
    attention: str | None

    @property
    def token(self) -> str:
        return self.code + (f".{self.op}" if self.op else "") + (f"+{self.attention}" if self.attention else "")


class BlockType:
    """Base of the registered block types (stateless; one instance per type).

    A spec gives the grammar (`code`, `ops`, `attentions`) and the shapes (`uses`); the
    subclass in `adasr.nn.blocks` adds `forward` and replaces the spec in the registry."""

    code: ClassVar[str]
    title: ClassVar[str]
    ops: ClassVar[tuple[str, ...]] = ()  # op choices (required iff non-empty)
    attentions: ClassVar[tuple[str | None, ...]] = (None,)

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        """Slot -> use at active dims `d`; `m` are the space's maximum dims (for range offsets)."""
        raise NotImplementedError

    def forward(self, ops: Ops, x: Any, v: BlockVariant, skip: bool) -> Any:
        raise NotImplementedError(f"block type {self.code!r}: import adasr.nn.blocks to run blocks")

    def tokens(self) -> list[str]:
        return [BlockVariant(self.code, op, att).token for op in (self.ops or (None,)) for att in self.attentions]


_BLOCK_TYPES: dict[str, BlockType] = {}


def register_block(cls: type[BlockType]) -> type[BlockType]:
    """Class decorator: register a block type under its `code` (codes are unique). A subclass of
    the registered type may replace it (how `adasr.nn.blocks` adds the forwards to the specs)."""
    current = _BLOCK_TYPES.get(cls.code)
    if current is not None and not issubclass(cls, type(current)):
        raise ValueError(f"block type {cls.code!r} is registered twice")
    _BLOCK_TYPES[cls.code] = cls()  # a replaced code keeps its place in the order
    parse_token.cache_clear()
    return cls


def block_type(code: str) -> BlockType:
    return _BLOCK_TYPES[code]


def block_codes() -> list[str]:
    return list(_BLOCK_TYPES)


def all_tokens() -> list[str]:
    """Every token of every registered type."""
    return [t for bt in _BLOCK_TYPES.values() for t in bt.tokens()]


@lru_cache(maxsize=1024)
def parse_token(token: str) -> BlockVariant:
    """``code[.op][+attention]`` -> BlockVariant; ValueError naming what is wrong."""
    rest, _, att = token.partition("+")
    code, _, op = rest.partition(".")
    bt = _BLOCK_TYPES.get(code)
    if bt is None:
        raise ValueError(f"unknown block type {code!r} in {token!r}; known: {', '.join(_BLOCK_TYPES)}")
    if bt.ops and op not in bt.ops:
        raise ValueError(f"block {token!r} needs an op, one of {', '.join(f'{code}.{o}' for o in bt.ops)}")
    if not bt.ops and op:
        raise ValueError(f"block type {code!r} takes no op, got {token!r}")
    attention = att or None
    if attention not in bt.attentions:
        allowed = ", ".join(a or "none" for a in bt.attentions)
        raise ValueError(f"block type {code!r} takes attention {allowed}, got {token!r}")
    return BlockVariant(code, op or None, attention)


# -- widths derived from the block width -----------------------------------------------------------

def squeeze_width(width: int) -> int:
    """Channel-attention bottleneck (RCAN uses width/16; at our small widths width/4)."""
    return max(2, width // 4)


def esa_width(width: int) -> int:
    return max(2, width // 4)


def distill_width(mid: int) -> int:
    """Channels each distillation step keeps (RFDB: half the width at expansion 1)."""
    return max(1, mid // 2)


def input_hw(at: str, hw: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of an op's input, from the LR size, for cost accounting (see SlotSpec.at)."""
    h, w = hw
    if at == "lr":
        return h, w
    if at == "global":
        return 1, 1
    if at == "esa_pool":
        h2, w2 = (h - 3) // 2 + 1, (w - 3) // 2 + 1  # ESA_DOWN: 3x3, stride 2, no padding
        return (h2 - min(7, h2)) // 3 + 1, (w2 - min(7, w2)) // 3 + 1
    raise ValueError(f"unknown op position {at!r}")


def ca_uses(width: int) -> dict[str, Use]:
    sq = squeeze_width(width)
    return {"ca_fc1": conv_use(sq, width, 1, FC), "ca_fc2": conv_use(width, sq, 1, FC)}


def esa_uses(width: int) -> dict[str, Use]:
    f = esa_width(width)
    return {"esa_c1": conv_use(f, width, 1), "esa_c2": conv_use(f, f, 3, ESA_DOWN),
            "esa_c3": conv_use(f, f, 3, ESA_POOLED), "esa_cf": conv_use(f, f, 1),
            "esa_c4": conv_use(width, f, 1)}


def attention_uses(attention: str | None, width: int) -> dict[str, Use]:
    if attention in ("ca", "cca"):
        return ca_uses(width)
    if attention == "esa":
        return esa_uses(width)
    return {}


# -- the block type specs (forwards in adasr.nn.blocks) --------------------------------------------

@register_block
class ResidualBlock(BlockType):
    """EDSR/WDSR residual block: x + conv_b(ReLU(conv_a(x))), conv_a widening to `mid`."""

    code = "r"
    title = "residual"

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        return {"conv_a": conv_use(d.mid, d.width, d.kernel), "conv_b": conv_use(d.width, d.mid, d.kernel)}


@register_block
class RCAB(ResidualBlock):
    """RCAN's residual channel-attention block: the residual block with CA on its branch."""

    code = "c"
    title = "RCAB"

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        return super().uses(v, d, m) | ca_uses(d.width)


@register_block
class DistillationBlock(BlockType):
    """RFDB/IMDN-style feature distillation, two stages (light), see `adasr.nn.blocks`."""

    code = "i"
    title = "distillation"
    attentions = (None, "esa", "cca")

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        c, dc, dcm = d.width, distill_width(d.mid), distill_width(m.mid)
        # dist_fuse reads the concatenation [d1, d2, r2]; in the stored weight the parts sit at
        # the max widths' offsets, so a narrower sub-network reads three ranges.
        fuse = Use(CONV, c, ((0, dc), (dcm, dcm + dc), (2 * dcm, 2 * dcm + c)), 1)
        uses = {"dist_d1": conv_use(dc, c, 1), "dist_d2": conv_use(dc, c, 1),
                "conv_a": conv_use(c, c, d.kernel), "conv_b": conv_use(c, c, d.kernel), "dist_fuse": fuse}
        return uses | attention_uses(v.attention, c)


@register_block
class MixedResidualBlock(BlockType):
    """DLSR's mixed residual block with one op chosen: ReLU(op(x) + x)."""

    code = "m"
    title = "mixed residual (DLSR)"
    ops = ("c1", "c3", "c5", "s3", "s5", "s7", "d3", "d5")

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        c, family, k = d.width, v.op[0], int(v.op[1:])
        if family == "c":
            return {"conv_a": conv_use(c, c, k)}
        if family == "s":
            return {"sep_dw1": conv_use(c, c, k, DW), "sep_pw1": conv_use(c, c, 1),
                    "sep_dw2": conv_use(c, c, k, DW), "sep_pw2": conv_use(c, c, 1)}
        return {"dil_dw": conv_use(c, c, k, DW_DIL), "dil_pw": conv_use(c, c, 1)}


# -- layout of a sub-network: which uses a config makes (routing, static sub-network, cost) -------

class Layout(NamedTuple):
    head: Use
    blocks: tuple[tuple[BlockVariant, dict[str, Use]], ...]
    tail: Use
    up: Use


def upsampler_use(kind: str, width: int, scale: int) -> Use:
    if kind == "tc":
        # Exact s*H output with kernel 2s: (H-1)s - 2p + 2s + op = sH  <=>  2p - op = s.
        pad = (scale + 1) // 2
        spec = SlotSpec(kind="tconv", stride=scale, padding=pad, output_padding=2 * pad - scale)
        return conv_use(3, width, 2 * scale, spec)
    return conv_use(3 * scale * scale, width, 3)


def layout(cfg: SubnetConfig, max_dims: Dims | None = None) -> Layout:
    """The uses of `cfg`; `max_dims` (the supernet's) place concatenated parts in stored weights."""
    d = Dims(cfg.width, cfg.mid, cfg.kernel)
    m = max_dims or d
    blocks = []
    for token in cfg.blocks:
        v = parse_token(token)
        blocks.append((v, block_type(v.code).uses(v, d, m)))
    return Layout(conv_use(cfg.width, 3, 3), tuple(blocks), conv_use(cfg.width, cfg.width, 3),
                  upsampler_use(cfg.upsampler, cfg.width, cfg.scale))


def named_uses(lay: Layout) -> list[tuple[tuple, Use]]:
    out = [(("head",), lay.head)]
    for i, (_, uses) in enumerate(lay.blocks):
        out += [(("body", i, name), use) for name, use in uses.items()]
    return out + [(("tail",), lay.tail), (("up",), lay.up)]


def subnet_cost(cfg: SubnetConfig, lr_hw: tuple[int, int] = DEFAULT_LR_HW) -> tuple[int, int]:
    """(params, MACs) of the static sub-network `cfg` for one LR frame of size `lr_hw` (H, W).

    Analytic: counts every conv / transposed conv weight multiply-accumulate (head, blocks,
    tail, upsampler); pooling, interpolation and element-wise ops are not counted.
    """
    params = macs = 0
    for _, use in named_uses(layout(cfg)):
        p, m = use_cost(use, input_hw(use.spec.at, lr_hw))
        params, macs = params + p, macs + m
    return params, macs


def op_keys(cfg: SubnetConfig) -> frozenset[tuple]:
    """The ops `cfg` runs, as (place, slot, out, in, kernel): equal keys are one shared op."""
    keys = set()
    for place, use in named_uses(layout(cfg)):
        if place == ("up",):
            place = ("up", cfg.upsampler)
        keys.add((*place, use.out, use.in_total, use.kernel))
    return frozenset(keys)


def shared_ops(a: SubnetConfig, b: SubnetConfig) -> int:
    """DySR's mu for a pair: how many ops (same place, slot, shape and kernel) `a` and `b` share."""
    return len(op_keys(a) & op_keys(b))
