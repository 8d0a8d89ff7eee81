"""Model-update codec: a full model record, then one sparse delta record per segment.

The model is seen as one flat float32 vector (its parameters in `named_parameters()` order). A
stream's first record carries the whole model (architecture as JSON + every parameter, float16
or float32); each later record carries the change made for one content segment: the indices of
the parameters that changed and the change itself, quantised (float16, 8-bit or 4-bit),
entropy-coded.

Decoding is lossless with respect to the encoder: the encoder sets its own model to exactly
what the decoder will compute (`previous + dequantised delta`, one float32 add per changed
parameter), so both hold the same bits after every segment. Every record names the hash of the
stream's full model (base hash), the hash of the model it applies to and of the model it yields,
and ends with a checksum. `ModelState.apply` refuses a damaged, out-of-order or foreign record
with a `DeltaError` and leaves the model untouched.

When the receiver already holds the base model (the bundled generic model, a model file or a
package it has), the first record may be a base reference instead of the full model: the same
header (its base hash is the hash of the base's parameters rounded to the value type) and only
the architecture JSON as payload. `ModelState.from_base` rebuilds the model from the receiver's
own copy and refuses it unless its hash is the one the reference names; the deltas are the same
bytes either way.

A full record may also stand in the middle of a stream (`encode_snapshot`: float32, exact; its
segment field = the updates it includes, its after hash = the model's, its base hash = the
stream's base): a live channel's late joiner starts from it instead of replaying every delta.

Record layout (little endian)::

    magic  b"ASMU" | version u8 | kind u8 (0 full, 1 delta, 2 base reference) | codec u8 (0 raw, 1 zlib, 2 lzma)
    | value dtype u8 (0 float32, 1 float16, 2 int8 + float32 scale, 3 int4 + float32 scale)
    | segment u32 | n_params u64
    | base hash 16 B | before hash 16 B | after hash 16 B | payload length u32 | payload
    | SHA-256 of everything before, first 16 B

Full payload: u32 JSON length, JSON ({"arch", "args", "scale", "params": [[name, shape], ...]}),
then the parameter values. Base reference payload: u32 JSON length, JSON ({"arch", "args",
"scale"}), no values (value dtype = what the base is rounded to). Delta payload: u32 count,
u8 index coding (0 gap varints, 1 bitmap), u32 index-bytes length, index bytes, then the values.
int8 values are q in [-127, 127], int4 values q in [-7, 7] (two's complement nibbles, two per
byte, the first value in the low nibble, an odd count's last high nibble 0); each is q times
the record's float32 scale (peak |value| / 127 or / 7).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from adasr._jsonfile import loads
from adasr.errors import ModelError
from adasr.nn.registry import MAX_VALUES

__all__ = [
    "CODEC_VERSION", "DeltaError", "Delta", "ModelState", "RecordInfo", "encode_full", "encode_base_ref",
    "encode_snapshot", "encode_delta", "quantise", "record_kind", "read_record", "model_vector", "vector_hash",
    "DTYPES",
]

CODEC_VERSION = 1
MAGIC = b"ASMU"
_HEAD = struct.Struct("<4sBBBBIQ16s16s16sI")
_DIGEST = 16
FULL, DELTA, REF = 0, 1, 2
_KIND_NAMES = {FULL: "full", DELTA: "delta", REF: "ref"}
DTYPES = {"float32": 0, "float16": 1, "int8": 2, "int4": 3}
#: the largest |q| of each integer value type (q times the record's scale)
_QMAX = {"int8": 127, "int4": 7}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_RAW, _ZLIB, _LZMA = 0, 1, 2
_GAPS, _BITMAP = 0, 1
MAX_ARCH_JSON = 16 << 20  # bytes of a full record's architecture JSON


class DeltaError(ModelError):
    """A model record that cannot be applied: damaged, out of order, or from another stream."""


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:_DIGEST]


def model_vector(model: nn.Module) -> torch.Tensor:
    """All parameters of `model` as one flat float32 CPU vector (named_parameters order)."""
    return torch.cat([p.detach().reshape(-1).to("cpu", torch.float32) for p in model.parameters()])


def vector_hash(vec: torch.Tensor) -> bytes:
    """16-byte hash of a flat float32 vector's exact bits."""
    return _digest(vec.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def _compress(payload: bytes) -> tuple[int, bytes]:
    """The smallest of raw, zlib and raw LZMA (small records gain nothing from LZMA's framing).

    LZMA's dictionary is sized to the payload (a power of two, 4 KiB to 64 MiB): every match lies
    inside the payload anyway, and preset 9's 64-MiB dictionary alone costs about 60 ms a record to
    set up. Any dictionary up to 64 MiB decodes with the reader's filter."""
    dict_size = min(1 << 26, max(1 << 12, 1 << max(0, len(payload) - 1).bit_length()))
    options = [(_RAW, payload), (_ZLIB, zlib.compress(payload, 9)),
               (_LZMA, lzma.compress(payload, format=lzma.FORMAT_RAW,
                                     filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                                               "dict_size": dict_size}]))]
    return min(options, key=lambda o: len(o[1]))


