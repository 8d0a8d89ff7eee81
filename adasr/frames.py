"""Frames <-> tensors: an HxWxC integer image and the (1, C, H, W) float tensor a network takes.

`to_tensor(img)` divides by `peak` (255 for uint8, 65535 for uint16; 1 keeps the integer scale);
`to_frame(y)` is its inverse, rounded and clipped like the protocol's MATLAB code. Every place
that feeds a frame to a network or reads one back uses these two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["peak_of", "to_frame", "to_tensor"]


def peak_of(dtype: Any) -> float:
    """The largest value of an image of `dtype`: 65535 for uint16, else 255."""
    return 65535.0 if np.dtype(dtype) == np.uint16 else 255.0


def to_tensor(img: np.ndarray, peak: float = 255.0, device: torch.device | str | None = None) -> torch.Tensor:
    """HxWxC image -> (1, C, H, W) float32, divided by `peak` (on `device`, moved before the cast)."""
    import torch

    img = np.ascontiguousarray(img)
    x = torch.from_numpy(img if img.flags.writeable else img.copy())
    if device is not None:
        x = x.to(device)
    x = x.permute(2, 0, 1)[None].float()
    return x.div_(peak) if peak != 1.0 else x


def to_frame(y: torch.Tensor, peak: float = 255.0, dtype: Any = np.uint8, *, unit: bool = True) -> np.ndarray:
    """(1, C, H, W) float -> HxWxC `dtype` array on the CPU (C-contiguous), rounded and clipped.

    unit: `y` holds values in [0, 1] (scaled by `peak`); False: `y` is already in [0, peak]."""
    import torch

    y = y.detach()
    y = y.clamp(0, 1).mul(peak) if unit else y.clamp(0, peak)
    hwc = y.round_()[0].permute(1, 2, 0)
    if np.dtype(dtype) == np.uint8:
        return np.ascontiguousarray(hwc.to("cpu", torch.uint8).numpy())
    return np.ascontiguousarray(hwc.cpu().numpy().astype(dtype))
