"""Retraining jobs and how a window's compute is shared among them (RECL section 6.3.2).

Compute is counted in *micro-windows*: one micro-window lets one job run `AdaptConfig.steps`
sparse Adam steps (AMS Algorithm 3, `adasr.stream.adapt.SparseAdapter`) on its window's
labelled frames. A scheduler gets the jobs of one update window and a budget of micro-windows:

* `InBand` - RECL Algorithm 4: one micro-window per job to measure its gain (PSNR after minus
  before, on its labelled frames), then always the job with the largest last gain. The
  measurement is the training itself, so it costs nothing extra ("in-band").
* `RoundRobin` - AMS: jobs in turn.
* `OutOfBand` - Ekya-style micro-profiling: each job is first trained for `profile` micro-windows
  on a copy (work thrown away, charged to the budget), a decaying gain curve is fitted to the
  profile, and the rest of the budget is split greedily by the predicted marginal gains.

A job is anything with `evaluate() -> float`, `train_micro() -> None` and (for `OutOfBand`)
`clone() -> job`; `RetrainJob` is the SR one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import torch

from adasr.errors import ConfigError
from adasr.reuse.quality import level_psnr, to_tensor
from adasr.reuse.zoo import BaseModel
from adasr.stream.adapt import AdaptConfig, PatchSampler, SparseAdapter
from adasr.stream.codec import model_vector

__all__ = ["Allocation", "InBand", "Job", "MAX_BUDGET", "OnMicro", "OutOfBand", "RetrainJob", "RoundRobin",
           "SCHEDULERS", "make_scheduler", "micro_config"]

SCHEDULERS = ("inband", "roundrobin", "outofband")
MAX_BUDGET = 100_000


class Job(Protocol):
    def evaluate(self) -> float: ...
    def train_micro(self) -> None: ...


def micro_config(eta: float = 0.05, steps: int = 4, batch: int = 4, patch: int = 32, lr: float = 1e-3,
                 seed: int = 0) -> AdaptConfig:
    """The adaptation of one micro-window: AMS selection (largest last Adam update), `steps` steps."""
    return AdaptConfig(eta=eta, steps=steps, batch=batch, patch=patch, lr=lr, strategy="ams", seed=seed)


class RetrainJob:
    """Fine-tune one expert on one window's labelled frames, a micro-window at a time.

    `start` is the flat vector the job starts from (the expert the safety checker chose);
    `levels` the supernet levels trained together (one for a level expert, all for a supernet
    expert); `lr`/`hr` the labelled frames (uint8 (N, h, w, 3) and (N, s*h, s*w, 3)). Each
    micro-window picks its coordinates as AMS does; the very first pick uses the largest
    gradient magnitudes (instead of AMS's random start, which would mostly hit weights the
    level does not use).
    """

    def __init__(self, base: BaseModel, start: torch.Tensor, lr: np.ndarray, hr: np.ndarray,
                 levels: Sequence, config: AdaptConfig, border: int | None = None, channel: str = "",
                 device: str | torch.device = "cpu") -> None:
        self.base, self.levels, self.cfg, self.channel = base, list(levels), config, channel
        self.device = torch.device(device)
        self.border = base.scale if border is None else border
        self.lr_frames, self.hr_frames = lr, hr
        self.model = base.load(base.fresh(), start).to(self.device)
        # a plain model's one level is None: the adapter then runs the model without a config
        self.adapter = SparseAdapter(self.model, config, [c for c in self.levels if c is not None] or None)
        self.sampler = PatchSampler(lr, hr, base.scale, config.patch, config.batch, self.device)
        self._lr, self._hr = to_tensor(lr, self.device), to_tensor(hr, self.device)
        self.micro = 0  # micro-windows trained
        self.history: list[float] = []  # PSNR after each evaluation
        self._evaluated_at = -1  # `micro` at the last evaluation

    def evaluate(self) -> float:
        """Mean PSNR (dB) of the job's model over its labelled frames and levels."""
        vals = [float(level_psnr(self.model, self._lr, self._hr, c, self.border).mean()) for c in self.levels]
        score = float(np.mean(vals))
        self.history.append(score)
        self._evaluated_at = self.micro
        return score

    def latest(self) -> float:
        """The PSNR of the model as it is now (evaluated only if it changed since the last time)."""
        return self.history[-1] if self._evaluated_at == self.micro else self.evaluate()

    def train_micro(self) -> None:
        if self.adapter.last_update is None:
            gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + 1)
            g, _ = self.adapter._grad(*self.sampler.sample(gen))
            self.adapter.last_update = g.abs()
        self.adapter.adapt(self.sampler, self.micro)
        self.micro += 1

    def vector(self) -> torch.Tensor:
        return model_vector(self.model)

    def clone(self) -> RetrainJob:
        """An independent copy (model and Adam state) for out-of-band profiling."""
        job = RetrainJob(self.base, self.vector(), self.lr_frames, self.hr_frames, self.levels,
                         replace(self.cfg, seed=self.cfg.seed + 104729), self.border, self.channel, self.device)
        a, b = self.adapter, job.adapter
        b.m, b.v, b.t = a.m.clone(), a.v.clone(), a.t
        b.last_update = None if a.last_update is None else a.last_update.clone()
        job.micro = self.micro
        return job


