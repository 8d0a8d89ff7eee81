"""Elastic operations: one max-size weight per op, sliced (and kernel-transformed) per sub-network.

An elastic op stores the largest weight any sub-network needs at its place in the meta-graph.
A sub-network uses a `Use` of it: the first `out` output channels, the input-channel ranges
`in_ranges` (usually one prefix; several when the op reads a concatenation whose parts are
elastic), and a kernel size. Smaller kernels are the centre crop of the stored kernel passed
through a small learned transform matrix per size (once-for-all's elastic kernel), chained from
the largest size down: 7 -> 5 -> 3 -> 1. Transforms start as the identity.

Shapes: a `Use` of a conv maps (B, in_total, H, W) to (B, out, H', W') with H' from the stride,
padding and dilation of its `SlotSpec`; "same" padding (the default) keeps H' = H at stride 1.

No batch norm anywhere: BN hurts SR quality (it normalises away the contrast SR must keep) and an
elastic net would need separate statistics per sub-network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from adasr.spec import KINDS, SlotSpec, Use, conv_use, use_cost  # noqa: F401 - re-exported (torch-free spec)

__all__ = ["ElasticConv2d", "ElasticConvTranspose2d", "Plan", "elastic_op", "shrink_kernel", "slice_weight",
           "static_layer"]

# -- static layers ------------------------------------------------------------------------------

def static_layer(use: Use) -> nn.Module:
    """The plain torch layer a use becomes (fresh weights)."""
    s, k = use.spec, use.kernel
    if s.kind == "tconv":
        return nn.ConvTranspose2d(use.in_total, use.out, k, stride=s.stride, padding=use.padding(),
                                  output_padding=s.output_padding, bias=s.bias)
    groups = use.out if s.kind == "dw" else 1
    return nn.Conv2d(use.in_total, use.out, k, stride=s.stride, padding=use.padding(),
                     dilation=s.dilation, groups=groups, bias=s.bias)


# -- functional core (used by the ops below; differentiable w.r.t. weight and transforms) --------

def slice_weight(weight: torch.Tensor, use: Use) -> torch.Tensor:
    """Output prefix and input ranges of a stored weight (views unless ranges must be joined)."""
    kind = use.spec.kind
    if kind == "dw":
        return weight[: use.out]
    if kind == "tconv":  # (in, out, k, k)
        (a, b), = use.in_ranges
        return weight[a:b, : use.out]
    if len(use.in_ranges) == 1:
        (a, b), = use.in_ranges
        return weight[: use.out, a:b]
    return torch.cat([weight[: use.out, a:b] for a, b in use.in_ranges], dim=1)


def shrink_kernel(weight: torch.Tensor, kernel: int, sizes: Iterable[int],
                  transforms: nn.ParameterDict) -> torch.Tensor:
    """Centre-crop (..., K, K) down to (..., kernel, kernel), one size of `sizes` at a time,
    multiplying each crop's k*k taps by that size's transform matrix."""
    for size in sorted((s for s in sizes if kernel <= s < weight.shape[-1]), reverse=True):
        start = (weight.shape[-1] - size) // 2
        crop = weight[..., start:start + size, start:start + size]
        lead = crop.shape[:-2]
        weight = (crop.reshape(-1, size * size) @ transforms[f"k{size}"]).reshape(*lead, size, size)
    return weight


class ElasticConv2d(nn.Module):
    """Dense or depthwise conv with elastic in/out channels and elastic kernel size."""

    def __init__(self, spec: SlotSpec, in_max: int, out_max: int, kernels: Iterable[int]) -> None:
        super().__init__()
        if spec.kind not in ("conv", "dw"):
            raise ValueError(f"ElasticConv2d takes kind conv or dw, got {spec.kind!r}")
        self.spec = spec
        self.kernels = tuple(sorted(set(kernels)))
        self.in_max, self.out_max = in_max, out_max
        k = self.kernels[-1]
        per_out = 1 if spec.kind == "dw" else in_max
        self.weight = nn.Parameter(torch.empty(out_max, per_out, k, k))
        self.bias = nn.Parameter(torch.empty(out_max)) if spec.bias else None
        self.transforms = nn.ParameterDict({f"k{s}": nn.Parameter(torch.eye(s * s)) for s in self.kernels[:-1]})
        _init(self.weight, self.bias, fan_in=per_out * k * k)

    def weight_for(self, use: Use) -> torch.Tensor:
        weight = slice_weight(self.weight, use)
        if use.kernel != self.kernels[-1]:
            weight = shrink_kernel(weight, use.kernel, self.kernels, self.transforms)
        return weight

    def run(self, x: torch.Tensor, use: Use) -> torch.Tensor:
        bias = None if self.bias is None else self.bias[: use.out]
        groups = use.out if self.spec.kind == "dw" else 1
        return F.conv2d(x, self.weight_for(use), bias, self.spec.stride, use.padding(), self.spec.dilation, groups)

    def fits(self, use: Use) -> bool:
        ends_ok = all(0 <= a < b <= self.in_max for a, b in use.in_ranges)
        return use.spec == self.spec and use.out <= self.out_max and ends_ok and use.kernel in self.kernels

    def extract(self, use: Use) -> nn.Module:
        """A plain layer with this use's weights copied (kernel transforms baked in)."""
        return _extract(self, use)

    def extra_repr(self) -> str:
        return f"{self.spec.kind}, in_max={self.in_max}, out_max={self.out_max}, kernels={self.kernels}"


