"""DLSR: the search space, the MiLeNAS search, genotypes (derivation, validation), CLI."""

from __future__ import annotations

import json

import pytest
import torch

from adasr.errors import ModelError
from adasr.images import read_image, write_image
from adasr.modelfile import ModelSpec, load_model, save_model
from adasr.nn.dlsr import OPS, DLSRSearchNet, Genotype, as_genotype, chain_genotype, op_params
from adasr.nn.registry import build_model, resolve_args
from adasr.search.dlsr_search import DLSRSearch, DLSRSearchConfig, read_trajectory
from tests.cli.test_cli import _one_line_error, run_cli


def _cfg(**kw) -> DLSRSearchConfig:
    base = dict(scale=2, train_data=("unused",), width=8, cells=2, patch=8, batch_size=2, steps=4,
                warmup_steps=1, snapshot_steps=(2,), log_every=1, ckpt_every=2, seed=3)
    base.update(kw)
    return DLSRSearchConfig(**base)


def _search(tmp_path, pairs, name="run", **kw) -> DLSRSearch:
    return DLSRSearch(_cfg(**kw), tmp_path / name, device="cpu", train_pairs=pairs[:2], val_pairs=pairs[2:])


def test_table_one_parameter_counts():
    # DLSR Table I at 50 channels (weights; our ops add their biases): conv 2.5K / 22.5K / 62.5K /
    # 122.5K, separable 5.9K / 7.5K / 9.9K, dilated 2.95K / 3.75K.
    expect = {"c1": 2500, "c3": 22500, "c5": 62500, "c7": 122500, "s3": 5900, "s5": 7500, "s7": 9900,
              "d3": 2950, "d5": 3750}
    biases = {"c": 50, "s": 100, "d": 50}
    assert {o: op_params(o, 50) - biases[o[0]] for o in OPS} == expect


def test_search_exports_a_genotype_that_builds_runs_and_saves(tmp_path, small_pairs):
    search = _search(tmp_path, small_pairs)
    state = search.run()
    run = tmp_path / "run"
    assert state.step == 4 and (run / "genotype-step2.json").is_file() and state.snapshots == ["genotype-step2.json"]
    assert [r["step"] for r in read_trajectory(run)["records"]] == [0, 1, 2, 3, 4]
    genotype = as_genotype(str(run / "genotype.json"))
    best = search.net.alpha.argmax(dim=-1)
    assert [list(c.ops) for c in genotype.cells] == [[OPS[k] for k in row] for row in best.tolist()]
    assert genotype.cells[0].inputs == (0,) and genotype.cells[1].inputs == (0, 1)  # cell 2: top-2 of 2
    args = resolve_args("dlsr", {"scale": 2, "genotype": str(run / "genotype.json")})
    assert args["genotype"]["kind"] == "adasr.dlsr-genotype"  # inlined: the model file is self-contained
    net = build_model("dlsr", **args).eval()
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 18, 22) and torch.isfinite(y).all()
    save_model(tmp_path / "m.safetensors", net, ModelSpec("dlsr", args, 2))
    loaded, spec = load_model(tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(x), y)
    assert spec.args["genotype"] == args["genotype"]


def test_param_loss_gradient_reaches_alpha_and_lowers_heavy_ops(tmp_path, small_pairs):
    net = DLSRSearchNet(2, width=8, cells=2, seed=0)
    net.param_loss().backward()
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0
    # The search itself with L_P alone (no L1, no HFEN): dL_P/dalpha_o = softmax_o * (p_o - mean p),
    # so the ops heavier than the (softmax-weighted, here about uniform) mean fall, the rest rise.
    search = _search(tmp_path, small_pairs, l1_weight=0.0, mu=0.0, gamma=1.0, warmup_steps=0, steps=3, arch_lr=1e-2)
    before = search.net.alpha.detach().clone()
    search.run()
    delta = search.net.alpha.detach() - before
    share = search.net.op_share
    heavy = share > share.mean()
    assert heavy[OPS.index("c7")] and heavy[OPS.index("c5")] and not heavy[OPS.index("c1")]
    assert (delta[..., heavy] < 0).all() and (delta[..., ~heavy] > 0).all()
    derived = search.genotype()
    assert all(not heavy[OPS.index(op)] for cell in derived.cells for op in cell.ops)


