"""adasr.mimo: the QAM problem, channel sets, classic detectors, MMNet and its online training,
and the `adasr mimo` commands. Tiny systems (4 users x 8 antennas), CPU, seconds each."""

from __future__ import annotations

import json

import pytest
import torch

from adasr.errors import ConfigError, InputError
from adasr.mimo import channels as C
from adasr.mimo import detectors as D
from adasr.mimo import mmnet as M
from adasr.mimo.bench import snr_at
from adasr.mimo.problem import (
    apply,
    constellation,
    gaussian_denoiser,
    noise_var,
    parse_snrs,
    ser,
    to_complex_vector,
    to_real_matrix,
    to_real_vector,
    transmit,
)
from tests.cli.test_cli import run_cli


def one_line_error(code, err, exit_code, *words):
    assert code == exit_code, (code, err)
    text = err.strip()
    assert "Traceback" not in err and text.count("\n") == 0, text
    for w in words:
        assert w in text, (w, text)


def _channels(kind="iid", n=8, users=4, antennas=8, seed=0, **kw):
    return to_real_matrix(C.synthetic(kind, users, antennas, steps=n, seed=seed, **kw).flat())


# -- problem ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,order", [("qam4", 4), ("qam16", 16), ("qam64", 64)])
def test_constellation_has_unit_energy(name, order):
    mod = constellation(name)
    pts = mod.points
    assert pts.numel() == order and len(set(pts.tolist())) == order
    assert float(pts.abs().pow(2).mean()) == pytest.approx(1.0, abs=1e-6)
    x = mod.sample((20000, 2), generator=torch.Generator().manual_seed(0))
    assert float(x.pow(2).sum(-1).mean()) == pytest.approx(1.0, rel=0.03)
    if name == "qam4":
        assert torch.allclose(mod.levels, torch.tensor([-1, 1]) / 2 ** 0.5)


def test_real_model_matches_complex_model():
    g = torch.Generator().manual_seed(1)
    h = torch.complex(torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g))
    x = torch.complex(torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g))
    y = x @ h.T
    assert torch.allclose(to_complex_vector(apply(to_real_matrix(h), to_real_vector(x))), y, atol=1e-5)


def test_snr_follows_the_thesis_definition():
    hr = _channels(n=1)[0]
    mod = constellation("qam16")
    x, y, s2 = transmit(hr, mod, 40000, 10.0, torch.Generator().manual_seed(0))
    signal = apply(hr, x).pow(2).sum(-1).mean()
    noise = (y - apply(hr, x)).pow(2).sum(-1).mean()
    assert float(10 * torch.log10(signal / noise)) == pytest.approx(10.0, abs=0.1)
    assert float(s2[0]) == pytest.approx(float(noise_var(hr, 10.0)))


def test_denoiser_is_the_posterior_mean():
    mod = constellation("qam4")
    lv = float(mod.levels[1])
    mean, var = gaussian_denoiser(torch.tensor([[lv, -lv, 0.0]]), torch.tensor([[1e-4]]), mod)
    assert torch.allclose(mean, torch.tensor([[lv, -lv, 0.0]]), atol=1e-4)
    assert float(var[0, 2]) == pytest.approx(lv * lv, rel=1e-4)  # halfway: maximal uncertainty


def test_unknown_modulation_and_bad_snrs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown modulation"):
        constellation("qam8")
    assert parse_snrs("8:12:2") == [8.0, 10.0, 12.0]
    assert parse_snrs("-5,0") == [-5.0, 0.0]
    for bad in ("12:8:2", "8:12:-1", "a,b", "", "100"):
        with pytest.raises(ConfigError):
            parse_snrs(bad)


# -- detectors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["zf", "mmse", "vblast"])  # AMP is asymptotic: not exact at 4x8
def test_detectors_recover_exactly_without_noise(name):
    mod = constellation("qam16")
    g = torch.Generator().manual_seed(2)
    for hr in _channels(n=4):
        x = mod.sample((50, 8), generator=g)
        y = apply(hr, x)
        x_hat = D.CLASSIC[name](y, hr, torch.full((50,), 1e-9), mod)
        assert ser(x_hat, x, mod) == 0.0, name


