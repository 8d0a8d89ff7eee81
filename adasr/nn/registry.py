"""One registry of model architectures, keyed by name.

Each entry is a builder that takes validated keyword arguments and returns an `nn.Module`
whose forward maps an LR batch (B, 3, H, W), float in [0, 1], to an SR batch
(B, 3, s*H, s*W). A model file stores the name and the arguments as JSON, so a model is
rebuilt from data, never from pickled objects.
"""

from __future__ import annotations

import importlib
import inspect
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from adasr.errors import AdasrError, ModelError

__all__ = ["BUILTIN_MODULES", "Builder", "MAX_ARG", "MAX_ITEMS", "MAX_NESTING", "MAX_TENSORS", "MAX_TEXT", "MAX_VALUES",
           "build_for_weights", "build_model", "check_args", "meta_model", "model_names", "register_model",
           "resolve_args"]

Builder = Callable[..., nn.Module]

# Bounds on what a config read from a file may ask for (model files, packages, stream records):
MAX_ARG = 4096  # any number among a builder's arguments (widths, depths, counts), nested ones too
MAX_ITEMS = 1024  # entries of a list or object among the arguments
MAX_TEXT = 4096  # characters of a string among the arguments
MAX_NESTING = 8
MAX_VALUES = 64_000_000  # parameters + buffers of one network (256 MB as float32)
MAX_TENSORS = 4096  # parameters + buffers of one network (the largest search spaces hold ~3000)

# Discovery: the module that registers each built-in architecture, imported the first time the
# name is asked for (explicit, no file scanning). A test builds, saves and loads every entry.
BUILTIN_MODULES: dict[str, str] = {
    "bicubic": "adasr.nn.baselines",
    "fsrcnn": "adasr.nn.baselines",
    "espcn": "adasr.nn.baselines",
    "imdn": "adasr.nn.baselines",
    "dlsr": "adasr.nn.dlsr",
    "supernet": "adasr.nn.supernet",
    "subnet": "adasr.nn.supernet",
    "srvc": "adasr.nn.srvc",
}

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
    _discover(name)
    resolver = _RESOLVERS.get(name)
    return resolver(dict(args)) if resolver is not None else dict(args)


def model_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model `name`, refusing unknown names and unknown arguments, and any
    network of more than MAX_TENSORS tensors or MAX_VALUES values: it is built on the meta device
    first (`meta_model`, shapes only), so training, loading and streaming share one bound and an
    oversized network is refused before any of its memory is allocated."""
    if getattr(_budget, "counts", None) is None:  # a real build: bounded first (meta_model comes back here)
        meta_model(name, kwargs)
    return _build(name, kwargs)


def _build(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    _discover(name)
    if name not in _REGISTRY:
        _load_builtin()  # the message lists every known name
    if name not in _REGISTRY:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    builder = _REGISTRY[name]
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ModelError(f"architecture {name!r} takes no argument(s) {', '.join(unknown)}")
    check_args(name, kwargs)
    try:
        return builder(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot build {name!r}: {first}") from None


def check_args(name: str, args: Mapping[str, Any]) -> None:
    """ModelError unless every value among `args` is bounded: numbers in [0, MAX_ARG] (finite),
    lists and objects of at most MAX_ITEMS entries, strings of at most MAX_TEXT characters."""

    def walk(value: Any, where: str, depth: int) -> None:
        if depth > MAX_NESTING:
            raise ModelError(f"architecture {name!r}: argument {where} is nested too deeply")
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, (int, float)):
            if math.isfinite(value) and value < 0:  # widths, depths, counts, kernel sizes: never negative
                raise ModelError(f"architecture {name!r}: argument {where}={value!r} is negative "
                                 f"(out of range [0, {MAX_ARG}])")
            if not (math.isfinite(value) and 0 <= value <= MAX_ARG):
                raise ModelError(f"architecture {name!r}: argument {where}={value!r} is out of range "
                                 f"[0, {MAX_ARG}]")
            return
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise ModelError(f"architecture {name!r}: argument {where} is a string of {len(value):,} characters")
            return
        if isinstance(value, (Mapping, list, tuple)):
            if len(value) > MAX_ITEMS:
                raise ModelError(f"architecture {name!r}: argument {where} has {len(value):,} entries "
                                 f"(at most {MAX_ITEMS})")
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, item in items:
                walk(item, f"{where}.{key}" if isinstance(value, Mapping) else f"{where}[{key}]", depth + 1)
            return
        raise ModelError(f"architecture {name!r}: argument {where} has unsupported type {type(value).__name__}")

    for key, value in args.items():
        walk(value, str(key), 0)


_RANDOM_FILLS = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.log_normal_,
                           torch.Tensor.exponential_, torch.Tensor.cauchy_, torch.Tensor.geometric_,
                           torch.Tensor.random_, torch.Tensor.bernoulli_})


class _SkipMetaFills(TorchFunctionMode):
    """Initialising a meta tensor (torch.nn.init, random fills) is a no-op and `torch.eye` an
    empty meta tensor: they have no values, and torch would import its compiler stack (seconds)
    to trace these on the meta device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.eye:  # its meta version is traced the same slow way; the values do not matter
            n = args[0] if args else kwargs["n"]
            m = args[1] if len(args) > 1 and not isinstance(args[1], torch.Tensor) else kwargs.get("m", n)
            return torch.empty(n, m, dtype=kwargs.get("dtype"), device="meta",
                               requires_grad=kwargs.get("requires_grad", False))
        if func in _RANDOM_FILLS or getattr(func, "__module__", None) == "torch.nn.init":
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


