"""Which sub-networks a training step trains, from the phase description.

A plain model has one: itself (None). A supernet (a model with a `space`) follows the phase's
sampling rule: "single" trains the largest sub-network, "sandwich" trains the largest, the
smallest and `random_subnets` random ones (largest first: it is the distillation teacher).
`phase.elastic` restricts the space for progressive shrinking: the dimensions not named stay at
their largest value. `phase.anchors` (e.g. a package's levels) replaces the smallest and the random
ones by the first anchor and random other anchors, so training goes to the configs that ship.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from adasr.errors import ConfigError
from adasr.space import SubnetConfig
from adasr.train.config import Phase

__all__ = ["recipe", "small_steps_until", "step_subnets", "validation_subnets", "with_anchors",
           "with_small_steps"]


def step_subnets(model: nn.Module, phase: Phase, gen: torch.Generator) -> list:
    space = getattr(model, "space", None)
    if space is None:
        return [None]
    space = space.restrict(phase.elastic)
    largest = space.largest()
    if phase.sampling == "single":
        return [largest]
    rng = random.Random(int(torch.randint(2**62, (1,), generator=gen)))
    if phase.anchors:
        anchors = [space.validate(SubnetConfig.from_id(a)) for a in phase.anchors]
        rest = [a for a in anchors[1:] if a != largest and a != anchors[0]]
        return [largest, anchors[0]] + rng.sample(rest, min(phase.random_subnets, len(rest)))
    return [largest, space.smallest()] + [space.sample(rng) for _ in range(phase.random_subnets)]


def with_anchors(phases: tuple[Phase, ...], anchors: list[str]) -> tuple[Phase, ...]:
    """The phases with every sandwich phase sampling from `anchors` instead of the whole space."""
    import dataclasses

    return tuple(dataclasses.replace(p, anchors=tuple(anchors)) if p.sampling == "sandwich" else p for p in phases)


def with_small_steps(phases: tuple[Phase, ...], small_steps: int, small_patch: int,
                     until: int | None = None) -> tuple[Phase, ...]:
    """The phases with every sandwich phase giving its sub-networks but the largest
    `small_steps` extra updates per step on `small_patch` patches (see `Phase`).

    until: the step at which the extra updates stop (None: never). A sandwich phase that spans
    it is split in two at that step: the same phase with and then without them (its second
    part keeps its name with "-end" added), so the rest of the run trains as the recipe would."""
    import dataclasses

    if small_steps and not any(p.sampling == "sandwich" for p in phases):
        raise ConfigError("--small-steps needs a recipe with sandwich steps (lite, sandwich, progressive)")
    if until is not None and until < 1:
        raise ConfigError(f"the small steps must run for at least one step, got until={until}")
    out: list[Phase] = []
    spans = list(_spans(phases))
    for _, p, start, end in spans:
        if p.sampling != "sandwich" or not small_steps or (until is not None and start >= until):
            out.append(p)
        elif until is None or (end is not None and end <= until):
            out.append(dataclasses.replace(p, small_steps=small_steps, small_patch=small_patch))
        else:  # spans `until`: split it there
            out.append(dataclasses.replace(p, steps=until - start, small_steps=small_steps, small_patch=small_patch))
            out.append(dataclasses.replace(p, name=f"{p.name}-end", steps=None if end is None else end - until))
    return tuple(out) + tuple(phases[len(spans):])  # phases after an open-ended one never run: kept as they are


def small_steps_until(phases: tuple[Phase, ...]) -> int | None:
    """The step at which the phases' small steps stop (None: they run to the end, or never run)."""
    stop = None
    for _, p, start, end in _spans(phases):
        if p.small_steps:
            stop = end
        elif p.sampling == "sandwich" and stop is not None and start >= stop:
            return stop
    return None


def _spans(phases: tuple[Phase, ...]):
    """(index, phase, first step, end step or None) of each phase that runs: up to and including
    the first open-ended one, which runs to the end of training (as `TrainConfig.phase_at`)."""
    start = 0
    for i, p in enumerate(phases):
        end = None if p.steps is None else start + p.steps
        yield i, p, start, end
        if end is None:
            return
        start = end


def validation_subnets(model: nn.Module) -> list[tuple[str, object]]:
    """(label suffix, sub-network) pairs validated during training."""
    space = getattr(model, "space", None)
    if space is None:
        return [("", None)]
    return [("", space.largest()), ("_min", space.smallest())]


def recipe(name: str, steps: int) -> tuple[Phase, ...]:
    """Named phase lists for supernet training (a JSON config can spell out any other)."""
    if name == "single":
        return (Phase("largest", sampling="single"),)
    if name == "sandwich":
        return (Phase("sandwich", sampling="sandwich", random_subnets=2, distill=0.5),)
    if name == "lite":
        # The recipe of the bundled lite-x* packages (docs/BENCHMARKS.md, the ablation table):
        # largest + smallest + one random sub-network per step, every one trained on the HR
        # target alone (no in-place distillation).
        return (Phase("lite", sampling="sandwich", random_subnets=1, distill=0.0),)
    if name == "progressive":
        # OFA-style progressive shrinking: largest only, then elastic kernel, then kernel + depth,
        # then everything; sandwich sampling with in-place distillation from the largest.
        cut = [max(1, int(steps * f)) for f in (0.1, 0.15, 0.25)]
        return (
            Phase("largest", steps=cut[0], sampling="single"),
            Phase("kernel", steps=cut[1], sampling="sandwich", distill=0.5, elastic=("kernel",)),
            Phase("depth", steps=cut[2], sampling="sandwich", distill=0.5, elastic=("kernel", "depth")),
            Phase("all", sampling="sandwich", random_subnets=2, distill=0.5),
        )
    raise ValueError(f"unknown recipe {name!r}; known: single, sandwich, lite, progressive")
