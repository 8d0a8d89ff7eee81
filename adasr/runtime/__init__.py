"""Runtime: the level-switching engine (`engine`), its streaming pipeline (`pipeline`), the
playback session that owns a run's load, monitor and writer (`session`), monitors, policies, load
traces, the Static and Assembled baselines, profiling (`profile`), the int8 rule (`int8_rule`) and
FPS statistics (`stats`).

Kept light: nothing is imported until used, so `import adasr.runtime`
pulls in no torch. The names below resolve lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CpuLoad": "adasr.cpuload",
    "LatencySample": "adasr.runtime.profile",
    "measure_latency": "adasr.runtime.profile",
    "profile_package": "adasr.runtime.profile",
    "device_key": "adasr.runtime.profile",
    "Engine": "adasr.runtime.engine",
    "OnnxEngine": "adasr.runtime.onnx_engine",
    "run_stream": "adasr.runtime.pipeline",
    "RunStats": "adasr.runtime.pipeline",
    "StreamOptions": "adasr.runtime.pipeline",
    "AutoThreads": "adasr.runtime.pipeline",
    "PlaybackSession": "adasr.runtime.session",
    "StreamMonitor": "adasr.runtime.monitors",
    "CpuMonitor": "adasr.runtime.monitors",
    "LatencyMonitor": "adasr.runtime.monitors",
    "LookupPolicy": "adasr.runtime.policies",
    "ReactivePolicy": "adasr.runtime.policies",
    "MultiWorkloadManager": "adasr.runtime.policies",
    "pick_policy": "adasr.runtime.policies",
    "fps_windows": "adasr.runtime.stats",
    "fps_per_frame": "adasr.runtime.stats",
    "Trace": "adasr.runtime.traces",
    "TracePlayer": "adasr.runtime.traces",
    "StaticRunner": "adasr.runtime.baseline_runners",
    "AssembledRunner": "adasr.runtime.baseline_runners",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adasr.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
