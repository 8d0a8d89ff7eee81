"""Level-switching policies: ``Policy.choose(state) -> level index`` (0 = the fastest level).

Levels are a `Family`'s, in its order (by cost, cheapest first). Policies are pure decision
rules over `RuntimeState`s: they never touch the engine, so one policy drives the Engine or a
baseline alike, and tests feed them fake states.

- `FixedPolicy`: always one level (a reference point).
- `LookupPolicy` (DySR Algorithm 1; Dynamic-OFA's look-up table for a single workload).
- `ReactivePolicy` (Dynamic-OFA's runtime manager: sliding-window latency, step down / up).
- `MultiWorkloadManager` (Dynamic-OFA section 4.4: several workloads adjusted together).
- `pick_policy(name, family, level)`: one of the first three by name ("fixed", "reactive", "lookup").

The rules are stated in each class's docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from adasr.errors import ConfigError
from adasr.family import Family, Level, load_name
from adasr.runtime.monitors import RuntimeState

__all__ = ["FixedPolicy", "LookupPolicy", "MultiWorkloadManager", "Policy", "ReactivePolicy", "pick_policy",
           "relative_costs"]


@runtime_checkable
class Policy(Protocol):
    def choose(self, state: RuntimeState) -> int: ...


def _check_fraction(name: str, value: Any, lo: float = 0.0, hi: float = 1.0) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi
    if not ok:
        raise ConfigError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _check_count(name: str, value: Any, lo: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def relative_costs(family: Family | Sequence[Level]) -> list[float]:
    """Per-level cost used to predict a level's latency from another's: the predicted latency at
    the family's reference load ("0.00") when every level has one, else measured, else
    MACs. Only ratios matter."""
    levels = list(family)
    if not levels:
        raise ConfigError("a policy needs at least one level")
    for pick in (lambda lv: lv.latency_s.get("0.00"), lambda lv: (lv.measured_s or {}).get("0.00"),
                 lambda lv: float(lv.macs) if lv.macs > 0 else None):
        values = [pick(lv) for lv in levels]
        if all(v is not None and v > 0 for v in values):
            return [float(v) for v in values]
    return [float(i + 1) for i in range(len(levels))]  # nothing known: order only


class FixedPolicy:
    """Always `level`."""

    def __init__(self, level: int) -> None:
        self.level = _check_count("level", level)

    def choose(self, state: RuntimeState) -> int:
        return self.level


# -- DySR Algorithm 1 ------------------------------------------------------------------------------

class LookupPolicy:
    """DySR Algorithm 1 over a profile table T[level][load] (DySR's resource levels are loads here).

    T comes from the family: `Level.seconds(r, measured)` for every load name r (a
    background load share, "0.00", "0.50", ...) that every level has (measured latencies from
    `Package.family_for(device)` when present, else predicted ones).

    Per decision:

    1. Current load r:
       - ``resource="cpu"``: the load share other programs take (`state.load_share`, else
         ``1 - state.cpu_free``) mapped to the nearest profiled share.
       - ``resource="latency"``: the profiled column whose entry for the running level is
         nearest (in log) to the measured window mean latency (the measured-latency ratio).
       Unknown readings (no CPU reading, empty window) fall back to the last r, initially the
       least loaded profiled column.
    2. Online calibration (``calibrate=True``, resource "cpu"): a profile is taken on an idle
       pipeline (one forward at a time); in a player the same level also pays frame conversion,
       the decoder and sink threads and cache pressure. After every frame the policy compares
       the running level's measured latency (`state.last_latency_s`) with its table entry at r
       and keeps k[r], per resource column, an exponential moving average of that ratio (weight
       `alpha`, clipped to [1/4, 8]); entries of column r are scaled by k[r] before the
       comparison below. Every k starts at 1.
    3. Candidates: levels with ``k[r] * T[i][r] <= margin * target_period``; pick the best PSNR
       (ties: the faster). No candidate: the fastest level at r.
    4. Slow start upwards (``max_step_up``, default 1; None = unbounded): a decision moves at most
       that many levels above the running one (down-moves are never limited). Every level on the
       way is measured and calibrates k before a costlier one is tried, so an optimistic
       profile costs at most one late frame instead of a run of them.
    """

    def __init__(self, family: Family | Sequence[Level], *, resource: str = "cpu", margin: float = 0.9,
                 measured: bool = True, calibrate: bool = True, alpha: float = 0.2,
                 max_step_up: int | None = 1) -> None:
        self.levels = list(family)
        if not self.levels:
            raise ConfigError("LookupPolicy needs at least one level")
        if resource not in ("cpu", "latency"):
            raise ConfigError(f"resource estimate must be 'cpu' or 'latency', got {resource!r}")
        self.resource = resource
        self.margin = _check_fraction("margin", margin, 0.01, 10.0)
        names = set.intersection(*(self._names(lv, measured) for lv in self.levels))
        if not names:
            raise ConfigError("LookupPolicy needs latencies of every level at a common load "
                              "(profile the package or search with latency models)")
        self.shares = sorted(float(n) for n in names)
        self.table = [[lv.seconds(s, measured) for s in self.shares] for lv in self.levels]
        self._column = 0
        self.calibrate = bool(calibrate) and resource == "cpu"
        self.alpha = _check_fraction("alpha", alpha, 0.0, 1.0)
        self.k = [1.0] * len(self.shares)  # one calibration factor per resource column
        self._pending: tuple[int, int] | None = None  # (level, column) of the frame being run
        self.max_step_up = None if max_step_up is None else _check_count("max_step_up", max_step_up, 1)

    @staticmethod
    def _names(lv: Level, measured: bool) -> set[str]:
        names = set(lv.latency_s)
        if measured and lv.measured_s:
            names |= set(lv.measured_s)
        return names

    def resource_column(self, state: RuntimeState) -> int:
        """Index into `shares` of the current load (see the class doc)."""
        if self.resource == "cpu":
            load = state.load_share
            if load is None and state.cpu_free is not None:
                load = 1.0 - state.cpu_free
            if load is not None:
                self._column = min(range(len(self.shares)), key=lambda j: (abs(self.shares[j] - load), j))
        elif state.window_mean_s and 0 <= state.level < len(self.levels):
            row, seen = self.table[state.level], math.log(state.window_mean_s)
            self._column = min(range(len(self.shares)), key=lambda j: (abs(math.log(row[j]) - seen), j))
        return self._column

    def select(self, column: int, target_period_s: float) -> int:
        """Best-PSNR level meeting the target at resource column `column` (table entries scaled
        by the calibration factor k), else the fastest."""
        budget = self.margin * target_period_s / self.k[column]
        fits = [i for i in range(len(self.levels)) if self.table[i][column] <= budget]
        if not fits:
            return min(range(len(self.levels)), key=lambda i: (self.table[i][column], i))
        return max(fits, key=lambda i: (self.levels[i].psnr, -self.table[i][column], -i))

    def _update_k(self, state: RuntimeState) -> None:
        last, pending = state.last_latency_s, self._pending
        if last is None or pending is None or pending[0] != state.level or not last > 0:
            return
        level, column = pending
        ratio = min(8.0, max(0.25, last / self.table[level][column]))
        self.k[column] = min(8.0, max(0.25, (1 - self.alpha) * self.k[column] + self.alpha * ratio))

    def choose(self, state: RuntimeState) -> int:
        column = self.resource_column(state)
        if self.calibrate:
            self._update_k(state)
        level = self.select(column, state.target_period_s)
        if self.max_step_up is not None and 0 <= state.level < len(self.levels):
            level = min(level, state.level + self.max_step_up)
        self._pending = (level, column)
        return level

    def load_name_of(self, column: int) -> str:
        return load_name(self.shares[column])


# -- Dynamic-OFA reactive runtime manager ----------------------------------------------------------

class ReactivePolicy:
    """Dynamic-OFA's reactive runtime manager for one workload.

    Reads the sliding-window mean latency m of the running level l (the window holds only
    frames of l; `StreamMonitor` clears it on a switch) and the target period T:

    - hold while fewer than `min_samples` frames of l are in the window, or fewer than
      `cooldown` decisions have passed since this policy's last switch;
    - step down (l - 1) when m > T (a violation);
    - step up (l + 1) when the predicted latency of l + 1 fits with headroom:
      ``m * cost[l+1] / cost[l] <= (1 - hysteresis) * T``, where cost are the levels' relative
      costs (`relative_costs`: profiled latency, else MACs). The gap between the step-down
      threshold (T) and the step-up one ((1 - h) T for the *next* level) is the hysteresis
      that stops it oscillating between two levels.

    One step per decision: Dynamic-OFA changes levels gradually, observing the effect.
    """

    def __init__(self, family: Family | Sequence[Level] | int, *, hysteresis: float = 0.15, cooldown: int = 5,
                 min_samples: int = 3) -> None:
        if isinstance(family, int) and not isinstance(family, bool):
            self.costs = [float(i + 1) for i in range(_check_count("levels", family, 1))]
        else:
            self.costs = relative_costs(family)
        self.hysteresis = _check_fraction("hysteresis", hysteresis, 0.0, 0.99)
        self.cooldown = _check_count("cooldown", cooldown)
        self.min_samples = _check_count("min_samples", min_samples, 1)
        self._since_switch = self.cooldown  # no cooldown at the start
        self._last_level: int | None = None

    @property
    def top(self) -> int:
        return len(self.costs) - 1

    def choose(self, state: RuntimeState) -> int:
        level = min(max(state.level, 0), self.top)
        if level != self._last_level:  # switched by someone else: observe before acting
            self._since_switch = 0 if self._last_level is not None else self._since_switch
            self._last_level = level
        self._since_switch += 1
        m, period = state.window_mean_s, state.target_period_s
        if m is None or state.window_count < self.min_samples or self._since_switch <= self.cooldown:
            return level
        new = level
        if m > period and level > 0:
            new = level - 1
        elif level < self.top and m * self.costs[level + 1] / self.costs[level] <= (1 - self.hysteresis) * period:
            new = level + 1
        if new != level:
            self._since_switch = 0
            self._last_level = new
        return new


# -- several workloads sharing the machine ---------------------------------------------------------

class MultiWorkloadManager:
    """Dynamic-OFA section 4.4: several workloads (engines) share the CPU, each with its own
    target; their levels are adjusted together, one step of one workload per decision.

    Inputs per decision: one `RuntimeState` per workload (its running level, window mean m_i,
    target T_i). Predicted latency of workload i at level k: ``m_i * cost_i[k] / cost_i[l_i]``.

    - Hold while any workload has fewer than `min_samples` frames in its window or fewer than
      `cooldown` decisions passed since the last switch (any workload's: they share the CPU, so
      every switch changes everyone's latency).
    - Violation (some m_i > T_i): step down ONE workload, the one with the cheapest quality loss
      per second saved, ``(psnr_i[l] - psnr_i[l-1]) / (pred_i(l) - pred_i(l-1))``, among all
      workloads that can step down (on a shared CPU, slowing any workload frees time for the
      violating one). Ties: the violating workload, then the lower index. If the violating
      workload's own step is the only one left, that one.
    - No violation and every workload has headroom (m_j <= (1 - h) T_j for all j): step up ONE
      workload whose predicted latency at l + 1 is within (1 - h) T_i, the one with the largest
      PSNR gain per added second.
    """

    def __init__(self, families: Sequence[Family | Sequence[Level]], *, hysteresis: float = 0.15,
                 cooldown: int = 5, min_samples: int = 3) -> None:
        if not families:
            raise ConfigError("MultiWorkloadManager needs at least one workload")
        self.psnrs = [[float(lv.psnr) for lv in fam] for fam in families]
        self.costs = [relative_costs(fam) for fam in families]
        self.hysteresis = _check_fraction("hysteresis", hysteresis, 0.0, 0.99)
        self.cooldown = _check_count("cooldown", cooldown)
        self.min_samples = _check_count("min_samples", min_samples, 1)
        self._since_switch = self.cooldown
        self.decisions: list[tuple[int, int, int]] = []  # (workload, from, to)

    def _pred(self, i: int, level: int, state: RuntimeState, at: int) -> float:
        return state.window_mean_s * self.costs[i][at] / self.costs[i][level]

    def choose_all(self, states: Sequence[RuntimeState]) -> list[int]:
        if len(states) != len(self.costs):
            raise ConfigError(f"expected {len(self.costs)} workload states, got {len(states)}")
        levels = [min(max(s.level, 0), len(self.costs[i]) - 1) for i, s in enumerate(states)]
        self._since_switch += 1
        ready = all(s.window_mean_s is not None and s.window_count >= self.min_samples for s in states)
        if not ready or self._since_switch <= self.cooldown:
            return levels
        violating = {i for i, s in enumerate(states) if s.window_mean_s > s.target_period_s}
        h = self.hysteresis
        pick: int | None = None
        step = 0
        if violating:
            options = []
            for i, s in enumerate(states):
                lv = levels[i]
                if lv == 0:
                    continue
                saved = self._pred(i, lv, s, lv) - self._pred(i, lv, s, lv - 1)
                loss = self.psnrs[i][lv] - self.psnrs[i][lv - 1]
                rate = loss / saved if saved > 0 else math.inf
                options.append((rate, i not in violating, i))
            if options:
                pick, step = min(options)[2], -1
        elif all(s.window_mean_s <= (1 - h) * s.target_period_s for s in states):
            options = []
            for i, s in enumerate(states):
                lv = levels[i]
                if lv + 1 >= len(self.costs[i]):
                    continue
                nxt = self._pred(i, lv, s, lv + 1)
                if nxt > (1 - h) * s.target_period_s:
                    continue
                added = nxt - self._pred(i, lv, s, lv)
                gain = self.psnrs[i][lv + 1] - self.psnrs[i][lv]
                rate = gain / added if added > 0 else math.inf
                options.append((-rate, i))
            if options:
                pick, step = min(options)[1], +1
        if pick is not None:
            self.decisions.append((pick, levels[pick], levels[pick] + step))
            levels[pick] += step
            self._since_switch = 0
        return levels


def pick_policy(name: str, family: Family | Sequence[Level], level: int | None = None, *,
                fallback: bool = True) -> Policy:
    """The policy called `name`: "fixed" (at `level`, default the best), "reactive" or "lookup".

    fallback: a "lookup" on a family without latencies becomes "reactive" (it needs none);
    with False the `LookupPolicy`'s ConfigError is raised instead.
    """
    if name == "fixed":
        return FixedPolicy(level if level is not None else len(family) - 1)
    if name == "reactive":
        return ReactivePolicy(family)
    try:
        return LookupPolicy(family)
    except ConfigError:
        if not fallback:
            raise
        return ReactivePolicy(family)
