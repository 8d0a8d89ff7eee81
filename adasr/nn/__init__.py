"""Networks: elastic ops, block types, the supernet, baselines and one leaf model registry.

The registry (`adasr.nn.registry`) finds every built-in architecture by name: `build_model`
imports the module that registers it (`BUILTIN_MODULES`), so a model file of any registered
architecture, SRVC's included, loads without its caller importing that module first. Importing
this package is cheap; the names below are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_model", "model_names", "register_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from adasr.nn import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'adasr.nn' has no attribute {name!r}")
