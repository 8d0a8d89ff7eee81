"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash or Ctrl-C never leaves a half-written output under the final name. Temporary names are
``.<name>.<pid>-<random>.part<suffix>``: the writer's process id in the name lets the next write of
the same output delete leftovers of a writer that died (SIGKILL, power loss) without ever touching
a file another live process is still writing, nor any file that is not adasr's own.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from adasr.errors import OutputError

__all__ = ["atomic_folder", "atomic_path", "check_not_input", "check_replaceable",
           "check_writable", "ensure_dir", "foreign_files", "is_stale", "pid_alive",
           "remove_stale_parts", "removed_if_empty", "temp_dir_beside", "write_bytes_atomic"]


def _default_mode() -> int:
    # mkstemp creates 0600 files; give outputs the permissions a plain open() would.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()
_DIR_MODE = _MODE | ((_MODE & 0o444) >> 2)  # what mkdir gives (x where r), not mkdtemp's 0700
_PART = re.compile(r"^\..+\.(?P<pid>[0-9]+)-[a-z0-9_]+\.part[^/]*$")


def _started() -> float:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - no psutil or no /proc: the time of this import is close enough
        return time.time()


_STARTED = _started()


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def is_stale(path: Path, pid: int) -> bool:
    """A leftover of process `pid`: not this process, no longer running, and older than this process."""
    if pid == os.getpid() or pid_alive(pid):
        return False
    try:
        return path.lstat().st_mtime < _STARTED
    except OSError:
        return False


def remove_stale_parts(folder: Path, prefix: str, suffix: str = "") -> list[Path]:
    """Delete adasr's temporary `prefix<pid>-<random>.part<suffix>` files or folders in `folder`
    whose writer is gone (see `is_stale`); returns what was removed."""
    removed = []
    for name in glob.glob(glob.escape(prefix) + "*.part" + glob.escape(suffix), root_dir=folder, include_hidden=True):
        match = _PART.match(name)
        entry = folder / name
        if match is None or not name.startswith(prefix) or not is_stale(entry, int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def _check_parent(path: Path) -> Path:
    """`path`, once its folder is known to exist and be writable (OutputError otherwise)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    return path


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Raise OutputError unless `path` can be created (its folder exists and is writable)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output path is a directory: {path}")
    return _check_parent(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.

    `suffix` defaults to the target's own suffix so that libraries which pick a format from the
    file name (Pillow, FFmpeg) still see the right extension.
    """
    path = check_writable(path)
    suffix = path.suffix if suffix is None else suffix
    remove_stale_parts(path.parent, f".{path.stem}.", suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}-", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _MODE)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create folder `path` (and parents) if needed; OutputError with the reason if it cannot."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    return folder


def temp_dir_beside(path: str | os.PathLike[str]) -> Path:
    """A new empty folder ``.<name>.<pid>-<random>.part`` beside `path` (to fill, then rename onto
    `path`), with the permissions a plain mkdir gives; stale ones of dead writers are removed first."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    remove_stale_parts(parent, f".{path.name}.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".part", dir=parent))
    os.chmod(tmp, _DIR_MODE)
    return tmp


@contextlib.contextmanager
def removed_if_empty(path: str | os.PathLike[str]) -> Iterator[Path]:
    """For a command that will create output folder `path`: if the command fails (a refused
    option, Ctrl-C) and the folder did not exist before and is still empty, remove it again."""
    folder = Path(path)
    existed = folder.exists()
    try:
        yield folder
    except BaseException:
        if not existed and folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds while empty
        raise


# -- outputs that are inputs ----------------------------------------------------------------------

def _touches(out: Path, src: Path, whole: bool) -> str | None:
    """How writing `out` would touch `src` ("is", "lies inside", "holds"), or None: the same
    file (also through symlinks, relative paths or hard links), a path inside the folder `src`,
    or, for a folder `out` replaced whole, one that holds `src`."""
    try:
        if out.exists() and src.exists() and os.path.samefile(out, src):
            return "is"
    except OSError:
        pass
    o, s = out.resolve(), src.resolve()
    if o == s:
        return "is"
    if o.is_relative_to(s):
        return "lies inside"
    if whole and s.is_relative_to(o):
        return "holds"
    return None


def check_not_input(outputs: Iterable[str | os.PathLike[str] | None],
                    inputs: Iterable[str | os.PathLike[str] | None], *,
                    folders: Iterable[str | os.PathLike[str] | None] = ()) -> None:
    """Raise OutputError if writing would destroy an input: an output file that is (or resolves
    to) an input or lies inside an input folder, or an output folder replaced whole (`folders`)
    that holds an input. Also refuses two outputs naming the same file. `None`s are skipped."""
    srcs = [Path(p) for p in inputs if p is not None]
    outs = [(Path(p), False) for p in outputs if p is not None] + [(Path(p), True) for p in folders if p is not None]
    for out, whole in outs:
        for src in srcs:
            how = _touches(out, src, whole)
            if how is not None:
                raise OutputError(f"output {out} {how} the input {src}; choose another output path")
    paths = [o for o, _ in outs]
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            if a.resolve() == b.resolve():
                raise OutputError(f"two outputs name the same path: {a} and {b}")


# -- folders replaced atomically ------------------------------------------------------------------

def foreign_files(folder: Path, allowed: Iterable[str], patterns: Sequence[str] = ()) -> list[str]:
    """Relative paths (POSIX) of the files and links under `folder` that are neither in
    `allowed` nor match one of `patterns`; folders themselves are not listed."""
    allowed = set(allowed)
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel_root = Path(root).relative_to(folder)
        entries = files + [d for d in dirs if (Path(root) / d).is_symlink()]
        for name in entries:
            rel = (rel_root / name).as_posix()
            if rel not in allowed and not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                found.append(rel)
    return sorted(found)


def check_replaceable(path: str | os.PathLike[str], owned: Callable[[Path], str | None]) -> Path:
    """Raise OutputError unless folder `path` may be written: absent, an empty folder, or a
    folder adasr wrote (`owned(path)` is None); its parent must exist and be writable."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(f"output is a symbolic link: {path} (name the folder itself)")
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"output exists and is not a folder: {path}")
        if any(path.iterdir()):
            reason = owned(path)
            if reason is not None:
                raise OutputError(f"refusing to replace {path}: {reason}")
    return _check_parent(path)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str], owned: Callable[[Path], str | None]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path` (`temp_dir_beside`: named with this process
    id, stale ones of dead writers removed first); when the block completes it replaces
    `path` in one rename (the old folder is removed after), else it is deleted.

    An existing `path` is replaced only if `check_replaceable` allows it (checked again here,
    just before the swap as well), so a user's own folder is never deleted."""
    path = check_replaceable(path, owned)
    tmp = temp_dir_beside(path)
    try:
        yield tmp
        check_replaceable(path, owned)
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
