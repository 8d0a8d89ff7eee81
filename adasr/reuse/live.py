"""Model reuse on the live server: a scene change on a channel is answered first from the zoo,
then by retraining (RECL on `adasr.serve`).

Use::

    hub = Hub(channels)                          # adasr.serve channels, one model for all
    reuse = LiveReuse.attach(hub, "zoo/")        # loads zoo/ (and its gating network) or starts one
    LiveServer(hub).start() ... reuse.close()    # close() saves the zoo

`attach` plugs three hooks into the hub and its channels (nothing else of the server changes):

* `Channel.on_segment` (ingest thread): every published segment's frames, LR as the clients
  decode them and HR, are sampled at `LiveReuseConfig.rate` fps; a *scene change* is a sampled
  HR frame whose colour histogram (16 bins per RGB channel) differs from the previous sample's
  by more than `cut` (1 - histogram intersection, in [0, 1]: motion within a shot moves a
  histogram little, a cut a lot). A channel's first frames count as one; a change seen while the
  previous one still waits for its window is part of it. The hook only copies frames.
* `Hub.before_train` (training thread): once `window` samples of the new scene are in, the
  change is answered: (1) the model the channel's trainer made over the scene that ended is
  judged for the zoo (`Controller.judge`: promising when it beats the base, the selector's top-K
  and the model its retraining started from by `alpha` dB on that scene's last samples; `gamma`
  promising models enter the zoo together, `Controller.maintain`, which also prunes); (2) the
  controller selects for the new scene (`Controller.on_window`: the gating network's top-K, the
  channel's current model and the base go to the safety checker on the new samples); (3) when
  the winner is not what the clients hold, it goes to them as the channel's next update
  (`Channel.adopt`: one float32 delta record through the existing update path) and the
  channel's own trainer retrains from it.
* `Hub.on_status`: the JSON status gains ``reuse`` (zoo size, selections, reuse rate, admitted,
  pruned, and per channel the expert it holds); the HTML status page shows it.

The zoo's base is the model the clients run, exactly as they decode it from the stream's first
record, so an expert is a sparse delta of what every client already holds; all channels must
run the same model. With a package the experts are judged on its largest level (the one the
trainer measures). The zoo is saved (safetensors + JSON, never pickle) whenever experts enter or
leave it, and by `close()`.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adasr.errors import ConfigError
from adasr.reuse.controller import Controller, ReuseConfig
from adasr.reuse.zoo import BaseModel
from adasr.stream.codec import vector_hash

__all__ = ["MAX_WINDOW", "LiveReuse", "LiveReuseConfig", "expert_vector", "histogram", "histogram_distance"]

MAX_WINDOW = 64


@dataclass(frozen=True)
class LiveReuseConfig:
    """cut: the scene-change threshold (1 - intersection of consecutive samples' normalised RGB
    histograms; on 192x128 crops of the shared clips consecutive samples of one clip stay below
    0.23 and the first frame of another clip is 0.43 or more away);
    rate: samples per second kept per channel; window: samples of a new scene the selection uses
    (and of the old scene the admission uses). The other fields are `ReuseConfig`'s."""

    cut: float = 0.35
    rate: float = 2.0
    window: int = 3
    k: int = 10
    alpha: float = 0.05
    gamma: int = 1  # live: a model retrained over a whole scene enters the zoo at once when promising
    eta: int = 1
    q: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cut) and 0 < self.cut <= 1):
            raise ConfigError(f"the scene-change threshold must be in (0, 1], got {self.cut}")
        if not (math.isfinite(self.rate) and 0.1 <= self.rate <= 60):
            raise ConfigError(f"the reuse sampling rate must be in [0.1, 60] fps, got {self.rate}")
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"the reuse window must be 1-{MAX_WINDOW} samples, got {self.window}")
        self.controller_config()  # validates k, alpha, gamma, eta, q

    def controller_config(self) -> ReuseConfig:
        return ReuseConfig(level=-1, k=self.k, alpha=self.alpha, gamma=self.gamma, eta=self.eta, q=self.q,
                           retrain=False, seed=self.seed)


