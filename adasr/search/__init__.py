"""Search: latency tables and cost models, quality estimates, family search, Pareto pictures.

Modules (imported lazily; `import adasr.search` pulls in no torch):

- `protocols`  `CostModel.cost(cfg) -> seconds`, `Evaluator.score(cfg) -> PSNR`
- `latency`    per-op latency look-up table (Dynamic-OFA format), additive predictor, cost models
- `quality`    `FastEvaluator` (PSNR on a few crops), `QualityPredictor` (MLP), `kendall_tau`
- `family_search`  `search_family` (DySR and Dynamic-OFA strategies); the family it makes (`Level`,
               `Family`, `pareto_front`, `load_name`) is `adasr.family`
- `plot`       PSNR-vs-FPS picture of a family (PNG)
"""

from __future__ import annotations

import importlib
from typing import Any

from adasr.search.protocols import CostModel as CostModel
from adasr.search.protocols import Evaluator as Evaluator
from adasr.search.protocols import Progress as Progress

_LAZY = {
    "LatencyTable": "adasr.search.latency",
    "LatencyEntry": "adasr.search.latency",
    "TableCostModel": "adasr.search.latency",
    "MacsCostModel": "adasr.search.latency",
    "MeasuredCostModel": "adasr.search.latency",
    "build_latency_table": "adasr.search.latency",
    "median_abs_error": "adasr.search.latency",
    "FastEvaluator": "adasr.search.quality",
    "QualityPredictor": "adasr.search.quality",
    "encode": "adasr.search.quality",
    "kendall_tau": "adasr.search.quality",
    "sample_quality_data": "adasr.search.quality",
    "search_family": "adasr.search.family_search",
    "plot_family": "adasr.search.plot",
    "LabelledPoint": "adasr.search.plot",
}

__all__ = sorted([*_LAZY, "CostModel", "Evaluator", "Progress"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adasr.search' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
