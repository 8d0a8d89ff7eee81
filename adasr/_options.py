"""Frozen option records for the long-running entry points (`run_stream`, `play`, ...), and the
checks their fields share.

Each entry point takes one `options` value (a frozen dataclass: validated once, hashable,
printable); `options_or_default` checks it (None: the record's defaults).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from adasr.errors import ConfigError

__all__ = ["check_hw", "check_int", "check_positive", "options_or_default", "parse_assignments"]

T = TypeVar("T")


def options_or_default(cls: type[T], options: T | None, where: str) -> T:
    """`options`, or ``cls()`` for None; ConfigError for anything but a `cls`."""
    if options is None:
        return cls()
    if not isinstance(options, cls):
        raise ConfigError(f"{where}: options must be a {cls.__name__}, got {type(options).__name__}")
    return options


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


def parse_assignments(pairs: Sequence[str], option: str = "--arg") -> dict[str, Any]:
    """``["width=16", "name=x"]`` -> ``{"width": 16, "name": "x"}``: values are JSON where they
    parse as JSON, else strings."""
    args: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"{option} wants NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        from adasr._jsonfile import loads

        args[key] = loads(value, f"{option} {key}", ConfigError, 1 << 20, text_fallback=True)
    return args
