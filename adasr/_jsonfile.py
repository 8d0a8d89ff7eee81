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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from adasr._atomic import atomic_path, foreign_files
from adasr.errors import AdasrError, InputError, ModelError

__all__ = ["MAX_INT_DIGITS", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_MANIFEST_BYTES", "check_header", "header",
           "header_problem", "loads", "owned_folder_reason", "read_json", "read_marker_manifest", "write_json"]

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


# -- folders adasr wrote, known by their manifest --------------------------------------------------

MAX_MANIFEST_BYTES = 16 << 20


def read_marker_manifest(folder: Path, key: str, value: str) -> dict | None:
    """The folder's manifest.json if it is a JSON object with `key` == `value`, else None."""
    from adasr.safepath import read_confined

    try:
        data = loads(read_confined(folder, "manifest.json", MAX_MANIFEST_BYTES), "manifest")
    except (AdasrError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get(key) == value else None


def owned_folder_reason(folder: Path, key: str, value: str, what: str,
                        names: Callable[[dict], Iterable[str]], patterns: Sequence[str] = ()) -> str | None:
    """None if `folder` is something adasr wrote: its manifest has `key` == `value` and it holds
    only the files that manifest names (`names(manifest)`, plus `patterns`); else the reason."""
    manifest = read_marker_manifest(folder, key, value)
    if manifest is None:
        return f"it is not an adasr {what} (no manifest.json with {key} {value!r})"
    try:
        allowed = {"manifest.json", *(str(n) for n in names(manifest))}
    except (AttributeError, KeyError, TypeError):
        return "its manifest.json is damaged, so what adasr wrote there is unknown"
    extra = foreign_files(folder, allowed, patterns)
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        return f"it holds files adasr did not write ({shown}); move them or choose another output"
    return None
