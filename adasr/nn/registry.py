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
_RESOLVERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_model(name: str, resolve: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                   ) -> Callable[[Builder], Builder]:
    """Decorator: register `builder` under `name` (names are unique).

    `resolve`, if given, turns user-given arguments into self-contained ones before they are
    stored (e.g. a file path into the file's validated content), see `resolve_args`."""

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        if resolve is not None:
            _RESOLVERS[name] = resolve
        return builder

    return deco


def resolve_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments a model file should store for `name` (unchanged for most architectures)."""
    _load_builtin()
    resolver = _RESOLVERS.get(name)
    return resolver(dict(args)) if resolver is not None else dict(args)


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
    try:
        return builder(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {name!r}: {exc}") from None


def _load_builtin() -> None:
    # Importing the modules runs their @register_model decorators; explicit, no file scanning.
    from adasr.nn import baselines, dlsr, supernet  # noqa: F401
