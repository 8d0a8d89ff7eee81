"""Quality estimates for search: a fast evaluation and a learned predictor, and Kendall's tau.

- `FastEvaluator(model, pairs, scale)`: PSNR (Y, border = scale, uint8 output: the published
  protocol of `adasr.evaluation`) of a supernet's sub-network on a small held-in set of crops
  (default 8 crops of 64x64 LR, cut with a seeded local RNG). An `Evaluator`; scores are cached
  per config id and `evaluations` counts the forwards actually run.
- `encode(cfg, space)`: a config as a fixed-length 1-D float tensor: one-hot width, expansion,
  kernel, depth, skip and upsampler, and one one-hot block token per body position (all zeros
  for positions past the depth), as OFA's accuracy predictor encodes its architectures.
- `QualityPredictor`: an MLP on encodings (OFA: 3 hidden layers of 400; width configurable),
  trained on (config, PSNR) pairs with a seeded generator (initialisation and shuffling), saved
  as safetensors with a JSON header (space, hidden sizes, target normalisation). An `Evaluator`.
- `kendall_tau(a, b)`: tau-b (ties handled), numpy only.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from adasr._atomic import atomic_path
from adasr._jsonfile import check_header, loads
from adasr.data.datasets import SRPair, gray_of
from adasr.errors import ConfigError, InputError, ModelError
from adasr.frames import to_frame
from adasr.metrics import psnr_y
from adasr.search.protocols import Evaluator, Progress
from adasr.space import SearchSpace, SubnetConfig

__all__ = ["FastEvaluator", "PREDICTOR_SCHEMA_VERSION", "QualityPredictor", "encode", "encoding_size", "kendall_tau",
           "make_crops", "sample_quality_data"]

PREDICTOR_SCHEMA_VERSION = 1
_META_KEY = "adasr.quality_predictor"


# -- Kendall's tau ------------------------------------------------------------------------------------

def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two equally long sequences (ties in either count as neither
    concordant nor discordant; the denominator corrects for them). NaN if either is constant."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"kendall_tau needs two 1-D sequences of equal length, got {x.shape} and {y.shape}")
    if x.size < 2:
        return math.nan
    i, j = np.triu_indices(x.size, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = i.size
    tx, ty = np.count_nonzero(dx == 0), np.count_nonzero(dy == 0)
    denom = math.sqrt((n0 - tx) * (n0 - ty))
    if denom == 0:
        return math.nan
    return float(np.sum(dx * dy) / denom)


# -- fast evaluation ------------------------------------------------------------------------------------

def make_crops(pairs: Sequence[SRPair], scale: int, crops: int = 8, size: int = 64, seed: int = 0) -> list[SRPair]:
    """`crops` aligned LR/HR crops (LR size x size, smaller if an image is), cycling over `pairs`,
    positions drawn with a local `random.Random(seed)`."""
    if not pairs:
        raise InputError("no validation images for the fast evaluator")
    if not isinstance(crops, int) or crops < 1 or not isinstance(size, int) or size < 4:
        raise ConfigError(f"need crops >= 1 and crop size >= 4, got crops={crops!r}, size={size!r}")
    rng = random.Random(seed)
    out = []
    for n in range(crops):
        pair = pairs[n % len(pairs)]
        h, w = pair.lr.shape[:2]
        ch, cw = min(size, h), min(size, w)
        y, x = rng.randrange(h - ch + 1), rng.randrange(w - cw + 1)
        lr = pair.lr[y:y + ch, x:x + cw]
        hr = pair.hr[y * scale:(y + ch) * scale, x * scale:(x + cw) * scale]
        if hr.shape[:2] != (ch * scale, cw * scale):
            raise InputError(f"{pair.name}: HR is not {scale}x its LR")
        out.append(SRPair(f"{pair.name}@{y},{x}", np.ascontiguousarray(hr), np.ascontiguousarray(lr), pair.gray))
    return out


class FastEvaluator:
    """PSNR of sub-networks of `model` (a supernet: `model(x, cfg=cfg)`) on a few crops.

    Deterministic: the crops are fixed at construction (seeded) and the forward is in eval and
    inference mode. `score_module(m)` scores any plain SR module (a baseline) on the same crops.
    own: config id -> a static module with that config's own weights (a package level that does
    not share the supernet's); `score` of such a config scores that module.
    """

    def __init__(self, model: nn.Module, pairs: Sequence[SRPair], scale: int, *, crops: int = 8,
                 crop_size: int = 64, seed: int = 0, device: str | torch.device = "cpu",
                 own: Mapping[str, nn.Module] | None = None) -> None:
        self.model, self.scale, self.device = model, scale, torch.device(device)
        self.own = dict(own or {})
        self.crops = make_crops(pairs, scale, crops, crop_size, seed)
        # Same-shape crops go through the network as one batch.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(self.crops):
            groups.setdefault(c.lr.shape, []).append(i)
        self._batches = [(idx, torch.from_numpy(np.stack([self.crops[i].lr for i in idx])).permute(0, 3, 1, 2)
                          .float().div_(255.0)) for idx in groups.values()]
        self._cache: dict[str, float] = {}
        self.evaluations = 0

    def _psnr(self, run: Callable[[torch.Tensor], torch.Tensor], module: nn.Module) -> float:
        was_training = module.training
        module.eval()
        values = [0.0] * len(self.crops)
        try:
            with torch.inference_mode():
                for idx, lr in self._batches:
                    sr = run(lr.to(self.device))
                    for k, i in enumerate(idx):
                        img, hr = to_frame(sr[k:k + 1]), self.crops[i].hr
                        if img.shape != hr.shape:
                            raise ModelError(f"model output {img.shape} does not match HR {hr.shape}")
                        if self.crops[i].gray:
                            img, hr = gray_of(img), hr[..., 0]
                        values[i] = psnr_y(img, hr, border=self.scale)
        finally:
            module.train(was_training)
        return float(np.mean(values))

    def score(self, cfg: SubnetConfig) -> float:
        """Mean PSNR (dB) of sub-network `cfg` over the crops (cached per config id)."""
        cached = self._cache.get(cfg.id)
        if cached is None:
            own = self.own.get(cfg.id)
            if own is not None:
                cached = self._cache[cfg.id] = self._psnr(own, own)
            else:
                routing = self.model.routing_for(cfg)
                cached = self._cache[cfg.id] = self._psnr(routing, self.model)
            self.evaluations += 1
        return cached

    def score_module(self, module: nn.Module) -> float:
        """Mean PSNR of a plain SR module (LR batch -> SR batch) over the same crops."""
        return self._psnr(module, module)


def sample_quality_data(evaluator: Evaluator, space: SearchSpace, n: int, *, seed: int = 0,
                        on_progress: Progress | None = None) -> tuple[list[SubnetConfig], list[float]]:
    """`n` distinct random configs of `space` (bounded draws) and their scores, for training and
    testing a `QualityPredictor`."""
    rng = random.Random(seed)
    cfgs: dict[str, SubnetConfig] = {}
    for _ in range(max(n, 1) * 20):
        if len(cfgs) >= n:
            break
        cfg = space.sample(rng)
        cfgs.setdefault(cfg.id, cfg)
    out = list(cfgs.values())
    scores = []
    for i, cfg in enumerate(out, 1):
        scores.append(float(evaluator.score(cfg)))
        if on_progress:
            on_progress("evaluate", i, len(out))
    return out, scores


# -- encoding -----------------------------------------------------------------------------------------

def encoding_size(space: SearchSpace) -> int:
    return (len(space.widths) + len(space.expansions) + len(space.kernels) + len(space.depths)
            + len(space.skips) + len(space.upsamplers) + space.max_depth * len(space.blocks))


def encode(cfg: SubnetConfig, space: SearchSpace) -> torch.Tensor:
    """One-hot encoding of `cfg` in `space` (see the module doc): float32, `encoding_size(space)`."""
    space.validate(cfg)
    parts = []

    def one_hot(value: Any, choices: Sequence[Any]) -> None:
        v = [0.0] * len(choices)
        v[list(choices).index(value)] = 1.0
        parts.extend(v)

    one_hot(cfg.width, space.widths)
    one_hot(cfg.expansion, space.expansions)
    one_hot(cfg.kernel, space.kernels)
    one_hot(cfg.depth, space.depths)
    one_hot(cfg.skip, space.skips)
    one_hot(cfg.upsampler, space.upsamplers)
    for i in range(space.max_depth):
        if i < cfg.depth:
            one_hot(cfg.blocks[i], space.blocks)
        else:
            parts.extend([0.0] * len(space.blocks))
    return torch.tensor(parts, dtype=torch.float32)


# -- predictor ----------------------------------------------------------------------------------------

class QualityPredictor(nn.Module):
    """MLP: encoding -> PSNR (dB). Targets are normalised by the training set's mean and std."""

    def __init__(self, space: SearchSpace, hidden: Sequence[int] = (400, 400, 400), seed: int = 0) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ConfigError(f"hidden layer sizes must be positive integers, got {list(hidden)}")
        self.space, self.hidden = space, hidden
        sizes = (encoding_size(space), *hidden, 1)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self._init(torch.Generator().manual_seed(seed))

    def _init(self, gen: torch.Generator) -> None:
        # nn.Linear's default init, from a local generator (no global RNG state).
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.uniform_(-bound, bound, generator=gen)
                    m.bias.uniform_(-bound, bound, generator=gen)

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        """(N, D) encodings -> (N,) PSNR in dB."""
        return self.net(enc).squeeze(-1) * self.target_std + self.target_mean

    def encode_all(self, cfgs: Sequence[SubnetConfig]) -> torch.Tensor:
        return torch.stack([encode(c, self.space) for c in cfgs]) if cfgs else torch.zeros(0, encoding_size(self.space))

    def fit(self, cfgs: Sequence[SubnetConfig], psnrs: Sequence[float], *, epochs: int = 200, lr: float = 1e-3,
            batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
            on_progress: Progress | None = None) -> list[float]:
        """Train on (config, PSNR) pairs (Adam, MSE on normalised targets); returns the loss per epoch."""
        cfgs = list(cfgs)
        y = torch.tensor([float(v) for v in psnrs], dtype=torch.float32)
        if len(cfgs) != len(y) or len(cfgs) < 2:
            raise ConfigError(f"need at least 2 (config, PSNR) pairs of equal count, got {len(cfgs)} and {len(y)}")
        if not torch.isfinite(y).all():
            raise ConfigError("PSNR targets must be finite")
        if not isinstance(epochs, int) or not 1 <= epochs <= 100_000:
            raise ConfigError(f"epochs must be an integer in [1, 100000], got {epochs!r}")
        x = self.encode_all(cfgs)
        mean, std = y.mean(), y.std().clamp_min(1e-6)
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(float(std))
        target = (y - mean) / std
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        losses = []
        self.train()
        for epoch in range(epochs):
            order = torch.randperm(len(cfgs), generator=gen)
            total = 0.0
            for start in range(0, len(cfgs), batch_size):
                idx = order[start:start + batch_size]
                loss = torch.mean((self.net(x[idx]).squeeze(-1) - target[idx]) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / len(cfgs))
            if on_progress:
                on_progress("fit", epoch + 1, epochs)
        self.eval()
        return losses

    @torch.inference_mode()
    def predict(self, cfgs: Sequence[SubnetConfig]) -> list[float]:
        was_training = self.training
        self.eval()
        try:
            return [float(v) for v in self(self.encode_all(list(cfgs)))]
        finally:
            self.train(was_training)

    def score(self, cfg: SubnetConfig) -> float:
        """Predicted PSNR of one config (an `Evaluator`)."""
        return self.predict([cfg])[0]

    def tau(self, cfgs: Sequence[SubnetConfig], psnrs: Sequence[float]) -> float:
        """Kendall's tau between predicted and evaluated PSNR (e.g. on held-out configs)."""
        return kendall_tau(self.predict(cfgs), psnrs)

    # -- files: safetensors + JSON header, never pickle --

    def save(self, path: str | os.PathLike[str], info: dict[str, Any] | None = None) -> None:
        meta = {"schema_version": PREDICTOR_SCHEMA_VERSION, "space": self.space.to_dict(),
                "hidden": list(self.hidden), "info": info or {}}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, sort_keys=True)})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QualityPredictor:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"quality predictor file not found: {path}")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                raw = (handle.metadata() or {}).get(_META_KEY)
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"{path}: damaged or not a safetensors file ({first})") from None
        if raw is None:
            raise ModelError(f"{path}: not an adasr quality predictor (no header)")
        try:
            meta = loads(raw, "header", ModelError)
            check_header(meta, None, PREDICTOR_SCHEMA_VERSION, "quality predictor", source=path)
            model = cls(SearchSpace.from_dict(meta["space"]), tuple(meta["hidden"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ConfigError) as exc:
            raise ModelError(f"{path}: bad quality predictor header ({exc})") from None
        expected = model.state_dict()
        if set(expected) != set(tensors) or any(expected[k].shape != tensors[k].shape for k in expected):
            raise ModelError(f"{path}: quality predictor weights do not match its header")
        model.load_state_dict(tensors, strict=True)
        return model.eval()
