"""Frames as tensors and per-frame PSNR of a supernet level, batched (the controller's measuring stick).

Frames travel as uint8 arrays (N, H, W, 3), like the rest of adasr (`adasr.stream.adapt`). PSNR
is measured as `adasr.metrics.psnr_y` does (SR rounded to 8 bits, BT.601 Y, `border` pixels
cropped), but on a whole batch in torch so a safety check over a dozen experts stays cheap.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adasr.errors import ConfigError

__all__ = ["ExpertEvaluator", "MAX_FRAMES", "MAX_SIDE", "check_frames", "level_psnr", "psnr_frames", "to_tensor"]

_Y = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64) / 255.0
MAX_FRAMES = 4096  # frames one call may carry
MAX_SIDE = 8192  # pixels of a frame side


def check_frames(lr: np.ndarray, hr: np.ndarray | None, scale: int) -> None:
    """ConfigError unless `lr` (and `hr`, `scale` times larger) are (N, H, W, 3) uint8 frame stacks."""
    for name, a, k in (("LR", lr, 1), ("HR", hr, scale)):
        if a is None:
            continue
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
            raise ConfigError(f"{name} frames must be a (N, H, W, 3) uint8 array")
        if not 1 <= a.shape[0] <= MAX_FRAMES or max(a.shape[1:3]) > MAX_SIDE * k:
            raise ConfigError(f"{name} frames of shape {a.shape} are outside the bounds "
                              f"(1-{MAX_FRAMES} frames, sides up to {MAX_SIDE * k})")
    if hr is not None and (hr.shape[0] != lr.shape[0] or hr.shape[1] != lr.shape[1] * scale
                           or hr.shape[2] != lr.shape[2] * scale):
        raise ConfigError(f"LR {lr.shape} and HR {hr.shape} frames do not match at x{scale}")


def to_tensor(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def psnr_frames(sr: torch.Tensor, hr: torch.Tensor, border: int) -> torch.Tensor:
    """Per-frame PSNR (dB, float64) of (N, 3, H, W) float tensors in [0, 1] on Y, `border` cropped."""
    s = sr.clamp(0, 1).mul(255).round().div(255).to(torch.float64)
    h = hr.to(torch.float64)
    w = _Y.to(s.device).view(1, 3, 1, 1)
    ys, yh = (s * w).sum(1) * 255.0, (h * w).sum(1) * 255.0
    if border:
        ys, yh = ys[:, border:-border, border:-border], yh[:, border:-border, border:-border]
    mse = ((ys - yh) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(255.0 ** 2 / mse)


@torch.inference_mode()
def level_psnr(model: nn.Module, lr: torch.Tensor, hr: torch.Tensor, cfg, border: int,
               chunk: int = 8) -> torch.Tensor:
    """Per-frame PSNR of supernet `model` at level `cfg` (None: a plain model) on tensors lr/hr."""
    out = []
    for i in range(0, lr.shape[0], chunk):
        x = lr[i:i + chunk]
        y = model(x) if cfg is None else model(x, cfg=cfg)
        out.append(psnr_frames(y, hr[i:i + chunk], border))
    return torch.cat(out)


class ExpertEvaluator:
    """Per-frame PSNR of flat parameter vectors of one base, on a scratch copy of its supernet.

    `levels`: the supernet levels an expert is judged on (the mean over them)."""

    def __init__(self, base, levels, border: int | None = None, device: str | torch.device = "cpu") -> None:
        self.base, self.levels = base, list(levels)
        self.border = base.scale if border is None else border
        self.device = torch.device(device)
        self.model = base.fresh().to(self.device)
        self.calls = 0  # frame evaluations done (each level counts), the cost of selection

    def psnr(self, vector: torch.Tensor, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """(N,) PSNR of `vector` on tensors lr (N, 3, h, w) / hr (N, 3, s*h, s*w)."""
        self.base.load(self.model, vector)
        self.calls += lr.shape[0] * len(self.levels)
        vals = [level_psnr(self.model, lr.to(self.device), hr.to(self.device), c, self.border) for c in self.levels]
        return torch.stack(vals).mean(0).cpu()