def test_zf_and_mmse_are_near_error_free_at_high_snr():
    mod = constellation("qam4")
    g = torch.Generator().manual_seed(3)
    for hr in _channels(n=4):
        x, y, s2 = transmit(hr, mod, 200, 35.0, g)
        assert ser(D.zf(y, hr, s2, mod), x, mod) < 0.01
        assert ser(D.mmse(y, hr, s2, mod), x, mod) < 0.01


def test_mmse_is_no_worse_than_zf_at_low_snr():
    mod = constellation("qam4")
    g = torch.Generator().manual_seed(4)
    zf_err = mmse_err = 0.0
    for hr in _channels(n=16, seed=5):
        x, y, s2 = transmit(hr, mod, 300, 0.0, g)
        zf_err += ser(D.zf(y, hr, s2, mod), x, mod)
        mmse_err += ser(D.mmse(y, hr, s2, mod), x, mod)
    assert mmse_err < zf_err


def test_amp_runs_batched_and_beats_chance():
    mod = constellation("qam4")
    hr = _channels(n=1, users=4, antennas=16)[0]
    x, y, s2 = transmit(hr, mod, 400, 10.0, torch.Generator().manual_seed(6))
    x_hat = D.amp(y, hr, s2, mod)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    assert ser(x_hat, x, mod) < 0.1
    # one channel per vector gives the same answer: a batched product (einsum) instead of one
    # matmul rounds the soft estimates differently in the last bits, which can move a decision
    # only for an estimate at a decision boundary: at most 1 % of the symbols may differ
    per_sample = hr.expand(400, *hr.shape)
    assert ser(D.amp(y, per_sample, s2, mod), x_hat, mod) <= 0.01


@pytest.mark.slow
def test_sionna_detectors_are_wrapped():
    pytest.importorskip("sionna.phy")
    mod = constellation("qam16")
    hr = _channels(n=1)[0]
    x = mod.sample((20, 8), generator=torch.Generator().manual_seed(7))
    y = apply(hr, x)
    s2 = torch.full((20,), 1e-4)
    assert ser(D.sionna_kbest(y, hr, s2, mod, k=16), x, mod) == 0.0
    assert ser(D.sionna_ep(y, hr, s2, mod), x, mod) == 0.0


