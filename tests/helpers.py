"""Builders shared by several test modules."""

from __future__ import annotations

import math

import numpy as np
import torch

from adasr.nn.supernet import SuperNet
from adasr.space import SearchSpace


def make_net(space: SearchSpace | None = None, seed: int = 0) -> SuperNet:
    """A seeded supernet (the tiny space by default) whose kernel transforms are moved off the
    identity, so every weight, baked-in transforms included, affects the outputs under test."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SuperNet(space or SearchSpace.named("tiny"))
        with torch.no_grad():
            for name, p in net.named_parameters():
                if ".transforms." in name:
                    p.add_(0.1 * torch.randn_like(p))
    return net


def assert_frames_close(got: np.ndarray, want: np.ndarray, *, max_step: int = 1, min_psnr_db: float = 50.0) -> None:
    """Integer frames from two float paths that compute the same thing with different kernels
    (tiles against the whole frame, channels-last against contiguous input): the floats differ in
    their last bits, so a value at a rounding boundary may land one step either side and nothing
    more. So: same shape and dtype, no pixel more than `max_step` steps apart, and PSNR against
    `want` (peak: the dtype's maximum) of at least `min_psnr_db` (a 1-step difference on every
    uint8 pixel would be 48.1 dB, so 50 dB also says such pixels are the exception)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert int(diff.max(initial=0)) <= max_step, f"{int(diff.max())} steps apart at {np.argwhere(diff > max_step)[:5]}"
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    peak = float(np.iinfo(want.dtype).max)
    psnr = math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)
    assert psnr >= min_psnr_db, f"PSNR {psnr:.1f} dB < {min_psnr_db} dB ({int((diff > 0).sum())} pixels differ)"
