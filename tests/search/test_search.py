"""Search: Kendall's tau, Pareto fronts, encodings, fast evaluation, the quality predictor, both
family strategies with bounded work, and the Pareto picture."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from adasr.errors import ConfigError, ModelError
from adasr.family import Family, Level, check_loads, load_name, pareto_front, pareto_ranks, parse_loads
from adasr.nn.supernet import SuperNet, subnet_cost
from adasr.search.family_search import search_family
from adasr.search.latency import MacsCostModel
from adasr.search.plot import LabelledPoint, plot_family
from adasr.search.protocols import Evaluator
from adasr.search.quality import (
    FastEvaluator,
    QualityPredictor,
    encode,
    encoding_size,
    kendall_tau,
    sample_quality_data,
)
from adasr.space import SearchSpace

TINY = SearchSpace.named("tiny")
HW = (16, 16)



class SyntheticEvaluator:
    """PSNR rising with log MACs (plus a little for the bicubic skip); counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: set[str] = set()

    def score(self, cfg) -> float:
        self.calls += 1
        self.seen.add(cfg.id)
        return 28.0 + 0.5 * math.log(subnet_cost(cfg, HW)[1]) + (0.3 if cfg.upsampler == "bic" else 0.0)


class CountingCost(MacsCostModel):
    calls = 0

    def cost(self, cfg) -> float:
        type(self).calls += 1
        return super().cost(cfg)


# -- Kendall's tau and Pareto fronts ---------------------------------------------------------------------

