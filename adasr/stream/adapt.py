"""Sparse model adaptation: train only a fraction eta of the parameters per segment.

Selection strategies (which coordinates a segment may change):

* ``gradient`` - SRVC section 5.3.2: from the model at the start of the segment, one trial Adam
  pass over the segment's frames (`trial_steps` mini-batch Adam steps on a copy of the weights
  and of Adam's state); the eta fraction of coordinates that changed most is kept, the trial is
  undone, then the segment's steps update only those coordinates. (A single Adam step from a
  fresh state moves every coordinate by about the learning rate, which ranks nothing; a pass of
  a few steps separates consistent gradients from noisy ones.)
* ``ams`` - AMS Algorithm 3: the coordinates are the eta fraction with the largest Adam update
  u of the *previous* segment's last step (random for the first segment); no trial step.
* ``random`` - a uniformly random eta fraction each segment (seeded).
* ``first`` / ``last`` / ``first_last`` - the first / last eta fraction of the parameters in
  layer order, or half from each end (AMS Table 4.3).
* ``full`` - every parameter (eta ignored).

In every strategy the segment's K steps run Adam over *all* coordinates - first and second
moments and the step count are updated from the full gradient at the points actually visited -
and apply the update only where the mask is set (Algorithm 3 lines 7-13). That keeps Adam's
state consistent with the sequence of models the stream really contains.

The loss is SRVC's L2 between the SR output and the HR frame, on random crops. With
`levels` (a supernet) the loss is the mean over those levels, so the shared weights are adapted
for every level at once.

Precision (`precision`, `adasr.nn.precision`): "bf16" runs each step's forward and backward
convolutions in bfloat16 (`torch.autocast`; the weights, Adam's moments and the update stay
float32), "fp32" in float32, and "auto" (the default) picks bf16 where the hardware computes it
natively, else fp32. The crops are channels-last, the layout oneDNN's convolutions run fastest
in. What a stream carries is the quantised change, so the receiver reproduces the sender's model
exactly whatever precision the sender trained in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from adasr.errors import ConfigError
from adasr.frames import to_frame, to_tensor
from adasr.nn.precision import PRECISIONS, autocast_dtype, precision_name
from adasr.nn.precision import autocast as autocast_to

__all__ = ["AdaptConfig", "PRECISIONS", "PatchSampler", "STRATEGIES", "SparseAdapter", "autocast_dtype",
           "segment_psnr"]

STRATEGIES = ("gradient", "ams", "random", "first", "last", "first_last", "full")


@dataclass(frozen=True)
class AdaptConfig:
    """How one segment is adapted."""

    eta: float = 0.05  # fraction of parameters a segment may change
    steps: int = 30  # Adam steps per segment (K)
    batch: int = 8  # crops per step
    patch: int = 48  # LR crop side
    lr: float = 1e-3
    strategy: str = "gradient"
    trial_steps: int = 4  # gradient strategy: mini-batch steps of the trial pass
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    seed: int = 0
    precision: str = "auto"  # of the training steps: fp32, bf16 or auto (module docstring)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown selection strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not 0 < self.eta <= 1:
            raise ConfigError(f"eta must be in (0, 1], got {self.eta}")
        if self.steps < 0 or self.batch < 1 or self.patch < 4:
            raise ConfigError("steps must be >= 0, batch >= 1 and patch >= 4")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")


class PatchSampler:
    """Random aligned (LR, HR) crops of one segment's frames, as float tensors in [0, 1].

    lr: (N, h, w, 3) uint8 decoded LR frames; hr: (N, s*h, s*w, 3) uint8 originals.
    """

    def __init__(self, lr: np.ndarray, hr: np.ndarray, scale: int, patch: int, batch: int,
                 device: torch.device) -> None:
        if lr.shape[0] != hr.shape[0] or hr.shape[1] != lr.shape[1] * scale or hr.shape[2] != lr.shape[2] * scale:
            raise ConfigError(f"LR {lr.shape} and HR {hr.shape} frames do not match at x{scale}")
        self.lr, self.hr, self.scale, self.batch, self.device = lr, hr, scale, batch, device
        self.patch = min(patch, lr.shape[1], lr.shape[2])

    def sample(self, gen: torch.Generator, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n, h, w, _ = self.lr.shape
        b, p, s = batch or self.batch, self.patch, self.scale
        fi = torch.randint(0, n, (b,), generator=gen).tolist()
        ys = torch.randint(0, h - p + 1, (b,), generator=gen).tolist()
        xs = torch.randint(0, w - p + 1, (b,), generator=gen).tolist()
        lr = np.stack([self.lr[f, y:y + p, x:x + p] for f, y, x in zip(fi, ys, xs)])
        hr = np.stack([self.hr[f, y * s:(y + p) * s, x * s:(x + p) * s] for f, y, x in zip(fi, ys, xs)])

        def t(a: np.ndarray) -> torch.Tensor:  # NHWC memory viewed as NCHW: channels-last, no copy
            return torch.from_numpy(a).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)

        return t(lr), t(hr)


class SparseAdapter:
    """Adam over a model's flat parameter vector, applied through a per-segment mask.

    Use `adapt(sampler, segment)` once per segment, in order; it returns the mask's indices and
    leaves the model at the adapted weights (the caller then quantises the change and resets the
    model to exactly what the stream carries, see `adasr.stream.encoder`).
    """

    def __init__(self, model: nn.Module, config: AdaptConfig, levels: Sequence | None = None) -> None:
        self.model, self.cfg = model, config
        self.params = [p for p in model.parameters()]
        self.sizes = [p.numel() for p in self.params]
        self.n = sum(self.sizes)
        device = self.params[0].device
        self.m = torch.zeros(self.n, device=device)
        self.v = torch.zeros(self.n, device=device)
        self.t = 0
        self.last_update: torch.Tensor | None = None  # u of the last step (AMS)
        self.levels = list(levels) if levels else None
        self.k = self.n if config.strategy == "full" else max(1, int(round(config.eta * self.n)))
        self.autocast = autocast_dtype(config.precision, device)
        self.precision = precision_name(self.autocast)  # as run (auto resolved)

    # -- flat views --

    def vector(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def set_vector(self, vec: torch.Tensor) -> None:
        off = 0
        with torch.no_grad():
            for p, n in zip(self.params, self.sizes):
                p.copy_(vec[off:off + n].view_as(p))
                off += n

    def loss(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.levels:
            return sum(F.mse_loss(self.model(lr, cfg=c).float(), hr) for c in self.levels) / len(self.levels)
        return F.mse_loss(self.model(lr).float(), hr)

    def _grad(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, float]:
        self.model.train()
        for p in self.params:
            p.grad = None
        with autocast_to(self.autocast, lr.device.type):
            loss = self.loss(lr, hr)
        loss.backward()
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])
        for p in self.params:
            p.grad = None
        self.model.eval()
        return g, float(loss.detach())

    def _adam(self, g: torch.Tensor) -> torch.Tensor:
        """Algorithm 3 lines 9-12: update the moments and return u for every coordinate."""
        b1, b2 = self.cfg.betas
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        self.t += 1
        step = self.cfg.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        return step * self.m / (self.v.sqrt() + self.cfg.eps)

    # -- selection --

    def _top(self, score: torch.Tensor) -> torch.Tensor:
        return torch.topk(score.abs(), self.k, sorted=False).indices.sort().values

    def select(self, sampler: PatchSampler, gen: torch.Generator) -> torch.Tensor:
        s, n, k = self.cfg.strategy, self.n, self.k
        device = self.m.device
        if s == "full":
            return torch.arange(n, device=device)
        if s == "first":
            return torch.arange(k, device=device)
        if s == "last":
            return torch.arange(n - k, n, device=device)
        if s == "first_last":
            a = k // 2
            return torch.cat([torch.arange(a, device=device), torch.arange(n - (k - a), n, device=device)])
        if s == "random" or (s == "ams" and self.last_update is None):
            return torch.randperm(n, generator=gen)[:k].sort().values.to(device)
        if s == "ams":
            return self._top(self.last_update)
        # gradient (SRVC): one training pass over the segment (a few mini-batch Adam steps on a
        # copy of the weights and of Adam's state), keep the coordinates that moved most, undo it.
        saved = (self.m.clone(), self.v.clone(), self.t)
        w0 = self.vector().clone()
        w = w0.clone()
        for _ in range(self.cfg.trial_steps):
            lr, hr = sampler.sample(gen)
            g, _ = self._grad(lr, hr)
            w -= self._adam(g)
            self.set_vector(w)
        self.m, self.v, self.t = saved
        self.set_vector(w0)
        return self._top(w - w0)

    # -- one segment --

    def adapt(self, sampler: PatchSampler, segment: int) -> tuple[torch.Tensor, list[float]]:
        """Select the coordinates for `segment` and run K masked Adam steps; returns (indices, losses)."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + segment)
        idx = self.select(sampler, gen)
        mask = torch.zeros(self.n, device=self.m.device)
        mask[idx] = 1.0
        w = self.vector().clone()
        losses = []
        for _ in range(self.cfg.steps):
            lr, hr = sampler.sample(gen)
            g, loss = self._grad(lr, hr)
            u = self._adam(g)
            w -= u * mask
            self.set_vector(w)
            self.last_update = u
            losses.append(loss)
        return idx, losses


@torch.inference_mode()
def segment_psnr(model: nn.Module, lr: np.ndarray, hr: np.ndarray, border: int, cfg=None, every: int = 1,
                 autocast: torch.dtype | None = None) -> float:
    """Mean PSNR (Y, `border` cropped) of `model` over the frames of one segment (every N-th);
    `autocast`: run the model's convolutions in that dtype (`adasr.nn.precision.autocast_dtype`)."""
    from adasr.metrics import psnr_y

    device = next(model.parameters()).device
    vals = []
    for i in range(0, lr.shape[0], every):
        x = to_tensor(lr[i], device=device).contiguous(memory_format=torch.channels_last)
        with autocast_to(autocast, device.type):
            y = model(x) if cfg is None else model(x, cfg=cfg)
        vals.append(psnr_y(to_frame(y.float()), hr[i], border))
    return float(np.mean(vals))