@pytest.mark.slow
def test_milenas_update_uses_the_val_split_through_lambda(tmp_path, small_pairs):
    other_val = [small_pairs[0]]
    grads = {}
    for lam in (0.0, 1.0):
        for name, val in (("val", small_pairs[2:]), ("other", other_val)):
            s = DLSRSearch(_cfg(lam=lam, warmup_steps=0), tmp_path / f"{lam}-{name}", device="cpu",
                           train_pairs=small_pairs[:2], val_pairs=val)
            _, loss_val, arch = s.gradients(0)
            theta = [p.grad.clone() for p in s.net.weight_parameters() if p.grad is not None]
            grads[lam, name] = (arch, theta, loss_val)
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # noqa: E731
    assert grads[0.0, "val"][2] != grads[0.0, "other"][2]  # the val batches differ
    assert same(grads[0.0, "val"][0], grads[0.0, "other"][0])  # lambda 0: D_valid plays no part
    assert not same(grads[1.0, "val"][0], grads[1.0, "other"][0])  # lambda 1: it does
    assert not same(grads[0.0, "val"][0], grads[1.0, "val"][0])
    assert same(grads[1.0, "val"][1], grads[1.0, "other"][1])  # theta: train split only (Eq. 5)
    # during the warm-up alpha and beta do not move
    s = _search(tmp_path, small_pairs, name="warm", warmup_steps=2, steps=2)
    before = [p.detach().clone() for p in s.net.arch_parameters()]
    s.run()
    assert same(before, [p.detach() for p in s.net.arch_parameters()])


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, small_pairs):
    from adasr.train.loop import TrainingInterrupted

    full = _search(tmp_path, small_pairs, name="full")
    full.run()

    def interrupt(kind, data):
        if kind == "step" and data["step"] == 2:
            raise KeyboardInterrupt

    cut = DLSRSearch(_cfg(), tmp_path / "cut", device="cpu", train_pairs=small_pairs[:2], val_pairs=small_pairs[2:],
                     on_event=interrupt)
    with pytest.raises(TrainingInterrupted):
        cut.run()
    resumed = DLSRSearch(_cfg(), tmp_path / "cut", device="cpu", resume=True, train_pairs=small_pairs[:2],
                         val_pairs=small_pairs[2:])
    assert resumed.state.step == 2
    resumed.run()
    a, b = full.net.state_dict(), resumed.net.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert read_trajectory(tmp_path / "full") == read_trajectory(tmp_path / "cut")
    assert json.loads((tmp_path / "full" / "genotype.json").read_text()) == \
        json.loads((tmp_path / "cut" / "genotype.json").read_text())
    from adasr.errors import ConfigError

    with pytest.raises(ConfigError, match="width"):
        DLSRSearch(_cfg(width=12), tmp_path / "cut", device="cpu", resume=True, train_pairs=small_pairs[:2],
                   val_pairs=small_pairs[2:])


def test_dlsr_b_is_a_fixed_chain(tmp_path, small_pairs):
    search = _search(tmp_path, small_pairs, network_level=False, cells=3, steps=2)
    assert len(search.net.betas) == 0 and len(search.net.aggregate) == 0
    search.run()
    genotype = search.genotype()
    assert not genotype.network_level and [c.inputs for c in genotype.cells] == [(0,), (1,), (2,)]
    net = build_model("dlsr", scale=2, genotype=genotype.to_dict())
    assert all(isinstance(a, torch.nn.Identity) for a in net.aggregate)
    chain = chain_genotype([("s5", "s7", "c1")] * 2, width=8)
    net = build_model("dlsr", scale=3, genotype=chain.to_dict(), width=6)
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 24, 24)


def _good() -> dict:
    return Genotype(8, chain_genotype([("c1", "s3", "d5")] * 3, 8).cells).to_dict()


def _bad_genotypes() -> dict[str, object]:
    def edit(fn):
        g = _good()
        fn(g)
        return g

    return {
        "unknown operation": edit(lambda g: g["cells"][0]["ops"].__setitem__(1, "c9")),
        "inputs must be distinct indices": edit(lambda g: g["cells"][1].__setitem__("inputs", [0, 5])),
        "width": edit(lambda g: g.__setitem__("width", 10**9)),
        "cells must be a list": edit(lambda g: g.__setitem__("cells", g["cells"] * 20)),
        "kind": edit(lambda g: g.__setitem__("kind", "something-else")),
        "schema_version": edit(lambda g: g.__setitem__("schema_version", 99)),
        "ops must list": edit(lambda g: g["cells"][2].__setitem__("ops", ["c1"])),
        "inputs must list": edit(lambda g: g["cells"][0].__setitem__("inputs", [])),
        "unknown field": edit(lambda g: g.__setitem__("extra", 1)),
        "not a JSON object": [1, 2, 3],
    }


