"""Builders shared by several test modules."""

from __future__ import annotations

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
