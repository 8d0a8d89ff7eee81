"""The safety checker (RECL section 6.3.1): test the candidates on the window's labelled frames.

The candidates are the selector's top-K experts, the client's current model and the last model
retrained for the client; each is scored by its mean PSNR on the labelled frames (the HR frames
the server holds are the "teacher" labels), and the best goes to the client. Candidates with
the same weights are tested once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adasr.errors import ConfigError
from adasr.reuse.quality import ExpertEvaluator, to_tensor
from adasr.stream.codec import vector_hash

__all__ = ["MAX_CANDIDATES", "Verdict", "safety_check"]

MAX_CANDIDATES = 1000


@dataclass
class Verdict:
    """The safety checker's answer: the winner and every candidate's mean PSNR (dB)."""

    best: str
    vector: torch.Tensor
    psnr: dict[str, float]
    base_psnr: float

    @property
    def gain(self) -> float:
        """The winner's gain over the base on the labelled frames."""
        return self.psnr[self.best] - self.base_psnr


def safety_check(evaluator: ExpertEvaluator, candidates: dict[str, torch.Tensor], lr: np.ndarray,
                 hr: np.ndarray) -> Verdict:
    """The candidate (name -> flat vector) with the highest mean PSNR on frames (lr, hr).

    "base" is always among them (the generic model is never worse than itself); ties go to the
    candidate named first."""
    if len(candidates) > MAX_CANDIDATES:
        raise ConfigError(f"{len(candidates)} candidates are more than the {MAX_CANDIDATES} a check takes")
    x, y = to_tensor(lr), to_tensor(hr)
    seen: dict[bytes, float] = {}
    scores: dict[str, float] = {}
    base = float(evaluator.psnr(evaluator.base.vector, x, y).mean())
    seen[evaluator.base.hash] = base
    for name, vec in candidates.items():
        h = vector_hash(vec)
        if h not in seen:
            seen[h] = float(evaluator.psnr(vec, x, y).mean())
        scores[name] = seen[h]
    scores.setdefault("base", base)
    vectors = dict(candidates)
    vectors.setdefault("base", evaluator.base.vector)
    best = max(scores, key=lambda n: (scores[n], -list(scores).index(n)))
    return Verdict(best, vectors[best], scores, base)