def test_kendall_tau_hand_computed():
    assert kendall_tau([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # pairs of y = 3 1 2 5 4 in x order: 7 concordant, 3 discordant of 10
    assert kendall_tau([1, 2, 3, 4, 5], [3, 1, 2, 5, 4]) == pytest.approx(0.4)
    # tau-b with a tie in x: 2 concordant, 1 tied pair; 2 / sqrt((3 - 1) * 3)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ConfigError):
        kendall_tau([1, 2], [1, 2, 3])


def test_dominated_levels_need_every_timing_to_agree():
    from types import SimpleNamespace

    from adasr.build import _dominated

    def lv(cid, psnr):
        return SimpleNamespace(config=SimpleNamespace(id=cid), psnr=psnr)

    family = [lv("a", 30.0), lv("b", 31.0), lv("c", 30.5)]
    idle = {"a": 0.02, "b": 0.01, "c": 0.03}  # by this one timing, b beats both a and c
    assert _dominated(family, [idle]) == {"a", "c"}
    int8 = {"a": 0.005, "b": 0.008, "c": 0.009}  # a second timing: a is the fastest, c still loses to b
    assert _dominated(family, [idle, int8]) == {"c"}
    same = {"a": 0.01, "b": 0.01, "c": 0.01}
    assert _dominated(family, [same]) == {"a", "c"}  # equal speed: the better PSNR wins
    assert _dominated([lv("a", 30.0), lv("b", 30.0)], [same]) == set()  # a tie drops neither


def test_timings_of_a_profile():
    from adasr.build import _timings

    loaded = {"levels": {"0.50": {"measured": {"a": {"median_s": 0.2}}},
                         "0.25": {"measured": {"a": {"median_s": 0.1}}}}}
    assert _timings(loaded, ["a"]) == [{"a": 0.1}]  # no idle column: the lightest load's
    both = {"levels": {"0.00": {"measured": {"a": {"median_s": 0.05}, "b": {"median_s": 0.07}}}},
            "int8": {"levels": {"a": {"fp32_s": 0.04, "int8_s": 0.02}, "b": {"fp32_s": 0.06, "int8_s": 0.03}}}}
    assert _timings(both, ["a", "b"]) == [{"a": 0.05, "b": 0.07}, {"a": 0.04, "b": 0.06}, {"a": 0.02, "b": 0.03}]
    partial = {**both, "int8": {"levels": {"a": {"fp32_s": 0.04, "int8_s": 0.02}}}}
    assert _timings(partial, ["a", "b"]) == [{"a": 0.05, "b": 0.07}]  # int8 section must cover every level


def test_pareto_front_on_hand_made_points():
    points = [(1, 30), (2, 29), (2, 31), (3, 31), (4, 33), (0.5, 28), (4, 32)]
    assert pareto_front(points) == [5, 0, 2, 4]
    assert pareto_front([(1, 1), (1, 1), (2, 0)]) == [0]
    assert pareto_front([]) == []
    assert pareto_ranks(points) == [0, 1, 0, 1, 0, 0, 1]


# -- encoding, fast evaluator, predictor --------------------------------------------------------------

def test_encoding_is_one_hot_per_dimension():
    rng = random.Random(0)
    cfgs = [TINY.sample(rng) for _ in range(30)]
    codes = [encode(c, TINY) for c in cfgs]
    assert all(v.shape == (encoding_size(TINY),) and v.dtype == torch.float32 for v in codes)
    assert all(float(v.sum()) == 6 + c.depth for v, c in zip(codes, cfgs))
    distinct = {c.id for c in cfgs}
    assert len({tuple(v.tolist()) for v in codes}) == len(distinct)
    with pytest.raises(ConfigError):
        encode(SearchSpace.named("base-x2").largest(), TINY)


@pytest.fixture(scope="module")
def net() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(TINY).eval()


def test_fast_evaluator_is_deterministic(net, small_pairs):
    ev = FastEvaluator(net, small_pairs, 2, crops=2, crop_size=16, seed=3)
    assert isinstance(ev, Evaluator)
    cfg = TINY.smallest()
    first = ev.score(cfg)
    assert ev.score(cfg) == first and ev.evaluations == 1
    again = FastEvaluator(net, small_pairs, 2, crops=2, crop_size=16, seed=3)
    assert again.score(cfg) == first and math.isfinite(first)
    assert again.score_module(net.extract(cfg)) == pytest.approx(first, abs=1e-3)
    assert [c.lr.shape for c in ev.crops] == [(16, 16, 3)] * 2


class LinearEvaluator:
    def __init__(self, dim: int) -> None:
        self.w = torch.randn(dim, generator=torch.Generator().manual_seed(7))

    def score(self, cfg) -> float:
        return 30.0 + float(encode(cfg, TINY) @ self.w)


@pytest.mark.slow
def test_quality_predictor_learns_a_linear_target(tmp_path):
    cfgs, psnrs = sample_quality_data(LinearEvaluator(encoding_size(TINY)), TINY, 200, seed=1)
    train, test = slice(0, 150), slice(150, None)
    model = QualityPredictor(TINY, hidden=(32, 32), seed=0)
    losses = model.fit(cfgs[train], psnrs[train], epochs=30, lr=3e-3, batch_size=32, seed=0)
    assert len(losses) == 30 and losses[-1] < losses[0]
    tau = model.tau(cfgs[test], psnrs[test])
    assert -1.0 <= tau <= 1.0 and tau > 0.6
    # safetensors + JSON round trip
    model.save(tmp_path / "qp.safetensors", info={"note": "test"})
    loaded = QualityPredictor.load(tmp_path / "qp.safetensors")
    assert loaded.hidden == (32, 32) and loaded.predict(cfgs[test]) == pytest.approx(model.predict(cfgs[test]))
    assert isinstance(loaded, Evaluator) and loaded.score(cfgs[0]) == pytest.approx(model.score(cfgs[0]))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ModelError):
        QualityPredictor.load(bad)


def test_quality_predictor_fit_is_seeded():
    cfgs, psnrs = sample_quality_data(SyntheticEvaluator(), TINY, 20, seed=2)
    a = QualityPredictor(TINY, hidden=(8,), seed=5)
    b = QualityPredictor(TINY, hidden=(8,), seed=5)
    a.fit(cfgs, psnrs, epochs=5, seed=1)
    b.fit(cfgs, psnrs, epochs=5, seed=1)
    assert a.predict(cfgs) == b.predict(cfgs)


# -- family search ----------------------------------------------------------------------------------------

def _check_family(family: Family, evaluator: SyntheticEvaluator, bound: int) -> None:
    assert len(family) >= 2
    costs = [lv.latency_s["0.00"] for lv in family]
    assert costs == sorted(costs)
    ids = [lv.config.id for lv in family]
    assert len(set(ids)) == len(ids)
    assert all(lv.config in TINY for lv in family)
    assert all(lv.params > 0 and lv.macs > 0 for lv in family)
    # each config evaluated at most once, within the parameters' bound
    assert evaluator.calls == len(evaluator.seen) == family.search["evaluations"] <= bound
    assert Family.from_dict(json.loads(json.dumps(family.to_dict()))) == family


def test_dysr_search_bounded_and_ordered():
    ev, cost = SyntheticEvaluator(), CountingCost(HW)
    CountingCost.calls = 0
    family = search_family(None, TINY, ev, cost, "dysr", seed=1, per_depth=6, bins=3, per_bin=2)
    _check_family(family, ev, bound=6 * len(TINY.depths) + 2)
    assert CountingCost.calls == family.search["cost_calls"] <= 6 * len(TINY.depths) + 2
    assert len(family) <= 3 * 2
    assert family[0].config == TINY.smallest()  # keep_fastest: the cheapest level is there
    again = search_family(None, TINY, SyntheticEvaluator(), MacsCostModel(HW), "dysr", seed=1, per_depth=6,
                          bins=3, per_bin=2)
    assert again == family


def test_dysr_fps_min_discards_slow_configs():
    cost = MacsCostModel(HW)
    limit = 1.0 / cost.cost(TINY.largest()) * 1.5
    family = search_family(None, TINY, SyntheticEvaluator(), cost, "dysr", seed=0, per_depth=5, fps_min=limit)
    assert all(1.0 / lv.latency_s["0.00"] >= limit for lv in family)


def test_ofa_search_bounded_and_pareto():
    ev = SyntheticEvaluator()
    params = dict(targets=3, itr_n=5, itr_max=20, population=6, generations=2)
    family = search_family(None, TINY, ev, MacsCostModel(HW), "ofa", seed=2, **params)
    _check_family(family, ev, bound=2 + 3 * 20 + 6 + 2 * 6)
    points = [(lv.latency_s["0.00"], lv.psnr) for lv in family]
    assert pareto_front(points) == list(range(len(points)))  # the family is its own front
    thin = search_family(None, TINY, SyntheticEvaluator(), MacsCostModel(HW), "ofa", seed=2, max_levels=3, **params)
    assert len(thin) == 3 and thin[0] == family[0] and thin[-1] == family[-1]


def test_fixed_strategy_keeps_the_given_levels_and_refuses_bad_ones():

    rng = random.Random(3)
    given = list(dict.fromkeys(TINY.sample(rng).id for _ in range(20)))[:4]
    ev = SyntheticEvaluator()
    family = search_family(None, TINY, ev, MacsCostModel(HW), "fixed", levels=given[::-1])
    assert sorted(lv.config.id for lv in family) == sorted(given)
    assert ev.calls == len(given) == family.search["evaluations"]
    costs = [lv.latency_s["0.00"] for lv in family]
    assert costs == sorted(costs)
    for bad in ([], [given[0], given[0]], ["x9-nonsense"], "not-a-list"):
        with pytest.raises(ConfigError):
            search_family(None, TINY, SyntheticEvaluator(), MacsCostModel(HW), "fixed", levels=bad)


def test_search_with_fast_evaluator_and_extra_levels(net, small_pairs):
    ev = FastEvaluator(net, small_pairs, 2, crops=2, crop_size=16)
    family = search_family(net, None, ev, MacsCostModel(HW), "dysr", seed=0, per_depth=2, bins=2, per_bin=1,
                           latency_models={0.5: MacsCostModel(HW, macs_per_s=1e10)})
    assert family.lr_hw == HW and len(family) >= 1
    assert all(set(lv.latency_s) == {"0.00", "0.50"} and lv.latency_s["0.50"] > lv.latency_s["0.00"] for lv in family)
    assert ev.evaluations <= 2 * len(TINY.depths) + 2


def test_search_refuses_bad_requests():
    ev, cost = SyntheticEvaluator(), MacsCostModel(HW)
    with pytest.raises(ConfigError, match="strategy"):
        search_family(None, TINY, ev, cost, "grid")
    with pytest.raises(ConfigError, match="no parameter"):
        search_family(None, TINY, ev, cost, "dysr", population=3)
    with pytest.raises(ConfigError, match="per_bin"):
        search_family(None, TINY, ev, cost, "dysr", per_bin=0)
    with pytest.raises(ConfigError, match="space"):
        search_family(None, None, ev, cost)


def test_family_json_and_order():
    a, b = TINY.smallest(), TINY.largest()
    levels = (Level(b, 31.0, 10, 100, {"0.00": 0.2}), Level(a, 30.0, 5, 50, {"0.00": 0.1}, {"0.00": 0.12}))
    family = Family(levels, 2, HW)
    assert family.configs == [a, b]
    assert family[0].seconds(0.0) == 0.12 and family[0].seconds(0.0, measured=False) == 0.1
    assert family[1].fps("0.00") == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="duplicate"):
        Family(levels + (levels[0],), 2, HW)
    data = family.to_dict()
    with pytest.raises(ModelError, match="schema version"):
        Family.from_dict({**data, "schema_version": 2})
    with pytest.raises(ModelError):
        Family.from_dict({**data, "levels": [{"config": "nonsense"}]})
    assert load_name(0.5) == "0.50" and load_name("0") == "0.00"