@dataclass
class _Watch:
    """One channel's content, written by the ingest thread (under LiveReuse._lock)."""

    every: int  # keep one frame in `every`
    seen: int = 0
    prev: np.ndarray | None = None  # the last sample's histogram
    recent: deque = field(default_factory=lambda: deque(maxlen=MAX_WINDOW))  # (t, lr, hr) of the scene
    pending: dict[str, Any] | None = None  # {"t", "old": [(lr, hr)], "new": [(lr, hr)]}
    cuts: int = 0


@dataclass
class _Held:
    """What a channel holds, from the training thread's side."""

    expert: str = "base"
    selections: int = 0
    reused: int = 0
    gain_db: float = 0.0
    selected_hash: bytes | None = None  # the model the last selection gave the channel
    sent: int = 0  # zoo experts sent as updates


def histogram(hr: np.ndarray) -> np.ndarray:
    """16 bins per RGB channel of every other pixel, each channel's bins summing to 1."""
    s = hr[::2, ::2]
    h = np.concatenate([np.bincount((s[..., c] >> 4).ravel(), minlength=16) for c in range(3)]).astype(np.float64)
    return h / max(1.0, h.sum() / 3)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - the intersection of two `histogram`s: 0 for the same colours, 1 for disjoint ones."""
    return float(1.0 - np.minimum(a, b).sum() / 3)


class LiveReuse:
    """The reuse side of a live hub (see the module doc)."""

    def __init__(self, hub, controller: Controller, folder: str | os.PathLike[str] | None = None,
                 config: LiveReuseConfig | None = None) -> None:
        self.hub, self.ctl, self.cfg = hub, controller, config or LiveReuseConfig()
        self.folder = Path(folder) if folder is not None else None
        self._lock = threading.Lock()
        self._watch: dict[str, _Watch] = {}
        self._held: dict[str, _Held] = {}
        self._snapshot: dict[str, Any] = {}
        self.saves = 0
        for name, ch in hub.channels.items():
            self._watch[name] = _Watch(every=max(1, round(ch.fps / self.cfg.rate)))
            self._held[name] = _Held()
        self._refresh()

    @classmethod
    def attach(cls, hub, folder: str | os.PathLike[str] | None = None,
               config: LiveReuseConfig | None = None) -> LiveReuse:
        """Open the zoo in `folder` (None: a zoo kept in memory only) for the hub's model and plug in
        the hooks. A damaged zoo, or one made for another model, is refused with one line."""
        config = config or LiveReuseConfig()
        if not hub.channels:
            raise ConfigError("model reuse needs at least one channel")
        first = next(iter(hub.channels.values()))
        for ch in hub.channels.values():
            if ch.base_hash != first.base_hash:
                raise ConfigError(f"channels {first.name!r} and {ch.name!r} run different models; one zoo "
                                  "serves one model")
        t = first.trainer
        base = BaseModel.from_model(t.base, t.levels, first.scale, str(first.model_info.get("model", "model")))
        if base.hash != first.base_hash:  # the base the clients decode, bit for bit
            raise ConfigError("the channel's model does not match the stream's first record")
        ctl = Controller.open(folder, config.controller_config(), base) if folder is not None else \
            Controller(config.controller_config(), base)
        reuse = cls(hub, ctl, folder, config)
        for ch in hub.channels.values():
            ch.on_segment.append(reuse._on_segment)
        hub.before_train.append(reuse._before_train)
        hub.on_status.append(reuse._on_status)
        return reuse

    # -- ingest thread --

    def _on_segment(self, channel, segment, lr_frames: list[np.ndarray], hr_frames: list[np.ndarray]) -> None:
        w = self._watch.get(channel.name)
        if w is None:
            return
        first = round(segment.start_s * channel.fps)
        with self._lock:
            for i, (lr, hr) in enumerate(zip(lr_frames, hr_frames)):
                n = w.seen
                w.seen += 1
                if n % w.every:
                    continue
                hist = histogram(hr)
                sample = ((first + i) / channel.fps, lr.copy(), hr.copy())
                cut = w.prev is None or histogram_distance(hist, w.prev) > self.cfg.cut
                w.prev = hist
                if cut and w.pending is None:
                    old = [(s[1], s[2]) for s in list(w.recent)[-self.cfg.window:]]
                    w.pending = {"t": sample[0], "old": old, "new": []}
                    w.recent.clear()
                    w.cuts += 1
                w.recent.append(sample)
                if w.pending is not None and len(w.pending["new"]) < self.cfg.window:
                    w.pending["new"].append((sample[1], sample[2]))

    # -- training thread --

    def _before_train(self, hub) -> bool:
        worked = False
        for name, ch in hub.channels.items():
            w = self._watch.get(name)
            if w is None:
                continue
            with self._lock:
                p = w.pending
                if p is None or len(p["new"]) < self.cfg.window:
                    continue
                w.pending = None
            self._answer(ch, p)
            worked = True
        return worked

    def _answer(self, ch, pending: dict[str, Any]) -> None:
        """One scene change of channel `ch`: judge the old scene's model, select for the new one."""
        name, held, t = ch.name, self._held[ch.name], float(pending["t"])
        vec = ch.trainer.state.vector
        self.ctl.observe(name, vec)
        retrained = held.selected_hash is not None and vector_hash(vec) != held.selected_hash
        if pending["old"] and retrained:
            lr, hr = (np.stack(x) for x in zip(*pending["old"]))
            self.ctl.judge(name, vec, lr, hr, now=t)
        changed = self.ctl.maintain()
        lr, hr = (np.stack(x) for x in zip(*pending["new"]))
        d = self.ctl.on_window(name, lr, hr, now=t)
        if d.chosen != "current" and ch.adopt(d.vector) is not None and d.reused:
            held.sent += 1
        held.selected_hash = vector_hash(ch.trainer.state.vector)
        held.selections += 1
        held.reused += int(d.reused)
        held.gain_db = d.verdict.gain if d.verdict is not None else 0.0
        if d.chosen != "current":
            held.expert = d.chosen
        elif retrained:
            held.expert = "retrained"
        if self.folder is not None and (changed["added"] or changed["removed"]):
            self.save()
        self._refresh()

    # -- status and persistence --

    def _refresh(self) -> None:
        s = self.ctl.stats()
        snap = {k: s[k] for k in ("zoo", "zoo_bytes", "selections", "reuses", "reuse_rate", "admitted", "pruned",
                                  "promising", "selection_frame_evals")}
        snap["folder"] = None if self.folder is None else str(self.folder)
        snap["saves"] = self.saves
        with self._lock:
            snap["channels"] = {n: {**{k: v for k, v in asdict(h).items() if k != "selected_hash"},
                                    "scene_changes": self._watch[n].cuts} for n, h in self._held.items()}
            self._snapshot = snap

    def _on_status(self, status: dict[str, Any]) -> None:
        with self._lock:
            snap = dict(self._snapshot)
        status["reuse"] = snap
        for ch in status.get("channels", []):
            held = snap.get("channels", {}).get(ch.get("name"))
            if held is not None:
                ch["expert"] = held["expert"]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)

    def save(self) -> Path | None:
        """Write the zoo and the gating network into the folder (None without one)."""
        if self.folder is None:
            return None
        out = self.ctl.save(self.folder)
        self.saves += 1
        return out

    def close(self) -> Path | None:
        """Save the zoo (call once the hub's worker has stopped)."""
        out = self.save()
        self._refresh()
        return out


def expert_vector(reuse: LiveReuse, expert_id: str) -> torch.Tensor:
    """The full flat vector of a zoo expert (tests and tools compare clients with it)."""
    return reuse.ctl.zoo.vector(expert_id)
