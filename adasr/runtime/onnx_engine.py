"""The runtime without torch: a package's levels run by ONNX Runtime, switched between frames.

What `pip install adasr` (and `make run`) installs has no torch: `adasr demo`, `adasr play` and
the adaptive runtime run on `OnnxEngine`, which behaves as `adasr.runtime.engine.Engine` does
for the player (levels, `switch`, `process`, `warmup`, switch latencies) and runs each level as
an ONNX graph:

- The graphs: one per level, written by `adasr export PACKAGE --format runtime` (with torch;
  `adasr.export.runtime_graphs`) into a folder beside the package, ``<package>.onnx/``. The
  bundled packages ship theirs. A graph takes a uint8 (H, W, 3) frame of any size and gives
  the uint8 (sH, sW, 3) frame; it holds no trained weight.
- The weights: read from the package file itself as NumPy arrays (`read_package_arrays`, the
  same checks as `load_package`) and handed to each level's session as its graph's external
  initializers, so a retrained package with the same levels needs no new graphs, while ONNX
  Runtime folds each level's slices and pre-packs its convolutions once (a level's session holds
  its own packed copy: small next to a frame's activations).
- Threads: one ONNX Runtime session per level and intra-op thread count, made on first use
  (`warmup` makes them for the counts the thread rule uses), so the runtime's thread rule
  (`adasr.threads`) switches thread counts between frames as it does with torch.
- Profiles: the package's latency profile for this device under the key
  ``<cpu key>-onnx`` (ONNX Runtime's timings are not torch's), measured on first use and
  cached like the torch runtime's (`adasr.runtime.profile_cache`).

Frames match the torch engine's to one uint8 step on a few pixels in a million (other
convolution kernels; tests/runtime/test_onnx_engine.py). int8 levels and 10-bit frames need the
torch runtime: here every level runs in float32 and a uint16 frame is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from adasr import threads as _threads
from adasr.errors import ConfigError, ModelError
from adasr.family import Family, Level, check_loads, load_name
from adasr.package import PROFILE_KIND, PROFILE_SCHEMA_VERSION, PackageArrays, check_precision
from adasr.runtime.pipeline import Streams, check_level_index

__all__ = ["BACKENDS", "GRAPHS_SUFFIX", "OnnxEngine", "backend", "engine_for", "graphs_folder", "onnx_device_key",
           "open_onnx_engine", "open_package_arrays", "open_runtime_engine", "profile_onnx", "time_onnx_level"]

BACKENDS = ("auto", "torch", "onnx")
GRAPHS_SUFFIX = ".onnx"
RUNTIME_KIND = "adasr-runtime-graphs"  # adasr.export.RUNTIME_KIND (that module needs torch)
RUNTIME_VERSION = 2  # adasr.export.RUNTIME_VERSION: the weights are external initializers
MAX_GRAPHS_MANIFEST = 4 << 20
MAX_GRAPH_BYTES = 64 << 20
MAX_THREADS = 256


def backend(choice: str | None = None) -> str:
    """The runtime that runs packages: "torch" or "onnx". `choice` (or $ADASR_BACKEND):
    "torch", "onnx" or "auto" (default): torch where it is installed, else ONNX Runtime."""
    choice = choice or os.environ.get("ADASR_BACKEND") or "auto"
    if choice not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)} (ADASR_BACKEND), got {choice!r}")
    if choice == "auto":
        return "torch" if _threads.have_torch() else "onnx"
    if choice == "torch" and not _threads.have_torch():
        raise ConfigError("backend torch: torch is not installed (pip install 'adasr[torch]')")
    return choice


def graphs_folder(package_path: str | os.PathLike[str]) -> Path:
    """Where the runtime graphs of the package at `package_path` live: ``<path minus .adasr>.onnx``
    beside it (a package folder ``P``: ``P.onnx``)."""
    p = Path(package_path)
    return p.with_name(p.stem + GRAPHS_SUFFIX) if p.suffix == ".adasr" else p.with_name(p.name + GRAPHS_SUFFIX)


def onnx_device_key(threads: int | None = None) -> str:
    """The device key of ONNX Runtime profiles on this CPU: ``cpu-<model>-<threads>t-onnx``."""
    return _threads.cpu_device_key(threads) + "-onnx"


def _read_graphs(folder: Path, package: PackageArrays, family: Family) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Per level of `family`: its graph's bytes and its weight feeds (views of the package's
    arrays), checked against the graphs' manifest (kind, version, SHA-256, input names and shapes)."""
    from adasr._jsonfile import check_header
    from adasr.safepath import read_confined

    hint = (f"write them with `adasr export {package.path} --format runtime` (needs torch: "
            f"pip install 'adasr[torch]')")
    if not (folder / "manifest.json").is_file():
        raise ModelError(f"no ONNX runtime graphs for {package.path} (looked in {folder}); {hint}")
    raw = read_confined(folder, "manifest.json", MAX_GRAPHS_MANIFEST, what="runtime graphs", error=ModelError)
    try:
        side = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{folder}/manifest.json: not JSON ({exc})") from None
    check_header(side, RUNTIME_KIND, RUNTIME_VERSION, "runtime graphs", source=folder / "manifest.json",
                 error=ModelError)
    if side.get("scale") != package.scale or not isinstance(side.get("levels"), list):
        raise ModelError(f"{folder}: runtime graphs for another package (scale {side.get('scale')!r}); {hint}")
    by_id = {lv.get("id"): lv for lv in side["levels"] if isinstance(lv, dict)}
    graphs, feeds = [], []
    for lv in family:
        cid = lv.config.id
        entry = by_id.get(cid)
        if entry is None:
            raise ModelError(f"{folder}: no runtime graph for level {cid}; {hint}")
        try:
            name, digest, inputs = str(entry["file"]), str(entry["sha256"]), list(entry["weights"])
        except (KeyError, TypeError):
            raise ModelError(f"{folder}/manifest.json: level {cid} lacks file, sha256 or weights") from None
        graph = read_confined(folder, name, MAX_GRAPH_BYTES, what="runtime graph", error=ModelError)
        if hashlib.sha256(graph).hexdigest() != digest:
            raise ModelError(f"{folder}/{name}: damaged (SHA-256 differs from the manifest)")
        feed = {}
        for spec in inputs:
            tname, shape = (spec.get("name"), spec.get("shape")) if isinstance(spec, dict) else (None, None)
            array = package.tensors.get(tname) if isinstance(tname, str) else None
            if array is None or list(array.shape) != list(shape or []):
                raise ModelError(f"{folder}: level {cid}'s graph takes {tname!r} of shape {shape}, which "
                                 f"{package.path} does not hold; {hint}")
            feed[tname] = np.ascontiguousarray(array, dtype=np.float32)
        graphs.append(graph)
        feeds.append(feed)
    return graphs, feeds


