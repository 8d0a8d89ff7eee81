"""Several workloads on one machine (Dynamic-OFA section 4.4): engines that share the CPU, each
with its own target frame rate, their levels adjusted together.

`run_workloads(workloads, mode=...)` plays every workload's frames through its own runner at
the same time (one `run_stream` per workload, each in its own thread, each with one torch
thread so the streams share the cores instead of oversubscribing them) and returns one
`RunStats` per workload. Modes:

- "joint": one `MultiWorkloadManager` decides for all: each stream's decision point hands its
  latest `RuntimeState` to a shared hub, which asks the manager for every workload's level
  (once all have reported) and returns this workload's (`SharedPolicy`).
- "independent": each workload runs its own `ReactivePolicy`, blind to the others (what two
  separate apps would do).
- "fixed": no adaptation; every workload at the level it started at.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from adasr.errors import ConfigError
from adasr.runtime.monitors import RuntimeState, StreamMonitor
from adasr.runtime.policies import FixedPolicy, MultiWorkloadManager, ReactivePolicy

if TYPE_CHECKING:
    from adasr.runtime.pipeline import Runner

__all__ = ["MODES", "SharedPolicy", "Workload", "run_workloads"]

MODES = ("joint", "independent", "fixed")


class _Hub:
    def __init__(self, manager: MultiWorkloadManager, n: int) -> None:
        self.manager, self.lock = manager, threading.Lock()
        self.states: list[RuntimeState | None] = [None] * n

    def decide(self, index: int, state: RuntimeState) -> int:
        with self.lock:
            self.states[index] = state
            if any(s is None for s in self.states):
                return state.level
            levels = self.manager.choose_all(self.states)  # type: ignore[arg-type]
            # the decision is applied by each stream at its next frame: record it as its level
            self.states = [s if i == index else _with_level(s, levels[i]) for i, s in enumerate(self.states)]
            return levels[index]


def _with_level(state: RuntimeState | None, level: int) -> RuntimeState | None:
    if state is None or state.level == level:
        return state
    return RuntimeState(state.time_s, level, state.target_period_s, None, None, 0, None, state.cpu_free,
                        state.load_share, state.extra)


class SharedPolicy:
    """`Policy` view of one workload of a `MultiWorkloadManager` shared through a hub."""

    def __init__(self, hub: _Hub, index: int) -> None:
        self.hub, self.index = hub, index

    def choose(self, state: RuntimeState) -> int:
        return self.hub.decide(self.index, state)


@dataclass
class Workload:
    runner: Runner               # Engine or a baseline
    frames: Iterable[np.ndarray]
    target_fps: float
    name: str = ""


def run_workloads(workloads: Sequence[Workload], *, mode: str = "joint", max_frames: int | None = None,
                  manager_kw: dict[str, Any] | None = None, join_timeout_s: float = 600.0) -> list[Any]:
    """Play every workload at once (see the module doc); returns one `RunStats` per workload."""
    from adasr.runtime.pipeline import StreamOptions, run_stream

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not workloads:
        raise ConfigError("run_workloads needs at least one workload")
    policies: list[Any]
    if mode == "joint":
        hub = _Hub(MultiWorkloadManager([w.runner.levels for w in workloads], **(manager_kw or {})), len(workloads))
        policies = [SharedPolicy(hub, i) for i in range(len(workloads))]
    elif mode == "independent":
        policies = [ReactivePolicy(w.runner.levels, **(manager_kw or {})) for w in workloads]
    else:
        policies = [FixedPolicy(w.runner.level) for w in workloads]
    results: list[Any] = [None] * len(workloads)
    errors: list[BaseException] = []
    start = threading.Barrier(len(workloads))
    options = StreamOptions(threads=1, max_frames=max_frames)

    def one(i: int) -> None:
        w = workloads[i]
        try:
            monitor = StreamMonitor(level=w.runner.level, target_period_s=1.0 / w.target_fps)
            start.wait(timeout=60)
            results[i] = run_stream(w.runner, w.frames, None, w.target_fps, policies[i], monitor, options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=one, args=(i,), name=f"adasr-workload-{i}", daemon=True)
               for i in range(len(workloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_timeout_s)
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a workload did not finish in time")
    return results
