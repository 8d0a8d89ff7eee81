"""Reconstruction losses: L1 and the HFEN loss of the DLSR paper.

HFEN (high-frequency error norm) compares Laplacian-of-Gaussian filtered images: an L1 loss
in the LoG domain that rewards sharp edges and stripes. DLSR trains with L1 + 0.2 * HFEN.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SRLoss", "hfen_loss", "log_kernel"]


@functools.lru_cache(maxsize=8)
def log_kernel(size: int = 15, sigma: float = 1.5) -> torch.Tensor:
    """Zero-sum Laplacian-of-Gaussian kernel (size x size), as in HFEN (15x15, sigma 1.5)."""
    if size % 2 == 0 or size < 3:
        raise ValueError(f"LoG kernel size must be odd and at least 3, got {size}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    rr = (x * x + y * y) / (2 * sigma * sigma)
    kernel = -(1.0 / (math.pi * sigma**4)) * (1 - rr) * torch.exp(-rr)
    kernel -= kernel.mean()  # zero response on flat regions
    return kernel.float()


def hfen_loss(sr: torch.Tensor, hr: torch.Tensor, size: int = 15, sigma: float = 1.5) -> torch.Tensor:
    """Mean |LoG * sr - LoG * hr| over (B, C, H, W) tensors, channels filtered separately."""
    c = sr.shape[1]
    k = log_kernel(size, sigma).to(sr.device, sr.dtype).expand(c, 1, size, size)
    diff = sr - hr  # LoG is linear: filter the difference once
    return F.conv2d(F.pad(diff, [size // 2] * 4, mode="reflect"), k, groups=c).abs().mean()


class SRLoss(nn.Module):
    """l1_weight * L1 + hfen_weight * HFEN."""

    def __init__(self, l1_weight: float = 1.0, hfen_weight: float = 0.2) -> None:
        super().__init__()
        if l1_weight < 0 or hfen_weight < 0 or l1_weight + hfen_weight == 0:
            raise ValueError("loss weights must be non-negative and not both zero")
        self.l1_weight, self.hfen_weight = l1_weight, hfen_weight

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        loss = self.l1_weight * F.l1_loss(sr, hr) if self.l1_weight else sr.new_zeros(())
        if self.hfen_weight:
            loss = loss + self.hfen_weight * hfen_loss(sr, hr)
        return loss
