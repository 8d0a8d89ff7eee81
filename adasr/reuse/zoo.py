"""The model zoo: content-specialised experts stored as sparse deltas against one base model.

The base is a supernet package (the bundled `sr_x2.adasr` by default). An expert is that
supernet's flat parameter vector (`adasr.stream.codec.model_vector` order) plus a sparse delta,
specialised for one or more levels (`levels`: the config ids it was trained for; a whole-supernet
expert lists every level so the client can still switch levels). A zoo of hundreds of experts
stays small, and an expert reaches a client as one record of the stream codec
(`delta_record`).

On disk a zoo is a folder:

* ``zoo.json`` - format, schema version, the base (its vector hash and size) and one entry per
  expert: id, levels, where/when it was trained, how often it was chosen, and the checksum of
  the tensors file;
* ``experts-<sha12>.safetensors`` - ``<id>.indices`` (int64, increasing) and ``<id>.values``
  (float32) per expert. The name carries the file's hash: the tensors are written first, then
  ``zoo.json`` (atomically), so a crash leaves the previous zoo readable. Never pickle.

Loading checks every bound (expert count, index range and order, finite values, the base hash)
and refuses a damaged zoo with one `ModelError` line.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adasr._atomic import ensure_dir, write_bytes_atomic
from adasr._jsonfile import read_json, write_json
from adasr.errors import ConfigError, InputError, ModelError
from adasr.stream.codec import encode_delta, model_vector, quantise, vector_hash

__all__ = ["BaseModel", "Expert", "MAX_EXPERTS", "MAX_TENSOR_BYTES", "ZOO_FORMAT", "ZOO_JSON", "ZOO_SCHEMA_VERSION",
           "Zoo", "delta_record", "read_checked_tensors", "sparse_delta"]

ZOO_FORMAT = "adasr-zoo"
ZOO_SCHEMA_VERSION = 1
ZOO_JSON = "zoo.json"
MAX_EXPERTS = 10_000
MAX_TENSOR_BYTES = 2 << 30
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PLAIN_LEVEL = "model"  # the one level of a base that is a plain model (no supernet levels)



def read_checked_tensors(folder: Path, name: str, digest: str, prefix: str, limit: int, what: str,
                         where: str) -> dict[str, torch.Tensor]:
    """The tensors of `folder / name` (named `<prefix>-<12 hex>.safetensors`, at most `limit`
    bytes, SHA-256 `digest`), or a one-line ModelError naming `where`."""
    from safetensors.torch import load

    from adasr.safepath import read_bounded

    if not re.fullmatch(re.escape(prefix) + r"-[0-9a-f]{12}\.safetensors", name):
        raise ModelError(f"{where}: bad tensors file name {name[:80]!r}")
    data = read_bounded(folder / name, limit, what, ModelError)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ModelError(f"{where}: {name} does not match its checksum")
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise ModelError(f"{where}: {name} is not a readable safetensors file ({str(exc)[:120]})") from None

class BaseModel:
    """The base every expert is a delta of: a supernet, its flat vector and the levels it has.

    `supernet` is used as a scratch model (`load(vector)` copies a vector into it); callers that
    need their own copy use `fresh()`. A plain model (no levels: `levels` empty, as the live
    server's generic model) counts as one level named `PLAIN_LEVEL`, run without a config.
    """

    def __init__(self, supernet: nn.Module, levels: Sequence, scale: int, name: str) -> None:
        self.supernet = supernet.eval()
        self.levels = list(levels)  # SubnetConfig per level, smallest first; empty: a plain model
        self.scale, self.name = int(scale), name
        self.vector = model_vector(supernet)
        self.hash = vector_hash(self.vector)
        self.n = int(self.vector.numel())

    @classmethod
    def from_package(cls, path: str | os.PathLike[str] | None = None, scale: int = 2) -> BaseModel:
        """The package at `path` (None: the bundled package for `scale`)."""
        from adasr.package import load_package
        from adasr.paths import bundled_package

        p = Path(path) if path is not None else bundled_package(scale)
        pkg = load_package(p)
        # experts are deltas of the shared weights: levels with their own weights are left out
        return cls(pkg.supernet, [lv.config for lv in pkg.family if not pkg.has_own(lv)], pkg.scale, p.name)

    @property
    def plain(self) -> bool:
        return not self.levels

    @property
    def level_ids(self) -> list[str]:
        """The ids experts may name in `levels` (`PLAIN_LEVEL` alone for a plain model)."""
        return [c.id for c in self.levels] if self.levels else [PLAIN_LEVEL]

    @classmethod
    def from_model(cls, model: nn.Module, levels: Sequence | None, scale: int, name: str) -> BaseModel:
        """A base from a model already built (the live server: the model its clients decode)."""
        return cls(model, list(levels or []), scale, name)

    def level(self, key: int | str):
        """A level by index or config id (a plain model: None, its only level)."""
        if self.plain:
            if key in (0, -1, PLAIN_LEVEL):
                return None
            raise ConfigError(f"the base {self.name} is a plain model without levels; it has no level {key!r}")
        if isinstance(key, int):
            if not -len(self.levels) <= key < len(self.levels):
                raise ConfigError(f"level index {key} out of range: the base has {len(self.levels)} levels")
            return self.levels[key]
        for cfg in self.levels:
            if cfg.id == key:
                return cfg
        raise ConfigError(f"the base has no level {key!r}")

    def fresh(self) -> nn.Module:
        """A new copy of the base supernet (its own parameters), in eval mode."""
        import copy

        return copy.deepcopy(self.supernet).eval()

    def load(self, model: nn.Module, vector: torch.Tensor) -> nn.Module:
        """Copy flat `vector` into `model`'s parameters; returns `model`."""
        off = 0
        with torch.no_grad():
            for p in model.parameters():
                k = p.numel()
                p.copy_(vector[off:off + k].view_as(p).to(p.device))
                off += k
        if off != vector.numel():
            raise ModelError(f"a vector of {vector.numel():,} values does not fit a model of {off:,} parameters")
        return model


@dataclass
class Expert:
    """One specialised model: a sparse delta of the base plus where it came from.

    indices: int64 increasing positions in the base vector; values: float32 changes there.
    levels: the config ids it was trained for. meta: "channel", "window", "created" (seconds,
    the caller's clock), "frames" (training frames) and anything JSON the caller adds.
    chosen: how often a selection picked it.
    """

    id: str
    indices: torch.Tensor
    values: torch.Tensor
    levels: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    chosen: int = 0

    @property
    def changed(self) -> int:
        return int(self.indices.numel())

    def vector(self, base: BaseModel) -> torch.Tensor:
        """The expert's full flat parameter vector."""
        v = base.vector.clone()
        v[self.indices] += self.values
        return v

    def entry(self) -> dict[str, Any]:
        return {"id": self.id, "levels": list(self.levels), "meta": self.meta, "chosen": self.chosen,
                "changed": self.changed}


def sparse_delta(base: BaseModel, vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, values) of `vector - base.vector` where it is non-zero."""
    if vector.numel() != base.n:
        raise ModelError(f"a vector of {vector.numel():,} values is not a model of this base ({base.n:,})")
    d = vector.detach().to("cpu", torch.float32) - base.vector
    idx = torch.nonzero(d, as_tuple=False).flatten()
    return idx.to(torch.int64), d[idx].contiguous()


def delta_record(current: torch.Tensor, target: torch.Tensor, segment: int, base_hash: bytes,
                 dtype: str = "float32") -> tuple[bytes, torch.Tensor]:
    """A stream-codec delta record that turns a client's `current` vector into `target`.

    Returns (record, the vector the client holds after applying it: `target` up to `dtype`
    rounding; exact for float32). `base_hash` is the client stream's base hash; the record
    applies with `adasr.stream.codec.ModelState.apply`."""
    d = target.detach().to("cpu", torch.float32) - current.detach().to("cpu", torch.float32)
    idx = torch.nonzero(d, as_tuple=False).flatten()
    data, deq = quantise(d[idx], dtype)
    after = current.detach().to("cpu", torch.float32).clone()
    after[idx] += deq
    record = encode_delta(idx, data, dtype, segment, current.numel(), base_hash, vector_hash(current),
                          vector_hash(after))
    return record, after


class Zoo:
    """Experts of one base, in insertion order; `save(folder)` / `Zoo.load(folder, base)`."""

    def __init__(self, base: BaseModel) -> None:
        self.base = base
        self.experts: dict[str, Expert] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.experts)

    def __iter__(self):
        return iter(self.experts.values())

    def __contains__(self, expert_id: str) -> bool:
        return expert_id in self.experts

    def __getitem__(self, expert_id: str) -> Expert:
        try:
            return self.experts[expert_id]
        except KeyError:
            raise ConfigError(f"the zoo has no expert {expert_id!r}") from None

    @property
    def ids(self) -> list[str]:
        return list(self.experts)

    def add(self, vector: torch.Tensor, levels: Iterable[str], meta: dict[str, Any] | None = None,
            expert_id: str | None = None) -> Expert:
        """Store `vector` (a full flat parameter vector of the base) as a new expert."""
        if len(self.experts) >= MAX_EXPERTS:
            raise ConfigError(f"the zoo is full ({MAX_EXPERTS} experts); prune it first")
        if expert_id is None:
            while f"e{self._next:05d}" in self.experts:
                self._next += 1
            expert_id = f"e{self._next:05d}"
            self._next += 1
        if not _ID.match(expert_id) or expert_id in self.experts:
            raise ConfigError(f"bad or duplicate expert id {expert_id!r}")
        levels = tuple(levels)
        known = set(self.base.level_ids)
        if not levels or any(lv not in known for lv in levels):
            raise ConfigError(f"expert levels {levels} are not levels of the base")
        idx, val = sparse_delta(self.base, vector)
        if not bool(torch.isfinite(val).all()):
            raise ModelError("an expert's weights must be finite")
        expert = Expert(expert_id, idx, val, levels, dict(meta or {}))
        self.experts[expert_id] = expert
        return expert

    def remove(self, expert_id: str) -> Expert:
        expert = self[expert_id]
        del self.experts[expert_id]
        return expert

    def vector(self, expert_id: str) -> torch.Tensor:
        return self[expert_id].vector(self.base)

    def nbytes(self) -> int:
        """Bytes of the deltas (indices as int32 + float32 values, as the tensors file roughly holds)."""
        return sum(8 * e.changed for e in self)

    # -- persistence --

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the zoo into `folder` (created if needed); returns the folder."""
        from safetensors.torch import save

        folder = ensure_dir(folder)
        tensors = {}
        for e in self:
            tensors[f"{e.id}.indices"] = e.indices.contiguous()
            tensors[f"{e.id}.values"] = e.values.contiguous()
        data = save(tensors, metadata={"format": ZOO_FORMAT})
        digest = hashlib.sha256(data).hexdigest()
        name = f"experts-{digest[:12]}.safetensors"
        write_bytes_atomic(folder / name, data)
        write_json(folder / ZOO_JSON, {
            "format": ZOO_FORMAT, "schema_version": ZOO_SCHEMA_VERSION,
            "base": {"name": self.base.name, "hash": self.base.hash.hex(), "params": self.base.n,
                     "scale": self.base.scale},
            "tensors": {"file": name, "sha256": digest}, "next": self._next,
            "experts": [e.entry() for e in self],
        })
        for old in folder.glob("experts-*.safetensors"):  # earlier versions of the tensors
            if old.name != name:
                old.unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str], base: BaseModel) -> Zoo:
        """Read a zoo saved by `save`; ModelError (one line) if it is damaged or of another base."""


        folder = Path(folder)
        if not (folder / ZOO_JSON).is_file():
            raise InputError(f"not a model zoo: {folder} (no {ZOO_JSON})")
        doc = read_json(folder / ZOO_JSON, "model zoo")
        where = f"{folder}: damaged model zoo"
        try:
            if doc["format"] != ZOO_FORMAT:
                raise ModelError(f"{folder}: not a model zoo (format {doc['format']!r})")
            if doc["schema_version"] != ZOO_SCHEMA_VERSION:
                raise ModelError(f"{folder}: model zoo schema {doc['schema_version']} is not supported "
                                 f"(this adasr reads {ZOO_SCHEMA_VERSION})")
            if doc["base"]["hash"] != base.hash.hex() or int(doc["base"]["params"]) != base.n:
                raise ModelError(f"{folder}: the zoo was made for another base model "
                                 f"({str(doc['base']['name'])[:80]}, hash {str(doc['base']['hash'])[:12]})")
            entries = doc["experts"]
            if not isinstance(entries, list) or len(entries) > MAX_EXPERTS:
                raise ModelError(f"{where}: the expert list is missing or longer than {MAX_EXPERTS}")
            name, digest = str(doc["tensors"]["file"]), str(doc["tensors"]["sha256"])
            nxt = int(doc.get("next", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: zoo.json lacks or mangles {exc}") from None
        tensors = read_checked_tensors(folder, name, digest, "experts", MAX_TENSOR_BYTES, "zoo tensors", where)
        zoo = cls(base)
        known = set(base.level_ids)
        for i, entry in enumerate(entries):
            try:
                eid = str(entry["id"])
                levels = tuple(str(x) for x in entry["levels"])
                meta = dict(entry.get("meta", {}))
                chosen = int(entry.get("chosen", 0))
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{where}: expert {i} lacks or mangles {exc}") from None
            if not _ID.match(eid) or eid in zoo.experts or not levels or any(lv not in known for lv in levels):
                raise ModelError(f"{where}: expert {i} has a bad id or levels")
            idx, val = tensors.get(f"{eid}.indices"), tensors.get(f"{eid}.values")
            if idx is None or val is None or idx.dtype != torch.int64 or val.dtype != torch.float32 \
                    or idx.ndim != 1 or idx.shape != val.shape:
                raise ModelError(f"{where}: the tensors of expert {eid} are missing or malformed")
            if idx.numel() and (int(idx[0]) < 0 or int(idx[-1]) >= base.n
                                or (idx.numel() > 1 and not bool((idx[1:] > idx[:-1]).all()))):
                raise ModelError(f"{where}: expert {eid} has indices out of range or not increasing")
            if not bool(torch.isfinite(val).all()):
                raise ModelError(f"{where}: expert {eid} has non-finite values")
            zoo.experts[eid] = Expert(eid, idx, val, levels, meta, max(0, chosen))
        zoo._next = max(0, min(nxt, 1 << 40))
        return zoo
