"""The one training loop.

Plain models and the supernet go through the same steps; what differs per phase (which
sub-networks a step trains, distillation, progressive shrinking) is data in `TrainConfig.phases`
interpreted by `adasr.train.sampling`. Every random draw comes from a generator seeded with
(seed, step), and the learning rate is a pure function of the step, so a run resumed from a
checkpoint continues exactly as if it had never stopped.

A checkpoint is one safetensors file: model, EMA and Adam tensors, with the step, the config, the
validation history and a SHA-256 digest of the tensors as JSON in its header; `--resume` refuses a
checkpoint whose tensors do not match the digest or are not finite. A step whose loss is not
finite stops the run (`TrainingDiverged`) before anything of it is saved.

Under torchrun (`dist`, see `adasr.train.distributed`) every rank trains its slice of the same
global batch and the gradients are averaged, so the weights follow one process's; rank 0 alone
validates, reports progress and writes checkpoints and the model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from adasr._atomic import write_bytes_atomic
from adasr._jsonfile import loads
from adasr.data.datasets import PatchSampler, SRPair, load_pairs
from adasr.errors import AdasrError, ConfigError, InputError, ModelError
from adasr.evaluation import evaluate
from adasr.modelfile import ModelSpec, non_finite, save_model, tensors_sha256
from adasr.nn.precision import autocast, autocast_dtype
from adasr.nn.registry import build_model
from adasr.train.config import Phase, TrainConfig
from adasr.train.distributed import Dist
from adasr.train.losses import SRLoss
from adasr.train.sampling import step_subnets, validation_subnets

__all__ = ["CHECKPOINT", "MODEL", "TrainState", "Trainer", "TrainingDiverged", "TrainingInterrupted",
           "build_initial_model", "pick_device", "load_optimizer_state", "optimizer_tensors",
           "read_checkpoint", "read_checkpoint_config", "run_steps", "step_generator", "tensors_under", "warm_start"]

CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
_META = "adasr.checkpoint"


class TrainingDiverged(ModelError):
    """A step's loss (or the final weights) is not finite; the last checkpoint on disk is untouched."""

    def __init__(self, step: int, run_dir: Path, saved: int | None) -> None:
        kept = f"the checkpoint of step {saved} in {run_dir} is kept" if saved else "nothing was saved"
        super().__init__(f"training diverged at step {step} (loss is not finite); {kept}; "
                         f"lower --lr or --hfen-weight and start again")
        self.step = step


class TrainingInterrupted(AdasrError):
    """Raised after Ctrl-C once a checkpoint of the current step is safely on disk."""

    exit_code = 130

    def __init__(self, step: int, run_dir: Path) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved in {run_dir} (continue with --resume)")
        self.step = step


@dataclass
class TrainState:
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # validation records
    seconds: float = 0.0  # training time over all sessions of this run


def step_generator(seed: int, step: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + step) % (2**63))
    return gen


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but this torch build or machine has no CUDA device")
    return torch.device(name)


def build_initial_model(cfg: TrainConfig, warm: bool = True) -> nn.Module:
    """The model with its initial weights, seeded without touching the global RNG state.

    With `cfg.init_from` (a model file), every tensor of the same name and shape is copied from
    it: a warm start, e.g. an x4 supernet from a trained x2 one (the body and head match, the
    upsampler does not), as EDSR initialises its x3/x4 models from x2.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, scale=cfg.scale, **cfg.arch_args)
    if cfg.init_from and warm:  # a resumed run's checkpoint holds every tensor: no warm start needed
        warm_start(model, cfg.init_from)
    return model


def warm_start(model: nn.Module, path: str | Path) -> tuple[int, int]:
    """Copy the tensors of `path` (safetensors, never unpickled) whose names and shapes match
    `model`'s; returns (copied, total in the model). ModelError when nothing matches."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--init-from model not found: {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as safetensors: {exc}") from None
    state = model.state_dict()
    matched = {k: v for k, v in tensors.items() if k in state and tuple(v.shape) == tuple(state[k].shape)}
    if not matched:
        raise ModelError(f"{path} has no tensor of the same name and shape as this model")
    with torch.no_grad():
        for k, v in matched.items():
            state[k].copy_(v)
    return len(matched), len(state)


