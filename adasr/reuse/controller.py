"""The RECL controller: what a server calls once per update window of each channel.

Use::

    ctl = Controller(ReuseConfig())                     # bundled x2 package as the base
    decision = ctl.on_window("cam-1", lr, hr)          # labelled frames of the window
    send(decision.vector)                               # the chosen expert, at once (reuse)
    ctl.retrain(budget=8, on_update=push)               # share the compute among the jobs;
                                                        # push(channel, micro, vector) whenever a
                                                        # job's model beats the client's
    ctl.stats()                                         # zoo size, reuse rate, ...

`on_window(channel_id, lr_frames, hr_frames)` runs the selection of RECL section 6.3.1: the
selector's top-K experts, the channel's current model and its last retrained model go to the
safety checker (`safety_check`); the best is the channel's new model (`Decision.vector`, a full
flat vector of the base; `Controller.record(...)` turns it into a stream-codec delta for a
client). It also decides whether the last retrained model is promising (`Admission`) and queues
a retraining job from the chosen model on the window's frames (`Decision.job`).

`retrain(budget)` runs every queued job under the scheduler (micro-windows of
`AdaptConfig.steps` steps; `InBand` = Algorithm 4 by default); after each micro-window the job's
model is pushed to its channel when it is better on the labelled frames than what the channel
holds (AMS's continuous updates). When it returns, the jobs' final models become the channels'
"last retrained" models, promising ones enter the zoo when `gamma` are queued (the selector is
updated incrementally), and experts chosen fewer than `eta` times in the last `q` selections are
pruned.

Frames are uint8 arrays, LR (N, h, w, 3) and HR (N, s*h, s*w, 3), N >= 1 (the window's sampled,
labelled frames; a few are enough). The controller is single-threaded: a server calls it from
one worker.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from adasr.errors import ConfigError
from adasr.reuse.gating import EmbeddingSelector, FrameMemory, GatingSelector, make_selector
from adasr.reuse.policy import Admission, Candidate, Pruner
from adasr.reuse.quality import ExpertEvaluator, check_frames
from adasr.reuse.safety import Verdict, safety_check
from adasr.reuse.scheduler import Allocation, RetrainJob, make_scheduler, micro_config
from adasr.reuse.zoo import BaseModel, Zoo, delta_record

__all__ = ["Controller", "Decision", "MAX_CHANNELS", "MAX_ID", "OnUpdate", "ReuseConfig"]

MAX_CHANNELS = 1024
MAX_ID = 128


@dataclass(frozen=True)
class ReuseConfig:
    """Every knob of the controller (thesis defaults scaled to adasr's sizes, see `policy`).

    level: the supernet level experts serve (index or config id), or "all" (supernet experts).
    reuse: keep a zoo and select from it (False: retrain-only, AMS). retrain: run retraining
    jobs (False with reuse False: no adaptation at all).
    """

    level: int | str = 3
    k: int = 10
    selector: str = "gating"
    scheduler: str = "inband"
    profile: int = 2  # out-of-band profiling micro-windows per job
    alpha: float = 0.05
    gamma: int = 2
    eta: int = 1
    q: int = 24
    memory: int = 64  # labelled frames the selector learns from
    selector_steps: int = 60
    sparse: float = 0.05  # fraction of the supernet's weights one micro-window may change
    steps: int = 4  # Adam steps per micro-window
    batch: int = 4
    patch: int = 32
    lr: float = 1e-3
    reuse: bool = True
    retrain: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 1000:
            raise ConfigError(f"top-K must be in [1, 1000], got {self.k}")
        if not 1 <= self.steps <= 1000 or not 1 <= self.batch <= 256 or not 8 <= self.patch <= 512:
            raise ConfigError("micro-window steps must be in [1, 1000], batch in [1, 256], patch in [8, 512]")
        if not 1 <= self.selector_steps <= 100_000 and self.selector_steps != 0:
            raise ConfigError(f"selector steps must be in [0, 100000], got {self.selector_steps}")
        make_scheduler(self.scheduler, self.profile)  # validates the name and profile
        Admission(self.alpha, self.gamma)
        Pruner(self.eta, self.q)
        micro_config(self.sparse, self.steps, self.batch, self.patch, self.lr)


@dataclass
class Decision:
    """The answer to one window: the channel's model and the retraining job queued for it."""

    channel: str
    window: int
    chosen: str  # a zoo expert id, "current", "retrained", "previous" (last window's choice) or "base"
    vector: torch.Tensor
    verdict: Verdict | None
    topk: list[str]
    job: RetrainJob | None
    promising: bool = False

    @property
    def reused(self) -> bool:
        """True when a zoo expert won the safety check."""
        return self.chosen not in ("current", "retrained", "previous", "base")


@dataclass
class _Channel:
    current: torch.Tensor
    current_name: str = "base"
    current_psnr: float = float("-inf")  # on the window's labelled frames
    selected: torch.Tensor | None = None  # what the last selection chose (before any retraining)
    selected_name: str = "base"
    retrained: torch.Tensor | None = None
    retrained_frames: tuple[np.ndarray, np.ndarray] | None = None
    window: int = 0
    pushed: bool = False  # a retraining job's model replaced the selection in this window
    job: RetrainJob | None = None
    history: list[str] = field(default_factory=list)


OnUpdate = Callable[[str, int, torch.Tensor], None]  # (channel, micro-window index, new vector)


class Controller:
    def __init__(self, config: ReuseConfig | None = None, base: BaseModel | None = None,
                 zoo: Zoo | None = None) -> None:
        self.cfg = config or ReuseConfig()
        self.base = base or BaseModel.from_package()
        if self.base.plain:  # a plain model: one level, run without a config
            self.levels, self.level_ids = [None], tuple(self.base.level_ids)
        else:
            self.levels = list(self.base.levels) if self.cfg.level == "all" else [self.base.level(self.cfg.level)]
            self.level_ids = tuple(c.id for c in self.levels)
        self.zoo = zoo if zoo is not None else Zoo(self.base)
        if self.zoo.base is not self.base and self.zoo.base.hash != self.base.hash:
            raise ConfigError("the zoo belongs to another base model")
        self.evaluator = ExpertEvaluator(self.base, self.levels)
        self.selector = make_selector(self.cfg.selector, self.cfg.seed, self.cfg.selector_steps)
        self.scheduler = make_scheduler(self.cfg.scheduler, self.cfg.profile)
        self.memory = FrameMemory(self.cfg.memory, self.cfg.seed)
        self.admission = Admission(self.cfg.alpha, self.cfg.gamma)
        self.pruner = Pruner(self.cfg.eta, self.cfg.q)
        self.channels: dict[str, _Channel] = {}
        self.selections = 0
        self.reuses = 0
        self.admitted = 0
        self.pruned = 0
        self.pushes = 0
        self.micro_trained = 0
        self.micro_profiled = 0
        if len(self.zoo):  # a zoo loaded from disk: the selector starts from its experts
            for e in self.zoo:
                self.pruner.admit(e.id)
            self.selector.update(self.memory, self.zoo.ids, self.zoo.ids)

    # -- one window --

    def on_window(self, channel_id: str, lr_frames: np.ndarray, hr_frames: np.ndarray,
                  now: float | None = None) -> Decision:
        """Choose the channel's model for this window and queue its retraining job."""
        check_frames(lr_frames, hr_frames, self.base.scale)
        ch = self._channel(channel_id)
        window = ch.window
        ch.window += 1
        if not self.cfg.reuse and not self.cfg.retrain:
            return Decision(channel_id, window, "base", self.base.vector, None, [], None)
        topk = self.selector.select(lr_frames, self.cfg.k) if self.cfg.reuse and len(self.zoo) else []
        candidates: dict[str, torch.Tensor] = {e: self.zoo.vector(e) for e in topk}
        candidates["current"] = ch.current
        if ch.retrained is not None:
            candidates["retrained"] = ch.retrained
        judge_admission = self.cfg.reuse and ch.retrained is not None and ch.retrained_frames is not None
        if judge_admission and ch.selected is not None:
            candidates["selected"] = ch.selected  # the model the retraining started from
        verdict = safety_check(self.evaluator, candidates, lr_frames, hr_frames)
        promising = False
        if judge_admission:
            # promising: alpha above the top-K and the channel's own model without this
            # retraining (the current model may be the retrained one, pushed during the window)
            others = [verdict.base_psnr] + [verdict.psnr[e] for e in topk]
            if "selected" in verdict.psnr:
                others.append(verdict.psnr["selected"])
            lr0, hr0 = ch.retrained_frames
            meta = {"channel": channel_id, "window": window - 1, "created": now, "frames": int(lr0.shape[0]),
                    "gain_db": round(verdict.psnr["retrained"] - verdict.base_psnr, 4)}
            promising = self.admission.consider(verdict.psnr["retrained"], others,
                                                Candidate(ch.retrained, lr0, hr0, meta))
            ch.retrained_frames = None  # considered once
        chosen = verdict.best
        if chosen == "selected":  # the last window's choice, before its retraining replaced it
            chosen = ch.selected_name if ch.selected_name in self.zoo else "previous"
        self.selections += 1
        if chosen in self.zoo:
            self.reuses += 1
            self.zoo[chosen].chosen += 1
            self.pruner.record(chosen)
        else:
            self.pruner.record(None)
        ch.current, ch.current_name, ch.current_psnr = verdict.vector, chosen, verdict.psnr[verdict.best]
        ch.selected, ch.selected_name = verdict.vector, chosen
        ch.pushed = False
        ch.history.append(chosen)
        job = None
        if self.cfg.retrain:
            seed = int.from_bytes(hashlib.sha256(f"{self.cfg.seed}/{channel_id}/{window}".encode()).digest()[:4],
                                  "little")
            cfg = micro_config(self.cfg.sparse, self.cfg.steps, self.cfg.batch, self.cfg.patch, self.cfg.lr, seed)
            job = RetrainJob(self.base, verdict.vector, lr_frames, hr_frames, self.levels, cfg, channel=channel_id)
            ch.job = job
        return Decision(channel_id, window, chosen, verdict.vector, verdict, topk, job, promising)

    def retrain(self, budget: int, on_update: OnUpdate | None = None) -> Allocation:
        """Run the queued jobs for `budget` micro-windows, then update the zoo (see module doc)."""
        names = [c for c, ch in self.channels.items() if ch.job is not None]
        jobs = [self.channels[c].job for c in names]

        def on_micro(t: int, i: int) -> None:
            ch = self.channels[names[i]]
            score = jobs[i].latest()
            if score > ch.current_psnr:
                ch.current, ch.current_psnr, ch.current_name = jobs[i].vector(), score, "retrained"
                ch.pushed = True
                self.pushes += 1
                if on_update:
                    on_update(names[i], t, ch.current)

        alloc = self.scheduler.run(jobs, budget, on_micro)
        self.micro_trained += sum(alloc.micro)
        self.micro_profiled += alloc.profile_micro
        for name, job in zip(names, jobs):
            ch = self.channels[name]
            # the retrained model is the job's best checkpoint: what was pushed, else its last state
            ch.retrained = (ch.current if ch.pushed else job.vector()) if job.micro else None
            ch.retrained_frames = (job.lr_frames, job.hr_frames) if job.micro else None
            ch.job = None
        if self.cfg.reuse:
            self.maintain()
        return alloc

    def maintain(self) -> dict[str, list[str]]:
        """Prune, then admit the queued promising models when gamma wait; update the selector once."""
        removed = []
        for eid in self.pruner.to_prune():
            self.zoo.remove(eid)
            self.pruner.forget(eid)
            self.memory.gains.pop(eid, None)
            removed.append(eid)
        self.pruned += len(removed)
        added = []
        if self.admission.ready():
            for cand in self.admission.flush():
                e = self.zoo.add(cand.vector, self.level_ids, cand.meta)
                self.pruner.admit(e.id)
                if isinstance(self.selector, EmbeddingSelector):
                    self.selector.add_frames(e.id, cand.lr)
                experts = {x.id: x.vector(self.base) for x in self.zoo}
                self.memory.add(cand.lr, cand.hr, self.evaluator, experts, {e.id: experts[e.id]})
                added.append(e.id)
            self.admitted += len(added)
        if added or removed:
            self.selector.update(self.memory, self.zoo.ids, added)
        return {"added": added, "removed": removed}

    # -- for a server that retrains on its own (the live server's channel trainers) --

    def observe(self, channel_id: str, vector: torch.Tensor) -> None:
        """The channel's model is now `vector` (its own trainer changed it); the next window's
        safety check tests it as "current"."""
        ch = self._channel(channel_id)
        if ch.current is not vector and not torch.equal(ch.current, vector):
            ch.current, ch.current_name, ch.current_psnr = vector.detach().to("cpu", torch.float32).clone(), \
                "retrained" if ch.window else "current", float("-inf")

    def judge(self, channel_id: str, vector: torch.Tensor, lr_frames: np.ndarray, hr_frames: np.ndarray,
              now: float | None = None) -> bool:
        """Admission of a model retrained outside the controller on the frames (lr, hr) of the scene
        it was trained for: promising (queued) when it beats, by alpha, the base, the selector's
        top-K on those frames and the model its retraining started from. True if queued; the
        queue enters the zoo at the next `maintain()` once gamma wait."""
        check_frames(lr_frames, hr_frames, self.base.scale)
        ch = self._channel(channel_id)
        if not self.cfg.reuse:
            return False
        topk = self.selector.select(lr_frames, self.cfg.k) if len(self.zoo) else []
        candidates = {e: self.zoo.vector(e) for e in topk}
        if ch.selected is not None:
            candidates["selected"] = ch.selected
        candidates["retrained"] = vector
        verdict = safety_check(self.evaluator, candidates, lr_frames, hr_frames)
        others = [verdict.base_psnr] + [verdict.psnr[n] for n in candidates if n != "retrained"]
        meta = {"channel": channel_id, "window": ch.window - 1, "created": now, "frames": int(lr_frames.shape[0]),
                "gain_db": round(verdict.psnr["retrained"] - verdict.base_psnr, 4)}
        cand = Candidate(vector.detach().to("cpu", torch.float32).clone(), lr_frames, hr_frames, meta)
        return self.admission.consider(verdict.psnr["retrained"], others, cand)

    def _channel(self, channel_id: str) -> _Channel:
        if not isinstance(channel_id, str) or not 0 < len(channel_id) <= MAX_ID:
            raise ConfigError(f"a channel id is a string of 1-{MAX_ID} characters")
        ch = self.channels.get(channel_id)
        if ch is None:
            if len(self.channels) >= MAX_CHANNELS:
                raise ConfigError(f"the controller serves at most {MAX_CHANNELS} channels")
            ch = self.channels[channel_id] = _Channel(self.base.vector.clone())
        return ch

    # -- for a server --

    def current(self, channel_id: str) -> tuple[str, torch.Tensor]:
        """(name, vector) of the model the channel should hold now."""
        ch = self.channels.get(channel_id)
        if ch is None:
            raise ConfigError(f"unknown channel {channel_id[:MAX_ID]!r}")
        return ch.current_name, ch.current

    def record(self, channel_id: str, client_vector: torch.Tensor, segment: int, base_hash: bytes,
               dtype: str = "float32") -> bytes:
        """A stream-codec delta record taking a client from `client_vector` to the channel's model."""
        _, vec = self.current(channel_id)
        record, _ = delta_record(client_vector, vec, segment, base_hash, dtype)
        return record

    def stats(self) -> dict[str, Any]:
        return {"zoo": len(self.zoo), "zoo_bytes": self.zoo.nbytes(), "selections": self.selections,
                "reuses": self.reuses, "reuse_rate": self.reuses / self.selections if self.selections else 0.0,
                "admitted": self.admitted, "pruned": self.pruned, "promising": self.admission.promising,
                "pushes": self.pushes, "micro_trained": self.micro_trained, "micro_profiled": self.micro_profiled,
                "selection_frame_evals": self.evaluator.calls,
                "channels": {c: ch.current_name for c, ch in self.channels.items()}}

    def save(self, folder: str | os.PathLike[str]):
        """Persist the zoo and the gating network's weights (safetensors + JSON); `Controller.open`
        reads both back. The gate is written first: a crash between the two leaves a gate whose
        outputs `open` reconciles with the zoo (unknown ones dropped, missing ones grown)."""
        if isinstance(self.selector, GatingSelector):
            self.selector.save(folder)
        return self.zoo.save(folder)

    @classmethod
    def open(cls, folder: str | os.PathLike[str], config: ReuseConfig | None = None,
             base: BaseModel | None = None) -> Controller:
        """A controller on the zoo saved in `folder` (and its gating network, if saved); a new,
        empty zoo when `folder` does not exist or is empty. A folder with other files and no
        zoo.json, or a damaged zoo or gate, is refused with one line (InputError / ModelError)."""
        from pathlib import Path

        from adasr.errors import InputError

        path = Path(folder)
        base = base or BaseModel.from_package()
        if path.exists() and not path.is_dir():
            raise InputError(f"not a model zoo folder: {path}")
        if not path.exists() or not any(path.iterdir()):
            return cls(config, base)
        zoo = Zoo.load(path, base)
        ctl = cls(config, base, zoo)
        if isinstance(ctl.selector, GatingSelector) and ctl.selector.load(path):
            ctl.selector.update(ctl.memory, ctl.zoo.ids, ctl.zoo.ids)  # memory empty: reconcile outputs only
        return ctl
