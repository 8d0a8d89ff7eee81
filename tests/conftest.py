"""Shared fixtures: the project's real data beside the checkout, small synthetic pairs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("ADASR_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def missing_data(root: Path, from_env: bool) -> str | None:
    """One line saying why `root` is not the shared data folder, or None when it is."""
    if (root / "benchmarks" / "Set5").is_dir():
        return None
    where = f"ADASR_DATA={root}" if from_env else f"{root} (../shared/data beside the checkout)"
    return (f"test data not found: expected the shared data folder (benchmarks/Set5, train/, video/) at {where}; "
            f"point ADASR_DATA at it, e.g. ADASR_DATA=/path/to/shared/data make test")


@pytest.fixture(scope="session")
def data_root() -> Path:
    why = missing_data(DATA, "ADASR_DATA" in os.environ)
    if why:
        pytest.fail(why, pytrace=False)
    return DATA


@pytest.fixture(scope="session")
def small_pairs(data_root: Path):
    """Crops of Set5 as x2 training pairs: real content, tiny and fast."""
    from adasr.data.datasets import SRPair, make_lr
    from adasr.images import read_image

    pairs = []
    for path in sorted((data_root / "benchmarks" / "Set5").glob("*.png"))[:3]:
        hr = read_image(path).rgb[:64, :64].copy()
        pairs.append(SRPair(path.stem, hr, make_lr(hr, 2)))
    return pairs


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Test tensors are tiny: intra-op threads gain nothing, and on a busy 2-core machine OpenMP
    # barriers make every small conv wait for a descheduled thread.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ADASR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
