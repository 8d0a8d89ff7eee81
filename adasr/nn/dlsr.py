"""DLSR's networks: the search supernetwork (cell- and network-level) and the derived network.

Paper: DLSR, differentiable NAS for lightweight SR (papers/dlsr-*, sections III-IV).

Cell (RFDB-style feature distillation around three Mixed Residual Blocks, then ESA), width C,
distilled width C/2, for an input x (B, C, H, W)::

    d1 = ReLU(dist1(x))   r1 = ReLU(f1(x) + x)         f_k: the k-th mixed layer (search) or
    d2 = ReLU(dist2(r1))  r2 = ReLU(f2(r1) + r1)            its chosen operation (derived)
    d3 = ReLU(dist3(r2))  r3 = ReLU(f3(r2) + r2)
    r4 = ReLU(last(r3))                                 3x3, C -> C/2 (RFDB's c4)
    out = ESA(fuse([d1, d2, d3, r4]))                   1x1, 2C -> C; RFDN's ESA

Each mixed layer is Eq. 1: sum over the operations of softmax(alpha)_o * o(x), operations from
Table I (`OPS`): conv 1x1/3x3/5x5/7x7 (``c1 c3 c5 c7``), separable conv 3x3/5x5/7x7 (``s3 s5
s7``: dw-pw-ReLU-dw-pw, as DARTS' sep_conv, Table I's parameter counts) and dilated conv 3x3/5x5
(``d3 d5``: depthwise, dilation 2, then pointwise). The names match the supernet's ``m.<op>``
block (`adasr.nn.blocks`), which lacks ``c7``.

Network, LR input x (B, 3, H, W) in [0, 1]::

    x0 = head(x)                                        3x3, 3 -> C
    I_j = g(softmax(beta_j)_i * x_i, i < j)             Eq. 2: concat + 1x1 conv over x0..x_{j-1}
    x_j = cell_j(I_j)                                   (cell 1 reads x0 alone)
    y = conv3(ReLU(fuse([x_1, ..., x_N]))) + x0         every cell feeds the last convs
    out = pixel_shuffle(up(y)) [+ bicubic(x)]           the bicubic global skip is optional

The derived network (`DLSRNet`) keeps one operation per mixed layer and, per cell, the inputs the
genotype names (the top-2 betas; one input means no 1x1 conv). DLSR-B is the fixed chain
(cell j reads x_{j-1} alone). A genotype is a JSON value (`Genotype`), validated before anything
is built; the registry builds ``dlsr`` from it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from adasr._jsonfile import check_header, header
from adasr.errors import InputError, ModelError
from adasr.nn.blocks import esa_width, spatial_attention
from adasr.nn.registry import register_model

__all__ = ["Cell", "CellGene", "DLSRNet", "DLSRSearchNet", "GENOTYPE_KIND", "GENOTYPE_SCHEMA", "Genotype",
           "LAYERS_PER_CELL", "MAX_CELLS", "MAX_GENOTYPE_BYTES", "MixedLayer", "OPS", "OP_TITLES", "as_genotype",
           "chain_genotype", "dlsr", "make_op", "op_params", "parse_genotype_text", "read_genotype"]

OPS: tuple[str, ...] = ("c1", "c3", "c5", "c7", "s3", "s5", "s7", "d3", "d5")
OP_TITLES = {"c1": "conv 1x1", "c3": "conv 3x3", "c5": "conv 5x5", "c7": "conv 7x7", "s3": "sep 3x3",
             "s5": "sep 5x5", "s7": "sep 7x7", "d3": "dil 3x3", "d5": "dil 5x5"}
LAYERS_PER_CELL = 3

GENOTYPE_KIND = "adasr.dlsr-genotype"
GENOTYPE_SCHEMA = 1
MAX_CELLS = 32
MIN_WIDTH, MAX_WIDTH = 4, 256
MAX_GENOTYPE_BYTES = 1 << 20
_GENOTYPE_KEYS = {"kind", "schema_version", "width", "cells", "network_level", "info"}


# -- operations -------------------------------------------------------------------------------------

def make_op(name: str, width: int) -> nn.Module:
    """One candidate operation (B, C, H, W) -> (B, C, H, W), C = `width`."""
    family, k = name[0], int(name[1:])
    c = width
    if family == "c":
        return nn.Conv2d(c, c, k, padding=k // 2)
    if family == "s":
        return nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False), nn.Conv2d(c, c, 1),
                             nn.ReLU(), nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False), nn.Conv2d(c, c, 1))
    if family == "d":
        return nn.Sequential(nn.Conv2d(c, c, k, padding=k - 1, dilation=2, groups=c, bias=False), nn.Conv2d(c, c, 1))
    raise ValueError(f"unknown DLSR operation {name!r}; known: {', '.join(OPS)}")


def op_params(name: str, width: int) -> int:
    """Parameters of operation `name` at `width` (weights and biases)."""
    return sum(p.numel() for p in make_op(name, width).parameters())


class MixedLayer(nn.Module):
    """Eq. 1: all operations side by side; forward takes the softmax weights (len(ops),)."""

    def __init__(self, width: int, ops: Sequence[str] = OPS) -> None:
        super().__init__()
        self.names = tuple(ops)
        self.ops = nn.ModuleList(make_op(o, width) for o in self.names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = weights[0] * self.ops[0](x)
        for w, op in zip(weights[1:], self.ops[1:], strict=True):
            out = out + w * op(x)
        return out


class Cell(nn.Module):
    """RFDB-style cell around three (mixed or fixed) layers; see the module docstring."""

    def __init__(self, width: int, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(layers) != LAYERS_PER_CELL:
            raise ValueError(f"a cell has {LAYERS_PER_CELL} layers, got {len(layers)}")
        c, dc = width, max(1, width // 2)
        self.layers = nn.ModuleList(layers)
        self.dist = nn.ModuleList(nn.Conv2d(c, dc, 1) for _ in range(LAYERS_PER_CELL))
        self.last = nn.Conv2d(c, dc, 3, padding=1)  # RFDB's c4
        self.fuse = nn.Conv2d(dc * (LAYERS_PER_CELL + 1), c, 1)
        f = esa_width(c)
        self.esa = nn.ModuleDict({
            "esa_c1": nn.Conv2d(c, f, 1), "esa_c2": nn.Conv2d(f, f, 3, stride=2),
            "esa_c3": nn.Conv2d(f, f, 3, padding=1), "esa_cf": nn.Conv2d(f, f, 1), "esa_c4": nn.Conv2d(f, c, 1)})

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """`weights` (3, len(ops)): softmax(alpha) of the mixed layers; None for fixed layers."""
        distilled, r = [], x
        for k, (dist, layer) in enumerate(zip(self.dist, self.layers, strict=True)):
            distilled.append(F.relu(dist(r)))
            y = layer(r) if weights is None else layer(r, weights[k])
            r = F.relu(y + r)
        distilled.append(F.relu(self.last(r)))
        return spatial_attention(self.esa, self.fuse(torch.cat(distilled, dim=1)))


class _Frame(nn.Module):
    """Head, final fusion, long skip and upsampler shared by both networks."""

    def __init__(self, scale: int, width: int, cells: int, global_skip: bool) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if not MIN_WIDTH <= width <= MAX_WIDTH:
            raise ValueError(f"width must be in {MIN_WIDTH}..{MAX_WIDTH}, got {width}")
        if not 1 <= cells <= MAX_CELLS:
            raise ValueError(f"cells must be in 1..{MAX_CELLS}, got {cells}")
        self.scale, self.width, self.global_skip = scale, width, bool(global_skip)
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.fuse = nn.Conv2d(width * cells, width, 1)
        self.body_tail = nn.Conv2d(width, width, 3, padding=1)
        self.up = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)

    def finish(self, x: torch.Tensor, x0: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
        y = self.body_tail(F.relu(self.fuse(torch.cat(outs, dim=1)))) + x0
        out = F.pixel_shuffle(self.up(y), self.scale)
        if self.global_skip:
            out = out + F.interpolate(x, size=out.shape[-2:], mode="bicubic", align_corners=False)
        return out


class DLSRSearchNet(_Frame):
    """The continuous supernetwork: alpha (cells, 3, ops) and, with `network_level`, one beta
    vector per cell j >= 2 over its j predecessors. `weight_parameters()` are theta,
    `arch_parameters()` are A = [alpha, beta]."""

    def __init__(self, scale: int, width: int = 48, cells: int = 6, *, network_level: bool = True,
                 global_skip: bool = True, ops: Sequence[str] = OPS, seed: int = 0, init_scale: float = 1e-3) -> None:
        super().__init__(scale, width, cells, global_skip)
        unknown = [o for o in ops if o not in OPS]
        if unknown or len(set(ops)) != len(ops) or not ops:
            raise ValueError(f"ops must be distinct names from {', '.join(OPS)}, got {list(ops)}")
        self.op_names, self.network_level, self.n_cells = tuple(ops), bool(network_level), cells
        self.cells = nn.ModuleList(Cell(width, [MixedLayer(width, ops) for _ in range(LAYERS_PER_CELL)])
                                   for _ in range(cells))
        # Eq. 2's g: concatenation of the weighted predecessors, then 1x1 conv (cell 1: x0 alone).
        self.aggregate = nn.ModuleList(nn.Conv2d(width * j, width, 1) for j in range(2, cells + 1)) \
            if network_level else nn.ModuleList()
        gen = torch.Generator().manual_seed(seed)
        self.alpha = nn.Parameter(init_scale * torch.randn(cells, LAYERS_PER_CELL, len(ops), generator=gen))
        self.betas = nn.ParameterList(nn.Parameter(init_scale * torch.randn(j, generator=gen))
                                      for j in range(2, cells + 1)) if network_level else nn.ParameterList()
        sizes = torch.tensor([float(op_params(o, width)) for o in ops])
        self.register_buffer("op_share", sizes / sizes.sum(), persistent=False)  # p_o / sum_c p_c

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, *self.betas]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def param_loss(self) -> torch.Tensor:
        """Eq. 9 summed over the mixed layers: sum_o p_o / sum_c p_c * softmax(alpha)_o."""
        return (self.alpha.softmax(dim=-1) * self.op_share).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.alpha.softmax(dim=-1)
        x0 = self.head(x)
        feats = [x0]
        for j, cell in enumerate(self.cells, start=1):
            if j == 1 or not self.network_level:
                inp = feats[-1]
            else:
                b = self.betas[j - 2].softmax(dim=0)
                inp = self.aggregate[j - 2](torch.cat([b[i] * f for i, f in enumerate(feats)], dim=1))
            feats.append(cell(inp, weights[j - 1]))
        return self.finish(x, x0, feats[1:])

    def derive(self, top: int = 2) -> Genotype:
        """The strongest operation per mixed layer; per cell the `top` largest betas (in order)."""
        with torch.no_grad():
            best = self.alpha.argmax(dim=-1).tolist()
            cells = []
            for j in range(1, self.n_cells + 1):
                if j == 1 or not self.network_level:
                    inputs = [j - 1]
                else:
                    order = torch.argsort(self.betas[j - 2], descending=True, stable=True).tolist()
                    inputs = sorted(order[:top])
                cells.append(CellGene(tuple(self.op_names[k] for k in best[j - 1]), tuple(inputs)))
        return Genotype(self.width, tuple(cells), self.network_level)


# -- genotypes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellGene:
    ops: tuple[str, ...]     # one operation per mixed layer
    inputs: tuple[int, ...]  # indices into [x0, x_1, ..., x_{j-1}] for cell j


@dataclass(frozen=True)
class Genotype:
    """A derived DLSR architecture: width, per cell its three operations and its inputs."""

    width: int
    cells: tuple[CellGene, ...]
    network_level: bool = True
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {**header(GENOTYPE_KIND, GENOTYPE_SCHEMA), "width": self.width,
                "network_level": self.network_level,
                "cells": [{"ops": list(c.ops), "inputs": list(c.inputs)} for c in self.cells],
                "info": dict(self.info)}

    def with_info(self, **info: Any) -> Genotype:
        return Genotype(self.width, self.cells, self.network_level, {**self.info, **info})

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> Genotype:
        """Validate a parsed genotype; ModelError (one line) naming the first problem."""

        def bad(why: str) -> ModelError:
            return ModelError(f"{source}: not a valid DLSR genotype ({why})")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        check_header(data, GENOTYPE_KIND, GENOTYPE_SCHEMA, "DLSR genotype", source=source)
        unknown = sorted(str(k)[:30] for k in set(data) - _GENOTYPE_KEYS)
        if unknown:
            raise bad(f"unknown field(s) {', '.join(unknown[:3])}")
        width = data.get("width")
        if not is_int(width) or not MIN_WIDTH <= width <= MAX_WIDTH:
            raise bad(f"width must be an integer in {MIN_WIDTH}..{MAX_WIDTH}")
        network_level = data.get("network_level", True)
        if not isinstance(network_level, bool):
            raise bad("network_level must be true or false")
        info = data.get("info", {})
        if not isinstance(info, dict):
            raise bad("info must be an object")
        cells = data.get("cells")
        if not isinstance(cells, list) or not 1 <= len(cells) <= MAX_CELLS:
            raise bad(f"cells must be a list of 1..{MAX_CELLS} cells")
        genes = []
        for j, cell in enumerate(cells, start=1):
            if not isinstance(cell, dict) or set(cell) != {"ops", "inputs"}:
                raise bad(f"cell {j} must be an object with exactly 'ops' and 'inputs'")
            ops, inputs = cell["ops"], cell["inputs"]
            if not isinstance(ops, list) or len(ops) != LAYERS_PER_CELL:
                raise bad(f"cell {j}: ops must list {LAYERS_PER_CELL} operations")
            for op in ops:
                if not isinstance(op, str) or op not in OPS:
                    raise bad(f"cell {j}: unknown operation {str(op)[:20]!r}; known: {', '.join(OPS)}")
            if not isinstance(inputs, list) or not 1 <= len(inputs) <= j:
                raise bad(f"cell {j}: inputs must list 1..{j} predecessor indices")
            if any(not is_int(i) or not 0 <= i < j for i in inputs) or len(set(inputs)) != len(inputs):
                raise bad(f"cell {j}: inputs must be distinct indices in 0..{j - 1}")
            genes.append(CellGene(tuple(ops), tuple(sorted(inputs))))
        return cls(width, tuple(genes), network_level, dict(info))


def read_genotype(path: str | os.PathLike[str]) -> Genotype:
    """Read and validate a genotype JSON file (size-capped; nothing else is read)."""
    from adasr.safepath import read_bounded, user_path

    path = user_path(path, "genotype file")
    if not path.exists() and not path.is_symlink():
        raise InputError(f"genotype file not found: {path}")
    data = read_bounded(path, MAX_GENOTYPE_BYTES, "genotype", InputError)  # a regular file only: no FIFO, no device
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a valid DLSR genotype (not UTF-8 text)") from None
    return parse_genotype_text(text, str(path))


def parse_genotype_text(text: str, source: str) -> Genotype:
    if len(text) > MAX_GENOTYPE_BYTES:
        raise ModelError(f"{source}: not a valid DLSR genotype (more than {MAX_GENOTYPE_BYTES} characters)")
    from adasr._jsonfile import loads

    data = loads(text, f"{source}: not a valid DLSR genotype", ModelError)
    return Genotype.from_dict(data, source)


def as_genotype(value: Any) -> Genotype:
    """A genotype from a `Genotype`, a parsed JSON object, inline JSON text or a file path."""
    if isinstance(value, Genotype):
        return value
    if isinstance(value, str | os.PathLike):
        text = str(value)
        if text.lstrip().startswith(("{", "[")):
            return parse_genotype_text(text, "inline genotype")
        return read_genotype(text)
    return Genotype.from_dict(value, "inline genotype")  # a parsed JSON value


def chain_genotype(ops: Sequence[Sequence[str]], width: int) -> Genotype:
    """DLSR-B style genotype: the given operations, each cell reading its predecessor only."""
    return Genotype(width, tuple(CellGene(tuple(o), (j,)) for j, o in enumerate(ops)), network_level=False)


# -- the derived network ----------------------------------------------------------------------------

class DLSRNet(_Frame):
    """The standalone network of a genotype (retrained from scratch with the one training loop)."""

    def __init__(self, scale: int, genotype: Genotype, width: int | None = None, global_skip: bool = True) -> None:
        width = genotype.width if width is None else width
        super().__init__(scale, width, len(genotype.cells), global_skip)
        self.genotype = genotype
        self.inputs = [cell.inputs for cell in genotype.cells]
        self.cells = nn.ModuleList(Cell(width, [make_op(o, width) for o in cell.ops]) for cell in genotype.cells)
        self.aggregate = nn.ModuleList(
            nn.Conv2d(width * len(ins), width, 1) if len(ins) > 1 else nn.Identity() for ins in self.inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.head(x)
        feats = [x0]
        for cell, agg, ins in zip(self.cells, self.aggregate, self.inputs, strict=True):
            inp = feats[ins[0]] if len(ins) == 1 else agg(torch.cat([feats[i] for i in ins], dim=1))
            feats.append(cell(inp))
        return self.finish(x, x0, feats[1:])


def _resolve_dlsr_args(args: dict[str, Any]) -> dict[str, Any]:
    """Inline a genotype given as a path or JSON text, so a model file never depends on it."""
    if "genotype" not in args:
        raise ModelError("architecture 'dlsr' needs --arg genotype=FILE (or an inline JSON genotype)")
    return {**args, "genotype": as_genotype(args["genotype"]).to_dict()}


@register_model("dlsr", resolve=_resolve_dlsr_args)
def dlsr(scale: int, genotype: Any, width: int | None = None, global_skip: bool = True) -> nn.Module:
    if width is not None and (isinstance(width, bool) or not isinstance(width, int)):
        raise ValueError(f"width must be an integer, got {width!r}")
    return DLSRNet(scale, as_genotype(genotype), width=width, global_skip=bool(global_skip))

