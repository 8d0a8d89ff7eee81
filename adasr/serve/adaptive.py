"""ASR and ATR: the two AMS controllers, pure and clock-free (times are arguments).

* `phi_score(label, previous_label)`: the task loss between consecutive labels (thesis §4.3.2);
  for SR the label is the HR frame and the loss MSE on [0, 1] pixels.
* `SamplingRate`: Eq. 4.1, every `delta_t` seconds r <- clip(r + eta_r (mean phi - phi_target)).
* `TrainingRate`: Eq. B.1, every `delta_t` seconds: enter slowdown when r < gamma_0, leave it
  when r > gamma_1; T_update grows by Delta in slowdown and drops back to tau_min otherwise.
"""

from __future__ import annotations

import numpy as np

from adasr.serve.config import ASRConfig, ATRConfig

__all__ = ["SamplingRate", "TrainingRate", "phi_score"]


def phi_score(label: np.ndarray, previous: np.ndarray, step: int = 4) -> float:
    """MSE on [0, 1] between two uint8 labels of the same shape (every `step`-th pixel: cheap)."""
    a = label[::step, ::step].astype(np.float32)
    b = previous[::step, ::step].astype(np.float32)
    return float(np.mean(((a - b) / 255.0) ** 2))


class SamplingRate:
    """Adaptive sampling rate (ASR): the rate at which new frames join the training buffer.

    `observe(t, phi)` records a phi-score; `update(t)` applies Eq. 4.1 when `delta_t` has passed
    since the last decision (and returns the rate); `due(t)` says whether a frame at time `t`
    should be sampled (samples are spaced 1 / r apart)."""

    def __init__(self, config: ASRConfig) -> None:
        self.cfg = config
        self.rate = config.r_init
        self._phis: list[float] = []
        self._last_decision: float | None = None
        self._next_sample: float | None = None
        self.history: list[tuple[float, float]] = []  # (t, r) after each decision

    def due(self, t: float) -> bool:
        if self._next_sample is None or t + 1e-9 >= self._next_sample:
            self._next_sample = t + 1.0 / self.rate
            return True
        return False

    def observe(self, phi: float) -> None:
        self._phis.append(float(phi))
        del self._phis[:-1000]  # bounded: only the mean since the last decision matters

    def update(self, t: float) -> float:
        if self._last_decision is None:
            self._last_decision = t
            return self.rate
        if t - self._last_decision + 1e-9 < self.cfg.delta_t:
            return self.rate
        self._last_decision = t
        if self.cfg.enabled and self._phis:
            mean = float(np.mean(self._phis))
            r = self.rate + self.cfg.eta_r * (mean - self.cfg.phi_target)
            self.rate = float(min(self.cfg.r_max, max(self.cfg.r_min, r)))
        self._phis.clear()
        self.history.append((t, self.rate))
        del self.history[:-1000]
        return self.rate


class TrainingRate:
    """Adaptive training rate (ATR): T_update from the sampling rate (Eq. B.1)."""

    def __init__(self, config: ATRConfig, t_update: float) -> None:
        self.cfg = config
        self.t_update = config.tau_min if config.enabled else t_update
        self.slowdown = False
        self._last: float | None = None

    def update(self, t: float, rate: float) -> float:
        if not self.cfg.enabled:
            return self.t_update
        if self._last is not None and t - self._last + 1e-9 < self.cfg.delta_t:
            return self.t_update
        self._last = t
        if not self.slowdown and rate < self.cfg.gamma_0:
            self.slowdown = True
        elif self.slowdown and rate > self.cfg.gamma_1:
            self.slowdown = False
        if self.slowdown:
            self.t_update = min(self.cfg.tau_max, self.t_update + self.cfg.delta)
        else:
            self.t_update = self.cfg.tau_min
        return self.t_update