def test_hostile_genotypes_are_refused_with_one_line(tmp_path):
    for why, data in _bad_genotypes().items():
        with pytest.raises(ModelError, match=why) as info:
            as_genotype(data)
        assert "\n" not in str(info.value)
    for text, why in (("{not json", "not valid JSON"), ("[" * 100_000, "too deeply"),
                      ("{" + " " * (2 << 20) + "}", "characters")):
        with pytest.raises(ModelError, match=why):
            as_genotype(text)
    assert as_genotype(_good()).width == 8


@pytest.mark.slow
def test_cli_refuses_damaged_genotype_and_retrains_a_good_one(monkeypatch, capsys, tmp_path, data_root):
    folder = tmp_path / "hr"
    folder.mkdir()
    for p in sorted((data_root / "benchmarks" / "Set5").glob("*.png"))[:2]:
        write_image(folder / p.name, read_image(p).rgb[:48, :48])
    common = ["--data", folder, "--val", "none", "--steps", "2", "--patch", "8", "--batch-size", "2", "--quiet"]
    cases = {name: json.dumps(data) for name, data in _bad_genotypes().items()}
    cases["not valid JSON"] = '{"kind": "adasr.dlsr-genotype", "cells": [ '
    for i, (why, text) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(text)
        code, _, err = run_cli(monkeypatch, capsys, "train", "--arch", "dlsr", "--arg", f"genotype={bad}",
                               "--out", tmp_path / f"r{i}", *common)
        _one_line_error(code, err, why)
        assert code == 4 and not (tmp_path / f"r{i}").exists()
    code, _, err = run_cli(monkeypatch, capsys, "train", "--arch", "dlsr",
                           "--arg", f"genotype={tmp_path / 'nope.json'}",
                           "--out", tmp_path / "rn", *common)
    _one_line_error(code, err, "not found")
    assert code == 2
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_good()))
    code, out, err = run_cli(monkeypatch, capsys, "train", "--arch", "dlsr", "--arg", f"genotype={good}",
                             "--out", tmp_path / "ok", *common)
    assert code == 0, err
    model, spec = load_model(tmp_path / "ok" / "model.safetensors")
    assert spec.arch == "dlsr" and spec.args["genotype"] == as_genotype(_good()).to_dict()


@pytest.mark.slow
def test_cli_search_dlsr_then_resume_and_plot(monkeypatch, capsys, tmp_path, data_root):
    folder = tmp_path / "hr"
    folder.mkdir()
    for p in sorted((data_root / "benchmarks" / "Set5").glob("*.png"))[:2]:
        write_image(folder / p.name, read_image(p).rgb[:48, :48])
    run = tmp_path / "dlsr"
    args = ["search-dlsr", "--scale", "2", "--out", run, "--data", folder, "--width", "8", "--cells", "2",
            "--patch", "8", "--batch-size", "2", "--device", "cpu", "--quiet"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--steps", "2", "--no-plot")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"genotype: {run / 'genotype.json'}"
    assert not (run / "trajectory.png").exists()
    code, out, err = run_cli(monkeypatch, capsys, *args, "--steps", "3", "--resume")
    assert code == 0, err
    assert "searched 3 steps" in out and (run / "trajectory.png").stat().st_size > 1000
    code, _, err = run_cli(monkeypatch, capsys, *args, "--steps", "3", "--resume", "--width", "12")
    _one_line_error(code, err, "width")
    code, out, err = run_cli(monkeypatch, capsys, "plot-dlsr", run, "--out", tmp_path / "t.png")
    assert code == 0 and (tmp_path / "t.png").is_file(), err
    code, _, err = run_cli(monkeypatch, capsys, *args, "--steps", "2")  # the folder already holds a search
    _one_line_error(code, err, "--resume")


def test_paper_genotypes_cost_what_the_paper_reports():
    # DLSR's searched cell (Fig. 4: conv 1x1, sep 7x7, sep 5x5) with top-2 inputs at 48 channels:
    # the paper reports 322K params at x2 (68.1 G multi-adds at 720p); DLSR-S (18 channels) 56K;
    # RFDN (3x3 convs, a chain) 534K. Shapes only: nothing is trained here.
    from adasr.nn.cost import count_params
    from adasr.nn.dlsr import CellGene

    inputs = [(0,), (0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    dlsr = Genotype(48, tuple(CellGene(("c1", "s7", "s5"), i) for i in inputs)).to_dict()
    for width, paper in ((48, 322_000), (18, 56_000)):
        params = count_params(build_model("dlsr", scale=2, genotype=dlsr, width=width))
        assert abs(params - paper) / paper < 0.05, (width, params)
    rfdn = count_params(build_model("dlsr", scale=2, genotype=chain_genotype([("c3",) * 3] * 6, 48).to_dict()))
    assert abs(rfdn - 534_000) / 534_000 < 0.05, rfdn
