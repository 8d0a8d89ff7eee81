"""JSON files written atomically and read with one-line errors, and the versioned header
("kind" + "schema_version") every adasr file format starts with.

`loads` is the one JSON parser for everything adasr reads (files, records, network responses,
option values): bounded in size and nesting depth (no RecursionError), finite numbers only
(``NaN``, ``Infinity`` and numbers that overflow a float are refused, as are integers of more
than `MAX_INT_DIGITS` digits), each refusal a one-line error of the caller's class.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from adasr._atomic import atomic_path
from adasr.errors import AdasrError, InputError, ModelError

__all__ = ["MAX_INT_DIGITS", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "check_header", "header", "header_problem", "loads",
           "read_json", "write_json"]

MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 64  # nested arrays/objects; adasr's own files nest at most 8 deep
MAX_INT_DIGITS = 19  # every integer adasr stores fits in 64 bits


class _Refused(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _Refused(f"non-finite number {name}")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:24]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _check_depth(value: Any) -> None:
    """RecursionError if `value` nests arrays/objects deeper than MAX_JSON_DEPTH (an iterative walk)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise RecursionError
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def loads(text: str | bytes | bytearray, what: str, error: type[Exception] = InputError,
          max_bytes: int = MAX_JSON_BYTES, *, text_fallback: bool = False) -> Any:
    """Parse JSON `text` (`what` names it in the message): `error` for text over `max_bytes`,
    nested deeper than MAX_JSON_DEPTH, holding a non-finite or overlong number, or not JSON
    (`text_fallback`: then `text` itself is the value, as for an option that takes JSON or a word)."""
    if len(text) > max_bytes:
        raise error(f"{what}: {len(text):,} bytes of JSON, more than the {max_bytes:,} allowed")
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8")
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
        _check_depth(value)
        return value
    except RecursionError:  # the parser's own guard, far below the interpreter's stack
        raise error(f"{what}: JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    except _Refused as exc:
        raise error(f"{what}: refused JSON ({exc})") from None
    except json.JSONDecodeError as exc:
        if text_fallback:
            return text
        raise error(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"{what}: not valid JSON ({type(exc).__name__})") from None


def header(kind: str, version: int) -> dict[str, Any]:
    """The first two fields of a versioned adasr file: {"schema_version": version, "kind": kind}."""
    return {"schema_version": version, "kind": kind}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def header_problem(data: Any, kind: str | None, version: int, what: str, key: str = "kind") -> str | None:
    """Why `data` is not a `what` file of this `kind` (under `key`; None: not checked) and schema
    `version`, or None when it is. Only an int equal to `version` passes (not True, not 1.0)."""
    if not isinstance(data, Mapping):
        return f"not an adasr {what} (not a JSON object)"
    if kind is not None and data.get(key) != kind:
        return f"not an adasr {what} ({key} is not {kind!r})"
    got = data.get("schema_version")
    if not isinstance(got, int) or isinstance(got, bool) or got != version:
        return f"{what} schema version {_short(got)} is not supported (this adasr reads schema_version {version})"
    return None


def check_header(data: Any, kind: str | None, version: int, what: str, *, source: Any = None, key: str = "kind",
                 error: type[AdasrError] = ModelError) -> Mapping[str, Any]:
    """`data` if `header_problem` finds nothing, else `error` with the one-line reason (after
    "`source`: " when given)."""
    problem = header_problem(data, kind, version, what, key)
    if problem is not None:
        raise error(problem if source is None else f"{source}: {problem}")
    return data


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as sorted, indented JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Parse the JSON file `path`; `what` names it in the error ("family", "latency table")."""
    from adasr.safepath import read_bounded

    text = read_bounded(path, MAX_JSON_BYTES, what, InputError)  # a regular file of bounded size
    return loads(text, f"{path}: {what}", ModelError)
