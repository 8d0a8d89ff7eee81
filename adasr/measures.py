"""Records of measured latency, torch-free: what device profiles and latency tables hold.

`LatencySample` is one whole-frame measurement (`adasr.timing.measure_latency`, the ONNX
runtime's profiler); `LatencyEntry` and `TableData` are the per-unit table of
`adasr.search.latency.LatencyTable` (built and used for predictions there, with torch). A
package's profiles are checked with these (`adasr.package.check_profile`), so a package loads,
and its profiles are read, without torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from adasr._jsonfile import check_header, header, read_json, write_json
from adasr.errors import ConfigError, ModelError
from adasr.family import load_name

__all__ = ["LatencyEntry", "LatencySample", "TABLE_KIND", "TABLE_SCHEMA_VERSION", "TableData"]

TABLE_SCHEMA_VERSION = 1
TABLE_KIND = "adasr-latency-table"


@dataclass(frozen=True)
class LatencySample:
    """Per-frame latency statistics of one measurement (seconds); `threads` is torch's intra-op
    thread count during the measurement (0 on CUDA), `device` "cpu" or "cuda"."""

    median_s: float
    p90_s: float
    mean_s: float
    std_s: float
    repeats: int
    threads: int
    device: str

    @property
    def fps(self) -> float:
        return 1.0 / self.median_s if self.median_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencySample:
        try:
            return cls(float(data["median_s"]), float(data["p90_s"]), float(data["mean_s"]), float(data["std_s"]),
                       int(data["repeats"]), int(data["threads"]), str(data["device"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad latency sample {data!r}: {exc}") from None

    @classmethod
    def from_times(cls, times: Sequence[float], threads: int, device: str) -> LatencySample:
        arr = np.asarray(times, dtype=np.float64)
        return cls(float(np.median(arr)), float(np.percentile(arr, 90)), float(arr.mean()), float(arr.std()),
                   len(arr), threads, device)



@dataclass(frozen=True)
class LatencyEntry:
    """Statistics of one unit's per-call seconds (Dynamic-OFA: count, mean, std)."""

    count: int
    mean: float
    std: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> LatencyEntry:
        arr = np.asarray(samples, dtype=np.float64)
        if arr.size == 0:
            raise ValueError("no samples")
        return cls(int(arr.size), float(arr.mean()), float(arr.std()))

    def merge(self, other: LatencyEntry) -> LatencyEntry:
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.std ** 2 * self.count + other.std ** 2 * other.count + delta ** 2 * self.count * other.count / n
        return LatencyEntry(n, mean, math.sqrt(max(0.0, m2 / n)))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LatencyEntry:
        try:
            entry = cls(int(data["count"]), float(data["mean"]), float(data["std"]))
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"latency table entry {where} is not {{count, mean, std}}: {data!r}") from None
        if entry.count < 1 or not (math.isfinite(entry.mean) and entry.mean >= 0) or not entry.std >= 0:
            raise ModelError(f"latency table entry {where} is out of range: {data!r}")
        return entry


class TableData:
    """Per-unit latency statistics keyed by (device, load name, unit key): the data of
    `adasr.search.latency.LatencyTable` (which adds the predictions), read and checked here
    without torch."""

    def __init__(self, entries: Mapping[tuple[str, str, str], LatencyEntry] | None = None) -> None:
        self._entries: dict[tuple[str, str, str], LatencyEntry] = dict(entries or {})

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TableData) and self._entries == other._entries

    def add(self, device: str, load: float | str, key: str, samples: Sequence[float] | LatencyEntry) -> None:
        """Record samples (seconds per call) for a unit, merging with what is there."""
        entry = samples if isinstance(samples, LatencyEntry) else LatencyEntry.of(samples)
        k = (device, load_name(load), key)
        old = self._entries.get(k)
        self._entries[k] = entry if old is None else old.merge(entry)

    def get(self, device: str, load: float | str, key: str) -> LatencyEntry | None:
        return self._entries.get((device, load_name(load), key))

    def devices(self) -> list[str]:
        return sorted({d for d, _, _ in self._entries})

    def loads(self, device: str | None = None) -> list[str]:
        return sorted({lv for d, lv, _ in self._entries if device is None or d == device})

    def keys(self, device: str | None = None, load: float | str | None = None) -> list[str]:
        name = None if load is None else load_name(load)
        return sorted({k for d, lv, k in self._entries
                       if (device is None or d == device) and (name is None or lv == name)})

    def _device(self, device: str | None) -> str:
        devices = self.devices()
        if device is None:
            if len(devices) != 1:
                raise ModelError(f"latency table holds devices {devices}; name one")
            return devices[0]
        if device not in devices:
            raise ModelError(f"latency table has no device {device!r}; it has {devices}")
        return device

    # -- JSON --

    def to_dict(self) -> dict[str, Any]:
        tables: dict[str, dict[str, dict[str, Any]]] = {}
        for (device, load, key), entry in sorted(self._entries.items()):
            tables.setdefault(device, {}).setdefault(load, {})[key] = entry.to_dict()
        return {**header(TABLE_KIND, TABLE_SCHEMA_VERSION), "tables": tables}

    @classmethod
    def from_dict(cls, data: Any) -> TableData:
        check_header(data, TABLE_KIND, TABLE_SCHEMA_VERSION, "latency table")
        tables = data.get("tables")
        if not isinstance(tables, Mapping):
            raise ModelError("latency table has no 'tables' object")
        entries = {}
        for device, loads in tables.items():
            if not isinstance(loads, Mapping):
                raise ModelError(f"latency table device {device!r} is not an object")
            for load, units in loads.items():
                try:
                    name = load_name(load)
                except ConfigError as exc:
                    raise ModelError(f"latency table: {exc}") from None
                if not isinstance(units, Mapping):
                    raise ModelError(f"latency table load {load!r} of {device!r} is not an object")
                for key, entry in units.items():
                    entries[(str(device), name, str(key))] = LatencyEntry.from_dict(entry, f"{device}/{load}/{key}")
        return cls(entries)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TableData:
        return cls.from_dict(read_json(path, "latency table"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} entries, devices={self.devices()})"