class _TooLarge(Exception):
    pass


_budget = threading.local()


def _count_tensor(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
    """Registration hook (every module, every thread; active only inside `meta_model`): stop a
    meta build as soon as it passes MAX_TENSORS tensors or MAX_VALUES values, so that neither a
    huge tensor nor millions of small modules are ever built."""
    counts = getattr(_budget, "counts", None)
    if counts is None or tensor is None:
        return
    counts[0] += 1
    counts[1] += tensor.numel()
    if counts[0] > MAX_TENSORS or counts[1] > MAX_VALUES:
        raise _TooLarge()


torch.nn.modules.module.register_module_parameter_registration_hook(_count_tensor)
torch.nn.modules.module.register_module_buffer_registration_hook(_count_tensor)


def meta_model(name: str, args: Mapping[str, Any]) -> nn.Module:
    """`build_model(name, **args)` on the meta device: shapes only, no memory for values.

    ModelError as soon as the network would hold more than MAX_TENSORS tensors or MAX_VALUES
    values (the build stops there)."""
    _budget.counts = [0, 0]
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"), _SkipMetaFills():
            return build_model(name, **args)
    except _TooLarge:
        raise ModelError(f"architecture {name!r} with these arguments would hold more than "
                         f"{MAX_TENSORS:,} tensors or {MAX_VALUES:,} values") from None
    finally:
        _budget.counts = None


def build_for_weights(name: str, args: Mapping[str, Any], shapes: Mapping[str, Sequence[int]], source: str, *,
                      params_only: bool = False, what: str | None = None) -> nn.Module:
    """Build architecture `name` from a file's config only once that file's tensors are known to
    fit it: the config's arguments are bounded (`check_args`), the network is first built on the
    meta device, its size is bounded (MAX_VALUES) and its tensor names and shapes must equal
    `shapes` (read from the file's header, no tensor loaded); then it is built for real.

    `params_only`: `shapes` lists parameters only (no buffers). `what`: how the messages name the
    architecture (default ``architecture 'name'``). ModelError names the first mismatch."""
    what = what or f"architecture {name!r}"
    try:
        meta = meta_model(name, args)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    except AdasrError as exc:  # a nested config (a search space) refused by its own checks
        raise ModelError(f"{source}: bad {what} config ({exc})") from None
    tensors = meta.named_parameters() if params_only else meta.state_dict().items()
    expected = {k: tuple(v.shape) for k, v in tensors}
    total = sum(math.prod(s) for s in expected.values())
    if total > MAX_VALUES:
        raise ModelError(f"{source}: {what} with these arguments holds {total:,} values, more than the "
                         f"{MAX_VALUES:,} a model may have")
    got = {str(k): tuple(int(d) for d in v) for k, v in shapes.items()}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelError(f"{source}: weights do not match {what} ({detail})")
    for key, shape in got.items():
        if shape != expected[key]:
            raise ModelError(f"{source}: weight {key!r} has shape {shape}, {what} expects {expected[key]}")
    try:
        return _build(name, args)  # bounded by the meta build above
    except AdasrError as exc:
        raise ModelError(f"{source}: {exc}") from None


def _discover(name: str) -> None:
    """Import the module that registers the built-in architecture `name` (if it is one)."""
    if name not in _REGISTRY and isinstance(name, str) and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])


def _load_builtin() -> None:
    # Importing the modules runs their @register_model decorators (see BUILTIN_MODULES).
    for module in sorted(set(BUILTIN_MODULES.values())):
        importlib.import_module(module)
