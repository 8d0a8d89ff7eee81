"""The digest of a set of named tensors (torch tensors or NumPy arrays), torch-free.

`tensors_sha256` hashes name, dtype, shape and raw bytes of every tensor in name order, so it
does not depend on the file layout. It guards packages (`adasr.package`, also when the ONNX
runtime reads a package's tensors as NumPy arrays, `adasr.runtime.onnx_engine`) and training
checkpoints. A NumPy array hashes exactly as the torch tensor of the same dtype, shape and
values: its dtype is written by torch's name for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["tensors_sha256"]

# NumPy dtype -> the name torch prints for the same dtype (what the digest has always hashed)
_TORCH_NAMES = {np.dtype(k): f"torch.{k}" for k in ("float64", "float32", "float16", "int64", "int32", "int16",
                                                    "int8", "uint8")}
_TORCH_NAMES[np.dtype(bool)] = "torch.bool"


def _array_part(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    name = _TORCH_NAMES.get(a.dtype)
    if name is None:
        raise ValueError(f"no digest for dtype {a.dtype}")
    a = np.ascontiguousarray(a)
    return name, tuple(a.shape), a.tobytes() if a.size else b""


def _tensor_part(t: Any) -> tuple[str, tuple[int, ...], bytes]:
    import torch

    t = t.detach().cpu().contiguous()
    return str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def tensors_sha256(tensors: Mapping[str, Any]) -> str:
    """Digest of a state dict independent of file layout: name, dtype, shape, raw bytes (guards
    packages and training checkpoints). Values: torch tensors or NumPy arrays."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        dtype, shape, raw = _array_part(t) if isinstance(t, np.ndarray) else _tensor_part(t)
        h.update(f"{name}|{dtype}|{shape}|".encode())
        h.update(raw)
    return h.hexdigest()