def test_more_users_than_antennas_is_refused():
    mod = constellation("qam4")
    hr = to_real_matrix(torch.randn(4, 8, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="users <= antennas"):
        D.zf(torch.zeros(2, 8), hr, torch.ones(2), mod)
    with pytest.raises(ConfigError):
        C.synthetic("iid", 8, 4)


# -- channels -------------------------------------------------------------------------------------

def test_iid_and_kronecker_channels_have_unit_column_power():
    for kind in ("iid", "corr"):
        h = C.synthetic(kind, 4, 16, steps=2000, seed=0, rho=0.8).flat()
        assert float(h.abs().pow(2).sum(-2).mean()) == pytest.approx(1.0, rel=0.03), kind
    h = C.synthetic("corr", 2, 8, steps=4000, seed=1, rho=0.8).flat()
    cov = (h[:, :, 0:1] @ h[:, :, 0:1].conj().transpose(-2, -1)).mean(0).real * 8
    assert float(cov[0, 1]) == pytest.approx(0.8, abs=0.05)
    assert float(cov[0, 2]) == pytest.approx(0.64, abs=0.05)


def test_markov_correlation_along_subcarriers():
    h = C.synthetic("iid", 4, 8, steps=400, carriers=2, seed=0, rho_f=0.9).h
    a, b = h[:, 0].reshape(400, -1), h[:, 1].reshape(400, -1)
    corr = float((a.conj() * b).sum().real / (a.abs().pow(2).sum().sqrt() * b.abs().pow(2).sum().sqrt()))
    assert corr == pytest.approx(0.9, abs=0.03)


def test_channel_set_round_trips(tmp_path):
    cs = C.synthetic("corr", 4, 8, steps=3, carriers=2, seed=11, rho=0.5)
    path = C.save(cs, tmp_path / "set.safetensors")
    back = C.load(path)
    assert torch.equal(back.h, cs.h)
    assert back.meta["seed"] == 11 and back.meta["model"] == "corr" and back.meta["shape"] == [3, 2, 8, 4]
    assert json.loads((tmp_path / "set.json").read_text())["seed"] == 11
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    again = C.synthetic("corr", 4, 8, steps=3, carriers=2, seed=11, rho=0.5)
    assert torch.equal(again.h, cs.h)  # the seed regenerates the set
    (tmp_path / "junk.safetensors").write_bytes(b"not a set")
    with pytest.raises(InputError):
        C.load(tmp_path / "junk.safetensors")
    with pytest.raises(InputError):
        C.load(tmp_path / "missing.safetensors")


# -- MMNet ----------------------------------------------------------------------------------------

def test_mmnet_has_the_thesis_parameter_count():
    net = M.MMNet("mmnet", 16, 64, layers=10)
    assert sum(p.numel() for p in net.parameters()) == 10 * 2 * 16 * (64 + 1)
    assert sum(p.numel() for p in M.MMNet("mmnet-iid", 16, 64).parameters()) == 20


def test_mmnet_iid_trains_offline_and_lowers_its_loss():
    mod = constellation("qam4")
    net = M.MMNet("mmnet-iid", 4, 8, layers=4)
    before = [p.detach().clone() for p in net.parameters()]
    losses = M.train_offline(net, mod, 4.0, 8.0, 30, batch=200, lr=1e-2, seed=0)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.slow
def test_mmnet_learns_a_channel_and_reaches_low_ser():
    mod = constellation("qam4")
    cs = C.synthetic("iid", 4, 8, steps=1, seed=3)
    model, res = M.train_online(cs.h, mod, 8.0, 14.0, first=300, batch=200, lr=1e-2, layers=4, seed=0)
    assert res.last_loss[0] < 0.3 * res.first_loss[0]
    hr = to_real_matrix(cs.h[0, 0])
    x, y, s2 = transmit(hr, mod, 2000, 14.0, torch.Generator().manual_seed(9))
    mmnet_ser = ser(M.detect(model, y, hr, s2, mod), x, mod)
    assert mmnet_ser < 0.02
    assert mmnet_ser <= ser(D.mmse(y, hr, s2, mod), x, mod) + 0.005


@pytest.mark.slow
def test_online_training_warm_starts_from_the_previous_channel():
    mod = constellation("qam4")
    cs = C.synthetic("iid", 4, 8, steps=2, carriers=3, seed=4, rho_f=0.95, rho_t=0.9)
    # Phi = 0: each next subcarrier keeps exactly the weights trained on the previous one
    _, res = M.train_online(cs.h, mod, 8.0, 12.0, first=20, next_iters=0, time_iters=5, batch=100, layers=3)
    assert res.iterations == [20, 0, 0, 5, 0, 0]
    for a, b in zip(res.states[0].values(), res.states[2].values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(res.states[2].values(), res.states[3].values()))
    # the warm start pays: the first batch of the next channel is far better than from scratch
    two = cs.h[:1, :2]
    _, warm = M.train_online(two, mod, 8.0, 12.0, first=120, next_iters=2, batch=100, lr=1e-2, layers=3)
    _, cold = M.train_online(two, mod, 8.0, 12.0, first=120, next_iters=2, batch=100, lr=1e-2, layers=3, warm=False)
    assert warm.iterations == [120, 2]
    assert warm.first_loss[1] < 0.5 * cold.first_loss[1]
    assert cold.iterations == [120, 120]  # cold: every channel trains from scratch


def test_mmnet_checkpoint_round_trips(tmp_path):
    mod = constellation("qam16")
    net = M.MMNet("mmnet", 4, 8, layers=2, generator=torch.Generator().manual_seed(0))
    path = M.save(net, tmp_path / "m.safetensors", mod)
    back, meta = M.load(path)
    assert meta["kind"] == "mmnet" and meta["modulation"] == "qam16"
    for a, b in zip(net.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)


def test_snr_at_target_interpolates_in_log_ser():
    assert snr_at([0, 10], [1e-2, 1e-4]) == pytest.approx(5.0)
    assert snr_at([0, 10], [1e-1, 1e-2]) is None


# -- CLI ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_bench_writes_json_and_png(monkeypatch, capsys, tmp_path):
    out = tmp_path / "r.json"
    code, text, err = run_cli(monkeypatch, capsys, "mimo", "bench", "--users", "4", "--antennas", "8", "--mod", "qam4",
                              "--snr", "0,10", "--detectors", "zf,mmse,sphere,mmnet", "--steps", "1", "--carriers", "2",
                              "--samples", "100", "--first", "20", "--next", "2", "--next-lr", "5e-3", "--batch", "50",
                              "--layers", "2",
                              "--device", "cpu", "--json", str(out))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"zf", "mmse", "sphere", "mmnet"}
    assert report["channels"] == 2 and report["symbols_per_snr"] == 2 * 100 * 4
    res = report["results"]
    assert report["sphere"]["bounded"] == 0 and res["sphere"]["ser"][0] <= res["mmse"]["ser"][0]
    assert "gap_to_ml_db" in res["mmse"] and res["sphere"]["multiplications_per_vector"] > 0
    assert res["mmnet"]["multiplications_per_vector"] > res["mmse"]["multiplications_per_vector"]
    assert report["results"]["zf"]["ser"][1] < report["results"]["zf"]["ser"][0]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "zf" in text and "mmse" in text


