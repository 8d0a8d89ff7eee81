"""Reference SR models: bicubic, FSRCNN, ESPCN and IMDN.

Every later benchmark compares against these. Each is a standalone `nn.Module` mapping an LR
batch (B, 3, H, W), float in [0, 1], to (B, 3, s*H, s*W); all are registered in
`adasr.nn.registry` so a model file can rebuild them from JSON arguments.

Published numbers (Set5 / Set14 PSNR, DIV2K or 91-image training on a GPU) that the benchmarks
compare with are kept in `PUBLISHED` below.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adasr.nn.registry import register_model

__all__ = ["Bicubic", "ESPCN", "FSRCNN", "IMDN", "PUBLISHED", "SCALES", "bicubic", "espcn", "fsrcnn", "imdn"]

SCALES = (2, 3, 4)

# (model, scale) -> (Set5 PSNR, Set14 PSNR) as published by the architectures' authors or the
# DLSR paper's table (IMDN).
PUBLISHED: dict[tuple[str, int], tuple[float, float]] = {
    ("bicubic", 2): (33.66, 30.24),
    ("bicubic", 3): (30.39, 27.55),
    ("bicubic", 4): (28.42, 26.00),
    ("fsrcnn", 2): (37.00, 32.63),
    ("fsrcnn", 3): (33.16, 29.43),
    ("fsrcnn", 4): (30.71, 27.59),
    ("espcn", 3): (33.13, 29.49),
    ("espcn", 4): (30.90, 27.73),
    ("imdn", 2): (38.00, 33.63),
    ("imdn", 3): (34.36, 30.32),
    ("imdn", 4): (32.21, 28.58),
}


def _check_scale(scale: int) -> int:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale}")
    return scale


class Bicubic(nn.Module):
    """MATLAB-compatible bicubic upsampling: the protocol's reference, no parameters."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = _check_scale(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from adasr.data.imresize import imresize_torch

        return imresize_torch(x, float(self.scale))


class FSRCNN(nn.Module):
    """FSRCNN (Dong et al., 2016): feature extraction, shrinking, mapping, expanding, deconv.

    Works on all three RGB channels (the original works on Y only); d, s, m as in the paper.
    """

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        layers: list[nn.Module] = [nn.Conv2d(3, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        # Output size is exactly s*H: (H-1)*s - 2p + k + op = s*H with k=9, p=4, op=s-1.
        self.deconv = nn.ConvTranspose2d(d, 3, 9, stride=scale, padding=4, output_padding=scale - 1)
        self._init()

    def _init(self) -> None:
        for mod in self.body:
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.deconv.weight, std=1e-3)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))


class ESPCN(nn.Module):
    """ESPCN (Shi et al., 2016): three convolutions in LR space, then pixel shuffle."""

    def __init__(self, scale: int, f1: int = 64, f2: int = 32) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.body = nn.Sequential(
            nn.Conv2d(3, f1, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(f1, f2, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(f2, 3 * scale * scale, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


class _CCA(nn.Module):
    """Contrast-aware channel attention (IMDN): std + mean pooled, squeeze, excite."""

    def __init__(self, ch: int, reduction: int = 16) -> None:
        super().__init__()
        mid = max(ch // reduction, 4)
        self.fc = nn.Sequential(nn.Conv2d(ch, mid, 1), nn.ReLU(inplace=True), nn.Conv2d(mid, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * torch.sigmoid(self.fc(std + mean))


class _IMDB(nn.Module):
    """Information multi-distillation block: split off a quarter of the channels per step."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.distilled = ch // 4
        self.remaining = ch - self.distilled
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(self.remaining, ch, 3, padding=1)
        self.c3 = nn.Conv2d(self.remaining, ch, 3, padding=1)
        self.c4 = nn.Conv2d(self.remaining, self.distilled, 3, padding=1)
        self.fuse = nn.Conv2d(self.distilled * 4, ch, 1)
        self.cca = _CCA(self.distilled * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.05)  # noqa: E731
        d, r = self.distilled, self.remaining
        o1 = act(self.c1(x))
        d1, r1 = torch.split(o1, (d, r), dim=1)
        o2 = act(self.c2(r1))
        d2, r2 = torch.split(o2, (d, r), dim=1)
        o3 = act(self.c3(r2))
        d3, r3 = torch.split(o3, (d, r), dim=1)
        d4 = self.c4(r3)
        return self.fuse(self.cca(torch.cat((d1, d2, d3, d4), dim=1))) + x


class IMDN(nn.Module):
    """IMDN (Hui et al., 2019): the stronger lightweight reference (defaults as published)."""

    def __init__(self, scale: int, channels: int = 64, blocks: int = 6) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        if channels % 4 or channels < 8:
            raise ValueError(f"channels must be a multiple of 4 and at least 8, got {channels}")
        if blocks < 1:
            raise ValueError(f"blocks must be at least 1, got {blocks}")
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(_IMDB(channels) for _ in range(blocks))
        self.fuse = nn.Sequential(nn.Conv2d(channels * blocks, channels, 1), nn.LeakyReLU(0.05))
        self.body_tail = nn.Conv2d(channels, channels, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        outs = []
        h = feat
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        h = self.body_tail(self.fuse(torch.cat(outs, dim=1))) + feat
        return self.up(h)


@register_model("bicubic")
def bicubic(scale: int) -> nn.Module:
    return Bicubic(scale)


@register_model("fsrcnn")
def fsrcnn(scale: int, d: int = 56, s: int = 12, m: int = 4) -> nn.Module:
    return FSRCNN(scale, d=d, s=s, m=m)


@register_model("espcn")
def espcn(scale: int, f1: int = 64, f2: int = 32) -> nn.Module:
    return ESPCN(scale, f1=f1, f2=f2)


@register_model("imdn")
def imdn(scale: int, channels: int = 64, blocks: int = 6) -> nn.Module:
    return IMDN(scale, channels=channels, blocks=blocks)
