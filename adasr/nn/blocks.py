"""Block types of the SR meta-graph: one decorator registry, one forward per type.

A block type says which ops ("slots") it uses at its body position, with which shapes (`uses`),
and how it computes (`forward`). The same `forward` runs in the supernet (ops are routed slices
of shared weights) and in an extracted static sub-network (ops are plain `nn.Conv2d`s), so the
two cannot drift apart.

Slots are named per position and shared by every type that uses them, as in DySR's meta-graph:
the k x k body convs `conv_a` (width -> mid) and `conv_b` (mid -> width) serve the residual
block, the RCAB, the distillation block's two shallow residual convs and the mixed block's plain
convs; the channel-attention FCs serve RCAB's CA and the distillation block's CCA.

Tokens (used in `SubnetConfig.blocks`): ``code[.op][+attention]``

- ``r``  residual block (EDSR; WDSR's wide activation via the expansion): conv_a, ReLU, conv_b.
- ``c``  RCAB: the residual block with its channel-attention path switched on. Switching CA off
  gives exactly ``r`` (every weight is shared), so the space lists that variant once, as ``r``.
- ``i``, ``i+esa``, ``i+cca``  RFDB/IMDN-style distillation block (two stages, kept light), with
  attention off, ESA (RFDN's enhanced spatial attention) or CCA (IMDN's contrast-aware CA).
- ``m.<op>``  DLSR's mixed residual block, op one of c1 c3 c5 (conv), s3 s5 s7 (separable conv:
  dw-pw-ReLU-dw-pw as in DARTS/DLSR), d3 d5 (dilated depthwise conv, dilation 2, then pw).

The config's `skip` flag turns every block's identity path (x + f(x)) on or off; the
distillation block's inner shallow-residual connections are part of its cell and stay.
No batch norm: see `adasr.nn.elastic`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import ClassVar, NamedTuple

import torch
from torch.nn import functional as F

from adasr.nn.elastic import SlotSpec, Use, conv_use

Ops = Mapping[str, Callable[[torch.Tensor], torch.Tensor]]

CONV = SlotSpec()
FC = SlotSpec(at="global")  # 1x1 conv on a globally pooled map
DW = SlotSpec(kind="dw", bias=False)  # the following pointwise conv carries the bias
DW_DIL = SlotSpec(kind="dw", dilation=2, bias=False)
ESA_DOWN = SlotSpec(stride=2, padding=0)
ESA_POOLED = SlotSpec(at="esa_pool")


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
    """Base of the registered block types (stateless; one instance per type)."""

    code: ClassVar[str]
    title: ClassVar[str]
    ops: ClassVar[tuple[str, ...]] = ()  # op choices (required iff non-empty)
    attentions: ClassVar[tuple[str | None, ...]] = (None,)

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        """Slot -> use at active dims `d`; `m` are the space's maximum dims (for range offsets)."""
        raise NotImplementedError

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        raise NotImplementedError

    def tokens(self) -> list[str]:
        return [BlockVariant(self.code, op, att).token for op in (self.ops or (None,)) for att in self.attentions]


_BLOCK_TYPES: dict[str, BlockType] = {}


def register_block(cls: type[BlockType]) -> type[BlockType]:
    """Class decorator: register a block type under its `code` (codes are unique)."""
    if cls.code in _BLOCK_TYPES:
        raise ValueError(f"block type {cls.code!r} is registered twice")
    _BLOCK_TYPES[cls.code] = cls()
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


# -- attention paths (shared by block types) -------------------------------------------------------

def ca_uses(width: int) -> dict[str, Use]:
    sq = squeeze_width(width)
    return {"ca_fc1": conv_use(sq, width, 1, FC), "ca_fc2": conv_use(width, sq, 1, FC)}


def channel_attention(ops: Ops, x: torch.Tensor, contrast: bool) -> torch.Tensor:
    """RCAN's CA (mean pooled) or IMDN's CCA (contrast: std + mean pooled); (B,C,H,W) -> same."""
    pooled = x.mean(dim=(2, 3), keepdim=True)
    if contrast:
        var = (x - pooled).pow(2).mean(dim=(2, 3), keepdim=True)
        pooled = (var + 1e-8).sqrt() + pooled  # eps: sqrt has no finite gradient at 0
    return x * torch.sigmoid(ops["ca_fc2"](F.relu(ops["ca_fc1"](pooled))))