class Trainer:
    """Runs `TrainConfig` in `run_dir`; call `run()`. Progress goes to `on_event` callbacks."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, *, device: str = "auto",
                 resume: bool = False, max_minutes: float | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 train_pairs: list[SRPair] | None = None, val_pairs: list[SRPair] | None = None,
                 dist: Dist | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.dist = dist or Dist()
        self.device = pick_device(device)
        self.autocast = autocast_dtype(cfg.precision, self.device)
        self.part = self.dist.part(cfg.batch_size)
        self.max_seconds = None if max_minutes is None else max_minutes * 60.0
        self.on_event = on_event or (lambda kind, data: None)
        ckpt = self.run_dir / CHECKPOINT
        if resume:
            if not ckpt.is_file():
                raise InputError(f"nothing to resume: no {CHECKPOINT} in {self.run_dir}")
            stored_cfg, self.state, tensors = read_checkpoint(ckpt)
            self._saved_step: int | None = self.state.step
            if stored_cfg.to_dict() != cfg.to_dict():
                changed = sorted(k for k, v in cfg.to_dict().items() if stored_cfg.to_dict().get(k) != v)
                raise ConfigError(f"--resume with different settings than the checkpoint ({', '.join(changed)})")
        else:
            if ckpt.exists():
                raise ConfigError(f"{self.run_dir} already holds a run; use --resume or another folder")
            self.state, tensors = TrainState(), None
            self._saved_step = None
        self.cfg = cfg
        self.model = build_initial_model(cfg, warm=tensors is None).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if cfg.ema else None
        self.optim = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        # The small sub-networks' extra updates (Phase.small_steps) have their own Adam state, so
        # they never move the weights only larger sub-networks use with those ones' momentum.
        self.small_optim = (torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
                            if any(p.small_steps for p in cfg.phases) else None)
        if tensors is not None:
            self._load_tensors(tensors)
        self.loss_fn = SRLoss(cfg.l1_weight, cfg.hfen_weight)
        self.train_pairs = train_pairs if train_pairs is not None else self._load_train()
        self.sampler = PatchSampler(self.train_pairs, cfg.scale, cfg.patch, cfg.batch_size)
        self.small_samplers = {p.small_patch: PatchSampler(self.train_pairs, cfg.scale, p.small_patch, cfg.batch_size)
                               for p in cfg.phases if p.small_steps}
        self.val_pairs = val_pairs
        if self.val_pairs is None and cfg.val_data and self.dist.main:
            self.val_pairs = load_pairs(cfg.val_data, cfg.scale, limit=cfg.val_images)
            if cfg.degradation is not None:
                # validate on what the run trains for: the validation images through one fixed
                # point of the band (two frames each, so a P frame is scored too)
                from adasr.data.degrade import VALIDATION, degraded_pairs

                self.val_pairs = degraded_pairs([cfg.val_data], cfg.scale, VALIDATION, seed=cfg.seed)
        if not self.dist.main:
            self.val_pairs = None  # rank 0 validates

    def _load_train(self) -> list[SRPair]:
        if self.cfg.degradation is not None:
            from adasr.data.degrade import Degradation, degraded_pairs

            deg = Degradation.parse(self.cfg.degradation)
            self.on_event("data", {"what": f"degrading training clips ({deg.spec})"})
            return degraded_pairs(self.cfg.train_data, self.cfg.scale, deg, seed=self.cfg.seed,
                                  progress=lambda done, total: self.on_event("data", {"done": done, "total": total}))
        pairs: list[SRPair] = []
        for source in self.cfg.train_data:
            pairs += load_pairs(source, self.cfg.scale, every=self.cfg.video_every)
        return pairs

    # -- one step -------------------------------------------------------------------------

    def train_step(self, step: int) -> float:
        cfg = self.cfg
        gen = step_generator(cfg.seed, step)
        lr_batch, hr_batch = self.sampler.batch(gen, self.part)
        lr_batch, hr_batch = lr_batch.to(self.device), hr_batch.to(self.device)
        for group in self.optim.param_groups:
            group["lr"] = cfg.lr_at(step)
        phase = cfg.phase_at(step)
        subnets = step_subnets(self.model, phase, gen)
        self.optim.zero_grad(set_to_none=True)
        teacher = None
        total = 0.0
        for index, subnet in enumerate(subnets):
            with self._autocast():
                sr = self.model(lr_batch) if subnet is None else self.model(lr_batch, cfg=subnet)
            sr = sr.float()
            loss = self.loss_fn(sr, hr_batch)
            if phase.distill and teacher is not None:
                loss = loss + phase.distill * (sr - teacher).abs().mean()
            if index == 0 and phase.distill:
                teacher = sr.detach()  # the first sub-network of a sandwich step is the largest
            (loss / len(subnets)).backward()
            total += float(loss.detach()) / len(subnets)
        (total,) = self.dist.average_gradients(self.model.parameters(), [total])
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optim.step()
        for _ in range(phase.small_steps):
            self._small_update(step, phase, gen)
        if self.ema is not None:
            # Warm-up of the decay so early validation is not dominated by the initial weights.
            decay = min(cfg.ema, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    e.lerp_(p, 1.0 - decay)
        return total

    def _autocast(self) -> contextlib.AbstractContextManager:
        """The forward passes' autocast (TrainConfig.precision), or nothing for float32."""
        return autocast(self.autocast, self.device.type)

    def _small_update(self, step: int, phase: Phase, gen: torch.Generator) -> None:
        """One extra update of the sandwich's sub-networks but the largest, on its own batch of
        `phase.small_patch` patches (drawn from the step's generator: a resumed run repeats it)."""
        cfg = self.cfg
        lr_batch, hr_batch = self.small_samplers[phase.small_patch].batch(gen, self.part)
        lr_batch, hr_batch = lr_batch.to(self.device), hr_batch.to(self.device)
        subnets = step_subnets(self.model, phase, gen)[1:]
        for group in self.small_optim.param_groups:
            group["lr"] = cfg.lr_at(step)
        self.small_optim.zero_grad(set_to_none=True)
        for subnet in subnets:
            with self._autocast():
                sr = self.model(lr_batch, cfg=subnet)
            (self.loss_fn(sr.float(), hr_batch) / len(subnets)).backward()
        self.dist.average_gradients(self.model.parameters(), [])
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.small_optim.step()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> TrainState:
        cfg, state = self.cfg, self.state
        if self.dist.world > 1:
            self.dist.check_same(state.step, tensors_sha256(self._tensors()), "checkpoints or weights")
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        self.on_event("start", {"step": state.step, "steps": cfg.steps, "device": str(self.device)})
        last = {}

        def step(i: int) -> None:
            last["loss"] = loss = self.train_step(i)
            if not math.isfinite(loss):
                raise TrainingDiverged(i + 1, self.run_dir, self._saved_step)

        def after(done: int) -> None:
            self.on_event("step", {"step": done, "loss": last["loss"], "lr": cfg.lr_at(done - 1)})
            if self.val_pairs and (done % cfg.val_every == 0 or done == cfg.steps):
                record = {"step": done, **self.validate()}
                state.history.append(record)
                self.on_event("val", record)

        def interrupted() -> None:
            if non_finite(self.model.state_dict()):  # inside a diverging step: keep the last good one
                raise TrainingDiverged(state.step, self.run_dir, self._saved_step) from None

        run_steps(state, cfg.steps, step, after, ckpt_every=cfg.ckpt_every, checkpoint=self.save_checkpoint,
                  max_seconds=self.max_seconds, dist=self.dist, on_event=self.on_event, run_dir=self.run_dir,
                  before_save=interrupted)
        if non_finite(self.final_model().state_dict()):
            raise TrainingDiverged(state.step, self.run_dir, self._saved_step)
        self.save_checkpoint()
        self.save_model(self.run_dir / MODEL)
        self.on_event("end", {"step": state.step, "seconds": state.seconds})
        return state

    def final_model(self) -> nn.Module:
        return self.ema if self.ema is not None else self.model

    def validate(self) -> dict[str, float]:
        model = self.final_model()
        out: dict[str, float] = {}
        for label, subnet in validation_subnets(model):
            if subnet is not None:
                model.set_active(subnet)
            out[f"psnr{label}"] = evaluate(model, self.val_pairs, self.cfg.scale, with_ssim=False,
                                           device=self.device).psnr
        return out

    # -- persistence ----------------------------------------------------------------------

    def save_model(self, path: Path) -> None:
        if not self.dist.main:
            return
        model = self.final_model()
        info = {"trained_steps": self.state.step, "train_seconds": round(self.state.seconds, 1),
                "train_data": [Path(p).name for p in self.cfg.train_data], "seed": self.cfg.seed,
                "validation": self.state.history[-1] if self.state.history else None}
        save_model(path, model, ModelSpec(self.cfg.arch, dict(self.cfg.arch_args, scale=self.cfg.scale),
                                          self.cfg.scale, info))

    def _tensors(self) -> dict[str, torch.Tensor]:
        """Model, EMA and Adam tensors, on the CPU, by checkpoint name."""
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.ema.state_dict().items()})
        for prefix, optim in (("optim", self.optim), ("small_optim", self.small_optim)):
            if optim is not None:
                tensors.update(optimizer_tensors(optim, prefix))
        return tensors

    def save_checkpoint(self) -> None:
        """Rank 0 writes (atomically); the other ranks only note the step."""
        if not self.dist.main:
            self._saved_step = self.state.step
            return
        tensors = self._tensors()
        optim_state = self.optim.state_dict()
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optim_state["param_groups"]]
        meta = {"step": self.state.step, "seconds": self.state.seconds, "history": self.state.history,
                "config": self.cfg.to_dict(), "optim_groups": groups, "tensors_sha256": tensors_sha256(tensors)}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.run_dir / "config.json", (json.dumps(self.cfg.to_dict(), indent=2) + "\n").encode())
        # serialised here and written by Python, so a full disk raises OSError (ENOSPC) like any write
        write_bytes_atomic(self.run_dir / CHECKPOINT, save(tensors, metadata={_META: json.dumps(meta)}))
        self._saved_step = self.state.step

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        try:
            self.model.load_state_dict(tensors_under(tensors, "model"), strict=True)
            if self.ema is not None:
                self.ema.load_state_dict(tensors_under(tensors, "ema"), strict=True)
            for prefix, optim in (("optim", self.optim), ("small_optim", self.small_optim)):
                if optim is not None:
                    load_optimizer_state(optim, tensors_under(tensors, prefix))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModelError(f"checkpoint does not fit the model: {str(exc).splitlines()[0]}") from None