@pytest.mark.slow
def test_cli_channels_then_bench_from_file(monkeypatch, capsys, tmp_path):
    path = tmp_path / "c.safetensors"
    code, _, err = run_cli(monkeypatch, capsys, "mimo", "channels", "--channel", "corr", "--users", "4",
                           "--antennas", "8", "--steps", "2", "--seed", "5", "--out", str(path))
    assert code == 0, err
    assert C.load(path).meta["seed"] == 5
    code, _, err = run_cli(monkeypatch, capsys, "mimo", "bench", "--channel", "file", "--channels", str(path),
                           "--users", "4", "--antennas", "8", "--mod", "qam4", "--snr", "10", "--detectors", "mmse",
                           "--samples", "50", "--device", "cpu", "--json", str(tmp_path / "b.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["channel"]["seed"] == 5


def test_cli_train_writes_a_checkpoint(monkeypatch, capsys, tmp_path):
    path = tmp_path / "iid.safetensors"
    code, _, err = run_cli(monkeypatch, capsys, "mimo", "train", "--kind", "mmnet-iid", "--users", "4", "--antennas",
                           "8", "--mod", "qam4", "--snr", "4,8", "--steps", "5", "--batch", "50", "--device", "cpu",
                           "--out", str(path))
    assert code == 0, err
    net, meta = M.load(path)
    assert meta["kind"] == "mmnet-iid" and net.users == 4
    assert json.loads(path.with_suffix(".json").read_text())["steps"] == 5


@pytest.mark.parametrize("args,exit_code,word", [
    (["bench", "--mod", "qam8"], 5, "unknown modulation"),
    (["bench", "--users", "16", "--antennas", "8"], 5, "16 users"),
    (["bench", "--snr", "12:8:2"], 5, "--snr"),
    (["bench", "--snr", "abc"], 5, "--snr"),
    (["bench", "--detectors", "ml9"], 5, "unknown detector"),
    (["bench", "--channel", "rayleigh"], 5, "unknown channel"),
    (["bench", "--channel", "file"], 5, "--channels"),
    (["bench", "--channel", "file", "--channels", "nope.safetensors"], 2, "not found"),
    (["bench", "--users", "0"], 5, "--users"),
    (["bench", "--rho", "1.5", "--channel", "corr"], 5, "--rho"),
    (["train", "--kind", "sdr", "--out", "x.safetensors"], 5, "--kind"),
    (["train", "--snr", "12,8", "--out", "x.safetensors"], 5, "--snr"),
    (["train", "--out", "x.pt"], 5, ".safetensors"),
])
def test_cli_bad_inputs_are_one_line_errors(monkeypatch, capsys, tmp_path, args, exit_code, word):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "mimo", *args)
    one_line_error(code, err, exit_code, word)
    assert list(tmp_path.iterdir()) == []


def test_oampnet_is_exact_without_noise_and_round_trips(tmp_path):
    mod = constellation("qam16")
    net = M.build("oampnet", 4, 8, layers=4)
    assert sum(p.numel() for p in net.parameters()) == 2 * 4
    g = torch.Generator().manual_seed(12)
    for hr in _channels(kind="corr", n=3, rho=0.6):
        x = mod.sample((40, 8), generator=g)
        assert ser(M.detect(net, apply(hr, x), hr, torch.full((40,), 1e-6), mod), x, mod) == 0.0
    losses = M.train_offline(net, mod, 6.0, 10.0, 3, batch=50, seed=0)
    assert all(torch.isfinite(torch.tensor(losses)))
    back, meta = M.load(M.save(net, tmp_path / "o.safetensors", mod))
    assert meta["kind"] == "oampnet" and torch.equal(back.gamma, net.gamma)


def test_next_lr_sets_the_step_size_after_the_first_channel():
    mod = constellation("qam4")
    cs = C.synthetic("iid", 4, 8, steps=1, carriers=2, seed=8, rho_f=0.9)
    _, res = M.train_online(cs.h, mod, 8.0, 12.0, first=10, next_iters=5, batch=50, layers=2, next_lr=1e-12)
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(res.states[0].values(), res.states[1].values()))
    _, res = M.train_online(cs.h, mod, 8.0, 12.0, first=10, next_iters=5, batch=50, layers=2, next_lr=1e-2)
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(res.states[0].values(), res.states[1].values()))


