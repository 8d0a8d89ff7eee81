"""The arithmetic of training steps: float32, or bfloat16 autocast where the hardware has it.

"bf16" runs convolutions forward and backward in bfloat16 (`torch.autocast`) while the weights,
the optimiser's state and every update stay float32; "fp32" runs float32; "auto" picks bf16 where
it is native (a CPU with AVX512-BF16 or AMX-BF16, a CUDA device that supports it) and fp32 where
it would be emulated. A bicubic-skip network adds its skip in float32 under autocast
(`adasr.nn.supernet.run_upsampler`), so the output keeps float32's resolution: in bf16 the sum
alone would cost 0.8 dB at 43 dB.
"""

from __future__ import annotations

import contextlib

import torch

from adasr.errors import ConfigError
from adasr.threads import PRECISIONS, native_bf16

__all__ = ["PRECISIONS", "autocast", "autocast_dtype", "precision_name", "resolved_precision"]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype training steps autocast to on `device` (None: float32) for a precision setting."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else device.type == "cpu" and native_bf16()
        if not native:
            return None
    return torch.bfloat16


def precision_name(dtype: torch.dtype | None) -> str:
    """The precision an `autocast_dtype` result runs as: "fp32" (None) or "bf16"."""
    return "fp32" if dtype is None else "bf16"


def resolved_precision(precision: str, device: torch.device) -> str:
    """What a precision setting runs as on `device`: "bf16" or "fp32" (auto resolved)."""
    return precision_name(autocast_dtype(precision, device))


def autocast(dtype: torch.dtype | None, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """`torch.autocast` to `dtype` on `device_type`, or nothing when `dtype` is None (float32)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)
