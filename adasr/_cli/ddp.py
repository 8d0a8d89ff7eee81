"""`--nproc N`: start the command in N data-parallel processes (torch's elastic launcher) or, under
torchrun, join the job; shared by `adasr train` and `adasr search-dlsr`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from adasr.errors import ConfigError

__all__ = ["NPROC_HELP", "TIMEOUT_HELP", "joined", "launched", "rank_prefix"]

NPROC_HELP = ("Data-parallel processes on this machine (torch.distributed, gloo on CPU, NCCL on CUDA); "
              "the global batch stays --batch-size. Under torchrun leave it out.")
TIMEOUT_HELP = "Minutes a process waits for the others (rank 0's validation included) before it fails."


def _without_nproc(args: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def launched(nproc: int, threads: int | None) -> bool:
    """With --nproc N > 1 outside torchrun: run this same command line (without --nproc) in N
    processes, wait for them, and return True. Otherwise False: the caller runs the command here."""
    from adasr.train import distributed

    if nproc == 1:
        return False
    if distributed.from_env() is not None:
        raise ConfigError("--nproc starts the processes itself; under torchrun leave it out "
                          "(torchrun's --nproc-per-node sets the count)")
    args = _without_nproc(sys.argv[1:])
    if threads is None:  # share the cores instead of every process taking all of them
        threads = max(1, (os.cpu_count() or 1) // nproc)
        args += ["--threads", str(threads)]
    # The processes inherit this environment. --threads sets torch's threads; numpy's BLAS (the
    # bicubic LR of the training set) reads OMP_NUM_THREADS when it loads; without it each of the
    # N processes starts a thread per core, and beside other work a 2-rank run on 2 cores spent
    # minutes in that LR (0.2 s alone). torchrun sets the same variable; one set by the user is kept.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    distributed.launch(nproc, args)
    return True


@contextmanager
def joined(device: str, timeout_minutes: float) -> Iterator[tuple[object, str]]:
    """(Dist, device) of this process: alone, or a rank of the torchrun job it was started in."""
    from adasr.train import distributed

    with distributed.process_group(device, timeout_minutes) as found:
        yield found


def rank_prefix() -> str:
    """'rank N: ' for a process of a multi-process job (so each line says who failed), else ''."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return f"rank {rank}: " if world not in ("", "1") and rank.isdigit() else ""
