"""Background CPU load: real contention from separate processes, adjustable while it runs.

`CpuLoad(share, workers)` starts `workers` processes (default: one per core). Each one burns
the CPU for `share` of every short period (10 ms by default) and sleeps the rest, so at share
0.5 on every core roughly half of the machine's CPU time goes to the load. `set_share(x)`
changes the share at run time (within one period), which is how load traces (bursty, stable,
random) are replayed through one generator.

Design:

- Processes, not threads: a busy Python thread holds the GIL and would slow the measured
  program in a way no real neighbour does.
- Each worker is a fresh interpreter (`subprocess`, ``python -I -S -c <busy loop>``) running a
  few lines of stdlib code. Unlike `multiprocessing`'s spawn context this never re-imports the
  caller's `__main__` (which breaks scripts without a ``__main__`` guard) and never imports
  torch or adasr in the worker.
- Shared state is one small memory-mapped file (no resource tracker process, nothing to leak):
  bytes 0-7 the share (float64), 8-15 a stop flag, then one "ready" byte per worker. Its name
  ``adasr-cpuload-<pid>-<random>.bin`` carries the creator's pid, so a start removes the files
  of creators that died without cleaning up (SIGKILL) and nothing else.
- Ctrl-C: workers run in their own process group and ignore SIGINT, so a terminal's Ctrl-C
  reaches only the parent, whose KeyboardInterrupt stops them (no worker tracebacks).
- No orphans: `stop()` / `__exit__` (also on exceptions) raises the stop flag, waits, then
  terminates and kills what is left; an `atexit` hook stops loads the program forgot; and a
  worker exits on its own within one period when its parent dies (its parent pid changes) or
  after `max_seconds`, whichever comes first. Workers behave like daemons: they never outlive
  the process that started them.

Usage::

    with CpuLoad(share=0.5) as load:
        ...                 # measure under load
        load.set_share(0.8)
        ...
"""

from __future__ import annotations

import atexit
import mmap
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

from adasr.errors import ConfigError

__all__ = ["CpuLoad", "DEFAULT_PERIOD_S", "remove_stale_state"]

DEFAULT_PERIOD_S = 0.01
_HEADER = struct.Struct("<dq")  # share, stop flag

# The worker: stdlib only, one period per loop turn, bounded by the stop flag, the parent's
# life and a deadline. argv: state file, worker index, period, parent pid, max seconds.
_WORKER = r"""
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
import mmap, os, struct, sys, time
path, index, period = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ppid, max_s = int(sys.argv[4]), float(sys.argv[5])
with open(path, "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
header = struct.Struct("<dq")
m[header.size + index] = 1
deadline = time.monotonic() + max_s
while time.monotonic() < deadline and os.getppid() == ppid:
    share, stop = header.unpack_from(m, 0)
    if stop:
        break
    start = time.perf_counter()
    busy_until = start + min(1.0, max(0.0, share)) * period
    while time.perf_counter() < busy_until:
        pass
    rest = start + period - time.perf_counter()
    if rest > 0:
        time.sleep(rest)
m.close()
"""

_LIVE: weakref.WeakSet[CpuLoad] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for load in list(_LIVE):
        load.stop()


def _check_share(share: float) -> float:
    ok = isinstance(share, (int, float)) and not isinstance(share, bool) and 0.0 <= share <= 1.0
    if not ok:
        raise ConfigError(f"CPU load share must be a number in [0, 1], got {share!r}")
    return float(share)


def _state_dir() -> str:
    shm = Path("/dev/shm")  # RAM-backed where it exists; any folder works
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


_STATE_PREFIX = "adasr-cpuload-"
_STATE_NAME = re.compile(r"^adasr-cpuload-(?P<pid>[0-9]+)-[a-z0-9_]+\.bin$")