def _read(path: Path, with_tensors: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = loads((handle.metadata() or {})[_META], "header", ValueError)
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if with_tensors else {}
        if not isinstance(meta, dict):
            raise ValueError("header is not a JSON object")
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: damaged checkpoint ({first})") from None
    return meta, tensors


def _config_of(meta: dict[str, Any], path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise ModelError(f"{path}: damaged checkpoint (its training config: {exc})") from None


class StepState(Protocol):
    """What `run_steps` advances: a trainer's step count and training seconds."""

    step: int
    seconds: float


def tensors_under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix.<rest>``, as ``<rest>``."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def optimizer_tensors(optim: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as flat checkpoint tensors ``prefix.<index>.<slot>``
    (its param groups go to the checkpoint's JSON metadata)."""
    return {f"{prefix}.{index}.{name}": torch.as_tensor(value).detach().cpu().contiguous()
            for index, slots in optim.state_dict()["state"].items() for name, value in slots.items()}


def load_optimizer_state(optim: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore what `optimizer_tensors` wrote (`tensors` without the prefix: ``<index>.<slot>``)."""
    optim_state = optim.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optim_state["state"] = state
    optim.load_state_dict(optim_state)


def run_steps(state: StepState, steps: int, step: Callable[[int], None], after: Callable[[int], None], *,
              ckpt_every: int, checkpoint: Callable[[], None], max_seconds: float | None, dist: Dist,
              on_event: Callable[[str, dict], None], run_dir: Path,
              before_save: Callable[[], None] | None = None) -> None:
    """The step loop every trainer here runs (`Trainer`, `adasr.search.dlsr_search.DLSRSearch`): from
    ``state.step`` to `steps`: ``step(i)`` (the update), then ``state.step = i + 1`` and
    ``state.seconds`` (time trained, earlier runs included), then ``after(i + 1)`` (events,
    validation, snapshots); a `checkpoint` every `ckpt_every` steps but the last; a stop at
    `max_seconds` of this run that every rank agrees on (an ``on_event("budget")``). Ctrl-C:
    `before_save` (which may raise instead), `checkpoint`, then `TrainingInterrupted`."""
    started, base_seconds = time.monotonic(), state.seconds
    try:
        while state.step < steps:
            i = state.step
            step(i)
            state.step = i + 1
            state.seconds = base_seconds + time.monotonic() - started
            after(state.step)
            if state.step % ckpt_every == 0 and state.step < steps:
                checkpoint()
            if max_seconds is not None and dist.any(time.monotonic() - started > max_seconds):
                on_event("budget", {"step": state.step})
                break
    except KeyboardInterrupt:
        if before_save is not None:
            before_save()
        checkpoint()
        raise TrainingInterrupted(state.step, run_dir) from None


def read_checkpoint_config(path: Path) -> TrainConfig:
    """The training config stored in a checkpoint's header (no tensors are read)."""
    return _config_of(_read(path, with_tensors=False)[0], path)


def read_checkpoint(path: Path) -> tuple[TrainConfig, TrainState, dict[str, torch.Tensor]]:
    """Config, state and tensors of a checkpoint; ModelError if it is damaged: unreadable, tensors that
    do not match the header's digest, or tensors holding NaN or infinity."""
    meta, tensors = _read(path, with_tensors=True)
    digest = meta.get("tensors_sha256")  # absent in checkpoints written before digests existed
    if digest is not None and digest != tensors_sha256(tensors):
        raise ModelError(f"{path}: damaged checkpoint (its tensors do not match the checksum in its header)")
    bad = non_finite(tensors)
    if bad:
        raise ModelError(f"{path}: damaged checkpoint ({len(bad)} tensor(s) hold NaN or infinity, e.g. {bad[0]})")
    cfg = _config_of(meta, path)
    try:
        state = TrainState(int(meta["step"]), list(meta["history"]), float(meta.get("seconds", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: damaged checkpoint (its step or history: {exc})") from None
    return cfg, state, tensors
