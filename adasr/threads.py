"""This machine's CPU and the intra-op thread count SR runs with, with or without torch.

The runtime's thread rule (`adasr.runtime.monitors.AutoThreads`) and the streaming pipeline
read and set one process-wide count through `get_num_threads` / `set_num_threads`: torch's own
setting where torch is installed, else a module-level count that the ONNX runtime
(`adasr.runtime.onnx_engine`) reads before every frame (it keeps one session per level and
thread count). `cpu_name` and `cpu_device_key` name the machine as device profiles do.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import re
from typing import Any

from adasr.errors import ConfigError

__all__ = ["PRECISIONS", "cpu_device_key", "cpu_flags", "cpu_name", "get_num_threads", "have_torch",
           "logical_cores", "native_bf16", "set_num_threads", "slug", "x264_options"]

#: arithmetic of training steps (adasr.nn.precision): float32, bfloat16 autocast, or bf16 where native
PRECISIONS = ("fp32", "bf16", "auto")

_torch: Any = None
_checked = False


def logical_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


_threads = logical_cores()  # the count without torch (torch's default is the same: one per core)


def have_torch() -> bool:
    """Whether torch is installed (it is then imported, once)."""
    global _torch, _checked
    if not _checked:
        _checked = True
        if importlib.util.find_spec("torch") is not None:
            try:
                import torch

                _torch = torch
            except ImportError:
                _torch = None
    return _torch is not None


def get_num_threads() -> int:
    """The intra-op thread count SR runs with (torch's where torch is installed)."""
    return _torch.get_num_threads() if have_torch() else _threads


def set_num_threads(n: int) -> None:
    """Set the intra-op thread count (torch's where torch is installed)."""
    global _threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"threads must be a positive integer, got {n!r}")
    if have_torch():
        _torch.set_num_threads(n)
    _threads = n


def slug(text: str, limit: int = 48) -> str:
    """`text` as a file-name-safe slug (lower case letters, digits and '-')."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "unknown"


def cpu_name() -> str:
    """The CPU model name (Linux /proc/cpuinfo, else `platform`)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo, read once; empty elsewhere)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 dot products in hardware (AVX512-BF16 or AMX-BF16), so that
    bfloat16 convolutions run faster than float32 ones instead of being emulated."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def x264_options() -> dict[str, str]:
    """Options every libx264 encoder here gets: ``x264-params=asm=AVX2`` on an x86-64 CPU with the
    AVX-512 that x264 would use (F, CD, BW, DQ, VL), else none.

    x264's AVX-512 code (core 165, as PyAV's wheels bundle it) reads uninitialised memory in the
    macroblock-tree lookahead (mbtree with B-frames, on at the default presets): the same frames
    code to different bytes from one encoder to the next, as the heap happens to hold. x264's
    instruction-set levels are bit-exact with each other, so held to AVX2 it writes the same bytes
    every time, and the same as on a CPU without AVX-512 (resumed upscales, the degradation cache and
    the benches rely on that)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    need = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
    return {"x264-params": "asm=AVX2"} if need <= cpu_flags() else {}


def cpu_device_key(threads: int | None = None) -> str:
    """``cpu-<model name slug>-<threads>t``: the key of this CPU's device profiles (threads
    default: the current count, `get_num_threads`)."""
    return f"cpu-{slug(cpu_name())}-{get_num_threads() if threads is None else threads}t"
