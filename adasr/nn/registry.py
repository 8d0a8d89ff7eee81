"""One registry of model architectures, keyed by name.

Each entry is a builder that takes validated keyword arguments and returns an `nn.Module`
whose forward maps an LR batch (B, 3, H, W), float in [0, 1], to an SR batch
(B, 3, s*H, s*W). A model file stores the name and the arguments as JSON, so a model is
rebuilt from data, never from pickled objects.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from adasr.errors import ModelError

Builder = Callable[..., nn.Module]

_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `builder` under `name` (names are unique)."""

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return deco


def model_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model `name`, refusing unknown names and unknown arguments."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    builder = _REGISTRY[name]
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ModelError(f"architecture {name!r} takes no argument(s) {', '.join(unknown)}")
    negative = sorted(k for k, v in kwargs.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0)
    if negative:  # widths, depths, counts, kernel sizes: none of them can be negative
        raise ModelError(f"cannot build {name!r}: argument {negative[0]}={kwargs[negative[0]]} is negative")
    try:
        return builder(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot build {name!r}: {first}") from None


def _load_builtin() -> None:
    # Importing the modules runs their @register_model decorators; explicit, no file scanning.
    from adasr.nn import baselines, supernet  # noqa: F401
