"""How fast a luma-only level could be (issue 14 item 4): a speed bound, not a trained model.

A luma-only variant of a level runs the same trunk (blocks and tail) on the Y channel: its head
is 1 -> w instead of 3 -> w, its upsampler conv w -> s^2 instead of w -> 3 s^2, its bicubic skip
1 -> s^2 phases, and the chroma (Cb, Cr) is upscaled by bicubic alone (2 -> 2 s^2 phases), with a
colour conversion at each end (RGB -> YCbCr at LR size, YCbCr -> RGB on the phases, both at LR
size, before the one byte shuffle the engine's frame path uses), done at no cost (see the code).
`luma_frame_fn` builds that path
from a level with the trunk's own weights and fresh head and upsampler weights: its outputs are
not meaningful, its time is what a trained luma-only level of the same config would take. Whether
training one is worth it follows from this time against the RGB level's (`adasr bench backends
--luma`): the trunk is the same, so only the head, the upsampler conv and the conversions differ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from adasr.nn.upsample import bicubic_phases

__all__ = ["luma_frame_fn"]

# BT.601 full-range (the JPEG convention), the one this path needs only for its cost
_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def luma_frame_fn(subnet: nn.Module, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 HxWx3 RGB -> uint8 (sH)x(sW)x3 through the luma-only form of `subnet` (a residual
    level with the bicubic-skip upsampler; see the module doc)."""
    from adasr.errors import ConfigError
    from adasr.runtime.engine import frame_to_tensor, phases_to_frame

    scale = subnet.scale
    if subnet.config.upsampler != "bic" or not isinstance(subnet.head, nn.Conv2d) \
            or not isinstance(subnet.up, nn.Conv2d):
        raise ConfigError(f"the luma-only bound needs a conv head and the bicubic-skip upsampler, "
                          f"not {subnet.config.id}")
    g = torch.Generator().manual_seed(seed)

    def fresh(conv: nn.Conv2d, cin: int, cout: int) -> nn.Conv2d:
        new = nn.Conv2d(cin, cout, conv.kernel_size, padding=conv.padding, bias=conv.bias is not None)
        with torch.no_grad():
            new.weight.copy_(torch.randn(new.weight.shape, generator=g) * 0.05)
            if new.bias is not None:
                new.bias.zero_()
        return new.eval()

    # The cheapest form, exact for a Y-only network with bicubic chroma: Y = 0.299 R + 0.587 G
    # + 0.114 B folds into the head (a 3 -> w conv, as the RGB level's), and with BT.601 full
    # range the inverse conversion adds the network's Y residual r to R, G and B alike, so
    # RGB_out = bicubic(RGB) + r: the upsampler conv has s^2 outputs instead of 3 s^2.
    head = fresh(subnet.head, 3, subnet.head.out_channels)
    with torch.no_grad():
        head.weight.copy_(head.weight[:, :1] * _RGB_TO_YCC[0].reshape(1, 3, 1, 1))
    up = fresh(subnet.up, subnet.up.in_channels, scale * scale)
    body, tail, n = subnet.body, subnet.tail, scale * scale

    @torch.inference_mode()
    def run(frame: np.ndarray) -> np.ndarray:
        x = frame_to_tensor(frame)
        h = head(x)
        t = h
        for block in body:
            t = block(t)
        r = up(tail(t).add_(h))  # (1, s^2, H, W): the Y residual
        z = bicubic_phases(x, scale)  # (1, 3 s^2, H, W)
        hh, ww = z.shape[-2:]
        z.view(1, 3, n, hh, ww).add_(r.view(1, 1, n, hh, ww))
        return phases_to_frame(z, scale)

    return run
