"""Evaluate a model with the SR protocol: uint8 output, PSNR/SSIM on Y, border = scale."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from adasr.data.datasets import SRPair, gray_of
from adasr.errors import ModelError
from adasr.frames import to_frame, to_tensor
from adasr.metrics import psnr_y, ssim_y

__all__ = ["EvalResult", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    psnr: float
    ssim: float
    images: int


@torch.inference_mode()
def evaluate(model: nn.Module, pairs: Sequence[SRPair], scale: int, *, with_ssim: bool = True,
             device: str | torch.device = "cpu") -> EvalResult:
    """Mean PSNR (and SSIM) of `model` over `pairs`, the way published SR tables compute it."""
    was_training = model.training
    model.eval()
    psnrs, ssims = [], []
    try:
        for pair in pairs:
            out = model(to_tensor(pair.lr).to(device))
            if not bool(torch.isfinite(out).all()):
                raise ModelError(f"the model's output for {pair.name} holds NaN or infinity; it cannot be scored")
            sr = to_frame(out)
            if sr.shape != pair.hr.shape:
                raise ValueError(f"model output {sr.shape} does not match HR {pair.hr.shape} for {pair.name}")
            hr = pair.hr
            if pair.gray:  # score grayscale sources on their own values (see SRPair)
                sr, hr = gray_of(sr), hr[..., 0]
            psnrs.append(psnr_y(sr, hr, border=scale))
            if with_ssim:
                ssims.append(ssim_y(sr, hr, border=scale))
    finally:
        model.train(was_training)
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    return EvalResult(mean(psnrs), mean(ssims), len(psnrs))
