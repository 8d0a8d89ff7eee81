"""Data-parallel training over `torch.distributed`, started by torchrun (or `adasr train --nproc`).

Every rank builds the same model from the same seed (or reads the same checkpoint), draws the
same global batch from the step's generator and keeps only its own slice of it (rank r of N:
items r*B/N .. (r+1)*B/N - 1), trains the same sub-networks (they come from that generator too,
never from the global RNG), and averages the gradients over the ranks with one all-reduce per
step before the optimizer steps. The losses are means over equal slices, and the mean of those
means is the mean over the whole batch, so N processes compute the step of one process with
batch B, up to the rounding of float sums in another order.

Why one all-reduce after the last backward pass rather than `DistributedDataParallel`'s hooks:
a sandwich step accumulates the gradients of several sub-networks, each using a different
subset of the parameters; DDP reduces inside one backward pass of one graph and would need
`no_sync` plus unused-parameter detection per sub-network. Averaging once after all of them
(what DDP's buckets do, once per step) is exact for any sampling rule, and parameters no
sub-network touched keep no gradient on any rank, as in one process.

Backends: gloo on CPU, NCCL on CUDA (one device per local rank). Every collective has the
process group's timeout (`timeout_minutes`): a rank whose peers died or stalled fails with one
line (`DistributedError`) instead of hanging; torchrun then stops the other ranks.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from adasr.errors import AdasrError, ConfigError

__all__ = ["DEFAULT_TIMEOUT_MINUTES", "Dist", "DistributedError", "MAX_PROCESSES", "from_env", "launch",
           "process_group"]

MAX_PROCESSES = 256
DEFAULT_TIMEOUT_MINUTES = 30.0


class DistributedError(AdasrError):
    """A collective failed or timed out: another rank died, stalled or disagrees on the state."""

    exit_code = 6


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank of world, and its local rank on the node.

    `Dist()` is one process alone: every method is then a no-op that costs nothing.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, validates and shows progress."""
        return self.rank == 0

    def part(self, batch_size: int) -> slice:
        """This rank's slice of a global batch of `batch_size` items."""
        if batch_size % self.world:
            raise ConfigError(f"the batch size ({batch_size}) must be a multiple of the number of "
                              f"processes ({self.world}) so the global batch stays the same")
        share = batch_size // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    def _call(self, what: str, fn, *args, **kwargs):
        import torch.distributed as dist

        try:
            return fn(*args, **kwargs)
        except (RuntimeError, dist.DistError) as exc:
            raise DistributedError(f"lost the other processes during {what} ({_first_line(exc)}); "
                                   f"the failing rank's own message is above") from None

    def average_gradients(self, params: Iterable[Any], values: Sequence[float] = ()) -> list[float]:
        """Average the `.grad` of `params` (those that have one) and `values` over the ranks.

        One flat all-reduce. Every rank must hold gradients for the same parameters, which the
        shared step generator guarantees (the same sub-networks on every rank).
        """
        values = [float(v) for v in values]
        if self.world == 1:
            return values
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        device = grads[0].device if grads else self._device()
        flat = torch.cat([g.reshape(-1).float() for g in grads]
                         + [torch.tensor(values, dtype=torch.float32, device=device)])
        self._call("the gradient all-reduce", dist.all_reduce, flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat[offset:].tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any (e.g. the time budget is spent)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([int(flag)], dtype=torch.int64, device=self._device())
        self._call("a stop decision", dist.all_reduce, value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def check_same(self, step: int, digest: str, what: str) -> None:
        """DistributedError unless every rank is at `step` with tensors of the same `digest`
        (e.g. a `--resume` whose run folder is not the same on every node)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        mine = torch.tensor([step, int(digest[:15], 16)], dtype=torch.int64, device=self._device())
        low, high = mine.clone(), mine.clone()
        self._call("the start-up check", dist.all_reduce, low, op=dist.ReduceOp.MIN)
        self._call("the start-up check", dist.all_reduce, high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise DistributedError(f"the processes start from different {what} (steps {int(low[0])}..{int(high[0])}); "
                                   f"every node must see the same run folder, data and options")

    def _device(self) -> torch.device:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def from_env() -> tuple[int, int, int] | None:
    """(rank, world, local rank) from the variables torchrun sets, or None outside torchrun."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world, local = (int(os.environ.get(n, "0")) for n in names)
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    if not (1 <= world <= MAX_PROCESSES and 0 <= rank < world and 0 <= local < world):
        raise ConfigError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}")
    return rank, world, local


@contextmanager
def process_group(device: str = "auto", timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> Iterator[tuple[Dist, str]]:
    """Join the job torchrun started (MASTER_ADDR/MASTER_PORT, RANK, WORLD_SIZE in the
    environment) and leave it on exit; yields (Dist, the device name this rank trains on).

    Outside torchrun (or with WORLD_SIZE=1) yields `Dist()` and `device` unchanged. Under
    torchrun with CUDA, rank r of a node uses cuda:LOCAL_RANK and NCCL; otherwise gloo on CPU.
    """
    found = from_env()
    if found is None or found[1] == 1:
        yield Dist(), device
        return
    import torch.distributed as dist

    if not 0 < timeout_minutes <= 24 * 60:
        raise ConfigError(f"the process-group timeout must be in (0, 1440] minutes, got {timeout_minutes}")
    rank, world, local = found
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError("CUDA was requested but this torch build or machine has no CUDA device")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local} has no GPU (this node has {torch.cuda.device_count()}); "
                              f"start at most one process per GPU")
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    elif device == "auto":
        device = "cpu"
    backend = "nccl" if cuda else "gloo"
    try:
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    except (RuntimeError, ValueError, dist.DistError) as exc:
        raise DistributedError(f"cannot join the process group ({backend}, MASTER_ADDR="
                               f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}): "
                               f"{_first_line(exc)}") from None
    finished = False
    try:
        yield Dist(rank, world, local), device
        finished = True
    finally:
        if finished:
            # Every rank leaves together: a rank tearing gloo down while another is still in its
            # last collective could abort that one ("terminate called without an active exception").
            try:
                dist.barrier()
            except (RuntimeError, dist.DistError):
                pass  # the group is already broken; tearing it down is all that is left
        dist.destroy_process_group()


def launch(nproc: int, args: Sequence[str], *, module: str = "adasr") -> None:
    """Run `python -m adasr ARGS` in `nproc` processes on this machine through torch's elastic
    launcher (what `torchrun --standalone --nproc-per-node N` does), rendezvous on loopback.

    A failing process makes the others stop; raises DistributedError with the first failed
    rank and its exit code (its own one-line message is on stderr already).
    """
    import logging
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not 1 <= nproc <= MAX_PROCESSES:
        raise ConfigError(f"--nproc must be in 1..{MAX_PROCESSES}, got {nproc}")
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed.elastic")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # its failure reports: we say them in one line
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=0.2, local_addr="127.0.0.1", shutdown_timeout=30)
    try:
        elastic_launch(config, sys.executable)("-m", module, *args)
    except ChildFailedError as exc:
        rank, failure = min(exc.failures.items())
        error = DistributedError(f"process {rank} of {nproc} failed with exit code {failure.exitcode}; "
                                 f"the others were stopped")
        if 0 < failure.exitcode < 128:
            error.exit_code = failure.exitcode  # the same exit status as one process would give
        raise error from None
    except SignalException as exc:
        error = DistributedError(f"stopped by {exc.sigval.name}; the processes were told to stop "
                                 f"(rank 0 saves a checkpoint on Ctrl-C: continue with --resume)")
        error.exit_code = 130
        raise error from None
