"""Algorithm 1's online loop against its bounds, on tiny correlated sets (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch

from adasr.mimo import channels as C
from adasr.mimo import mmnet as M
from adasr.mimo.bench import sweep_phi
from adasr.mimo.problem import constellation


def _drifting_set():
    # 4 users x 16 antennas, receive correlation 0.5, 12 subcarriers whose channels drift away
    # from the first (Gauss-Markov, 0.9 between neighbours: 0.9^11 = 0.31 between the ends)
    return C.synthetic("corr", 4, 16, steps=1, carriers=12, seed=3, rho=0.5, rho_f=0.9)


def test_online_steps_improve_on_the_frozen_first_subcarrier_copy():
    cs = _drifting_set()
    report = sweep_phi(cs, constellation("qam4"), 8.0, [10], baselines=["mmse"], train_snr=(6.0, 10.0), first=150,
                       samples=400, batch=100, lr=1e-2, layers=4, band=4, seed=0)
    frozen, online = report["mmnet"]
    assert frozen["phi"] == 0 and online["phi"] == 10
    assert frozen["iterations_total"] == 150 and online["iterations_total"] == 150 + 11 * 10
    # the same network on the first subcarrier: its SER there is the same in both runs
    assert frozen["ser_per_channel"][0] == online["ser_per_channel"][0]
    # the frozen copy decays as the channel drifts away; the online steps follow it
    assert frozen["ser_per_band"][-1] > 2 * frozen["ser_per_band"][0]
    assert online["ser"] < 0.6 * frozen["ser"], (online["ser"], frozen["ser"])
    assert online["ser_per_band"][-1] < 0.5 * frozen["ser_per_band"][-1]
    assert online["not_above_frozen_in_every_band"]


def test_a_shared_first_stage_gives_the_result_of_a_separate_run():
    cs = C.synthetic("corr", 2, 8, steps=2, carriers=3, seed=1, rho=0.5, rho_f=0.9, rho_t=0.8)
    mod = constellation("qam4")
    kw = dict(first=15, next_iters=3, time_iters=4, batch=40, lr=1e-2, layers=2, seed=2)
    _, ref = M.train_online(cs.h, mod, 6.0, 10.0, **kw)
    _, first = M.train_online(cs.h, mod, 6.0, 10.0, **dict(kw, next_iters=0))
    _, shared = M.train_online(cs.h, mod, 6.0, 10.0, first_state=first.first_state, **kw)
    assert shared.iterations == ref.iterations == [15, 3, 3, 4, 3, 3]
    assert shared.last_loss == ref.last_loss
    for a, b in zip(ref.states, shared.states):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the stored first stage was not changed by the run that reused it
    _, again = M.train_online(cs.h, mod, 6.0, 10.0, first_state=first.first_state, **kw)
    assert again.last_loss == ref.last_loss


def test_transport_keeps_each_layers_action_on_the_signal():
    g = torch.Generator().manual_seed(5)
    model = M.MMNet("mmnet", 3, 8, layers=2, generator=g, init_std=0.3)
    h0 = torch.complex(torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g))
    h1 = h0 + 0.3 * torch.complex(torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g))
    before = torch.complex(model.a_re, model.a_im).detach().clone()
    M._transport(model, h0, h1)
    after = torch.complex(model.a_re, model.a_im).detach()
    assert not torch.allclose(after, before, atol=1e-3)
    assert torch.allclose(after @ h1, before @ h0, atol=1e-5)  # A' H1 = A H0 for every layer


def test_transport_carries_the_frozen_copy_along_a_drifting_set():
    cs = _drifting_set()
    mod = constellation("qam4")
    kw = dict(baselines=[], train_snr=(6.0, 10.0), first=150, samples=400, batch=100, lr=1e-2, layers=4, seed=0)
    plain = sweep_phi(cs, mod, 8.0, [0], **kw)["frozen"]["ser"]
    moved = sweep_phi(cs, mod, 8.0, [0], transport=True, **kw)["frozen"]["ser"]
    assert moved < 0.3 * plain, (moved, plain)


def test_reset_adam_gives_the_first_warm_step_its_full_size():
    # Adam's first step from fresh moments moves every weight by the step size (lr * g / |g|); the
    # moments carried from the first channel's large early gradients make it much smaller
    cs = _drifting_set()
    mod = constellation("qam4")
    kw = dict(first=60, next_iters=1, batch=50, lr=1e-2, next_lr=2e-2, layers=2, seed=0)
    moves = {}
    for reset in (False, True):
        _, res = M.train_online(cs.h[:, :2], mod, 6.0, 10.0, reset_adam=reset, **kw)
        moves[reset] = (res.states[1]["a_re"] - res.states[0]["a_re"]).abs().flatten()
    assert torch.allclose(moves[True].median(), torch.tensor(2e-2), rtol=1e-3), moves[True].median()
    assert moves[False].median() < 0.5 * 2e-2, moves[False].median()


@pytest.mark.slow
def test_reset_adam_tracks_a_drifting_set_better_than_carried_moments():
    cs = _drifting_set()
    mod = constellation("qam4")
    kw = dict(baselines=[], train_snr=(6.0, 10.0), first=150, samples=300, batch=100, lr=1e-3, next_lr=1e-2,
              layers=4, band=4, seed=0)
    keep = sweep_phi(cs, mod, 8.0, [4], **kw)["mmnet"][1]
    reset = sweep_phi(cs, mod, 8.0, [4], reset_adam=True, **kw)["mmnet"][1]
    assert reset["ser"] < 0.5 * keep["ser"], (reset["ser"], keep["ser"])
    assert reset["not_above_frozen_in_every_band"]