def _extract(op: ElasticConv2d | ElasticConvTranspose2d, use: Use) -> nn.Module:
    layer = static_layer(use)
    with torch.no_grad():
        layer.weight.copy_(op.weight_for(use))
        if op.bias is not None:
            layer.bias.copy_(op.bias[: use.out])
    return layer


class ElasticConvTranspose2d(nn.Module):
    """Transposed conv with elastic input channels (fixed output channels and kernel)."""

    def __init__(self, spec: SlotSpec, in_max: int, out_max: int, kernels: Iterable[int]) -> None:
        super().__init__()
        kernels = tuple(sorted(set(kernels)))
        if spec.kind != "tconv" or len(kernels) != 1:
            raise ValueError("ElasticConvTranspose2d takes kind tconv and one kernel size")
        self.spec, self.kernels, self.in_max, self.out_max = spec, kernels, in_max, out_max
        k = kernels[0]
        self.weight = nn.Parameter(torch.empty(in_max, out_max, k, k))
        self.bias = nn.Parameter(torch.empty(out_max)) if spec.bias else None
        _init(self.weight, self.bias, fan_in=out_max * k * k)  # what nn.ConvTranspose2d does

    def weight_for(self, use: Use) -> torch.Tensor:
        return slice_weight(self.weight, use)

    def run(self, x: torch.Tensor, use: Use) -> torch.Tensor:
        bias = None if self.bias is None else self.bias[: use.out]
        s = self.spec
        return F.conv_transpose2d(x, self.weight_for(use), bias, s.stride, use.padding(), s.output_padding)

    def fits(self, use: Use) -> bool:
        (a, b), = use.in_ranges
        return (use.spec == self.spec and use.out == self.out_max and 0 == a < b <= self.in_max
                and use.kernel in self.kernels)

    def extract(self, use: Use) -> nn.Module:
        return _extract(self, use)

    def extra_repr(self) -> str:
        return f"tconv, in_max={self.in_max}, out={self.out_max}, kernel={self.kernels[0]}"


def elastic_op(spec: SlotSpec, in_max: int, out_max: int, kernels: Iterable[int]) -> nn.Module:
    """The elastic module for a slot of the meta-graph."""
    cls = ElasticConvTranspose2d if spec.kind == "tconv" else ElasticConv2d
    return cls(spec, in_max, out_max, kernels)


class Plan(NamedTuple):
    """A routed op: which elastic module and which use of it. Calling it runs the op."""

    op: nn.Module
    use: Use

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.run(x, self.use)


def _init(weight: nn.Parameter, bias: nn.Parameter | None, fan_in: int) -> None:
    # PyTorch's default conv init, on the max-size weight.
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)
