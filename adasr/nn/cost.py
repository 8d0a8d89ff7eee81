"""Measured cost of a module: parameters and multiply-accumulates for a given LR input size.

MACs are counted with forward hooks on convolutions and linear layers while the model runs on
the `meta` device (shapes only, no arithmetic), so counting a large model at 1280x720 output is
instant.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["count_macs", "count_params"]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, lr_hw: tuple[int, int]) -> int:
    """MACs of one forward pass on a (1, 3, H, W) input, counting conv, deconv and linear layers."""
    total = 0

    def conv_hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        w = mod.weight
        if isinstance(mod, nn.ConvTranspose2d):
            # every input pixel scatters a full kernel into the output
            total += inputs[0].shape[2] * inputs[0].shape[3] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
        else:
            total += out.shape[2] * out.shape[3] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]

    def linear_hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() // out.shape[-1] * mod.in_features * mod.out_features

    try:
        probe, x = copy.deepcopy(model).to("meta"), torch.empty(1, 3, *lr_hw, device="meta")
        _run(probe, x, conv_hook, linear_hook)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: run for real
        total = 0
        _run(copy.deepcopy(model).cpu(), torch.zeros(1, 3, *lr_hw), conv_hook, linear_hook)
    return total


def _run(model: nn.Module, x: torch.Tensor, conv_hook, linear_hook) -> None:
    handles = []
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    try:
        with torch.inference_mode():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