class OnnxEngine(Streams):
    """A package's levels as ONNX Runtime sessions; `process` upscales with the active level,
    `switch` changes it (an index swap; no session is built on a switch after `warmup`).

    package: a `PackageArrays` (`read_package_arrays`); family: its levels with this device's
    latencies (default: the package's stored family); graphs: the runtime graphs' folder
    (default: `graphs_folder` of the package). level: the starting level index."""

    backend = "onnx"

    def __init__(self, package: PackageArrays, family: Family | None = None, *, level: int = 0,
                 graphs: str | os.PathLike[str] | None = None) -> None:
        import onnxruntime  # noqa: F401 - fail here, with the other import errors, not on the first frame

        if package.path is None:
            raise ConfigError("OnnxEngine needs a package read from a file (its graphs live beside it)")
        family = package.family if family is None else family
        if len(family) == 0:
            raise ConfigError("the family has no levels")
        self.package = package
        self.levels: Family = family
        self.scale = package.scale
        self._graphs, self._feeds = _read_graphs(Path(graphs) if graphs else graphs_folder(package.path),
                                                 package, family)
        self._sessions: dict[tuple[int, int], Any] = {}
        self._values: dict[tuple[int, int], list[Any]] = {}
        self.level = check_level_index(level, len(family))
        self.switch_latencies: list[int] = []
        self.int8_levels: list[Any] = [None] * len(family)  # int8 needs the torch runtime
        self.precision = "fp32"
        self.tile, self.overlap = None, 0  # whole frames: the graphs take any size
        self.profile_source = "predicted"

    def __len__(self) -> int:
        return len(self.levels)

    @property
    def active(self) -> Level:
        return self.levels[self.level]

    def _session(self, level: int) -> Any:
        n = min(MAX_THREADS, _threads.get_num_threads())
        key = (level, n)
        session = self._sessions.get(key)
        if session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = n, 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.log_severity_level = 3
            # no busy-waiting pool threads between frames: under the background load the runtime
            # adapts to, spinning threads take the CPU that decoding and the next frame need
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # the graph's weights are external initializers: the package's arrays, handed over here
            names = list(self._feeds[level])
            values = [ort.OrtValue.ortvalue_from_numpy(self._feeds[level][n]) for n in names]
            opts.add_external_initializers(names, values)
            session = ort.InferenceSession(self._graphs[level], opts, providers=["CPUExecutionProvider"])
            self._values[key] = values  # alive as long as the session
            self._sessions[key] = session
        return session

    def switch(self, level: int) -> int:
        """Make `level` active (an index swap); returns and records the switch time in ns."""
        level = check_level_index(level, len(self.levels))
        start = time.perf_counter_ns()
        self.level = level
        ns = time.perf_counter_ns() - start
        self.switch_latencies.append(ns)
        return ns

    def process(self, frame: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB -> uint8 (sH)x(sW)x3 with the active level."""
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            extra = " (10-bit frames need the torch runtime: pip install 'adasr[torch]')" \
                if isinstance(frame, np.ndarray) and frame.dtype == np.uint16 else ""
            raise ConfigError(f"a frame must be a uint8 HxWx3 RGB array, got {got}{extra}")
        level = self.level  # read once: a switch from another thread lands on the next frame
        return self._session(level).run(None, {"frame": np.ascontiguousarray(frame)})[0]

    def warmup(self, lr_hw: tuple[int, int], repeats: int = 1, levels: Sequence[int] | None = None) -> None:
        """Build and run every level's session (for the current thread count and for one thread,
        the counts the thread rule switches between) `repeats` times on a frame of `lr_hw`."""
        h, w = (int(v) for v in lr_hw)
        if h < 1 or w < 1:
            raise ConfigError(f"warm-up size must be positive, got {lr_hw!r}")
        frame = np.zeros((h, w, 3), dtype=np.uint8)
        keep = self.level
        now = _threads.get_num_threads()
        try:
            for n in sorted({now, 1}, reverse=True):
                _threads.set_num_threads(n)
                for i in range(len(self.levels)) if levels is None else levels:
                    self.level = check_level_index(i, len(self.levels))
                    for _ in range(max(1, int(repeats))):
                        self.process(frame)
        finally:
            _threads.set_num_threads(now)
            self.level = keep

    def supernet_bytes(self) -> int:
        """Bytes of the package's weights (every level reads its slices of them)."""
        return sum(a.nbytes for a in self.package.tensors.values())

    def resident_bytes(self) -> int:
        """The package's arrays the levels read (each once) and the graphs; ONNX Runtime's packed
        copy of each opened session's weights comes on top (that level's parameters again)."""
        seen = {id(a): a.nbytes for feed in self._feeds for a in feed.values()}
        return sum(seen.values()) + sum(len(g) for g in self._graphs)


