"""Numbers in the live server's URLs and queries: ASCII digits only, bounded; 400 otherwise."""

from __future__ import annotations

import re

from aiohttp import web

__all__ = ["MAX_INDEX", "query_float", "query_int"]

MAX_INDEX = 10**9
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() also takes other scripts' digits
_DECIMAL = re.compile(r"[0-9]{1,6}(?:\.[0-9]{0,6})?|\.[0-9]{1,6}")


def query_int(text: str, what: str, lo: int = 0, hi: int = MAX_INDEX) -> int:
    """An integer of ASCII digits in [lo, hi]; 400 otherwise."""
    if not _DIGITS.fullmatch(text) or not lo <= int(text) <= hi:
        raise web.HTTPBadRequest(text=f"{what} must be an integer in [{lo}, {hi}]\n")
    return int(text)


def query_float(text: str, what: str, hi: float) -> float:
    """A plain decimal (ASCII digits, one optional point) in [0, hi]; 400 otherwise."""
    if not _DECIMAL.fullmatch(text):
        raise web.HTTPBadRequest(text=f"{what} must be a number\n")
    value = float(text)
    if not 0 <= value <= hi:
        raise web.HTTPBadRequest(text=f"{what} must be in [0, {hi}]\n")
    return value
