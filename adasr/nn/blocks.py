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

The grammar and the shapes (`uses`) of each type are torch-free specs in `adasr.spec`; the types
here subclass them with the forward and replace them in the one registry.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from adasr import spec
from adasr.spec import (  # noqa: F401 - re-exported: the block API as it was before the spec split
    CONV,
    DW,
    DW_DIL,
    ESA_DOWN,
    ESA_POOLED,
    FC,
    BlockType,
    BlockVariant,
    Dims,
    Ops,
    all_tokens,
    block_codes,
    block_type,
    ca_uses,
    distill_width,
    esa_uses,
    esa_width,
    input_hw,
    parse_token,
    register_block,
    squeeze_width,
)

__all__ = ["DistillationBlock", "MixedResidualBlock", "RCAB", "ResidualBlock", "channel_attention", "spatial_attention"]

# -- attention paths (shared by block types; their shapes: `adasr.spec.ca_uses`, `esa_uses`) -----

def channel_attention(ops: Ops, x: torch.Tensor, contrast: bool) -> torch.Tensor:
    """RCAN's CA (mean pooled) or IMDN's CCA (contrast: std + mean pooled); (B,C,H,W) -> same."""
    pooled = x.mean(dim=(2, 3), keepdim=True)
    if contrast:
        var = (x - pooled).pow(2).mean(dim=(2, 3), keepdim=True)
        pooled = (var + 1e-8).sqrt() + pooled  # eps: sqrt has no finite gradient at 0
    return x * torch.sigmoid(ops["ca_fc2"](F.relu(ops["ca_fc1"](pooled))))


def spatial_attention(ops: Ops, x: torch.Tensor) -> torch.Tensor:
    """RFDN's ESA, light (one conv on the pooled map): (B,C,H,W) -> same. Needs H, W >= 3."""
    c1 = ops["esa_c1"](x)
    down = ops["esa_c2"](c1)
    pooled = F.max_pool2d(down, (min(7, down.shape[2]), min(7, down.shape[3])), stride=3)
    c3 = F.relu(ops["esa_c3"](pooled))
    c3 = F.interpolate(c3, size=x.shape[2:], mode="bilinear", align_corners=False)
    return x * torch.sigmoid(ops["esa_c4"](c3 + ops["esa_cf"](c1)))


def _attend(ops: Ops, x: torch.Tensor, attention: str | None) -> torch.Tensor:
    if attention == "ca":
        return channel_attention(ops, x, contrast=False)
    if attention == "cca":
        return channel_attention(ops, x, contrast=True)
    if attention == "esa":
        return spatial_attention(ops, x)
    return x


# -- the block types: the specs' forwards -----------------------------------------------------------

@register_block
class ResidualBlock(spec.ResidualBlock):
    """EDSR/WDSR residual block: x + conv_b(ReLU(conv_a(x))), conv_a widening to `mid`."""

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        # In place on fresh conv outputs (their backward needs no output): two fewer feature-map
        # allocations per block, which on a CPU cost as much as a small conv.
        y = ops["conv_b"](F.relu(ops["conv_a"](x), inplace=True))
        return y.add_(x) if skip else y


@register_block
class RCAB(spec.RCAB):
    """RCAN's residual channel-attention block: the residual block with CA on its branch."""

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        y = channel_attention(ops, ops["conv_b"](F.relu(ops["conv_a"](x))), contrast=False)
        return x + y if skip else y


@register_block
class DistillationBlock(spec.DistillationBlock):
    """RFDB/IMDN-style feature distillation, two stages (light):

    d1 = ReLU(dist_d1(x)), r1 = ReLU(conv_a(x) + x), d2 = ReLU(dist_d2(r1)),
    r2 = ReLU(conv_b(r1) + r1), y = attention(dist_fuse([d1, d2, r2])), out = x + y.
    """

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        d1 = F.relu(ops["dist_d1"](x))
        r1 = F.relu(ops["conv_a"](x) + x)
        d2 = F.relu(ops["dist_d2"](r1))
        r2 = F.relu(ops["conv_b"](r1) + r1)
        y = _attend(ops, ops["dist_fuse"](torch.cat((d1, d2, r2), dim=1)), v.attention)
        return x + y if skip else y


@register_block
class MixedResidualBlock(spec.MixedResidualBlock):
    """DLSR's mixed residual block with one op chosen: ReLU(op(x) + x)."""

    def forward(self, ops: Ops, x: torch.Tensor, v: BlockVariant, skip: bool) -> torch.Tensor:
        family = v.op[0]
        if family == "c":
            y = ops["conv_a"](x)
        elif family == "s":
            y = ops["sep_pw2"](ops["sep_dw2"](F.relu(ops["sep_pw1"](ops["sep_dw1"](x)))))
        else:
            y = ops["dil_pw"](ops["dil_dw"](x))
        return F.relu(y + x if skip else y)
