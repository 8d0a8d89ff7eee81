"""Channel sets with every subcarrier (stride 1): generation, locality and the on-disk cache."""

from __future__ import annotations

import json

import pytest
import torch

from adasr.errors import ConfigError
from adasr.mimo import channels as C


def test_correlation_against_distance_of_a_known_set():
    # Gauss-Markov along subcarriers: the correlation d apart is rho_f^d
    cs = C.synthetic("iid", 4, 32, steps=300, carriers=5, seed=0, rho_f=0.9)
    loc = C.correlation(cs.h)
    assert loc["frequency"][0] == pytest.approx(1.0)
    for d in (1, 2, 4):
        assert loc["frequency"][d] == pytest.approx(0.9 ** d, abs=0.03), d
    assert loc["time"][1] < 0.2  # independent time steps
    assert len(loc["frequency"]) == 5 and len(loc["time"]) == 65  # lags up to 64


def test_stride_one_uma_sets_round_trip_through_the_cache(tmp_path):
    pytest.importorskip("sionna.phy")
    cs = C.make("uma", 2, 64, steps=2, carriers=8, seed=4, stride=1, drops=2)
    assert cs.h.shape == (4, 8, 64, 2)
    assert cs.meta["subcarrier_stride"] == 1 and cs.meta["drops"] == 2 and cs.meta["steps_per_drop"] == 2
    assert cs.meta["subcarrier_spacing_hz"] == pytest.approx(20e6 / 1024)
    path = C.save(cs, tmp_path / "s1.safetensors")
    back = C.load(path)
    assert torch.equal(back.h, cs.h) and back.meta["subcarrier_stride"] == 1 and back.meta["shape"] == [4, 8, 64, 2]
    assert json.loads(path.with_suffix(".json").read_text())["drops"] == 2
    # every 4th subcarrier of the stride-1 set is the stride-4 set of the same seed, up to the power
    # control (a positive scale per drop, time step and user, as the kept subcarriers differ)
    s4 = C.make("uma", 2, 64, steps=2, carriers=2, seed=4, stride=4, drops=2).h
    s1 = cs.h[:, ::4]
    ratio = (s1 / s4).reshape(4, 2, 64, 2)
    assert torch.allclose(ratio.imag, torch.zeros(()), atol=1e-3)
    assert torch.allclose(ratio.real, ratio.real[:, :1, :1], rtol=1e-3)
    # neighbouring subcarriers (19.5 kHz) are more alike than those 4 apart
    loc = C.correlation(cs.h)
    assert 0.9 < loc["frequency"][4] < loc["frequency"][1] <= 1.0
    with pytest.raises(ConfigError, match="--carriers"):
        C.make("uma", 2, 64, carriers=257, stride=4)
