"""Data-parallel training (torch.distributed, gloo on loopback): 2 processes = 1 process.

One spawn of two ranks does everything that needs a process group (each spawn costs seconds of
torch start-up): a supernet sandwich run, the same run interrupted and resumed, a DLSR search,
and a rank that dies mid-run. The checks run here against one-process runs of the same configs.

Tolerance: the same global batch split over 2 ranks sums the gradients in another order, so
weights agree to float rounding (seen: ~1e-8); 1e-5 absolute after 4 Adam steps at lr 1e-3.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adasr.train import TrainConfig, Trainer
from adasr.train.sampling import recipe

ATOL = 1e-5
WORKER_SECONDS = 240  # bound on the spawned ranks; they take ~10-30 s on a busy 2-core machine


def _pairs(data: str):
    from adasr.data.datasets import SRPair, make_lr
    from adasr.images import read_image

    pairs = []
    for path in sorted((Path(data) / "benchmarks" / "Set5").glob("*.png"))[:3]:
        hr = read_image(path).rgb[:64, :64].copy()
        pairs.append(SRPair(path.stem, hr, make_lr(hr, 2)))
    return pairs


def _supernet_cfg() -> TrainConfig:
    from adasr.space import SearchSpace

    return TrainConfig(arch="supernet", scale=2, train_data=("unused",),
                       arch_args={"space": SearchSpace.named("tiny").to_dict()}, phases=recipe("sandwich", 4),
                       patch=16, batch_size=4, steps=4, lr=1e-3, ema=0.9, val_every=2, ckpt_every=2, seed=5)


def _dlsr_cfg():
    from adasr.search.dlsr_search import DLSRSearchConfig

    return DLSRSearchConfig(scale=2, train_data=("unused",), width=8, cells=2, patch=8, batch_size=4, steps=4,
                            warmup_steps=1, snapshot_steps=(2,), log_every=1, ckpt_every=2, seed=3)


class _Stop(Exception):
    pass


def _worker(rank: int, port: int, data: str, root: str) -> None:
    """One rank of a 2-process job: each scenario in its own folder under `root`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from adasr.search.dlsr_search import DLSRSearch
    from adasr.train import TrainingInterrupted
    from adasr.train.distributed import DistributedError, process_group

    root_dir, pairs, report = Path(root), _pairs(data), {}
    cfg = _supernet_cfg()
    with process_group("cpu", timeout_minutes=2) as (dist, device):
        # rank 1 gets a folder of its own: it must stay unwritten (rank 0 alone writes)
        def folder(name: str) -> Path:
            return root_dir / (name if dist.main else f"{name}-rank1")

        Trainer(cfg, folder("full"), device=device, train_pairs=pairs, val_pairs=pairs[:1], dist=dist).run()

        def interrupt(kind: str, data: dict) -> None:
            if kind == "step" and data["step"] == 2:
                raise KeyboardInterrupt

        try:
            Trainer(cfg, root_dir / "cut", device=device, train_pairs=pairs, val_pairs=pairs[:1], dist=dist,
                    on_event=interrupt).run()
        except TrainingInterrupted as exc:
            report["interrupted_at"] = exc.step
        torch.distributed.barrier()  # rank 1 stops at once; rank 0 first saves the checkpoint
        resumed = Trainer(cfg, root_dir / "cut", device=device, resume=True, train_pairs=pairs,
                          val_pairs=pairs[:1], dist=dist)
        report["resumed_from"] = resumed.state.step
        resumed.run()

        search = DLSRSearch(_dlsr_cfg(), folder("dlsr"), device=device, train_pairs=pairs[:2],
                            val_pairs=pairs[2:], dist=dist)
        search.run()
        report["alpha"] = search.net.alpha.detach().flatten().tolist()

        # a rank that dies mid-run: the other fails with one line instead of hanging
        def die(kind: str, data: dict) -> None:
            if kind == "step" and data["step"] == 1 and rank == 1:
                os._exit(3)

        try:
            Trainer(cfg, folder("dies"), device=device, train_pairs=pairs, dist=dist, on_event=die).run()
        except DistributedError as exc:
            report["error"] = str(exc)
        (root_dir / f"report{rank}.json").write_text(json.dumps(report))
        os._exit(0)  # the process group lost a member: leave without a teardown that would wait for it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("ddp")
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(rank, port, str(data_root), str(root))) for rank in (0, 1)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(WORKER_SECONDS)
    alive = [p for p in procs if p.is_alive()]
    for proc in alive:
        proc.kill()
        proc.join(10)
    assert not alive, f"ranks still running after {WORKER_SECONDS} s (a hang)"
    assert procs[0].exitcode == 0, procs[0].exitcode
    assert procs[1].exitcode == 3  # it died on purpose in the last scenario
    return root, json.loads((root / "report0.json").read_text())


