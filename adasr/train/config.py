"""Training configuration: one typed table of defaults shared by the CLI and JSON run files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from adasr.errors import ConfigError
from adasr.threads import PRECISIONS

__all__ = ["MAX_ANCHORS", "MAX_SMALL_STEPS", "Phase", "SAMPLINGS", "SCHEDULES", "TrainConfig", "check_fields"]

SAMPLINGS = ("single", "sandwich")
SCHEDULES = ("cosine", "constant", "step")
MAX_ANCHORS = 64
MAX_SMALL_STEPS = 16


def check_fields(cls: type, data: dict[str, Any], what: str) -> None:
    """ConfigError naming the keys of `data` (a run file's options) that `cls`, a dataclass, lacks."""
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {what}(s): {', '.join(unknown)}")


@dataclass(frozen=True)
class Phase:
    """One stretch of training, described as data.

    sampling: "single" trains the model as it is (or the supernet's largest sub-network);
      "sandwich" trains the largest, the smallest and `random_subnets` random sub-networks each
      step with gradients accumulated (the sandwich rule).
    distill: weight of in-place distillation, an L1 term pulling every smaller sub-network's
      output towards the largest one's (detached) output.
    elastic: which dimensions of the search space may shrink in this phase (progressive
      shrinking, e.g. ("kernel",) then ("kernel", "depth") then everything); empty = all.
    steps: length of the phase; the last phase runs until the end of training.
    anchors: sub-network ids (e.g. a package's levels, smallest first) that "sandwich" samples
      from instead of the whole space: each step trains the largest sub-network of the space, the
      first anchor and `random_subnets` other anchors (a fixed set of family anchors).
    small_steps: extra updates per step ("sandwich" only) of the sandwich's sub-networks other
      than the largest (the smallest or first anchor, and freshly drawn random ones), each on its
      own batch of `small_patch` LR patches and with its own Adam state. The largest costs most
      of a step; this gives the cheap, small sub-networks several updates for each of its.
    """

    name: str = "standard"
    steps: int | None = None
    sampling: str = "single"
    random_subnets: int = 2
    distill: float = 0.0
    elastic: tuple[str, ...] = ()
    anchors: tuple[str, ...] = ()
    small_steps: int = 0
    small_patch: int = 16

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"phase {self.name!r}: sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"phase {self.name!r}: steps must be positive, got {self.steps}")
        if self.random_subnets < 0 or self.distill < 0:
            raise ConfigError(f"phase {self.name!r}: random_subnets and distill must be non-negative")
        object.__setattr__(self, "elastic", tuple(self.elastic))
        anchors = tuple(self.anchors)
        if len(anchors) > MAX_ANCHORS or not all(isinstance(a, str) and 0 < len(a) <= 200 for a in anchors):
            raise ConfigError(f"phase {self.name!r}: anchors must be at most {MAX_ANCHORS} sub-network ids")
        if anchors and self.sampling != "sandwich":
            raise ConfigError(f"phase {self.name!r}: anchors need sampling 'sandwich'")
        object.__setattr__(self, "anchors", anchors)
        if not (isinstance(self.small_steps, int) and 0 <= self.small_steps <= MAX_SMALL_STEPS):
            raise ConfigError(f"phase {self.name!r}: small_steps must be an integer from 0 to {MAX_SMALL_STEPS}")
        if not (isinstance(self.small_patch, int) and 4 <= self.small_patch <= 512):
            raise ConfigError(f"phase {self.name!r}: small_patch must be an integer from 4 to 512")
        if self.small_steps and self.sampling != "sandwich":
            raise ConfigError(f"phase {self.name!r}: small_steps need sampling 'sandwich'")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (and nothing that does not)."""

    arch: str
    scale: int
    train_data: tuple[str, ...]
    arch_args: dict[str, Any] = field(default_factory=dict)
    val_data: str | None = None
    patch: int = 48  # LR patch side
    batch_size: int = 16
    steps: int = 10000
    lr: float = 1e-3
    min_lr: float = 1e-5
    schedule: str = "cosine"
    warmup_steps: int = 0
    l1_weight: float = 1.0
    hfen_weight: float = 0.2
    ema: float = 0.0  # EMA decay; 0 disables
    grad_clip: float = 0.0  # max global grad norm; 0 disables
    val_every: int = 500
    val_images: int | None = None  # use only the first N validation images
    ckpt_every: int = 500
    seed: int = 0
    video_every: int = 5  # for video training sources: take every N-th frame
    phases: tuple[Phase, ...] = (Phase(),)
    init_from: str | None = None  # model file whose tensors of matching name and shape start the run
    # Streaming degradation of the training LR (adasr.data.degrade spec, e.g.
    # "h264+h265:crf=18-36,kernel=area+bicubic"): None trains on the protocol's clean bicubic LR.
    degradation: str | None = None
    # Arithmetic of the forward and backward passes: fp32, bf16 (autocast; weights, optimiser and EMA
    # stay float32) or auto (bf16 where the hardware computes it natively; adasr.stream.adapt)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        checks = [
            (self.scale in (2, 3, 4), f"scale must be 2, 3 or 4, got {self.scale}"),
            (len(self.train_data) > 0, "at least one training folder or video is needed"),
            (self.patch >= 8, f"patch must be at least 8 LR pixels, got {self.patch}"),
            (self.batch_size >= 1, f"batch_size must be positive, got {self.batch_size}"),
            (self.steps >= 1, f"steps must be positive, got {self.steps}"),
            (self.lr > 0 and self.min_lr >= 0, "lr must be positive and min_lr non-negative"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}"),
            (self.val_every >= 1 and self.ckpt_every >= 1, "val_every and ckpt_every must be positive"),
            (len(self.phases) > 0, "at least one phase is needed"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        object.__setattr__(self, "train_data", tuple(str(p) for p in self.train_data))
        if self.degradation is not None:
            from adasr.data.degrade import Degradation

            object.__setattr__(self, "degradation", Degradation.parse(self.degradation).spec)
        object.__setattr__(self, "phases", tuple(p if isinstance(p, Phase) else Phase(**p) for p in self.phases))

    def phase_at(self, step: int) -> Phase:
        start = 0
        for phase in self.phases:
            if phase.steps is None or step < start + phase.steps:
                return phase
            start += phase.steps
        return self.phases[-1]

    def lr_at(self, step: int) -> float:
        import math

        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "step":  # halve at 50% and 75% of training
            return self.lr * (0.5 ** sum(step >= f * self.steps for f in (0.5, 0.75)))
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["train_data"] = list(self.train_data)
        data["phases"] = [dict(dataclasses.asdict(p), elastic=list(p.elastic), anchors=list(p.anchors))
                          for p in self.phases]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        check_fields(cls, data, "training option")
        data = dict(data)
        data["train_data"] = tuple(data.get("train_data", ()))
        if "phases" in data:
            try:
                data["phases"] = tuple(Phase(**p) for p in data["phases"])
            except TypeError as exc:
                raise ConfigError(f"bad phase: {exc}") from None
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad training config: {exc}") from None
