"""The two small protocols search depends on, and the names of resource levels.

Search never asks how a cost or a quality is obtained:

- `CostModel.cost(cfg) -> seconds` per LR frame: a latency table's additive prediction
  (`adasr.search.latency.TableCostModel`), an analytic MACs model (`MacsCostModel`) or a
  measurement (`MeasuredCostModel`).
- `Evaluator.score(cfg) -> PSNR` in dB: a predictor (`adasr.search.quality.QualityPredictor`)
  or an evaluation (`adasr.search.quality.FastEvaluator`).

A cost model may carry a `level` attribute: the background CPU load share (resource level) it
predicts for. Resource levels are named by `level_name(share)` ("0.00", "0.50", ...) wherever
they key a dict (family levels, profiles, latency tables).

This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from adasr.family import level_name as level_name  # re-exported: the name lives with the family
from adasr.space import SubnetConfig

# on_progress(stage, done, total): called by long-running library functions for CLI progress bars.
Progress = Callable[[str, int, int], None]


@runtime_checkable
class CostModel(Protocol):
    """Seconds one LR frame takes through sub-network `cfg` (lower is better)."""

    def cost(self, cfg: SubnetConfig) -> float: ...


@runtime_checkable
class Evaluator(Protocol):
    """Quality of sub-network `cfg` as PSNR in dB (higher is better)."""

    def score(self, cfg: SubnetConfig) -> float: ...


def cost_level_name(cost_model: object) -> str:
    """The resource level a cost model predicts for (its `level` attribute; default idle, "0.00")."""
    return level_name(getattr(cost_model, "level", 0.0))
