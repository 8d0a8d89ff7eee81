"""Content-adaptive model streaming (SRVC encoder/decoder with AMS-style sparse updates).

* `codec`: the model-update codec (full model record, per-segment sparse delta records).
* `adapt`: sparse adaptation (gradient-guided, AMS Algorithm 3, random, first/last layers).
* `model`: SRVC's lightweight spatially-adaptive SR model (registered as ``srvc``).
* `encoder`: HR video -> LR content stream + model stream; `container`: folder / single file.
* `reader`: `StreamReader` (frames with deltas applied at segment boundaries), `decode_stream`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so `adasr.stream.player` and the container load without torch.
_LAZY = {
    "STRATEGIES": "adasr.stream.adapt", "AdaptConfig": "adasr.stream.adapt", "SparseAdapter": "adasr.stream.adapt",
    "DeltaError": "adasr.stream.codec", "ModelState": "adasr.stream.codec", "encode_delta": "adasr.stream.codec",
    "encode_full": "adasr.stream.codec", "read_record": "adasr.stream.codec",
    "EncodeSettings": "adasr.stream.encoder", "encode_video": "adasr.stream.encoder",
    "StreamReader": "adasr.stream.reader", "decode_stream": "adasr.stream.reader",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adasr.stream' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
