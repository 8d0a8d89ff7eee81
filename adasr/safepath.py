"""Names read from files (a stream's manifest, a package's manifest) confined to their own folder.

A manifest names the parts it is made of ("content.mp4", "model/seg-00000.bin"). Such a name is
data, not a path the user chose, so it must never reach outside the folder that holds the
manifest: `confined_file` refuses an absolute name, a ``..`` step, a symlink that resolves
elsewhere, anything but a regular file (a device such as /dev/zero, a FIFO, a folder) and a file
larger than the caller's bound, each with a one-line error of the caller's class.
`read_confined` also reads the file, checking the open file itself, so a swap between the check
and the read cannot slip a device or a longer file through.

A path the user names goes through `user_path` (an empty name is refused: it would otherwise
become "." and read or write the current folder) and is read with `read_bounded` (a regular
file of bounded size: /dev/zero, a FIFO or a folder is refused before anything is read).

Leaf module: imports nothing of adasr but the errors.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

from adasr.errors import AdasrError, ConfigError, InputError

__all__ = ["MAX_NAME", "check_name", "confined_file", "read_bounded", "read_confined", "user_path"]

MAX_NAME = 255  # characters of a name from a manifest


def user_path(value: object, what: str, error: type[AdasrError] = ConfigError) -> Path:
    """`value` (a path a user typed) as a Path; `error` if it is empty or blank, which `Path`
    would silently turn into "." (the current folder), or holds a NUL byte."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str) or "\0" in text:
        raise error(f"{what}: not a usable path: {str(value)[:60]!r}")
    if not text.strip():
        raise error(f"{what}: an empty path names nothing (give a file name; '.' for the current folder)")
    return Path(text)


def check_name(name: object, what: str, error: type[AdasrError] = InputError) -> str:
    """`name` as a relative, '..'-free path of plain parts; `error` otherwise."""
    if not isinstance(name, str) or not name:
        raise error(f"{what}: a part name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME or "\0" in name or "\\" in name:
        raise error(f"{what}: refusing part name {name[:60]!r} (too long or not a plain relative path)")
    posix = PurePosixPath(name)
    if posix.is_absolute() or PureWindowsPath(name).drive or any(p in ("..", "") for p in name.split("/")):
        raise error(f"{what}: refusing part name {name!r}: it must stay inside its folder "
                    f"(no absolute path, no '..')")
    return name


def confined_file(folder: str | os.PathLike[str], name: object, max_bytes: int, *, what: str | None = None,
                  error: type[AdasrError] = InputError) -> Path:
    """The regular file `name` inside `folder` (resolved), at most `max_bytes` long.

    `what` names the container in the message (default: the folder). Refuses, with `error`: a
    name that is absolute or has a '..' step, one that resolves (through symlinks) outside the
    folder, a missing file, anything but a regular file, and a file over `max_bytes`.
    """
    folder = Path(folder)
    what = what or str(folder)
    check_name(name, what, error)
    try:
        root = folder.resolve(strict=True)
        target = (root / name).resolve(strict=True)
    except FileNotFoundError:
        raise error(f"{what}: part {name} is missing") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise error(f"{what}: cannot resolve part {name!r} ({getattr(exc, 'strerror', None) or exc})") from None
    if target != root and not target.is_relative_to(root):
        raise error(f"{what}: refusing part {name!r}: it resolves outside the folder")
    try:
        st = target.stat()
    except OSError as exc:
        raise error(f"{what}: cannot read part {name!r} ({exc.strerror or exc})") from None
    _check_stat(st, name, max_bytes, what, error)
    return target


def _check_stat(st: os.stat_result, name: object, max_bytes: int, what: str, error: type[AdasrError]) -> None:
    label = f"refusing part {name!r}: " if name is not None else "refusing it: "
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what}: {label}not a regular file")
    if st.st_size > max_bytes:
        raise error(f"{what}: {label}{st.st_size:,} bytes, more than the {max_bytes:,} allowed")


def _read_regular(path: Path, name: object, max_bytes: int, what: str, error: type[AdasrError]) -> bytes:
    # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        _check_stat(os.fstat(fd), name, max_bytes, what, error)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        label = f"refusing part {name!r}: " if name is not None else "refusing it: "
        raise error(f"{what}: {label}more than the {max_bytes:,} bytes allowed")
    return data


def read_confined(folder: str | os.PathLike[str], name: object, max_bytes: int, *, what: str | None = None,
                  error: type[AdasrError] = InputError) -> bytes:
    """The bytes of `confined_file(folder, name, max_bytes)`, checked again on the open file."""
    path = confined_file(folder, name, max_bytes, what=what, error=error)
    what = what or str(folder)
    try:
        return _read_regular(path, name, max_bytes, what, error)
    except OSError as exc:
        raise error(f"{what}: cannot read part {name!r} ({exc.strerror or exc})") from None


def read_bounded(path: str | os.PathLike[str], max_bytes: int, what: str,
                 error: type[AdasrError] = InputError) -> bytes:
    """The bytes of the regular file `path` (a path the user named: not empty), at most `max_bytes`."""
    path = user_path(path, what)
    try:
        return _read_regular(path, None, max_bytes, f"{what} {path}", error)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
