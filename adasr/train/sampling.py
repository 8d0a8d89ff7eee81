"""Which sub-networks a training step trains, from the phase description.

A plain model has one: itself (None). A supernet (a model with a `space`) follows the phase's
sampling rule: "single" trains the largest sub-network, "sandwich" trains the largest, the
smallest and `random_subnets` random ones (largest first, it is the distillation teacher).
"""

from __future__ import annotations

import random

import torch
from torch import nn

from adasr.train.config import Phase


def step_subnets(model: nn.Module, phase: Phase, gen: torch.Generator) -> list:
    space = getattr(model, "space", None)
    if space is None:
        return [None]
    largest = space.largest()
    if phase.sampling == "single":
        return [largest]
    rng = random.Random(int(torch.randint(2**62, (1,), generator=gen)))
    return [largest, space.smallest()] + [space.sample(rng) for _ in range(phase.random_subnets)]


def validation_subnets(model: nn.Module) -> list[tuple[str, object]]:
    """(label suffix, sub-network) pairs validated during training."""
    space = getattr(model, "space", None)
    if space is None:
        return [("", None)]
    return [("", space.largest()), ("_min", space.smallest())]