def engine_for(package: PackageArrays) -> OnnxEngine:
    """The `OnnxEngine` over `package`, made once and kept on it (timings reuse its sessions)."""
    engine = getattr(package, "_onnx_engine", None)
    if engine is None:
        engine = OnnxEngine(package)
        package._onnx_engine = engine  # type: ignore[attr-defined]
    return engine


def time_onnx_level(package: PackageArrays, level: int, hw: tuple[int, int], *, threads: int | None = None,
                    repeats: int = 3, min_s: float = 0.0, max_repeats: int = 40) -> float:
    """Seconds per frame of `hw` (H, W) through `level` of `package` under ONNX Runtime, after
    one warm-up, with `threads` (None: the current count): the median of `repeats` frames, or
    with `min_s` > 0 the mean over about that many seconds (at most `max_repeats` frames), as
    `adasr.estimate.time_level` measures the torch runtime."""
    engine = engine_for(package)
    frame = np.random.default_rng(0).integers(0, 256, (int(hw[0]), int(hw[1]), 3), dtype=np.uint8)
    before, keep = _threads.get_num_threads(), engine.level
    try:
        if threads is not None:
            _threads.set_num_threads(threads)
        engine.level = check_level_index(level, len(engine.levels))

        def once() -> float:
            t0 = time.perf_counter()
            engine.process(frame)
            return time.perf_counter() - t0

        first = max(once(), once())  # the warm-up builds the session
        if min_s <= 0:
            return max(float(np.median([first, *[once() for _ in range(max(0, repeats - 1))]])), 1e-9)
        n = min(max_repeats, max(repeats, math.ceil(min_s / max(first, 1e-6))))
        return max(float(np.mean([once() for _ in range(n)])), 1e-9)
    finally:
        _threads.set_num_threads(before)
        engine.level = keep