def _decompress(codec: int, data: bytes, limit: int) -> bytes:
    """`data` decompressed; ValueError if it would exceed `limit` bytes (a decompression bomb)."""
    if codec == _RAW:
        out = data
    elif codec == _ZLIB:
        d = zlib.decompressobj()
        out = d.decompress(data, limit + 1)
        if len(out) <= limit and not d.eof:
            raise ValueError("truncated zlib payload")
    elif codec == _LZMA:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
        out = d.decompress(data, max_length=limit + 1)
    else:
        raise ValueError(f"unknown compression {codec}")
    if len(out) > limit:
        raise ValueError(f"payload decompresses to more than the {limit:,} bytes its header allows")
    return out


def _payload_limit(kind: int, n_params: int) -> int:
    """The most bytes a record's payload can need for `n_params` parameters."""
    if kind == FULL:  # JSON (names and shapes) + float32 values
        return 4 + MAX_ARCH_JSON + 4 * n_params
    if kind == REF:  # JSON only
        return 4 + MAX_ARCH_JSON
    return 9 + 10 * n_params + 4 + 4 * n_params  # varint indices (or a bitmap) + values


# -- values ---------------------------------------------------------------------------------------

def quantise(delta: torch.Tensor, dtype: str) -> tuple[bytes, torch.Tensor]:
    """(bytes, dequantised float32 values) of a 1-D float32 `delta` in `dtype`."""
    d = delta.detach().to("cpu", torch.float32).contiguous()
    if dtype == "float32":
        return d.numpy().tobytes(), d.clone()
    if dtype == "float16":
        h = d.to(torch.float16)
        return h.numpy().tobytes(), h.to(torch.float32)
    if dtype in _QMAX:
        qmax = _QMAX[dtype]
        peak = float(d.abs().max()) if d.numel() else 0.0
        scale = np.float32(peak / qmax if peak > 0 else 1.0)
        q = torch.round(d / torch.tensor(float(scale))).clamp_(-qmax, qmax).to(torch.int8)
        deq = q.to(torch.float32) * torch.tensor(float(scale))
        qb = q.numpy()
        if dtype == "int4":
            nib = (qb.astype(np.uint8) & 0x0F)
            if nib.size % 2:
                nib = np.append(nib, np.uint8(0))
            qb = nib[0::2] | (nib[1::2] << 4)
        return struct.pack("<f", scale) + qb.tobytes(), deq
    raise ModelError(f"unknown delta value type {dtype!r}; choose one of {', '.join(DTYPES)}")