def _model(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


@pytest.mark.cluster
def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(two_ranks, tmp_path, small_pairs):
    root, _ = two_ranks
    one = Trainer(_supernet_cfg(), tmp_path / "one", device="cpu", train_pairs=small_pairs, val_pairs=small_pairs[:1])
    state = one.run()
    two = _model(root / "full" / "model.safetensors")
    ref = _model(tmp_path / "one" / "model.safetensors")
    assert two.keys() == ref.keys()
    diff = max(float((two[k] - ref[k]).abs().max()) for k in ref)
    assert diff <= ATOL, diff
    # rank 0 validated and wrote the history; rank 1 wrote nothing at all
    header = json.loads((root / "full" / "config.json").read_text())
    assert header["batch_size"] == 4 and state.history
    assert not (root / "full-rank1").exists()


@pytest.mark.cluster
def test_resume_under_two_processes_continues_exactly(two_ranks):
    root, report = two_ranks
    assert report["interrupted_at"] == 2 and report["resumed_from"] == 2
    full, cut = _model(root / "full" / "model.safetensors"), _model(root / "cut" / "model.safetensors")
    for k in full:
        assert torch.equal(full[k], cut[k]), k


@pytest.mark.cluster
def test_dlsr_search_on_two_processes_matches_one(two_ranks, tmp_path, small_pairs):
    from adasr.search.dlsr_search import DLSRSearch

    root, report = two_ranks
    one = DLSRSearch(_dlsr_cfg(), tmp_path / "one", device="cpu", train_pairs=small_pairs[:2],
                     val_pairs=small_pairs[2:])
    one.run()
    alpha = one.net.alpha.detach().flatten()
    assert float((torch.tensor(report["alpha"]) - alpha).abs().max()) <= ATOL
    genotype = json.loads((root / "dlsr" / "genotype.json").read_text())
    assert genotype == json.loads((tmp_path / "one" / "genotype.json").read_text())
    assert not (root / "dlsr-rank1").exists()


@pytest.mark.cluster
def test_a_dead_rank_gives_one_line_not_a_hang(two_ranks):
    _, report = two_ranks
    assert "lost the other processes" in report["error"] and "\n" not in report["error"]


@pytest.mark.cluster
def test_cli_nproc_2_runs_torchrun_and_matches_one_process(tmp_path, data_root):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    common = ["train", "--arch", "fsrcnn", "--arg", "d=16", "--arg", "s=8", "--arg", "m=1", "--data",
              str(data_root / "benchmarks" / "Set5"), "--val", "none", "--steps", "3", "--batch-size", "4",
              "--patch", "16", "--quiet", "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-m", "adasr", *common, "--out", str(tmp_path / "two"), "--nproc", "2"],
                          capture_output=True, text=True, env=env, timeout=WORKER_SECONDS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained 3 steps") == 1  # rank 0 alone reports
    # the same run in one process, from the config the CLI wrote
    cfg = TrainConfig.from_dict(json.loads((tmp_path / "two" / "config.json").read_text()))
    Trainer(cfg, tmp_path / "one", device="cpu").run()
    two, one = _model(tmp_path / "two" / "model.safetensors"), _model(tmp_path / "one" / "model.safetensors")
    assert max(float((two[k] - one[k]).abs().max()) for k in one) <= ATOL


def test_nproc_is_refused_under_torchrun_and_stripped_for_the_workers(monkeypatch):
    from adasr._cli.ddp import _without_nproc, launched, rank_prefix
    from adasr.errors import ConfigError

    assert _without_nproc(["train", "--nproc", "2", "--out", "x", "--nproc=3"]) == ["train", "--out", "x"]
    assert not launched(1, None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="torchrun"):
        launched(2, None)
    assert rank_prefix() == "rank 1: "


def test_nproc_shares_the_cores_with_torch_and_blas_threads(monkeypatch):
    from adasr._cli import ddp
    from adasr.train import distributed

    started = []
    monkeypatch.setattr(distributed, "launch",
                        lambda n, args: started.append((n, args, os.environ.get("OMP_NUM_THREADS"))))
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(sys, "argv", ["adasr", "train", "--nproc", "4", "--out", "x"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert ddp.launched(4, None)
    assert started[-1] == (4, ["train", "--out", "x", "--threads", "2"], "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting is kept
    assert ddp.launched(4, 1) and started[-1] == (4, ["train", "--out", "x"], "3")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert ddp.launched(2, 1) and started[-1][2] == "1"