def test_uma_channels_from_sionna_are_seeded_and_power_controlled():
    pytest.importorskip("sionna.phy")
    a = C.make("uma", 2, 64, steps=1, carriers=3, seed=3)
    assert a.h.shape == (1, 3, 64, 2) and a.meta["model"] == "uma" and a.meta["seed"] == 3
    power = a.h.abs().pow(2).sum(-2).mean(1)  # per time step and user, over subcarriers
    assert torch.allclose(power, torch.ones_like(power), atol=1e-4)
    assert torch.equal(C.make("uma", 2, 64, steps=1, carriers=3, seed=3).h, a.h)
    with pytest.raises(ConfigError, match="64 base-station antennas"):
        C.make("uma", 2, 32)


# -- exact ML ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("modulation,snr", [("qam4", 2.0), ("qam16", 8.0)])
def test_sphere_decoder_and_sionna_ml_match_exhaustive_search(modulation, snr):
    from adasr.mimo import ml

    mod = constellation(modulation)
    hrs = _channels(n=2, users=2, antennas=4, seed=5)
    for i, hr in enumerate(hrs):
        x, y, s2 = transmit(hr, mod, 200, snr, generator=torch.Generator().manual_seed(i))
        ref = ml.exhaustive(y, hr, mod)
        stats = {}
        assert torch.equal(ml.sphere_decode(y, hr, s2, mod, stats=stats), ref)
        assert torch.equal(ml.sionna_ml(y, hr, s2, mod), ref)
        assert stats["bounded"] == 0 and stats["vectors"] == 200
        assert stats["max_nodes_seen"] <= mod.order ** 2 * 4  # a search, not an enumeration
        assert ser(ref, x, mod) > 0  # the noise is strong enough to make ML choose


def test_ml_beats_mmse_on_a_tiny_system():
    from adasr.mimo import ml

    mod = constellation("qam16")
    hrs = _channels(n=3, users=3, antennas=4, seed=2)
    e_ml = e_mmse = 0.0
    for i, hr in enumerate(hrs):
        x, y, s2 = transmit(hr, mod, 200, 12.0, generator=torch.Generator().manual_seed(i))
        e_ml += ser(ml.sphere_decode(y, hr, s2, mod), x, mod)
        e_mmse += ser(D.mmse(y, hr, s2, mod), x, mod)
    assert 0 < e_ml < 0.8 * e_mmse, (e_ml, e_mmse)


def test_sphere_decoder_node_bound_is_reported():
    from adasr.mimo import ml

    mod = constellation("qam16")
    hr = _channels(n=1, users=4, antennas=4, seed=3)[0]
    x, y, s2 = transmit(hr, mod, 100, 0.0, generator=torch.Generator().manual_seed(0))
    stats = {}
    out = ml.sphere_decode(y, hr, s2, mod, max_nodes=8, stats=stats)  # depth 8: the Babai point only
    assert stats["bounded"] > 0 and stats["max_nodes_seen"] <= 8 + 1
    assert set(out.unique().tolist()) <= set(mod.levels.tolist())
    with pytest.raises(ConfigError, match="tree depth"):
        ml.sphere_decode(y, hr, s2, mod, max_nodes=7)
    with pytest.raises(ConfigError, match="too large"):
        big = _channels(n=1, users=5, antennas=8)[0]
        _, y5, s5 = transmit(big, mod, 2, 10.0)
        ml.sionna_ml(y5, big, s5, mod)