def esa_uses(width: int) -> dict[str, Use]:
    f = esa_width(width)
    return {"esa_c1": conv_use(f, width, 1), "esa_c2": conv_use(f, f, 3, ESA_DOWN),
            "esa_c3": conv_use(f, f, 3, ESA_POOLED), "esa_cf": conv_use(f, f, 1),
            "esa_c4": conv_use(width, f, 1)}


def spatial_attention(ops: Ops, x: torch.Tensor) -> torch.Tensor:
    """RFDN's ESA, light (one conv on the pooled map): (B,C,H,W) -> same. Needs H, W >= 3."""
    c1 = ops["esa_c1"](x)
    down = ops["esa_c2"](c1)
    pooled = F.max_pool2d(down, (min(7, down.shape[2]), min(7, down.shape[3])), stride=3)
    c3 = F.relu(ops["esa_c3"](pooled))
    c3 = F.interpolate(c3, size=x.shape[2:], mode="bilinear", align_corners=False)
    return x * torch.sigmoid(ops["esa_c4"](c3 + ops["esa_cf"](c1)))


def _attention_uses(attention: str | None, width: int) -> dict[str, Use]:
    if attention in ("ca", "cca"):
        return ca_uses(width)
    if attention == "esa":
        return esa_uses(width)
    return {}


def _attend(ops: Ops, x: torch.Tensor, attention: str | None) -> torch.Tensor:
    if attention == "ca":
        return channel_attention(ops, x, contrast=False)
    if attention == "cca":
        return channel_attention(ops, x, contrast=True)
    if attention == "esa":
        return spatial_attention(ops, x)
    return x


# -- the block types -------------------------------------------------------------------------------

@register_block
class ResidualBlock(BlockType):
    """EDSR/WDSR residual block: x + conv_b(ReLU(conv_a(x))), conv_a widening to `mid`."""

    code = "r"
    title = "residual"

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        return {"conv_a": conv_use(d.mid, d.width, d.kernel), "conv_b": conv_use(d.width, d.mid, d.kernel)}

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        y = ops["conv_b"](F.relu(ops["conv_a"](x)))
        return x + y if skip else y


@register_block
class RCAB(ResidualBlock):
    """RCAN's residual channel-attention block: the residual block with CA on its branch."""

    code = "c"
    title = "RCAB"

    def uses(self, v: BlockVariant, d: Dims, m: Dims) -> dict[str, Use]:
        return super().uses(v, d, m) | ca_uses(d.width)

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        y = channel_attention(ops, ops["conv_b"](F.relu(ops["conv_a"](x))), contrast=False)
        return x + y if skip else y


@register_block
class DistillationBlock(BlockType):
    """RFDB/IMDN-style feature distillation, two stages (light):

    d1 = ReLU(dist_d1(x)), r1 = ReLU(conv_a(x) + x), d2 = ReLU(dist_d2(r1)),
    r2 = ReLU(conv_b(r1) + r1), y = attention(dist_fuse([d1, d2, r2])), out = x + y.
    """

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
        return uses | _attention_uses(v.attention, c)

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        d1 = F.relu(ops["dist_d1"](x))
        r1 = F.relu(ops["conv_a"](x) + x)
        d2 = F.relu(ops["dist_d2"](r1))
        r2 = F.relu(ops["conv_b"](r1) + r1)
        y = _attend(ops, ops["dist_fuse"](torch.cat((d1, d2, r2), dim=1)), v.attention)
        return x + y if skip else y


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

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        family = v.op[0]
        if family == "c":
            y = ops["conv_a"](x)
        elif family == "s":
            y = ops["sep_pw2"](ops["sep_dw2"](F.relu(ops["sep_pw1"](ops["sep_dw1"](x)))))
        else:
            y = ops["dil_pw"](ops["dil_dw"](x))
        return F.relu(y + x if skip else y)
