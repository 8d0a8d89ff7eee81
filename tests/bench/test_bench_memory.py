"""Memory accounting: measured extraction sizes agree with the analytic count."""

from __future__ import annotations

from adasr.bench.memory import memory_report
from adasr.nn.supernet import SuperNet, spread_configs
from adasr.space import SearchSpace


def test_memory_report_measures_what_cost_predicts():
    rep = memory_report("tiny", n_levels=5)
    space = SearchSpace.named("tiny")
    cfgs = spread_configs(space, 5)
    assert rep.levels == [c.id for c in cfgs] and len(set(rep.levels)) == 5
    net = SuperNet(space)
    assert rep.assembled_bytes == net.assembled_bytes(cfgs)
    assert rep.supernet_bytes == net.supernet_bytes()
    assert rep.largest_bytes < rep.supernet_bytes


def test_base_space_shares_weights():
    rep = memory_report("base-x2", n_levels=10)
    assert rep.saving > 0.3  # one supernet is well under the ten separate levels