def test_multiplication_counts_match_a_hand_computation():
    from adasr.mimo import complexity as X

    # ZF, 2 users x 4 antennas (n = 4, M = 8): per channel H^T H (4*4*8 = 128), the 4x4 inverse
    # (4^3/2 = 32), W = G^-1 H^T (128); per vector W y (4*8 = 32); 100 vectors share the channel work
    c = X.count("zf", 2, 4, 4, vectors=100)
    assert (c["per_channel"], c["per_vector"]) == (288, 32) and c["total"] == pytest.approx(34.88)
    # AMP, 1 user x 1 antenna, QAM4 (n = M = 2, m = 2): per iteration 2*2*2 + 2*(5*2+2) + 2 + 2 = 36
    assert X.count("amp", 1, 1, 4, iterations=3)["total"] == 3 * 36
    # 16 x 64 QAM16: MMSE cheapest with reuse, OAMPNet dearest (MMNet includes 9 training iterations)
    big = {d: X.count(d, 16, 64, 16, train_iters=9)["total"] for d in ("mmse", "amp", "mmnet-iid", "mmnet", "oampnet")}
    assert big["mmse"] < big["mmnet-iid"] < big["amp"] < big["mmnet"] < big["oampnet"]
    assert X.count("sphere", 2, 4, 4)["total"] is None
    with pytest.raises(ConfigError):
        X.count("sdr", 2, 4, 4)


@pytest.mark.slow
def test_cli_sweep_phi_writes_json_and_png(monkeypatch, capsys, tmp_path):
    out = tmp_path / "s.json"
    code, text, err = run_cli(monkeypatch, capsys, "mimo", "sweep-phi", "--channel", "corr", "--rho-f", "0.9",
                              "--users", "2", "--antennas", "4", "--mod", "qam4", "--snr", "10", "--phi", "0,4",
                              "--first", "20", "--carriers", "3", "--samples", "50", "--batch", "32",
                              "--layers", "2", "--fresh-every", "2", "--device", "cpu", "--json", str(out))
    assert code == 0, err

    def strict(c):  # no NaN or Infinity: the report is plain JSON
        raise AssertionError(c)

    report = json.loads(out.read_text(), parse_constant=strict)
    assert report["fresh"]["channels"] == [2] and report["fresh"]["iterations"] == 20
    assert all("ratio_to_fresh" in r and "not_above_frozen_in_every_band" in r for r in report["mmnet"])
    assert [r["phi"] for r in report["mmnet"]] == [0, 4]
    assert [r["iterations_total"] for r in report["mmnet"]] == [20, 28]
    assert report["symbols"] == 3 * 50 * 2 and "mmse" in report["baselines"]
    assert all(0 <= r["ser"] <= 1 for r in report["mmnet"]) and len(report["mmnet"][0]["ser_per_channel"]) == 3
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "phi=4" in text
    code, _, err = run_cli(monkeypatch, capsys, "mimo", "sweep-phi", "--phi", "2,x", "--json", str(tmp_path / "t.json"))
    one_line_error(code, err, 5, "--phi")
    assert not (tmp_path / "t.json").exists()


def test_detnet_trains_offline_on_a_toy_and_beats_chance(tmp_path):
    mod = constellation("qam4")
    net = M.build("detnet", 2, 4, layers=3, levels=2)
    assert sum(p.numel() for p in net.parameters()) > 1000  # a large model next to MMNet's
    losses = M.train_offline(net, mod, 8.0, 12.0, 150, batch=64, lr=3e-3, seed=0)
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), (losses[:3], losses[-3:])
    hr = _channels(n=1, users=2, antennas=4, seed=9)[0]
    x, y, s2 = transmit(hr, mod, 400, 12.0, generator=torch.Generator().manual_seed(1))
    assert ser(M.detect(net.eval(), y, hr, s2, mod), x, mod) < 0.2   # chance is 0.75
    path = M.save(net, tmp_path / "d.safetensors", mod)
    back, meta = M.load(path)
    assert meta["kind"] == "detnet" and torch.equal(M.detect(back, y, hr, s2, mod), M.detect(net, y, hr, s2, mod))
    with pytest.raises(Exception, match="PAM levels"):
        net(y, hr, s2, constellation("qam16"))
