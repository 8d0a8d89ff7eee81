"""JSON files written atomically and read with one-line errors (families, latency tables)."""

from __future__ import annotations

import json
import os
from typing import Any

from adasr._atomic import atomic_path
from adasr.errors import InputError, ModelError

MAX_JSON_BYTES = 64 << 20


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