def _dequantise(data: bytes, dtype: int, count: int) -> torch.Tensor:
    if dtype == 0:
        arr = np.frombuffer(data, dtype="<f4", count=count)
        return torch.from_numpy(arr.astype(np.float32))
    if dtype == 1:
        arr = np.frombuffer(data, dtype="<f2", count=count)
        return torch.from_numpy(arr.copy()).to(torch.float32)
    if dtype == 2:
        (scale,) = struct.unpack_from("<f", data)
        q = np.frombuffer(data, dtype=np.int8, count=count, offset=4)
        return torch.from_numpy(q.copy()).to(torch.float32) * torch.tensor(float(np.float32(scale)))
    if dtype == 3:
        (scale,) = struct.unpack_from("<f", data)
        packed = np.frombuffer(data, dtype=np.uint8, count=(count + 1) // 2, offset=4)
        nib = np.empty(2 * packed.size, dtype=np.uint8)
        nib[0::2], nib[1::2] = packed & 0x0F, packed >> 4
        if count % 2 and nib[-1]:
            raise ValueError("int4 values: the padding nibble is not 0")
        q = (nib[:count].astype(np.int8) ^ 8) - 8  # two's complement nibble -> [-8, 7]
        if np.any(q == -8):
            raise ValueError("int4 values: -8 is outside [-7, 7]")
        return torch.from_numpy(q.astype(np.float32)) * torch.tensor(float(np.float32(scale)))
    raise ValueError(f"unknown value type {dtype}")


def _value_bytes(dtype: int, count: int) -> int:
    return {0: 4 * count, 1: 2 * count, 2: 4 + count, 3: 4 + (count + 1) // 2}[dtype]


# -- indices --------------------------------------------------------------------------------------

def _varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def _read_varints(data: bytes, count: int) -> np.ndarray:
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        v, shift = 0, 0
        while True:
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        out[i] = v
    if pos != len(data):
        raise ValueError("index bytes longer than their count")
    return out


def _encode_indices(idx: np.ndarray, n_params: int) -> tuple[int, bytes]:
    """Sorted unique indices as gap varints or as a bitmap, whichever is smaller."""
    gaps = np.diff(idx, prepend=0) if idx.size else idx
    varints = _varints(gaps)
    bitmap_len = (n_params + 7) // 8
    if bitmap_len < len(varints):
        bits = np.zeros(n_params, dtype=np.uint8)
        bits[idx] = 1
        return _BITMAP, np.packbits(bits, bitorder="little").tobytes()
    return _GAPS, varints


def _decode_indices(kind: int, data: bytes, count: int, n_params: int) -> np.ndarray:
    if kind == _GAPS:
        idx = np.cumsum(_read_varints(data, count))
    elif kind == _BITMAP:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[:n_params]
        idx = np.flatnonzero(bits)
    else:
        raise ValueError(f"unknown index coding {kind}")
    if idx.size != count or (idx.size and (idx[-1] >= n_params or (idx.size > 1 and np.any(np.diff(idx) <= 0)))):
        raise ValueError("indices out of range or not increasing")
    return idx


# -- records --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordInfo:
    """The header of a record (what `read_record` checked)."""

    kind: str  # "full", "delta" or "ref" (a base reference)
    segment: int
    n_params: int
    dtype: str
    base_hash: bytes
    before_hash: bytes
    after_hash: bytes
    size: int  # bytes of the whole record


@dataclass(frozen=True)
class Delta:
    """A decoded delta: the changed parameter indices and their float32 changes."""

    info: RecordInfo
    indices: torch.Tensor  # int64, increasing
    values: torch.Tensor  # float32, dequantised


def _pack(kind: int, dtype: int, segment: int, n_params: int, base: bytes, before: bytes, after: bytes,
          payload: bytes) -> bytes:
    codec, body = _compress(payload)
    head = _HEAD.pack(MAGIC, CODEC_VERSION, kind, codec, dtype, segment, n_params, base, before, after, len(body))
    return head + body + _digest(head + body)


def _arch_of(model: nn.Module, spec: dict[str, Any] | None) -> dict[str, Any]:
    if spec is None:
        raise ModelError("a full model record needs the model's architecture spec (arch, args, scale)")
    return {"arch": spec["arch"], "args": spec["args"], "scale": int(spec["scale"])}


def encode_full(model: nn.Module, spec: dict[str, Any], dtype: str = "float16") -> bytes:
    """The stream's first record: architecture and every parameter (float16 or float32).

    The model it describes is the one `ModelState.from_full` rebuilds, which is `model` rounded
    to `dtype`: encoders start adapting from that, never from `model` itself."""
    if dtype not in ("float16", "float32"):
        raise ModelError(f"a full model is stored as float16 or float32, not {dtype!r}")
    vec = model_vector(model)
    values = vec.to(torch.float16) if dtype == "float16" else vec
    exact = values.to(torch.float32)
    header = dict(_arch_of(model, spec), params=[[n, list(p.shape)] for n, p in model.named_parameters()])
    meta = json.dumps(header, sort_keys=True).encode()
    payload = struct.pack("<I", len(meta)) + meta + values.numpy().tobytes()
    h = vector_hash(exact)
    return _pack(FULL, DTYPES[dtype], 0, vec.numel(), h, b"\0" * _DIGEST, h, payload)


def encode_snapshot(vector: torch.Tensor, params: list[tuple[str, tuple[int, ...]]], spec: dict[str, Any],
                    segment: int, base_hash: bytes) -> bytes:
    """A full record in the middle of a stream: the model `vector` (float32, exact) reached after
    `segment` updates of the stream whose base is `base_hash`; `params` its names and shapes.

    A receiver that starts from it (a late joiner of a live channel) holds the same bits as one
    that applied every update, and takes the stream's next delta (segment `segment`) as usual."""
    vec = vector.detach().to("cpu", torch.float32).contiguous()
    header = {"arch": spec["arch"], "args": spec["args"], "scale": int(spec["scale"]),
              "params": [[n, list(shape)] for n, shape in params]}
    meta = json.dumps(header, sort_keys=True).encode()
    payload = struct.pack("<I", len(meta)) + meta + vec.numpy().tobytes()
    return _pack(FULL, DTYPES["float32"], int(segment), vec.numel(), base_hash, b"\0" * _DIGEST, vector_hash(vec),
                 payload)


def _rounded(model: nn.Module, dtype: str) -> torch.Tensor:
    """`model`'s flat float32 parameter vector rounded to `dtype` (what a full record of it holds)."""
    vec = model_vector(model)
    return vec.to(torch.float16).to(torch.float32) if dtype == "float16" else vec


def encode_base_ref(model: nn.Module, spec: dict[str, Any], dtype: str = "float16") -> bytes:
    """A first record that names `model` (rounded to `dtype`) by its hash instead of carrying it.

    The hash is the one `encode_full(model, spec, dtype)` would give, so the deltas that follow
    are the same bytes as after a full record; the receiver supplies the model itself
    (`ModelState.from_base`)."""
    if dtype not in ("float16", "float32"):
        raise ModelError(f"a base model is rounded to float16 or float32, not {dtype!r}")
    exact = _rounded(model, dtype)
    meta = json.dumps(_arch_of(model, spec), sort_keys=True).encode()
    h = vector_hash(exact)
    return _pack(REF, DTYPES[dtype], 0, exact.numel(), h, b"\0" * _DIGEST, h, struct.pack("<I", len(meta)) + meta)


def record_kind(data: bytes) -> str | None:
    """"full", "delta" or "ref" from a record's header byte (nothing checked); None if not a record."""
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        return None
    return _KIND_NAMES.get(data[5])


def encode_delta(indices: torch.Tensor, values_bytes: bytes, dtype: str, segment: int, n_params: int,
                 base_hash: bytes, before_hash: bytes, after_hash: bytes) -> bytes:
    """A delta record for `segment`: sorted `indices`, their quantised changes (`quantise`)."""
    idx = indices.detach().to("cpu", torch.int64).numpy()
    kind, index_bytes = _encode_indices(idx, n_params)
    payload = struct.pack("<IBI", idx.size, kind, len(index_bytes)) + index_bytes + values_bytes
    return _pack(DELTA, DTYPES[dtype], segment, n_params, base_hash, before_hash, after_hash, payload)


def _parse(data: bytes, what: str) -> tuple[RecordInfo, bytes]:
    if len(data) < _HEAD.size + _DIGEST or data[:4] != MAGIC:
        raise DeltaError(f"{what}: not an adasr model record (bad magic or too short)")
    magic, version, kind, codec, dtype, segment, n_params, base, before, after, length = _HEAD.unpack_from(data)
    if version != CODEC_VERSION:
        raise DeltaError(f"{what}: model record version {version} is not supported (this adasr reads "
                         f"version {CODEC_VERSION})")
    end = _HEAD.size + length
    if len(data) != end + _DIGEST:
        raise DeltaError(f"{what}: damaged model record (length {len(data)} bytes, header says {end + _DIGEST})")
    if _digest(data[:end]) != data[end:]:
        raise DeltaError(f"{what}: damaged model record (checksum mismatch)")
    if kind not in _KIND_NAMES or dtype not in _DTYPE_NAMES or (kind == REF and _DTYPE_NAMES[dtype] in _QMAX):
        raise DeltaError(f"{what}: damaged model record (unknown kind {kind} or value type {dtype})")
    if n_params > MAX_VALUES:
        raise DeltaError(f"{what}: damaged model record ({n_params:,} parameters, more than the {MAX_VALUES:,} "
                         f"a model may have)")
    try:
        payload = _decompress(codec, data[_HEAD.size:end], _payload_limit(kind, n_params))
    except (ValueError, zlib.error, lzma.LZMAError) as exc:
        raise DeltaError(f"{what}: damaged model record ({exc})") from None
    info = RecordInfo(_KIND_NAMES[kind], segment, n_params, _DTYPE_NAMES[dtype], base,
                      before, after, len(data))
    return info, payload


def read_record(data: bytes, what: str = "model record") -> tuple[RecordInfo, Any]:
    """Check and decode one record: full -> (arch dict, float32 vector); delta -> Delta; ref -> arch dict."""
    info, payload = _parse(bytes(data), what)
    try:
        if info.kind == "ref":
            (mlen,) = struct.unpack_from("<I", payload)
            if mlen != len(payload) - 4:
                raise ValueError("base reference JSON length does not match the payload")
            meta = loads(payload[4:], "base reference JSON", ValueError)
            if not isinstance(meta, dict):
                raise ValueError("base reference JSON is not an object")
            return info, meta
        if info.kind == "full":
            (mlen,) = struct.unpack_from("<I", payload)
            if mlen > MAX_ARCH_JSON:
                raise ValueError(f"architecture JSON of {mlen:,} bytes")
            meta = loads(payload[4:4 + mlen], "architecture JSON", ValueError)
            values = payload[4 + mlen:]
            if len(values) != _value_bytes(DTYPES[info.dtype], info.n_params):
                raise ValueError("parameter bytes do not match the parameter count")
            return info, (meta, _dequantise(values, DTYPES[info.dtype], info.n_params))
        count, kind, ilen = struct.unpack_from("<IBI", payload)
        pos = struct.calcsize("<IBI")
        idx = _decode_indices(kind, payload[pos:pos + ilen], count, info.n_params)
        values = payload[pos + ilen:]
        if len(values) != _value_bytes(DTYPES[info.dtype], count):
            raise ValueError("value bytes do not match the index count")
        vals = _dequantise(values, DTYPES[info.dtype], count)
        return info, Delta(info, torch.from_numpy(idx.astype(np.int64)), vals)
    except (ValueError, KeyError, IndexError, struct.error, json.JSONDecodeError) as exc:
        raise DeltaError(f"{what}: damaged model record ({exc})") from None


# -- the decoder's (and encoder's) model ----------------------------------------------------------

def _spec_of(meta: Any, what: str) -> dict[str, Any]:
    """The {arch, args, scale} of a full or reference record's JSON, validated."""
    from adasr.modelfile import ModelSpec

    try:
        spec = {"arch": str(meta["arch"]), "args": dict(meta["args"]), "scale": int(meta["scale"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise DeltaError(f"{what}: damaged model record (architecture lacks or mangles {exc})") from None
    ModelSpec(arch=spec["arch"], args=spec["args"], scale=spec["scale"])  # validates the shape of it
    return spec


def _build(spec: dict[str, Any], listed: list[tuple[str, tuple[int, ...]]], vec: torch.Tensor,
           what: str) -> nn.Module:
    """A fresh module of `spec` whose parameters have the `listed` names and shapes, filling `vec`."""
    from adasr.nn.registry import build_for_weights

    try:  # bounded config, names and shapes checked on a meta build, then built for real
        model = build_for_weights(spec["arch"], spec["args"], dict(listed), what, params_only=True)
    except ModelError as exc:
        raise DeltaError(str(exc)) from None
    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    if shapes != listed or sum(math.prod(s) for _, s in listed) != vec.numel():
        raise DeltaError(f"{what}: parameters do not match architecture {spec['arch']!r}")
    return model


class ModelState:
    """A model rebuilt from a full record, kept in step with the stream by `apply`.

    `vector` is the flat float32 parameter vector (always on the CPU, the reference copy);
    `model` holds the same values on `device`. `next_segment` is the segment the next delta must
    be for; `hash` the hash of the current vector. Every vector it takes (a first record, a
    snapshot, a base, each update's result) must be finite: a NaN or infinite parameter is
    refused with a `DeltaError` (`check_finite`), so no record can turn the output black.
    """

    def __init__(self, model: nn.Module, spec: dict[str, Any], vector: torch.Tensor, base_hash: bytes,
                 device: str | torch.device = "cpu", what: str = "model record") -> None:
        self.check_finite(vector, what)
        self.model, self.spec, self.vector, self.base_hash = model, spec, vector, base_hash
        self.device = torch.device(device)
        self.hash = vector_hash(vector)
        self.next_segment = 0
        self._load()

    @classmethod
    def from_full(cls, record: bytes, device: str | torch.device = "cpu",
                  what: str = "full model record") -> ModelState:
        info, decoded = read_record(record, what)
        if info.kind == "ref":
            raise DeltaError(f"{what}: the stream names its base model by hash ({info.base_hash.hex()[:12]}) "
                             f"instead of carrying it: give that model (--base)")
        if info.kind != "full":
            raise DeltaError(f"{what}: a stream must start with a full model, found a delta for segment {info.segment}")
        meta, vec = decoded
        if vector_hash(vec) != info.after_hash:  # the base itself (first record) or a snapshot's model
            raise DeltaError(f"{what}: damaged model record (parameters do not match their hash)")
        spec = _spec_of(meta, what)
        try:
            listed = [(str(n), tuple(int(d) for d in shape)) for n, shape in meta["params"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise DeltaError(f"{what}: damaged model record (architecture lacks or mangles {exc})") from None
        cls.check_finite(vec, what)  # before anything is built
        state = cls(_build(spec, listed, vec, what).to(device).eval(), spec, vec, info.base_hash, device, what)
        state.next_segment = info.segment  # 0 for a stream's first record; a snapshot's update count
        return state

    @classmethod
    def from_base(cls, record: bytes, base: nn.Module, base_spec: dict[str, Any],
                  device: str | torch.device = "cpu", what: str = "base reference") -> ModelState:
        """The model a base reference record names, rebuilt from the receiver's copy `base`
        (`base_spec`: its arch, args, scale). DeltaError, in one line, unless `base` rounded to
        the record's value type has exactly the hash the record names and the same architecture.
        The model is built as `from_full` builds it (a fresh module, then the values loaded), so
        a stream decodes bit for bit the same with either first record."""
        info, meta = read_record(record, what)
        if info.kind != "ref":
            raise DeltaError(f"{what}: expected a base reference record, found a {info.kind} record")
        spec = _spec_of(meta, what)
        vec = _rounded(base, info.dtype)
        got = vector_hash(vec)
        mine = _arch_of(base, base_spec)
        if got != info.base_hash or json.dumps(mine, sort_keys=True) != json.dumps(spec, sort_keys=True):
            raise DeltaError(f"{what}: the base model given does not match: the stream needs base model "
                             f"{info.base_hash.hex()[:12]} ({spec['arch']}, {info.n_params:,} parameters), "
                             f"the one given is {got.hex()[:12]} ({mine['arch']}, {vec.numel():,} parameters)")
        listed = [(n, tuple(p.shape)) for n, p in base.named_parameters()]
        cls.check_finite(vec, what)
        return cls(_build(spec, listed, vec, what).to(device).eval(), spec, vec, info.base_hash, device, what)

    @staticmethod
    def check_finite(vector: torch.Tensor, what: str) -> None:
        """DeltaError unless every value of `vector` is finite (neither NaN nor infinite)."""
        finite = torch.isfinite(vector)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise DeltaError(f"{what}: refused: {bad:,} of {vector.numel():,} parameters are not finite (NaN or "
                             f"infinite)")

    def _load(self) -> None:
        offset = 0
        with torch.no_grad():
            for p in self.model.parameters():
                n = p.numel()
                p.copy_(self.vector[offset:offset + n].view_as(p).to(p.device))
                offset += n

    def check(self, data: bytes, what: str = "delta") -> Delta:
        """Decode a delta record and check it fits this model now, without applying it."""
        info, delta = read_record(data, what)
        if info.kind != "delta":
            raise DeltaError(f"{what}: expected a delta record, found a "
                             f"{'full model' if info.kind == 'full' else 'base reference'}")
        if info.base_hash != self.base_hash or info.n_params != self.vector.numel():
            raise DeltaError(f"{what}: delta belongs to another stream (base model {info.base_hash.hex()[:12]}, "
                             f"this model {self.base_hash.hex()[:12]})")
        if info.segment != self.next_segment:
            raise DeltaError(f"{what}: out of order: delta for segment {info.segment}, expected segment "
                             f"{self.next_segment}")
        if info.before_hash != self.hash:
            raise DeltaError(f"{what}: delta for segment {info.segment} does not apply to this model "
                             f"(it was made for model {info.before_hash.hex()[:12]}, this is {self.hash.hex()[:12]})")
        return delta

    def apply(self, data: bytes, what: str = "delta") -> RecordInfo:
        """Apply one delta record; on any error the model stays exactly as it was."""
        delta = self.check(data, what)
        new = self.vector.clone()
        new[delta.indices] += delta.values
        self.check_finite(new, f"{what}: segment {delta.info.segment}")
        new_hash = vector_hash(new)
        if new_hash != delta.info.after_hash:
            raise DeltaError(f"{what}: segment {delta.info.segment}: the updated model does not match the "
                             f"encoder's (hash {new_hash.hex()[:12]} vs {delta.info.after_hash.hex()[:12]})")
        self.vector, self.hash = new, new_hash
        self.next_segment += 1
        self._load()
        return delta.info
