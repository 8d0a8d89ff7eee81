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
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from adasr._atomic import atomic_path, temp_dir_beside
from adasr.errors import InputError, ModelError, OutputError

STREAM_KIND = "adasr-stream"
STREAM_SCHEMA_VERSION = 1
SINGLE_FILE_SUFFIX = ".adasrs"
_MAGIC = b"ADASRSTM"
_HEAD = struct.Struct("<8sIQ")
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20  # a manifest is a few kB; a larger length in a header is damage


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
    manifest = {**manifest, "kind": STREAM_KIND, "schema_version": STREAM_SCHEMA_VERSION, "blobs": table}
    text = json.dumps(manifest, indent=1, sort_keys=True).encode()
    if is_single_file(path):
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(_HEAD.pack(_MAGIC, STREAM_SCHEMA_VERSION, len(text)))
            fh.write(text)
            for data in blobs.values():
                fh.write(data)
        return
    _write_folder(path, text, blobs)


def _write_folder(path: Path, manifest: bytes, blobs: dict[str, bytes]) -> None:
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / MANIFEST).is_file())):
        raise OutputError(f"output exists and is not a stream folder: {path} (a single file needs suffix "
                          f"{SINGLE_FILE_SUFFIX})")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    tmp = temp_dir_beside(path)
    try:
        for name, data in blobs.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / MANIFEST).write_bytes(manifest + b"\n")
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class StreamFile:
    """Read access to a stream folder or single file: `manifest` and `blob(name)` (checked)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"stream not found: {self.path}")
        self._offset = 0
        if self.path.is_dir():
            mpath = self.path / MANIFEST
            if not mpath.is_file():
                raise InputError(f"not a stream folder (no {MANIFEST}): {self.path}")
            text = mpath.read_bytes()
        else:
            with open(self.path, "rb") as fh:
                head = fh.read(_HEAD.size)
                if len(head) < _HEAD.size or head[:8] != _MAGIC:
                    raise InputError(f"not an adasr stream file: {self.path}")
                _, version, length = _HEAD.unpack(head)
                if version != STREAM_SCHEMA_VERSION:
                    raise ModelError(f"{self.path}: stream format version {version} is not supported "
                                     f"(this adasr reads version {STREAM_SCHEMA_VERSION})")
                size = os.fstat(fh.fileno()).st_size
                if length > min(size - _HEAD.size, MAX_MANIFEST_BYTES):
                    raise InputError(f"damaged stream file: {self.path} (its header claims a {length}-byte "
                                     f"manifest; the file has {size} bytes)")
                text = fh.read(length)
                if len(text) != length:
                    raise InputError(f"truncated stream file: {self.path}")
            self._offset = _HEAD.size + length
        try:
            manifest = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{self.path}: stream manifest is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("kind") != STREAM_KIND:
            raise ModelError(f"{self.path}: not an adasr stream manifest")
        if manifest.get("schema_version") != STREAM_SCHEMA_VERSION:
            raise ModelError(f"{self.path}: stream schema version {manifest.get('schema_version')!r} is not "
                             f"supported (this adasr reads version {STREAM_SCHEMA_VERSION})")
        self.manifest = manifest

    def blob(self, name: str) -> bytes:
        entry = self.manifest["blobs"].get(name)
        if entry is None:
            raise ModelError(f"{self.path}: stream has no part {name!r}")
        try:
            if self.path.is_dir():
                data = (self.path / name).read_bytes()
            else:
                with open(self.path, "rb") as fh:
                    fh.seek(self._offset + int(entry["offset"]))
                    data = fh.read(int(entry["size"]))
        except OSError as exc:
            raise InputError(f"cannot read {name} of stream {self.path}: {exc.strerror or exc}") from None
        if len(data) != entry["size"] or _sha(data) != entry["sha256"]:
            raise ModelError(f"{self.path}: stream part {name} is damaged (size or SHA-256 mismatch)")
        return data

    @contextlib.contextmanager
    def content_file(self):
        """A path to the content video (a temporary copy for a single file)."""
        name = self.manifest["content"]["file"]
        if self.path.is_dir():
            self.blob(name)  # checks it
            yield self.path / name
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
