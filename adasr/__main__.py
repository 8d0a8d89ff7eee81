"""`python -m adasr`: the CLI (and what `--nproc N` and torchrun start in every worker process)."""

import os
import sys

from adasr._cli.main import main

__all__ = []


def _torchrun_worker() -> bool:
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


try:
    main()
except SystemExit as exc:
    if _torchrun_worker():
        # A torchrun worker, its process group already left (adasr.train.distributed.process_group):
        # exit now, without the interpreter's teardown, where a rank could abort on a collective
        # library's thread still being destroyed ("terminate called without an active exception",
        # a rare flake journal 12 and 30 record). Everything the command wrote is closed by now; the
        # one exit hook adasr has (CpuLoad stopping a load left running) has nothing to do in a worker.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise
