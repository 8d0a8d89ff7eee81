"""Model files: one `.safetensors` file whose header carries a JSON config.

The config (key ``adasr`` in the safetensors metadata) names the architecture and its builder
arguments, the scale and a schema version; the tensors are the state dict. Loading rebuilds the
architecture from the registry and loads the tensors strictly, so nothing is ever unpickled;
the config's sizes are bounded and checked against the header's tensor shapes first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from adasr._atomic import write_bytes_atomic
from adasr._digest import tensors_sha256  # re-exported: packages and checkpoints share the digest
from adasr._jsonfile import check_header, loads
from adasr.errors import ModelError
from adasr.nn.registry import build_for_weights

__all__ = ["MAX_CONFIG_CHARS", "ModelSpec", "SCHEMA_VERSION", "load_model", "non_finite", "read_spec",
           "refuse_non_finite", "save_model", "tensors_sha256"]

SCHEMA_VERSION = 1
_META_KEY = "adasr"
MAX_CONFIG_CHARS = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """What a model file says about itself."""

    arch: str
    args: dict[str, Any]
    scale: int
    info: dict[str, Any] = field(default_factory=dict)  # training provenance, metrics, free-form
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {"schema_version": self.schema_version, "arch": self.arch, "args": self.args,
             "scale": self.scale, "info": self.info},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> ModelSpec:
        data = loads(text, f"{source}: model config", ModelError)
        check_header(data, None, SCHEMA_VERSION, "model file", source=source)
        version = data["schema_version"]
        try:
            return cls(arch=str(data["arch"]), args=dict(data["args"]), scale=int(data["scale"]),
                       info=dict(data.get("info", {})), schema_version=version)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: model config lacks or mangles field {exc}") from None


def save_model(path: str | os.PathLike[str], model: nn.Module, spec: ModelSpec) -> None:
    """Write `model`'s weights and `spec` to `path` atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # serialised here and written by Python, so a full disk raises OSError (ENOSPC) like any write
    write_bytes_atomic(path, save(tensors, metadata={_META_KEY: spec.to_json()}))


def read_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """Read only the JSON config of a model file (no tensors are loaded)."""
    spec, _ = _open(path)
    return spec


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model in `path` and load its weights; refuse anything that does not fit.

    The config is bounded and the tensor names and shapes in the file's header are checked
    against it (on a meta-device build) before the network is built or any tensor is read, so
    a crafted config cannot make the loader allocate more than a bounded model
    (`adasr.nn.registry.build_for_weights`)."""
    spec, shapes = _open(path)
    model = build_for_weights(spec.arch, spec.args, shapes, str(path))
    tensors = _read_tensors(Path(path))
    refuse_non_finite(tensors, str(path))
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), spec


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def refuse_non_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """ModelError if any weight is NaN or infinite (such a model writes black or garbage frames)."""
    bad = non_finite(tensors)
    if bad:
        raise ModelError(f"{source}: {len(bad)} weight tensor(s) hold NaN or infinity (e.g. {bad[0]}); "
                         f"the model is broken (a diverged training run?)")


def _damaged(path: Path, exc: Exception) -> ModelError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ModelError(f"{path}: damaged or not a safetensors file ({first})")


def _open(path: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, tuple[int, ...]]]:
    """The config and the tensor shapes in the header of `path` (no tensor is loaded)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            if _META_KEY not in meta:
                raise ModelError(f"{path}: not an adasr model file (no adasr config in its header)")
            if len(meta[_META_KEY]) > MAX_CONFIG_CHARS:
                raise ModelError(f"{path}: model config of {len(meta[_META_KEY]):,} characters is too long")
            spec = ModelSpec.from_json(meta[_META_KEY], str(path))
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _damaged(path, exc) from None
    return spec, shapes


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _damaged(path, exc) from None
