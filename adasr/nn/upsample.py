"""Bicubic upsampling and pixel shuffling at low resolution: the cheap fixed cost of a `bic` level.

A `bic` level adds bicubic(x) to its pixel-shuffled residual. At an integer scale s, every output
pixel of PyTorch's bicubic (``F.interpolate(..., mode="bicubic", align_corners=False)``, cubic
coefficient A = -0.75, borders clamped) is one of s*s fixed 4x4 filters of the LR pixels around
it, one per sub-pixel phase, and all phases fit in a 5x5 window. So the upsampling is a
5x5 convolution of the replicate-padded LR image into s*s channels per colour (`bicubic_phases`),
in the same layout as the residual branch's conv output before its pixel shuffle: the two add at
LR size and shuffle once (about 2-3x cheaper than upsampling at output size on the 2-core CPU).

`phases_to_hwc` is the pixel shuffle written straight into an interleaved (sH, sW, C) image: for
frames, the float-to-uint8 conversion then runs at LR layout and the shuffle moves bytes.

Shapes: x (B, C, H, W) -> bicubic_phases (B, C*s*s, H, W); pixel_shuffle of that is
(B, C, sH, sW) and equals ``F.interpolate(x, scale_factor=s, mode="bicubic")`` to float rounding.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["CUBIC_A", "bicubic_phases", "bicubic_up", "phase_kernel", "phase_weights", "phases_to_hwc"]

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient
_TAPS = 5  # every phase of an integer scale reads LR offsets -2..2
_kernels: dict[tuple[int, int, torch.dtype, str], torch.Tensor] = {}
_lock = threading.Lock()


def _cubic(t: float) -> list[float]:
    """Weights of LR samples floor-1 .. floor+2 at fractional offset t in [0, 1)."""
    a = CUBIC_A

    def near(d: float) -> float:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: float) -> float:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def phase_weights(scale: int) -> list[list[float]]:
    """(s, 5) one-dimensional weights: row p gives output sub-pixel p from LR offsets -2..2."""
    if not isinstance(scale, int) or scale < 1 or scale > 8:
        raise ValueError(f"scale must be an integer in [1, 8], got {scale!r}")
    rows = []
    for p in range(scale):
        src = (p + 0.5) / scale - 0.5  # align_corners=False source coordinate of output pixel p
        base = math.floor(src)
        row = [0.0] * _TAPS
        for k, w in zip(range(base - 1, base + 3), _cubic(src - base)):
            row[k + _TAPS // 2] += w
        rows.append(row)
    return rows


def phase_kernel(scale: int, channels: int = 3, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """(channels*s*s, channels, 5, 5) conv weight of `bicubic_phases` (cached; do not modify).

    Dense, zero off the diagonal of channels: oneDNN runs this 3 -> 12 conv about 2x faster
    than the grouped form (1 input channel per group) on the 2-core reference CPU."""
    key = (scale, channels, dtype, str(device))
    kernel = _kernels.get(key)
    if kernel is None:
        w = torch.tensor(phase_weights(scale), dtype=torch.float64)
        k2 = torch.einsum("pi,qj->pqij", w, w).reshape(scale * scale, _TAPS, _TAPS)
        dense = torch.zeros(channels, scale * scale, channels, _TAPS, _TAPS, dtype=torch.float64)
        for c in range(channels):
            dense[c, :, c] = k2
        kernel = dense.reshape(channels * scale * scale, channels, _TAPS, _TAPS).to(dtype=dtype, device=device)
        with _lock:
            kernel = _kernels.setdefault(key, kernel)
    return kernel


def bicubic_phases(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*s*s, H, W): the s*s bicubic sub-pixel phases of every channel,
    ordered as `F.pixel_shuffle` expects (channel c, row phase, column phase)."""
    pad = _TAPS // 2
    kernel = phase_kernel(scale, x.shape[1], x.dtype, x.device)
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), kernel)


def bicubic_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, sH, sW): PyTorch's bicubic upsampling, computed at LR size."""
    return F.pixel_shuffle(bicubic_phases(x, scale), scale)


def phases_to_hwc(z: torch.Tensor, scale: int) -> np.ndarray:
    """(1, C*s*s, H, W) CPU tensor -> (sH, sW, C) C-contiguous array: the pixel shuffle into an
    interleaved image. NumPy's transpose copy does this 2x faster than torch's strided copy for
    the small innermost dimension (3 colours); channels-last input needs no other copy."""
    _, cs, h, w = z.shape
    c = cs // (scale * scale)
    a = z[0].permute(1, 2, 0).numpy().reshape(h, w, c, scale, scale)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 4, 2)).reshape(h * scale, w * scale, c)
