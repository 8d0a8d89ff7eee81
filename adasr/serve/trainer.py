"""The per-channel trainer: AMS Algorithm 2 on a time-stamped buffer, with ASR and ATR.

`ChannelTrainer` holds the model the clients run (a `ModelState` rebuilt from the stream's
first record, exactly as a client rebuilds it) and trains it on (LR as the client decodes it,
HR) pairs. It knows nothing of networks, threads or wall clocks: the caller offers frames with
their video time (`offer`), asks `due(t)` and calls `train(t)`, which returns the next
`Update` (a delta record of the existing codec, already applied to the trainer's model, so
server and clients hold the same bits) or None. Tests drive it with made-up times.

Schemes (`TrainerConfig.scheme`, the SR form of thesis Table 4.1):

* ``none``: never trains (the clients keep the base model).
* ``one_time``: once the video reaches `one_time_s`, one full-parameter update trained on the
  whole buffer for K x (one_time_s / T_update) steps (at `one_time_lr`), then nothing.
* ``jit``: Just-In-Time: each new sample whose PSNR gain over the base model is below
  `jit_gain_db` is trained on alone, `jit_chunk` steps at a time, until it reaches the gain or
  `jit_max_steps`; each burst is one update (eta of the parameters per chunk, gradient-guided).
* ``ams``: every T_update seconds, K masked Adam steps on mini-batches sampled uniformly from
  the buffer's last T_horizon seconds, on the eta fraction of the parameters Algorithm 3
  picks (`adasr.stream.adapt.SparseAdapter`).

The sampling rate (which frames join the buffer) is ASR's (fixed at r_init when off); T_update
is ATR's (fixed when off). A scene cut (`TrainerConfig.on_cut`) may empty the buffer, restart
Adam and send the clients back to the base model.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from adasr.errors import ModelError
from adasr.serve.adaptive import SamplingRate, TrainingRate, phi_score
from adasr.serve.config import TrainerConfig
from adasr.stream.adapt import AdaptConfig, PatchSampler, SparseAdapter, segment_psnr
from adasr.stream.codec import ModelState, encode_delta, encode_full, model_vector, quantise, vector_hash

__all__ = ["ChannelTrainer", "Sample", "SampleBuffer", "Update"]


@dataclass(frozen=True)
class Sample:
    t: float  # video time (s)
    lr: np.ndarray  # (h, w, 3) uint8, as the client decodes it
    hr: np.ndarray  # (s*h, s*w, 3) uint8, the label


class SampleBuffer:
    """Time-stamped samples; `window(t)` are those of the last `horizon` seconds (bounded count)."""

    def __init__(self, horizon: float, max_items: int) -> None:
        self.horizon, self.items = horizon, deque(maxlen=max_items)

    def add(self, sample: Sample) -> None:
        self.items.append(sample)

    def window(self, t: float, horizon: float | None = None) -> list[Sample]:
        h = self.horizon if horizon is None else horizon
        while self.items and self.items[0].t < t - max(h, self.horizon):
            self.items.popleft()
        return [s for s in self.items if s.t >= t - h]

    def clear(self) -> None:
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Update:
    """One model update as published: the delta record and what it cost and bought."""

    index: int  # the record's segment field: updates are numbered 0, 1, 2, ...
    record: bytes
    t: float  # video time the update was made at
    changed: int
    steps: int
    samples: int
    cpu_s: float
    gain_db: float  # PSNR on the newest samples after minus before this update
    psnr_vs_base_db: float  # PSNR gain over the base model on the newest samples, after it

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "t": self.t, "bytes": len(self.record), "changed": self.changed,
                "steps": self.steps, "samples": self.samples, "cpu_s": self.cpu_s, "gain_db": self.gain_db,
                "psnr_vs_base_db": self.psnr_vs_base_db}


class ChannelTrainer:
    """One channel's training job (see the module doc)."""

    def __init__(self, model: torch.nn.Module, spec: dict[str, Any], levels: list | None, config: TrainerConfig,
                 *, scale: int, base_dtype: str = "float16", device: str = "cpu") -> None:
        self.cfg, self.scale, self.levels = config, int(scale), levels
        self.init_record = encode_full(model, spec, base_dtype)
        self.state = ModelState.from_full(self.init_record, device=device)  # what the clients hold
        self.base = ModelState.from_full(self.init_record, device=device).model  # the generic model, frozen
        for p in self.base.parameters():
            p.requires_grad_(False)
        steps = config.jit_chunk if config.scheme == "jit" else config.k
        self.adapt_cfg = AdaptConfig(eta=config.eta, steps=steps, batch=config.batch, patch=config.patch,
                                     lr=config.lr, strategy=config.strategy, seed=config.seed,
                                     precision=config.precision)
        self.adapter = SparseAdapter(self.state.model, self.adapt_cfg, levels)
        self.buffer = SampleBuffer(config.t_horizon, config.buffer_max)
        self.asr = SamplingRate(config.asr)
        self.atr = TrainingRate(config.atr, config.t_update)
        self.updates: list[Update] = []
        self.next_update_t = self.atr.t_update
        self.one_time_done = False
        self._jit_pending: Sample | None = None
        self._last_label: np.ndarray | None = None
        self.samples_seen = 0
        self.last_phi: float | None = None
        self.cuts = 0
        self._cut_pending = False
        self.train_cpu_s = 0.0
        self._lock = threading.Lock()  # offer (ingest thread) vs train (training thread)

    # -- data --

    @property
    def sampling_rate(self) -> float:
        return self.asr.rate

    @property
    def t_update(self) -> float:
        return self.atr.t_update

    def offer(self, t: float, lr: np.ndarray, hr: np.ndarray) -> bool:
        """A decoded LR frame and its HR original at video time `t`; True if it was sampled."""
        with self._lock:
            return self._offer(t, lr, hr)

    def _offer(self, t: float, lr: np.ndarray, hr: np.ndarray) -> bool:
        if self.cfg.scheme == "none" or not self.asr.due(t):
            return False
        if self._last_label is not None and self._last_label.shape == hr.shape:
            self.last_phi = phi_score(hr, self._last_label)
            self.asr.observe(self.last_phi)
            if self.cfg.on_cut != "keep" and self.last_phi > self.cfg.cut_phi:
                self.cuts += 1
                self.buffer.clear()  # the new scene only
                self._cut_pending = True
        self._last_label = hr
        sample = Sample(float(t), lr, hr)
        self.buffer.add(sample)
        self.samples_seen += 1
        rate = self.asr.update(t)
        before = self.atr.t_update
        self.atr.update(t, rate)
        if self.atr.t_update != before:  # ATR moved T_update: the next update follows the new interval
            last = self.updates[-1].t if self.updates else 0.0
            self.next_update_t = last + self.atr.t_update
        if self.cfg.scheme == "jit":
            self._jit_pending = sample
        return True

    def due(self, t: float) -> bool:
        with self._lock:
            return self._due(t)

    def _due(self, t: float) -> bool:
        s = self.cfg.scheme
        if s == "none" or not len(self.buffer):
            return False
        if s == "one_time":
            return not self.one_time_done and t + 1e-9 >= self.cfg.one_time_s
        if s == "jit":
            return self._jit_pending is not None
        return t + 1e-9 >= self.next_update_t

    def lag(self, t: float) -> float:
        """Seconds the due update is overdue (what a scheduler may weigh); 0 if none is due."""
        if not self.due(t):
            return 0.0
        if self.cfg.scheme == "ams":
            return max(0.0, t - self.next_update_t)
        return 0.0

    # -- training --

    def train(self, t: float) -> Update | None:
        """Run the due training phase at video time `t`; the new update, or None (nothing to send)."""
        started = time.thread_time()
        s = self.cfg.scheme
        with self._lock:
            cut, self._cut_pending = self._cut_pending, False
        if cut:
            self._restart_adam()
            if self.cfg.on_cut == "base":
                update = self.adopt(self.base_vector(), t)
                if update is not None:  # the next call trains on the new scene
                    return update
        with self._lock:  # take the data; the training itself runs unlocked (the ingest goes on)
            if not self._due(t):
                return None
            if s == "ams":
                self.next_update_t = t + self.atr.t_update
                window = self.buffer.window(t)
            elif s == "one_time":
                self.one_time_done = True
                window = self.buffer.window(t, horizon=t + 1.0)
            else:
                window, self._jit_pending = [self._jit_pending], None
        if s == "ams":
            result = self._masked(window, self.adapter)
        elif s == "one_time":
            steps = self.cfg.k * max(1, round(self.cfg.one_time_s / self.cfg.t_update))
            full = SparseAdapter(self.state.model, replace(self.adapt_cfg, strategy="full", steps=steps,
                                                           lr=self.cfg.one_time_lr), self.levels)
            result = self._masked(window, full)
        else:
            result = self._jit(window[0])
        if result is None:
            self.train_cpu_s += time.thread_time() - started
            return None
        record, changed, steps, gain, after = result
        vs_base = after - self._psnr(self.base, window[-2:])
        cpu = time.thread_time() - started  # the scores are part of an update's cost
        self.train_cpu_s += cpu
        update = Update(index=len(self.updates), record=record, t=float(t), changed=changed, steps=steps,
                        samples=len(window), cpu_s=cpu, gain_db=gain, psnr_vs_base_db=vs_base)
        self.updates.append(update)
        return update

    def _sampler(self, window: list[Sample]) -> PatchSampler:
        lr = np.stack([s.lr for s in window])
        hr = np.stack([s.hr for s in window])
        return PatchSampler(lr, hr, self.scale, self.cfg.patch, self.cfg.batch, self.state.device)

    def _masked(self, window: list[Sample], adapter: SparseAdapter) -> tuple[bytes, int, int, float, float] | None:
        """(record, changed, steps, gain on the newest two samples, PSNR there after the update)."""
        if not window:
            return None
        probe = window[-2:]
        before_psnr = self._psnr(self.state.model, probe)
        adapter.adapt(self._sampler(window), len(self.updates))
        record, changed = self._publish()
        after = self._psnr(self.state.model, probe)
        return record, changed, adapter.cfg.steps, after - before_psnr, after

    def _jit(self, sample: Sample) -> tuple[bytes, int, int, float, float] | None:
        base = self._psnr(self.base, [sample])
        start = self._psnr(self.state.model, [sample])
        if start - base >= self.cfg.jit_gain_db:
            return None  # the model is already good enough on the newest frame: nothing to send
        sampler, steps, now = self._sampler([sample]), 0, start
        while steps < self.cfg.jit_max_steps and now - base < self.cfg.jit_gain_db:
            self.adapter.adapt(sampler, len(self.updates) * 1009 + steps)
            steps += self.adapter.cfg.steps
            now = self._psnr(self.state.model, [sample])  # the adapted weights, before quantisation
        record, changed = self._publish()
        after = self._psnr(self.state.model, [sample])
        return record, changed, steps, after - start, after

    def _publish(self) -> tuple[bytes, int]:
        """Quantise the change the adapter made, code it, and bring the model to exactly what the
        clients will compute (`ModelState.apply`, as the SRVC encoder does)."""
        state = self.state
        before = state.vector
        now = self.adapter.vector().to("cpu")
        idx = torch.nonzero(now != before.to(now.device)).flatten().to("cpu")
        change = (now - before)[idx]
        data, deq = quantise(change, self.cfg.delta_dtype)
        keep = deq != 0
        if not bool(keep.all()):
            idx = idx[keep]
            data, deq = quantise(change[keep], self.cfg.delta_dtype)
        after = before.clone()
        after[idx] += deq
        record = encode_delta(idx, data, self.cfg.delta_dtype, state.next_segment, before.numel(), state.base_hash,
                              state.hash, vector_hash(after))
        state.apply(record, f"update {state.next_segment}")
        return record, int(idx.numel())

    def adopt(self, vector: torch.Tensor, t: float) -> Update | None:
        """Make `vector` (a full flat parameter vector of this model, e.g. a zoo expert chosen on a
        scene change) the clients' model: one float32 delta record, exact, published like any
        update; training goes on from it with fresh Adam moments. None if nothing changes. Call
        from the thread that calls `train`."""
        started = time.thread_time()
        state = self.state
        vector = vector.detach().to("cpu", torch.float32)
        if vector.numel() != state.vector.numel() or not bool(torch.isfinite(vector).all()):
            raise ModelError(f"a vector of {vector.numel():,} values is not a model of this channel "
                             f"({state.vector.numel():,} parameters, finite)")
        idx = torch.nonzero(vector != state.vector).flatten()
        if not idx.numel():
            return None
        data, deq = quantise((vector - state.vector)[idx], "float32")
        after = state.vector.clone()
        after[idx] += deq
        record = encode_delta(idx, data, "float32", state.next_segment, after.numel(), state.base_hash, state.hash,
                              vector_hash(after))
        state.apply(record, f"update {state.next_segment}")
        self._restart_adam()  # a new scene: Adam starts again
        with self._lock:
            window = self.buffer.window(t)[-2:]
        cpu = time.thread_time() - started
        self.train_cpu_s += cpu
        update = Update(index=len(self.updates), record=record, t=float(t), changed=int(idx.numel()), steps=0,
                        samples=0, cpu_s=cpu, gain_db=0.0,
                        psnr_vs_base_db=self._vs_base(window) if window else 0.0)
        self.updates.append(update)
        return update

    def _restart_adam(self) -> None:
        a = self.adapter
        a.m.zero_()
        a.v.zero_()
        a.t, a.last_update = 0, None

    def base_vector(self) -> torch.Tensor:
        """The generic base model's parameters as one flat vector (the order of `ModelState`)."""
        return model_vector(self.base)

    # -- quality --

    def _psnr(self, model: torch.nn.Module, window: list[Sample]) -> float:
        if not window:
            return float("nan")
        lr = np.stack([s.lr for s in window])
        hr = np.stack([s.hr for s in window])
        cfg = self.levels[-1] if self.levels else None
        # in the training steps' arithmetic: bf16 scores within 0.01 dB of fp32's (the skip stays float32)
        return segment_psnr(model, lr, hr, self.scale, cfg=cfg, autocast=self.adapter.autocast)

    def _vs_base(self, window: list[Sample]) -> float:
        return self._psnr(self.state.model, window) - self._psnr(self.base, window)
