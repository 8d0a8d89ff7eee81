"""The two small protocols search depends on, and the names of loads.

Search never asks how a cost or a quality is obtained:

- `CostModel.cost(cfg) -> seconds` per LR frame: a latency table's additive prediction
  (`adasr.search.latency.TableCostModel`), an analytic MACs model (`MacsCostModel`) or a
  measurement (`MeasuredCostModel`).
- `Evaluator.score(cfg) -> PSNR` in dB: a predictor (`adasr.search.quality.QualityPredictor`)
  or an evaluation (`adasr.search.quality.FastEvaluator`).

A cost model may carry a `load` attribute: the background CPU load share (DySR's "resource
level") it predicts for. Loads are named by `load_name(share)` ("0.00", "0.50", ...) wherever
they key a dict (family levels' latencies, profiles, latency tables).

This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from adasr.family import load_name
from adasr.space import SubnetConfig

__all__ = ["CostModel", "Evaluator", "Progress", "cost_load_name"]

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


def cost_load_name(cost_model: object) -> str:
    """The load a cost model predicts for (its `load` attribute; default idle, "0.00")."""
    return load_name(getattr(cost_model, "load", 0.0))
