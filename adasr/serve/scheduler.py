"""Sharing the server's compute among channels (thesis Appendix C; RECL's gain-driven idea).

A scheduler is asked, whenever the server has compute free, which of the channels whose
update is due trains next (`pick(due, now) -> channel name`); it is told what each training
phase cost and bought (`record(name, cpu_s, gain_db)`).

* `RoundRobin`: the due channels in turn (Appendix C: one training step per session in turn).
* `GainDriven`: the due channel with the largest recent PSNR gain per CPU second (an
  exponential mean of each channel's gain_db / cpu_s), so a channel whose content changes gets
  the time a static one would waste; a channel not yet measured goes first, and a channel
  passed over `starve_after` times in a row is served anyway (no starvation).
"""

from __future__ import annotations

from collections.abc import Sequence

from adasr.errors import ConfigError

__all__ = ["GainDriven", "RoundRobin", "SCHEDULERS", "make_scheduler"]

SCHEDULERS = ("round_robin", "gain")


class RoundRobin:
    """The due channel served least recently (never served first, in order of appearance)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._first: dict[str, int] = {}
        self._tick = 0

    def pick(self, due: Sequence[str], now: float = 0.0) -> str | None:
        if not due:
            return None
        for name in due:
            self._first.setdefault(name, len(self._first))
        choice = min(due, key=lambda n: (self._last.get(n, -1), self._first[n]))
        self._tick += 1
        self._last[choice] = self._tick
        return choice

    def record(self, name: str, cpu_s: float, gain_db: float) -> None:
        pass


class GainDriven:
    name = "gain"

    def __init__(self, alpha: float = 0.5, starve_after: int = 4) -> None:
        if not 0 < alpha <= 1 or starve_after < 1:
            raise ConfigError("GainDriven needs 0 < alpha <= 1 and starve_after >= 1")
        self.alpha, self.starve_after = alpha, starve_after
        self.rate: dict[str, float] = {}  # dB per CPU second, exponential mean
        self.passed: dict[str, int] = {}

    def pick(self, due: Sequence[str], now: float = 0.0) -> str | None:
        if not due:
            return None
        starving = [n for n in due if self.passed.get(n, 0) >= self.starve_after]
        unknown = [n for n in due if n not in self.rate]
        if starving:
            choice = max(starving, key=lambda n: self.passed[n])
        elif unknown:
            choice = unknown[0]
        else:
            choice = max(due, key=lambda n: self.rate[n])
        for n in due:
            self.passed[n] = 0 if n == choice else self.passed.get(n, 0) + 1
        return choice

    def record(self, name: str, cpu_s: float, gain_db: float) -> None:
        r = float(gain_db) / max(float(cpu_s), 1e-3)
        if r != r:  # NaN (nothing measured): count it as no gain, so the channel is known
            r = 0.0
        old = self.rate.get(name)
        self.rate[name] = r if old is None else (1 - self.alpha) * old + self.alpha * r


def make_scheduler(name: str) -> RoundRobin | GainDriven:
    if name == "round_robin":
        return RoundRobin()
    if name == "gain":
        return GainDriven()
    raise ConfigError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
