"""Tiled SR equals untiled SR when the margin covers the receptive field; dtype handling."""

from __future__ import annotations

import numpy as np
import torch

from adasr.nn.registry import build_model
from adasr.upscale import sr_array, sr_tensor


def test_tiles_have_no_seams():
    torch.manual_seed(0)
    model = build_model("fsrcnn", scale=2, d=8, s=4, m=1).eval()  # receptive field < 16 LR px
    x = torch.rand(1, 3, 45, 70)
    whole = sr_tensor(model, x, 2, tile=None)
    tiled = sr_tensor(model, x, 2, tile=16, overlap=12)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-5
    no_margin = sr_tensor(model, x, 2, tile=16, overlap=0)
    assert float((no_margin - whole).abs().max()) > 1e-3  # without the margin the seams show


def test_sr_array_keeps_dtype():
    model = build_model("bicubic", scale=2)
    for dtype, peak in ((np.uint8, 255), (np.uint16, 65535)):
        img = (np.random.default_rng(1).random((9, 11, 3)) * peak).astype(dtype)
        out = sr_array(model, img, 2)
        assert out.dtype == dtype and out.shape == (18, 22, 3)
