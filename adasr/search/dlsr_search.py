"""DLSR's differentiable search (Eqs. 4-6, MiLeNAS first order) and the derivation of a genotype.

Per step t, on batches drawn from generators seeded with (seed, t) (so a resumed search continues
exactly):

    theta <- theta - eta_theta * grad_theta L_tr(theta, A)                        Eq. 5
    A     <- A - eta_A * (grad_A L_tr(theta, A) + lambda * grad_A L_val(theta, A))  Eq. 6

both gradients taken at the same (theta, A), Adam for both (theta: betas 0.9/0.999, A: the paper's
0.5/0.999, weight decay 1e-8 each). The first `warmup_steps` update theta only. The loss is
Eq. 10: l1_weight * L1 + mu * HFEN + gamma * L_P, with L_P (`DLSRSearchNet.param_loss`) the
parameter share of each operation weighted by its softmax(alpha), so the gradient of L_P reaches
alpha and pushes the heavy operations down. The data is split by image: the last `val_fraction`
of the images is D_valid (the paper: 450 of DF2K's 3450).

A run folder holds `checkpoint.safetensors` (network, alpha, beta, both Adam states; config,
step and trajectory as JSON in its header; no pickle), `genotype-stepN.json` snapshots at
`snapshot_steps`, `trajectory.json` (softmax(alpha) and softmax(beta) every `log_every` steps),
and at the end `genotype.json` (+ `trajectory.png` from the CLI).

Data-parallel (torchrun, `dist`): the first-order update takes both gradients at the same
(theta, A) from batch means, so each rank computes them on its slice of the same train and
valid batches and one all-reduce averages theta's gradient, A's combined gradient and the two
losses before the two Adam steps; every rank then holds the weights and alpha/beta of one
process with the whole batch. L_P depends on A alone and is the same on every rank, so its
averaged gradient is unchanged. Rank 0 writes the checkpoint, trajectory and genotypes.
(The second-order DARTS update, with its unrolled step, is not implemented, distributed or not.)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.nn import functional as F

from adasr._atomic import atomic_path, ensure_dir
from adasr._jsonfile import check_header, header, loads, read_json, write_json
from adasr.data.datasets import PatchSampler, SRPair, load_pairs
from adasr.errors import ConfigError, InputError, ModelError
from adasr.modelfile import tensors_sha256
from adasr.nn.dlsr import OPS, DLSRSearchNet, Genotype
from adasr.train.config import check_fields
from adasr.train.distributed import Dist
from adasr.train.loop import (
    load_optimizer_state,
    optimizer_tensors,
    pick_device,
    run_steps,
    step_generator,
    tensors_under,
)
from adasr.train.losses import hfen_loss

__all__ = ["CHECKPOINT", "DLSRSearch", "DLSRSearchConfig", "GENOTYPE", "SearchState", "TRAJECTORY", "TRAJECTORY_KIND",
           "TRAJECTORY_SCHEMA", "read_search_checkpoint", "read_trajectory", "split_pairs"]

CHECKPOINT = "checkpoint.safetensors"
GENOTYPE = "genotype.json"
TRAJECTORY = "trajectory.json"
TRAJECTORY_KIND = "adasr.dlsr-trajectory"
TRAJECTORY_SCHEMA = 1
_META = "adasr.dlsr-search"


@dataclass(frozen=True)
class DLSRSearchConfig:
    """Everything that decides a search's result. Defaults: the paper's x2 search (Sec. IV-B);
    `patch` is the LR patch side (the paper's HR 64 at x2)."""

    scale: int
    train_data: tuple[str, ...]
    width: int = 48
    cells: int = 6
    network_level: bool = True  # False: DLSR-B (fixed chain, cell-level search only)
    global_skip: bool = True    # bicubic skip around the network
    ops: tuple[str, ...] = OPS
    patch: int = 32
    batch_size: int = 64
    steps: int = 200_000
    warmup_steps: int = 20_000
    lr: float = 3e-4
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-8
    arch_weight_decay: float = 1e-8
    lam: float = 1.0     # lambda of Eq. 4/6
    l1_weight: float = 1.0
    mu: float = 0.2      # HFEN weight
    gamma: float = 0.2   # L_P weight
    val_fraction: float = 0.13
    seed: int = 0
    snapshot_steps: tuple[int, ...] = (50_000, 100_000, 150_000)
    log_every: int = 500
    ckpt_every: int = 1000
    video_every: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_data", tuple(str(p) for p in self.train_data))
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "arch_betas", tuple(float(b) for b in self.arch_betas))
        object.__setattr__(self, "snapshot_steps", tuple(sorted({int(s) for s in self.snapshot_steps})))
        checks = [
            (self.scale in (2, 3, 4), f"scale must be 2, 3 or 4, got {self.scale}"),
            (len(self.train_data) > 0, "at least one training folder or video is needed"),
            (4 <= self.width <= 256, f"width must be in 4..256, got {self.width}"),
            (1 <= self.cells <= 32, f"cells must be in 1..32, got {self.cells}"),
            (len(self.ops) > 0 and len(set(self.ops)) == len(self.ops) and set(self.ops) <= set(OPS),
             f"ops must be distinct names from {', '.join(OPS)}"),
            (self.patch >= 8, f"patch must be at least 8 LR pixels, got {self.patch}"),
            (self.batch_size >= 1 and self.steps >= 1, "batch_size and steps must be positive"),
            (0 <= self.warmup_steps, f"warmup_steps must be non-negative, got {self.warmup_steps}"),
            (self.lr > 0 and self.arch_lr > 0, "learning rates must be positive"),
            (len(self.arch_betas) == 2 and all(0 <= b < 1 for b in self.arch_betas),
             "arch_betas must be two values in [0, 1)"),
            (min(self.lam, self.l1_weight, self.mu, self.gamma, self.weight_decay, self.arch_weight_decay) >= 0,
             "loss weights and weight decays must be non-negative"),
            (self.l1_weight + self.mu + self.gamma > 0, "the loss needs at least one positive weight"),
            (0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (self.log_every >= 1 and self.ckpt_every >= 1, "log_every and ckpt_every must be positive"),
            (all(s >= 1 for s in self.snapshot_steps), "snapshot steps must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("train_data", "ops", "arch_betas", "snapshot_steps"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DLSRSearchConfig:
        check_fields(cls, data, "DLSR search option")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad DLSR search config: {exc}") from None


def split_pairs(pairs: list[SRPair], val_fraction: float) -> tuple[list[SRPair], list[SRPair]]:
    """D_train, D_valid by image: the last ceil-ish `val_fraction` of the images validate."""
    if len(pairs) < 2:
        raise InputError(f"the search needs at least 2 images (train and validation split), got {len(pairs)}")
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    return pairs[:-n_val], pairs[-n_val:]


@dataclass
class SearchState:
    step: int = 0
    seconds: float = 0.0
    trajectory: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    snapshots: list[str] = dataclasses.field(default_factory=list)


class DLSRSearch:
    """Runs a `DLSRSearchConfig` in `run_dir`; call `run()`. Events go to `on_event(kind, data)`:
    start, step (loss, val_loss, searching), snapshot (step, path), budget, end."""

    def __init__(self, cfg: DLSRSearchConfig, run_dir: str | Path, *, device: str = "auto", resume: bool = False,
                 max_minutes: float | None = None, on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 train_pairs: list[SRPair] | None = None, val_pairs: list[SRPair] | None = None,
                 dist: Dist | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.dist = dist or Dist()
        self.part = self.dist.part(cfg.batch_size)
        self.device = pick_device(device)
        self.max_seconds = None if max_minutes is None else max_minutes * 60.0
        self.on_event = on_event or (lambda kind, data: None)
        ckpt = self.run_dir / CHECKPOINT
        tensors = None
        if resume:
            if not ckpt.is_file():
                raise InputError(f"nothing to resume: no {CHECKPOINT} in {self.run_dir}")
            stored, self.state, tensors = read_search_checkpoint(ckpt)
            # The step count may grow on resume (search longer); everything else must match.
            a, b = stored.to_dict(), cfg.to_dict()
            changed = sorted(k for k in b if k != "steps" and a.get(k) != b[k])
            if changed:
                raise ConfigError(f"--resume with different settings than the checkpoint ({', '.join(changed)})")
        else:
            if ckpt.exists():
                raise ConfigError(f"{self.run_dir} already holds a search; use --resume or another folder")
            self.state = SearchState()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = DLSRSearchNet(cfg.scale, cfg.width, cfg.cells, network_level=cfg.network_level,
                                global_skip=cfg.global_skip, ops=cfg.ops, seed=cfg.seed)
        self.net = net.to(self.device)
        self.wopt = torch.optim.Adam(self.net.weight_parameters(), lr=cfg.lr, betas=(0.9, 0.999),
                                     weight_decay=cfg.weight_decay)
        self.aopt = torch.optim.Adam(self.net.arch_parameters(), lr=cfg.arch_lr, betas=cfg.arch_betas,
                                     weight_decay=cfg.arch_weight_decay)
        if tensors is not None:
            self._load_tensors(tensors)
        if train_pairs is None:
            pairs: list[SRPair] = []
            for source in cfg.train_data:
                pairs += load_pairs(source, cfg.scale, every=cfg.video_every)
            train_pairs, split_val = split_pairs(pairs, cfg.val_fraction)
            val_pairs = split_val if val_pairs is None else val_pairs
        if not val_pairs:
            raise InputError("the search needs validation images (D_valid)")
        self.train_sampler = PatchSampler(train_pairs, cfg.scale, cfg.patch, cfg.batch_size)
        self.val_sampler = PatchSampler(val_pairs, cfg.scale, cfg.patch, cfg.batch_size)

    # -- one step -------------------------------------------------------------------------

    def loss(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Eq. 10: l1_weight * L1 + mu * HFEN + gamma * L_P."""
        cfg = self.cfg
        loss = self.net.param_loss() * cfg.gamma
        if cfg.l1_weight:
            loss = loss + cfg.l1_weight * F.l1_loss(sr, hr)
        if cfg.mu:
            loss = loss + cfg.mu * hfen_loss(sr, hr)
        return loss

    def batches(self, step: int) -> tuple[torch.Tensor, ...]:
        gen = step_generator(self.cfg.seed, step)
        lr_t, hr_t = self.train_sampler.batch(gen, self.part)
        lr_v, hr_v = self.val_sampler.batch(gen, self.part)
        return tuple(t.to(self.device) for t in (lr_t, hr_t, lr_v, hr_v))

    def searching(self, step: int) -> bool:
        return step >= self.cfg.warmup_steps

    def gradients(self, step: int) -> tuple[float, float | None, list[torch.Tensor] | None]:
        """Fill theta's .grad with grad L_tr; return (L_tr, L_val, grad_A of Eq. 6) at the current
        (theta, A); L_val and grad_A are None during the warm-up."""
        lr_t, hr_t, lr_v, hr_v = self.batches(step)
        arch = self.net.arch_parameters()
        self.wopt.zero_grad(set_to_none=True)
        self.aopt.zero_grad(set_to_none=True)
        loss_tr = self.loss(self.net(lr_t), hr_t)
        loss_tr.backward()
        weights = list(self.net.weight_parameters())
        if not self.searching(step):
            (value,) = self.dist.average_gradients(weights, [float(loss_tr.detach())])
            return value, None, None
        grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in arch]
        loss_val = self.loss(self.net(lr_v), hr_v)
        if self.cfg.lam:
            val_grads = torch.autograd.grad(loss_val, arch, allow_unused=True)
            grads = [g if v is None else g + self.cfg.lam * v for g, v in zip(grads, val_grads, strict=True)]
        holders = [_GradHolder(g) for g in grads]  # A's combined gradient rides in the same all-reduce
        value_tr, value_val = self.dist.average_gradients([*weights, *holders],
                                                          [float(loss_tr.detach()), float(loss_val.detach())])
        return value_tr, value_val, grads

    def search_step(self, step: int) -> dict[str, Any]:
        """One Eq. 5 + Eq. 6 update (both Adam steps) at step `step`."""
        loss_tr, loss_val, grads = self.gradients(step)
        self.wopt.step()
        if grads is not None:
            for p, g in zip(self.net.arch_parameters(), grads, strict=True):
                p.grad = g
            self.aopt.step()
        self.aopt.zero_grad(set_to_none=True)
        return {"loss": loss_tr, "val_loss": loss_val, "searching": grads is not None}

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> SearchState:
        cfg, state = self.cfg, self.state
        if self.dist.world > 1:
            self.dist.check_same(state.step, tensors_sha256(self._tensors()[0]), "checkpoints or weights")
        if self.dist.main:
            ensure_dir(self.run_dir)
        self.net.train()
        if not state.trajectory:
            self._record()
        self.on_event("start", {"step": state.step, "steps": cfg.steps, "device": str(self.device)})
        last = {}

        def step(i: int) -> None:
            last["info"] = self.search_step(i)

        def after(done: int) -> None:
            if done % cfg.log_every == 0:
                self._record()
            if done in cfg.snapshot_steps:
                path = self.write_genotype(self.run_dir / f"genotype-step{done}.json")
                state.snapshots.append(path.name)
                if self.dist.main:
                    self.on_event("snapshot", {"step": done, "path": str(path)})
            self.on_event("step", {"step": done, **last["info"]})

        run_steps(state, cfg.steps, step, after, ckpt_every=cfg.ckpt_every, checkpoint=self.save_checkpoint,
                  max_seconds=self.max_seconds, dist=self.dist, on_event=self.on_event, run_dir=self.run_dir)
        if state.trajectory[-1]["step"] != state.step:
            self._record()
        self.save_checkpoint()
        path = self.write_genotype(self.run_dir / GENOTYPE)
        self.on_event("end", {"step": state.step, "seconds": state.seconds, "genotype": str(path)})
        return state

    def genotype(self) -> Genotype:
        cfg = self.cfg
        return self.net.derive().with_info(
            searched_steps=self.state.step, warmup_steps=cfg.warmup_steps, seed=cfg.seed, scale=cfg.scale,
            loss={"l1": cfg.l1_weight, "mu": cfg.mu, "gamma": cfg.gamma, "lambda": cfg.lam},
            search_width=cfg.width)

    def write_genotype(self, path: Path) -> Path:
        """Rank 0 writes `path` (atomically); every rank returns it."""
        if self.dist.main:
            write_json(path, self.genotype().to_dict())
        return path

    def _record(self) -> None:
        with torch.no_grad():
            alpha = self.net.alpha.softmax(dim=-1).cpu()
            betas = [b.softmax(dim=0).cpu() for b in self.net.betas]
        self.state.trajectory.append({
            "step": self.state.step,
            "alpha": [[[round(float(v), 5) for v in layer] for layer in cell] for cell in alpha],
            "beta": [[round(float(v), 5) for v in b] for b in betas]})

    # -- persistence ----------------------------------------------------------------------

    def _tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The checkpoint's tensors (network, both Adam states) and the optimizers' groups."""
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        groups = {}
        for prefix, optim in (("wopt", self.wopt), ("aopt", self.aopt)):
            tensors.update(optimizer_tensors(optim, prefix))
            groups[prefix] = [{k: v for k, v in g.items() if k != "params"} for g in optim.state_dict()["param_groups"]]
        return tensors, groups

    def save_checkpoint(self) -> None:
        """Rank 0 writes the checkpoint and trajectory (atomically); the other ranks nothing."""
        if not self.dist.main:
            return
        tensors, groups = self._tensors()
        meta = {"step": self.state.step, "seconds": self.state.seconds, "config": self.cfg.to_dict(),
                "snapshots": self.state.snapshots, "optim_groups": groups}
        ensure_dir(self.run_dir)
        write_json(self.run_dir / TRAJECTORY, {**header(TRAJECTORY_KIND, TRAJECTORY_SCHEMA),
                                               "ops": list(self.cfg.ops), "network_level": self.cfg.network_level,
                                               "warmup_steps": self.cfg.warmup_steps,
                                               "records": self.state.trajectory})
        meta["trajectory"] = self.state.trajectory
        with atomic_path(self.run_dir / CHECKPOINT) as tmp:
            save_file(tensors, str(tmp), metadata={_META: json.dumps(meta)})

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        try:
            self.net.load_state_dict(tensors_under(tensors, "net"), strict=True)
            for prefix, optim in (("wopt", self.wopt), ("aopt", self.aopt)):
                load_optimizer_state(optim, tensors_under(tensors, prefix))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModelError(f"checkpoint does not fit the search network: {str(exc).splitlines()[0]}") from None


class _GradHolder:
    """Presents a tensor as `.grad` so `Dist.average_gradients` averages it in place."""

    def __init__(self, grad: torch.Tensor) -> None:
        self.grad = grad


def read_search_checkpoint(path: Path) -> tuple[DLSRSearchConfig, SearchState, dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = loads((handle.metadata() or {})[_META], "header", ValueError)
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        cfg = DLSRSearchConfig.from_dict(meta["config"])
        state = SearchState(int(meta["step"]), float(meta.get("seconds", 0.0)), list(meta["trajectory"]),
                            list(meta.get("snapshots", [])))
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: damaged DLSR search checkpoint ({first})") from None
    return cfg, state, tensors


def read_trajectory(path: str | Path) -> dict[str, Any]:
    """A run's trajectory.json (or the folder holding it), checked enough to plot."""
    path = Path(path)
    if path.is_dir():
        path = path / TRAJECTORY
    data = read_json(path, "DLSR trajectory")
    check_header(data, TRAJECTORY_KIND, TRAJECTORY_SCHEMA, "DLSR trajectory", source=path)
    if not data.get("records"):
        raise ModelError(f"{path}: not a DLSR trajectory file (or it has no records)")
    return data
