"""JSON files written atomically and read with one-line errors, and the versioned header
("kind" + "schema_version") every adasr file format starts with."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from adasr._atomic import atomic_path
from adasr.errors import AdasrError, InputError, ModelError

__all__ = ["MAX_JSON_BYTES", "check_header", "header", "header_problem", "read_json", "write_json"]

MAX_JSON_BYTES = 64 << 20


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
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: {what} is not valid JSON ({getattr(exc, 'msg', exc)})") from None
