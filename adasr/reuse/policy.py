"""Zoo admission and pruning (RECL section 6.3.3), with the thesis's parameters scaled to adasr.

* `Admission(alpha, gamma)`: a retrained model is *promising* when the safety checker finds it
  at least `alpha` dB better than every other candidate (the top-K experts and the client's
  current model); promising models wait in a queue, and when `gamma` of them are there the
  whole queue enters the zoo (and the selector is updated once for all of them). The thesis
  uses a 2 % accuracy margin; 0.05 dB is about that fraction of our typical gains.
* `Pruner(eta, q)`: an expert chosen fewer than `eta` times in the last `q` selections is
  removed, once it has been in the zoo for at least `q` selections (a new expert gets a fair
  chance). The thesis uses q = 3000 selections (a day of its streams) and eta = 4; our
  sessions are a few hundred selections long, so q = 24 and eta = 1.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from adasr.errors import ConfigError

__all__ = ["Admission", "Candidate", "Pruner"]


@dataclass
class Candidate:
    """A promising retrained model waiting for the zoo."""

    vector: Any  # flat parameter vector
    lr: Any  # its training frames (uint8 LR, HR): the selector learns from them
    hr: Any
    meta: dict = field(default_factory=dict)


class Admission:
    def __init__(self, alpha: float = 0.05, gamma: int = 2) -> None:
        if not alpha >= 0 or not 1 <= gamma <= 1000:
            raise ConfigError(f"admission wants alpha >= 0 dB and gamma in [1, 1000], got {alpha}, {gamma}")
        self.alpha, self.gamma = alpha, gamma
        self.queue: list[Candidate] = []
        self.promising = 0

    def consider(self, psnr: float, others: Iterable[float], candidate: Candidate) -> bool:
        """Queue `candidate` if `psnr` beats every value of `others` by alpha; True if queued."""
        best_other = max(others, default=float("-inf"))
        if psnr >= best_other + self.alpha:
            self.queue.append(candidate)
            self.promising += 1
            return True
        return False

    def ready(self) -> bool:
        return len(self.queue) >= self.gamma

    def flush(self) -> list[Candidate]:
        out, self.queue = self.queue, []
        return out


class Pruner:
    def __init__(self, eta: int = 1, q: int = 24) -> None:
        if not 0 <= eta <= q or not 1 <= q <= 1_000_000:
            raise ConfigError(f"pruning wants 0 <= eta <= q and q in [1, 1000000], got eta={eta}, q={q}")
        self.eta, self.q = eta, q
        self.recent: deque[str | None] = deque(maxlen=q)
        self.count = 0  # selections seen
        self.added: dict[str, int] = {}  # expert -> selection count when it entered the zoo

    def admit(self, expert_id: str) -> None:
        self.added[expert_id] = self.count

    def record(self, chosen: str | None) -> None:
        """One selection: the zoo expert it chose, or None (current/retrained/base won)."""
        self.recent.append(chosen)
        self.count += 1

    def to_prune(self) -> list[str]:
        """Experts old enough and chosen fewer than eta times in the last q selections."""
        out = []
        for eid, since in self.added.items():
            if self.count - since >= self.q and sum(1 for c in self.recent if c == eid) < self.eta:
                out.append(eid)
        return out

    def forget(self, expert_id: str) -> None:
        self.added.pop(expert_id, None)
