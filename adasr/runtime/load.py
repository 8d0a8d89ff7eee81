"""Background CPU load: `CpuLoad` lives in `adasr.cpuload` (the search and the profiler time under
it too); re-exported here for the runtime's users."""

from adasr.cpuload import DEFAULT_PERIOD_S, CpuLoad, remove_stale_state

__all__ = ["DEFAULT_PERIOD_S", "CpuLoad", "remove_stale_state"]
