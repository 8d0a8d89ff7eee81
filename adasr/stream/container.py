"""The stream container: a manifest, the content stream and the model stream's records.

Two layouts with the same manifest:

* a folder (for serving over HTTP): ``manifest.json``, ``content.mp4``, ``model/init.bin``,
  ``model/seg-00000.bin``, ... ;
* a single file (suffix ``.adasrs``): ``b"ADASRSTM"``, u32 format version, u64 manifest length,
  the manifest JSON, then every blob concatenated; the manifest's ``blobs`` table gives each
  blob's offset (from the end of the manifest), size and SHA-256.

Both are written atomically (a temporary folder or file, then a rename). Reading checks the
manifest's kind and version and each blob's size and SHA-256 when the blob is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import struct
import tempfile
from pathlib import Path
from typing import Any

from adasr._atomic import (
    atomic_folder,
    atomic_path,
    check_replaceable,
    check_writable,
)
from adasr._jsonfile import MAX_MANIFEST_BYTES, check_header, header, loads, owned_folder_reason
from adasr.errors import InputError, ModelError, OutputError
from adasr.safepath import check_name, confined_file, read_confined

__all__ = ["MANIFEST", "MAX_PART_BYTES", "SINGLE_FILE_SUFFIX", "STREAM_KIND", "STREAM_SCHEMA_VERSION", "StreamFile",
           "check_stream_output", "is_single_file", "stream_folder_reason", "write_stream"]

STREAM_KIND = "adasr-stream"
STREAM_SCHEMA_VERSION = 1
SINGLE_FILE_SUFFIX = ".adasrs"
_MAGIC = b"ADASRSTM"
_HEAD = struct.Struct("<8sIQ")
MANIFEST = "manifest.json"
MAX_PART_BYTES = 1 << 32  # one part (the content video, a model record): 4 GiB


def is_single_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix == SINGLE_FILE_SUFFIX


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_stream(path: str | os.PathLike[str], manifest: dict[str, Any], blobs: dict[str, bytes]) -> None:
    """Write `manifest` and `blobs` (name -> bytes) as a folder or a single `.adasrs` file."""
    path = Path(path)
    table, offset = {}, 0
    for name, data in blobs.items():
        table[name] = {"size": len(data), "sha256": _sha(data), "offset": offset}
        offset += len(data)
    manifest = {**manifest, **header(STREAM_KIND, STREAM_SCHEMA_VERSION), "blobs": table}
    text = json.dumps(manifest, indent=1, sort_keys=True).encode()
    if is_single_file(path):
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(_HEAD.pack(_MAGIC, STREAM_SCHEMA_VERSION, len(text)))
            fh.write(text)
            for data in blobs.values():
                fh.write(data)
        return
    _write_folder(path, text, blobs)


def stream_folder_reason(path: Path) -> str | None:
    """None if `path` is a stream folder adasr wrote (kind marker, only the parts its manifest
    names), else why it must not be replaced."""
    return owned_folder_reason(path, "kind", STREAM_KIND, "stream folder", lambda m: m["blobs"].keys())


def check_stream_output(path: str | os.PathLike[str]) -> Path:
    """OutputError unless a stream can be written at `path` (checked before any work)."""
    path = Path(path)
    if is_single_file(path):
        return check_writable(path)
    return check_replaceable(path, stream_folder_reason)


def _write_folder(path: Path, manifest: bytes, blobs: dict[str, bytes]) -> None:
    with atomic_folder(path, stream_folder_reason) as tmp:
        for name, data in blobs.items():
            check_name(name, "stream part", OutputError)
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / MANIFEST).write_bytes(manifest + b"\n")


class StreamFile:
    """Read access to a stream folder or single file: `manifest` and `blob(name)` (checked).

    Every part name in the manifest must be a plain relative name; in a folder it must resolve
    to a regular file inside the folder, of the size the manifest gives (`adasr.safepath`); in a
    single file its offset and size must lie inside the file. Lengths are checked against the
    file before anything of that length is read."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"stream not found: {self.path}")
        self._offset = 0
        if self.path.is_dir():
            if not (self.path / MANIFEST).exists():
                raise InputError(f"not a stream folder (no {MANIFEST}): {self.path}")
            text = read_confined(self.path, MANIFEST, MAX_MANIFEST_BYTES, what=f"stream {self.path}",
                                 error=ModelError)
        else:
            text = self._read_single_file_head()
        manifest = loads(text, f"{self.path}: stream manifest", ModelError)
        check_header(manifest, STREAM_KIND, STREAM_SCHEMA_VERSION, "stream manifest", source=self.path)
        self._check_table(manifest)
        self.manifest = manifest

    def _read_single_file_head(self) -> bytes:
        if not self.path.is_file():
            raise InputError(f"not an adasr stream file (not a regular file): {self.path}")
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise InputError(f"not an adasr stream file (not a regular file): {self.path}")
                self._file_size = st.st_size
                head = fh.read(_HEAD.size)
                if len(head) < _HEAD.size or head[:8] != _MAGIC:
                    raise InputError(f"not an adasr stream file: {self.path}")
                _, version, length = _HEAD.unpack(head)
                if version != STREAM_SCHEMA_VERSION:
                    raise ModelError(f"{self.path}: stream format version {version} is not supported "
                                     f"(this adasr reads version {STREAM_SCHEMA_VERSION})")
                if length > min(MAX_MANIFEST_BYTES, st.st_size - _HEAD.size):
                    raise ModelError(f"{self.path}: damaged stream file: its header claims a manifest of "
                                     f"{length:,} bytes (the file holds {st.st_size:,}; at most "
                                     f"{MAX_MANIFEST_BYTES:,} are allowed)")
                text = fh.read(length)
        except OSError as exc:
            raise InputError(f"cannot read stream {self.path}: {exc.strerror or exc}") from None
        if len(text) != length:
            raise InputError(f"truncated stream file: {self.path}")
        self._offset = _HEAD.size + length
        return text

    def _check_table(self, manifest: dict[str, Any]) -> None:
        """Every part: a plain name, a size and offset in range, a SHA-256 string."""
        table = manifest.get("blobs")
        if not isinstance(table, dict):
            raise ModelError(f"{self.path}: damaged stream manifest: 'blobs' is not a table")
        folder = self.path.is_dir()  # parts are files: offsets do not apply
        room = None if folder else self._file_size - self._offset
        for name, entry in table.items():
            check_name(name, f"stream {self.path}", ModelError)
            ok = isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            size, offset = (entry.get("size"), entry.get("offset", 0)) if ok else (None, None)
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, offset))
            if not ok or size > MAX_PART_BYTES or (room is not None and offset + size > room):
                raise ModelError(f"{self.path}: damaged stream manifest: part {name!r} has a bad size or "
                                 f"offset (or lies outside the stream)")

    def _entry(self, name: str) -> dict[str, Any]:
        entry = self.manifest["blobs"].get(name) if isinstance(name, str) else None
        if entry is None:
            raise ModelError(f"{self.path}: stream has no part {name!r}")
        return entry

    def blob(self, name: str) -> bytes:
        entry = self._entry(name)
        if self.path.is_dir():
            data = read_confined(self.path, name, entry["size"], what=f"stream {self.path}", error=ModelError)
        else:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self._offset + entry["offset"])
                    data = fh.read(entry["size"])
            except OSError as exc:
                raise InputError(f"cannot read {name} of stream {self.path}: {exc.strerror or exc}") from None
        if len(data) != entry["size"] or _sha(data) != entry["sha256"]:
            raise ModelError(f"{self.path}: stream part {name} is damaged (size or SHA-256 mismatch)")
        return data

    @contextlib.contextmanager
    def content_file(self):
        """A path to the content video (a temporary copy for a single file)."""
        content = self.manifest.get("content")
        name = content.get("file") if isinstance(content, dict) else None
        entry = self._entry(name)
        if self.path.is_dir():
            self.blob(name)  # checks it (confined, regular, its size, its SHA-256)
            yield confined_file(self.path, name, entry["size"], what=f"stream {self.path}", error=ModelError)
            return
        data = self.blob(name)
        fd, tmp = tempfile.mkstemp(suffix=Path(name).suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            yield Path(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