@dataclass
class Allocation:
    """What a scheduler did with one window's budget."""

    micro: list[int]  # micro-windows of real training per job
    order: list[int] = field(default_factory=list)  # job index of each training micro-window
    profile_micro: int = 0  # micro-windows spent on out-of-band profiling
    gains: list[list[float]] = field(default_factory=list)  # measured gain per training micro-window

    def to_dict(self) -> dict:
        return {"micro": self.micro, "order": self.order, "profile_micro": self.profile_micro}


OnMicro = Callable[[int, int], None]  # (micro-window index in the window, job index) after training


def _check(jobs: Sequence, budget: int) -> None:
    if not 0 <= budget <= MAX_BUDGET:
        raise ConfigError(f"a window's budget must be in [0, {MAX_BUDGET}] micro-windows, got {budget}")


class InBand:
    """RECL Algorithm 4 (in-band profiling: the gain of the last micro-window steers the next)."""

    name = "inband"

    def run(self, jobs: Sequence[Job], budget: int, on_micro: OnMicro | None = None) -> Allocation:
        _check(jobs, budget)
        alloc = Allocation([0] * len(jobs), gains=[[] for _ in jobs])
        if not jobs:
            return alloc
        acc = [None] * len(jobs)
        gain = [-math.inf] * len(jobs)
        t = 0

        def process(i: int) -> float:  # lines 3-9
            nonlocal t
            before = acc[i] if acc[i] is not None else jobs[i].evaluate()
            jobs[i].train_micro()
            acc[i] = jobs[i].evaluate()
            alloc.micro[i] += 1
            alloc.order.append(i)
            g = acc[i] - before
            alloc.gains[i].append(g)
            if on_micro:
                on_micro(t, i)
            t += 1
            return g

        for i in range(min(len(jobs), budget)):  # lines 11-13
            gain[i] = process(i)
        while t < budget:  # lines 14-17
            i = int(np.argmax(gain))
            gain[i] = process(i)
        return alloc


class RoundRobin:
    """AMS-style sharing: the jobs take micro-windows in turn."""

    name = "roundrobin"

    def run(self, jobs: Sequence[Job], budget: int, on_micro: OnMicro | None = None) -> Allocation:
        _check(jobs, budget)
        alloc = Allocation([0] * len(jobs))
        for t in range(budget if jobs else 0):
            i = t % len(jobs)
            jobs[i].train_micro()
            alloc.micro[i] += 1
            alloc.order.append(i)
            if on_micro:
                on_micro(t, i)
        return alloc


class OutOfBand:
    """Ekya-style: profile each job on a copy for `profile` micro-windows, then plan by the fit.

    The fitted curve is geometric, gain(k) = g1 * r**(k-1), from the profile's first and last
    gains (r clipped to [0.05, 1]); the remaining budget goes micro-window by micro-window to
    the job with the largest predicted next gain, and runs in that order. Profiling is charged to the budget (its
    micro-windows are the first of the window); what it trained is discarded."""

    name = "outofband"

    def __init__(self, profile: int = 2) -> None:
        if not 1 <= profile <= 100:
            raise ConfigError(f"profile micro-windows must be in [1, 100], got {profile}")
        self.profile = profile

    def run(self, jobs: Sequence, budget: int, on_micro: OnMicro | None = None) -> Allocation:
        _check(jobs, budget)
        alloc = Allocation([0] * len(jobs))
        curves: list[tuple[float, float]] = []
        t = 0
        for job in jobs:
            probe = job.clone()
            accs = [probe.evaluate()]
            for _ in range(self.profile):
                if t >= budget:
                    break
                probe.train_micro()
                accs.append(probe.evaluate())
                alloc.profile_micro += 1
                t += 1
            g = np.diff(accs) if len(accs) > 1 else np.zeros(1)
            g1 = float(g[0])
            r = 1.0 if len(g) < 2 or g1 <= 0 else float(np.clip(g[-1] / g1, 0.05, 1.0))
            curves.append((g1, r))
        planned, plan = [0] * len(jobs), []
        for _ in range(budget - t if jobs else 0):
            pred = [g1 * r ** k for (g1, r), k in zip(curves, planned)]
            i = int(np.argmax(pred))
            planned[i] += 1
            plan.append(i)
        for i in plan:  # in the greedy order, so no job waits behind another's whole share
            jobs[i].train_micro()
            alloc.micro[i] += 1
            alloc.order.append(i)
            if on_micro:
                on_micro(t, i)
            t += 1
        return alloc


def make_scheduler(name: str, profile: int = 2):
    if name == "inband":
        return InBand()
    if name == "roundrobin":
        return RoundRobin()
    if name == "outofband":
        return OutOfBand(profile)
    raise ConfigError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
