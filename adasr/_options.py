"""Frozen option records for the long-running entry points (`run_stream`, `play`, ...).

Each entry point takes one `options` value (a frozen dataclass: validated once, hashable,
printable) and, for call sites written before the records, the same fields as keywords: the
keywords replace fields of `options` (or of the defaults). An unknown keyword is a TypeError,
as it was when the fields were parameters.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any, TypeVar

import numpy as np

from adasr.errors import ConfigError

__all__ = ["check_hw", "check_int", "check_positive", "resolve"]

T = TypeVar("T")


def resolve(cls: type[T], options: T | None, overrides: dict[str, Any], where: str) -> T:
    """`options` (default: ``cls()``) with `overrides` applied; TypeError for a keyword `cls` lacks."""
    if options is not None and not isinstance(options, cls):
        raise ConfigError(f"{where}: options must be a {cls.__name__}, got {type(options).__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword argument(s): {', '.join(unknown)}")
    if options is None:
        return cls(**overrides)
    return replace(options, **overrides) if overrides else options  # type: ignore[type-var]


def check_positive(name: str, value: Any) -> float:
    """`value` as a float; ConfigError unless it is a finite number > 0 (not a bool)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """`value` as an int; ConfigError unless it is an integer (not a bool) in [lo, hi]."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_hw(hw: Any, name: str, most: int = 16384) -> tuple[int, int] | None:
    """`hw` as an (H, W) pair of ints in [1, most] (None passes); ConfigError otherwise."""
    if hw is None:
        return None
    if (not isinstance(hw, (tuple, list)) or len(hw) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= most for v in hw)):
        raise ConfigError(f"{name} must be (H, W) positive integers, got {hw!r}")
    return int(hw[0]), int(hw[1])