def remove_stale_state(folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """Delete the state files of loads whose creating process is gone (killed before its cleanup)
    and that are older than this process; returns what was removed."""
    from adasr._atomic import is_stale

    root = Path(folder or _state_dir())
    removed = []
    try:
        names = [e.name for e in os.scandir(root) if e.name.startswith(_STATE_PREFIX)]
    except OSError:
        return removed
    for name in names:
        match = _STATE_NAME.match(name)
        if match is not None and is_stale(root / name, int(match["pid"])):
            try:
                (root / name).unlink()
                removed.append(root / name)
            except OSError:
                pass
    return removed


class CpuLoad:
    """A context manager running background CPU load; see the module doc.

    share: fraction of each period every worker spends busy, in [0, 1] (0 idles the workers).
    workers: number of processes (default `os.cpu_count()`).
    period_s: the duty-cycle period (short periods look like steady contention to a scheduler).
    max_seconds: a worker stops by itself after this long (a safety net, not a timer to rely on).
    """

    def __init__(self, share: float = 0.5, workers: int | None = None, *, period_s: float = DEFAULT_PERIOD_S,
                 max_seconds: float = 3600.0, start_timeout_s: float = 30.0) -> None:
        _check_share(share)
        if workers is None:
            workers = os.cpu_count() or 1
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 1024:
            raise ConfigError(f"CPU load workers must be an integer in [1, 1024], got {workers!r}")
        if not isinstance(period_s, (int, float)) or not 0.001 <= period_s <= 1.0:
            raise ConfigError(f"CPU load period must be in [0.001, 1] seconds, got {period_s!r}")
        if not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
            raise ConfigError(f"CPU load max_seconds must be positive, got {max_seconds!r}")
        self.workers = workers
        self.period_s = float(period_s)
        self.max_seconds = float(max_seconds)
        self.start_timeout_s = float(start_timeout_s)
        self._initial_share = float(share)
        self._procs: list[subprocess.Popen] = []
        self._map: mmap.mmap | None = None
        self._path: Path | None = None

    # -- control --

    @property
    def share(self) -> float:
        if self._map is None:
            return self._initial_share
        return _HEADER.unpack_from(self._map, 0)[0]

    def set_share(self, share: float) -> None:
        """Change every worker's busy fraction; takes effect within one period."""
        share = _check_share(share)
        self._initial_share = share
        if self._map is not None:
            _HEADER.pack_into(self._map, 0, share, 0)

    @property
    def running(self) -> bool:
        return any(p.poll() is None for p in self._procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def start(self) -> CpuLoad:
        """Start the workers and wait (up to `start_timeout_s`) until every one is running."""
        if self._procs or self._map is not None:
            raise RuntimeError("CpuLoad is already started")
        try:
            remove_stale_state()
            fd, name = tempfile.mkstemp(prefix=f"{_STATE_PREFIX}{os.getpid()}-", suffix=".bin", dir=_state_dir())
            self._path = Path(name)
            size = _HEADER.size + self.workers
            with os.fdopen(fd, "r+b") as f:
                f.write(bytes(size))
                f.flush()
                self._map = mmap.mmap(f.fileno(), size)
            _HEADER.pack_into(self._map, 0, self._initial_share, 0)
            _LIVE.add(self)
            for i in range(self.workers):
                args = [sys.executable, "-I", "-S", "-c", _WORKER, str(self._path), str(i), repr(self.period_s),
                        str(os.getpid()), repr(self.max_seconds)]
                self._procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                    close_fds=True, process_group=0))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            ready = sum(self._map[_HEADER.size:_HEADER.size + self.workers])
            if ready == self.workers:
                return
            dead = [p.pid for p in self._procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"worker(s) {dead} exited" if dead else f"timed out after {self.start_timeout_s:g} s"
                raise RuntimeError(f"CPU load workers did not start ({ready}/{self.workers} ready; {why})")
            time.sleep(0.005)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Raise the stop flag, wait, then terminate and kill whatever is still alive; idempotent."""
        if self._map is not None:
            _HEADER.pack_into(self._map, 0, self.share, 1)
        procs, self._procs = self._procs, []
        deadline = time.monotonic() + timeout_s
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            for end in (p.terminate, p.kill):
                if p.poll() is not None:
                    break
                end()
                try:
                    p.wait(1.0)
                except subprocess.TimeoutExpired:
                    pass
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        _LIVE.discard(self)

    # -- context manager --

    def __enter__(self) -> CpuLoad:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:
        if getattr(self, "_procs", None):
            self.stop(timeout_s=0.5)

    def __repr__(self) -> str:
        return f"CpuLoad(share={self.share:g}, workers={self.workers}, running={self.running})"