@pytest.mark.slow
def test_plot_family_writes_png(tmp_path):
    family = search_family(None, TINY, SyntheticEvaluator(), MacsCostModel(HW), "dysr", seed=0, per_depth=3)
    path = tmp_path / "pareto.png"
    plot_family(path, family, [LabelledPoint("bicubic", 1e5, 30.0), {"label": "espcn", "fps": 5e3, "psnr": 33.0},
                               ("fsrcnn", 2e3, 33.5)])
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["pareto.png"]  # no temporary left


def test_load_shares_are_checked_once_for_cli_and_library():
    assert parse_loads("0,0.5") == (0.0, 0.5) and check_loads([1, 0.25]) == (1.0, 0.25)
    for text, why in (("0,1.5", "in \\[0, 1\\]"), ("0,x", "numbers"), ("0.5,0.50", "duplicate"), ("nan", "in \\[0, 1")):
        with pytest.raises(ConfigError, match=why):
            parse_loads(text)
    with pytest.raises(ConfigError, match="1 to 16"):
        parse_loads(",".join(["0.1"] * 17))
    with pytest.raises(ConfigError, match="at least one"):
        check_loads([], "resource levels")


def test_min_step_keeps_a_ladder_whose_steps_are_real():
    # levels fastest first: a level less than min_step above the last one kept is dropped; the
    # fastest always stays, and a dropped level does not move the bar
    from types import SimpleNamespace

    from adasr.build import _small_steps

    def lv(name, psnr):
        return SimpleNamespace(config=SimpleNamespace(id=name), psnr=psnr)

    family = [lv("a", 30.00), lv("b", 30.01), lv("c", 30.03), lv("d", 30.035), lv("e", 30.10)]
    assert _small_steps(family, set(), 0.02) == {"b", "d"}
    assert _small_steps(family, {"c"}, 0.02) == {"b"}  # with c gone (dominated), d is measured against a
    assert _small_steps(family, set(), 0.0) == set()