def profile_onnx(engine: OnnxEngine, loads: Sequence[float] = (0.0, 0.5), repeats: int = 5, warmup: int = 2,
                 on_progress: Callable[[str, int, int], None] | None = None,
                 lr_hw: tuple[int, int] | None = None) -> dict[str, Any]:
    """Measure every level of `engine` under each background CPU load share in `loads`, as the
    runtime runs them (the idle column with the current thread count, loaded columns with one
    thread, the thread rule's choice): the device profile dict `check_profile` accepts, under
    the key `onnx_device_key`."""
    from adasr.cpuload import CpuLoad
    from adasr.measures import LatencySample

    if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 10_000:
        raise ConfigError(f"repeats must be an integer in [1, 10000], got {repeats!r}")
    shares = list(check_loads(loads, "loads"))
    h, w = tuple(lr_hw or engine.levels.lr_hw)
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    n = _threads.get_num_threads()
    keep = engine.level
    total, done = len(shares) * len(engine.levels), 0
    out_loads: dict[str, Any] = {}
    try:
        for share in shares:
            measured = {}
            threads = 1 if share > 0 else n
            with CpuLoad(share) if share > 0 else contextlib.nullcontext():
                _threads.set_num_threads(threads)
                for i, lv in enumerate(engine.levels):
                    engine.level = i
                    for _ in range(warmup):
                        engine.process(frame)
                    times = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        engine.process(frame)
                        times.append(time.perf_counter() - t0)
                    measured[lv.config.id] = LatencySample.from_times(times, threads, "cpu").to_dict()
                    done += 1
                    if on_progress:
                        on_progress(f"measure {load_name(share)}", done, total)
            out_loads[load_name(share)] = {"share": share, "measured": measured}
    finally:
        _threads.set_num_threads(n)
        engine.level = keep
    return {"schema_version": PROFILE_SCHEMA_VERSION, "kind": PROFILE_KIND, "device": onnx_device_key(n),
            "device_name": _threads.cpu_name(), "threads": n, "thread_rule": "auto", "lr_hw": [h, w],
            "channels_last": False, "repeats": repeats, "rounds": 1, "backend": "onnxruntime",
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "levels": out_loads, "latency_table": None}


def open_package_arrays(package: Any, scale: int, family: str = "codec") -> PackageArrays:
    """`adasr.package.open_package` without torch: the package at `package` (None: the bundled
    one of `family` for `scale`) read as NumPy arrays, with the same errors."""
    from adasr.package import open_package

    return open_package(package, scale, family, arrays=True)


def open_onnx_engine(package: Any = None, scale: int = 2, *, profile: bool = True, on_progress: Any = None,
                     precision: str | None = None, family: str = "codec", graphs: Any = None) -> OnnxEngine:
    """`adasr.load_engine` without torch: an `OnnxEngine` over the package at `package` (None:
    the bundled one of `family` for `scale`) with its family's latencies for this device under
    ONNX Runtime (the package's profile, a cached one, or with `profile` one measured now and
    cached), carrying `profile_source` and `package`. A precision other than fp32 runs in fp32
    here (int8 levels need the torch runtime); "int8" asked for outright is refused."""
    from adasr.runtime.profile_cache import resolve_family

    if precision is not None and check_precision(precision) == "int8":
        raise ConfigError("int8 levels need the torch runtime (pip install 'adasr[torch]'); "
                          "without torch every level runs in fp32")
    pkg = open_package_arrays(package, scale, family)
    engine = OnnxEngine(pkg, graphs=graphs)

    def measure() -> dict[str, Any]:
        return profile_onnx(engine, on_progress=on_progress)

    levels, source = resolve_family(pkg, onnx_device_key(), measure if profile else None)
    engine.levels = levels
    engine.profile_source = source
    return engine


def open_runtime_engine(package: Any = None, scale: int = 2, *, profile: bool = True, on_progress: Any = None,
                        precision: str | None = None, calibration_video: Any = None, family: str = "codec") -> Any:
    """The engine of the runtime `backend` picks: `adasr.runtime.precision.open_engine` (torch)
    or `open_onnx_engine` (ONNX Runtime; `calibration_video` plays no part, every level is fp32).
    What `adasr.load_engine` and `adasr upscale --realtime` open."""
    if backend() == "onnx":
        return open_onnx_engine(package, scale, profile=profile, on_progress=on_progress, precision=precision,
                                family=family)
    from adasr.runtime.precision import open_engine

    return open_engine(package, scale, profile=profile, on_progress=on_progress, precision=precision,
                       calibration_video=calibration_video, family=family)
