"""What the two set-ups cost on a fresh machine: the core (`make run`) against everything (`make test`).

Each set-up is made from nothing, side by side in one run: a new venv in a temporary folder, the
exact versions of its requirements file installed by pip with its cache off (every wheel is
fetched or read again, as on a fresh machine), then adasr itself (editable, no dependencies).
Reported per set-up: the wall-clock seconds of the whole set-up, the bytes of the venv on disk,
the number of installed distributions, whether torch is in it, and whether adasr's runtime
imports there (`adasr.runtime.onnx_engine`, what `make run` plays with). The venvs are removed;
only the JSON is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adasr.errors import ConfigError, InputError

__all__ = ["SETUPS", "run_setup_bench"]

#: set-up name -> (requirements file in the checkout, what it is for)
SETUPS = {"core": ("requirements.txt", "make run / pip install adasr"),
          "full": ("requirements-dev.txt", "make test: every extra and the test tools")}
STEP_TIMEOUT_S = 1800


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(f"`{' '.join(cmd[:4])} ...` took over {STEP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InputError(f"`{' '.join(cmd[:6])} ...` failed: {last[0]}")
    return done.stdout


def _one(name: str, checkout: Path, work: Path) -> dict[str, Any]:
    req, what = SETUPS[name]
    venv = work / name
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir"]
    start = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)], checkout)
    _run([*pip, "-r", str(checkout / req)], checkout)
    _run([*pip, "--no-deps", "-e", str(checkout)], checkout)
    seconds = time.perf_counter() - start
    probe = ("import importlib.metadata as m, importlib.util as u; import adasr.runtime.onnx_engine; "
             "print(len(list(m.distributions())), int(u.find_spec('torch') is not None))")
    dists, torch = _run([str(py), "-c", probe], checkout).split()
    return {"setup": name, "requirements": req, "for": what, "seconds": round(seconds, 1),
            "bytes": _tree_bytes(venv), "distributions": int(dists), "torch": bool(int(torch)), "runtime_imports": True}


def run_setup_bench(checkout: str | os.PathLike[str], setups: tuple[str, ...] = ("core", "full"), *,
                    on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Make each set-up in `setups` from nothing (see the module doc) in a temporary folder; one
    row per set-up, and the core's size and time as shares of the full one's."""
    from adasr.timing import provenance

    checkout = Path(checkout)
    for name in setups:
        if name not in SETUPS:
            raise ConfigError(f"set-ups are {', '.join(SETUPS)}, got {name!r}")
        if not (checkout / SETUPS[name][0]).is_file():
            raise InputError(f"{checkout / SETUPS[name][0]} not found: run the bench from a checkout of adasr")
    rows = []
    with tempfile.TemporaryDirectory(prefix="adasr-setup-") as tmp:
        for name in setups:
            if on_progress:
                on_progress(f"{name}: a fresh venv with {SETUPS[name][0]} ...")
            rows.append(_one(name, checkout, Path(tmp)))
            if on_progress:
                r = rows[-1]
                on_progress(f"{name}: {r['seconds']:.0f} s, {r['bytes'] / 1e6:.0f} MB")
    by = {r["setup"]: r for r in rows}
    ratios = {}
    if "core" in by and "full" in by:
        ratios = {"bytes": by["core"]["bytes"] / by["full"]["bytes"],
                  "seconds": by["core"]["seconds"] / by["full"]["seconds"]}
    return {"kind": "adasr-bench-setup", "rows": rows, "core_over_full": ratios,
            "goal": {"bytes": 700e6, "seconds": 180.0}, "provenance": provenance()}
