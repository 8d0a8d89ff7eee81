"""SRVC's lightweight spatially-adaptive SR model (thesis section 5.3.1, Fig. 5-3).

The LR frame is cut into P x P patches (space-to-batch). For each patch a two-layer CNN f
predicts a 3x3 convolution kernel with 3 inputs and F outputs (27F weights, plus F biases),
which is applied to that patch only: y = ReLU(f(x) * x). The feature patches are put back
together (batch-to-space) and a regular block (5x5 conv, ReLU, 3x3 conv) with a pixel shuffle
brings them to the HR size. One deviation, said here: the output is added to a bicubic
upsampling of the input, so a model that starts from random weights starts near bicubic and a
few adaptation steps suffice (the thesis trains for much longer on a V100).

Shapes: (B, 3, H, W) in [0, 1] -> (B, 3, sH, sW); H and W need not be multiples of P (the
frame is padded by replication and the padding cut off again).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adasr.nn.registry import register_model

__all__ = ["SRVCNet", "build_srvc"]


class SRVCNet(nn.Module):
    def __init__(self, scale: int = 2, features: int = 8, hidden: int = 16, patch: int = 5, body: int = 16) -> None:
        super().__init__()
        for name, v in (("scale", scale), ("features", features), ("hidden", hidden), ("patch", patch), ("body", body)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        self.scale, self.features, self.patch = scale, features, patch
        # f: 3x3 conv over the patch, then a P x P 'valid' conv that maps the patch to one kernel.
        self.kernel_net = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 27 * features + features, patch))
        self.body = nn.Sequential(
            nn.Conv2d(features, body, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(body, 3 * scale * scale, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        with torch.no_grad():  # small predicted kernels at the start
            self.kernel_net[-1].weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p, f = self.patch, self.features
        ph, pw = (-h) % p, (-w) % p
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        gh, gw = xp.shape[2] // p, xp.shape[3] // p
        # space-to-batch: (B*gh*gw, 3, P, P)
        patches = xp.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, c, p, p)
        kb = self.kernel_net(patches).reshape(b * gh * gw, 27 * f + f)
        kernels = kb[:, : 27 * f].reshape(-1, f, 3, 9)
        bias = kb[:, 27 * f:]
        cols = F.unfold(patches, 3, padding=1).reshape(-1, 3, 9, p * p)  # (N, 3, 9, P*P)
        feats = torch.einsum("nfck,nckl->nfl", kernels, cols) + bias[:, :, None]
        feats = F.relu(feats).reshape(b, gh, gw, f, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, f, gh * p, gw * p)
        feats = feats[:, :, :h, :w]
        out = F.pixel_shuffle(self.body(feats), self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


@register_model("srvc")
def build_srvc(scale: int = 2, features: int = 8, hidden: int = 16, patch: int = 5, body: int = 16) -> SRVCNet:
    """SRVC's content-adaptive model (F = `features` output channels of the adaptive conv)."""
    return SRVCNet(scale, features, hidden, patch, body)
