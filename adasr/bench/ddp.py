"""Training throughput: one process against N data-parallel processes (`adasr train --nproc N`).

`run_ddp_bench` runs the same short supernet training (same config, same global batch) as
three runners, in alternating rounds so machine noise hits them alike: one process on one
thread, one process on N threads, and N processes on one thread each. Each run is the real
command (`python -m adasr train ... --nproc P --threads T`) in a temporary folder; its speed is
the global images per second of training time, taken from the checkpoint's training clock
(start-up and data loading excluded, the first step included). The final weights of the
N-process runs are compared with the one-process run of the same round: the largest absolute
difference is reported (data parallelism must not change the result).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adasr.errors import AdasrError, ConfigError
from adasr.timing import provenance

__all__ = ["SCHEMA_VERSION", "run_ddp_bench"]

SCHEMA_VERSION = 1


def _weights_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def run_ddp_bench(*, nproc: int = 2, steps: int = 20, rounds: int = 2, batch_size: int = 16, patch: int = 48,
                  supernet: str = "lite-x2", recipe: str = "lite", data: Sequence[str] = (),
                  timeout_s: float = 1800.0,
                  on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """See the module doc; returns {"runners": [...], "max_weight_diff": ...} ready for JSON."""
    from adasr.train.loop import CHECKPOINT, MODEL, read_checkpoint

    if nproc < 2 or steps < 1 or rounds < 1:
        raise ConfigError(f"--nproc must be at least 2, --steps and --rounds positive (got {nproc}, {steps}, {rounds})")
    if batch_size % nproc:
        raise ConfigError(f"--batch-size ({batch_size}) must be a multiple of --nproc ({nproc})")
    runners = [("1 process x 1 thread", 1, 1), (f"1 process x {nproc} threads", 1, nproc),
               (f"{nproc} processes x 1 thread", nproc, 1)]
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    speeds: dict[str, list[float]] = {name: [] for name, _, _ in runners}
    walls: dict[str, list[float]] = {name: [] for name, _, _ in runners}
    diffs: list[float] = []
    done, total = 0, rounds * len(runners)
    with tempfile.TemporaryDirectory(prefix="adasr-bench-ddp-") as tmp:
        for round_ in range(rounds):
            for index, (name, procs, threads) in enumerate(runners):
                run_dir = Path(tmp) / f"r{round_}-{index}"
                cmd = [sys.executable, "-m", "adasr", "train", "--supernet", supernet, "--recipe", recipe,
                       "--steps", str(steps), "--batch-size", str(batch_size), "--patch", str(patch),
                       "--val", "none", "--quiet", "--device", "cpu", "--threads", str(threads),
                       "--nproc", str(procs), "--out", str(run_dir)]
                for source in data:
                    cmd += ["--data", str(source)]
                started = time.monotonic()
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    raise AdasrError(f"{name}: the training run took over {timeout_s:g} s") from None
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                    raise AdasrError(f"{name}: adasr train failed ({last})")
                walls[name].append(time.monotonic() - started)
                _, state, _ = read_checkpoint(run_dir / CHECKPOINT)
                speeds[name].append(steps * batch_size / max(state.seconds, 1e-9))
                if procs > 1:
                    diffs.append(_weights_diff(run_dir / MODEL, Path(tmp) / f"r{round_}-0" / MODEL))
                done += 1
                if on_progress is not None:
                    on_progress("runs", done, total)
    base = statistics.median(speeds[runners[0][0]])
    rows = [{"runner": name, "processes": procs, "threads_per_process": threads,
             "images_per_s": statistics.median(speeds[name]), "ratio_to_1x1": statistics.median(speeds[name]) / base,
             "wall_s": statistics.median(walls[name]), "per_round_images_per_s": speeds[name]}
            for name, procs, threads in runners]
    return {"schema_version": SCHEMA_VERSION, "supernet": supernet, "recipe": recipe, "steps": steps,
            "batch_size": batch_size, "patch": patch, "rounds": rounds, "nproc": nproc, "cpus": os.cpu_count(),
            "runners": rows, "max_weight_diff": max(diffs), "provenance": provenance()}
