"""Profiling: frame latency, channels_last, background CPU load, per-op latency tables."""

from __future__ import annotations

import json
import random
import re
import time

import numpy as np
import psutil
import pytest
import torch

from adasr.cpuload import CpuLoad
from adasr.errors import ConfigError, ModelError
from adasr.nn.supernet import SuperNet
from adasr.runtime.profile import LatencySample, device_key, measure_latency
from adasr.search.latency import (
    LatencyEntry,
    LatencyTable,
    MacsCostModel,
    build_latency_table,
    config_units,
    median_abs_error,
    space_units,
)
from adasr.search.protocols import CostModel
from adasr.space import SearchSpace

TINY = SearchSpace.named("tiny")
HW = (16, 16)



@pytest.fixture(scope="module")
def net() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(TINY).eval()


# -- frame latency ------------------------------------------------------------------------------------

def test_measure_latency_of_a_subnetwork(net):
    cfg = TINY.smallest()
    before = net.active
    sample = measure_latency(net, cfg, HW, warmup=1, repeats=3)
    assert isinstance(sample, LatencySample)
    assert sample.repeats == 3 and sample.threads == 1 and sample.device == "cpu"
    assert 0 < sample.median_s <= sample.p90_s + 1e-12 and sample.mean_s > 0 and sample.std_s >= 0
    assert net.active == before  # measuring a config does not switch the supernet
    assert LatencySample.from_dict(json.loads(json.dumps(sample.to_dict()))) == sample


def test_measure_latency_plain_module_and_threads(net):
    sub = net.extract(TINY.largest())
    sample = measure_latency(sub, None, HW, warmup=0, repeats=2, threads=1, channels_last=False)
    assert sample.repeats == 2 and sample.median_s > 0
    assert torch.get_num_threads() == 1


def test_measure_latency_refuses_bad_requests(net):
    with pytest.raises(ConfigError, match="supernet"):
        measure_latency(net.extract(TINY.smallest()), TINY.smallest(), HW, repeats=1)
    with pytest.raises(ConfigError, match="height, width"):
        measure_latency(net, None, (16,), repeats=1)
    with pytest.raises(ConfigError, match="repeats"):
        measure_latency(net, None, HW, repeats=0)


def test_supernet_runs_channels_last_input(net):
    rng = random.Random(3)
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(2))
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for cfg in [TINY.smallest(), TINY.largest()] + [TINY.sample(rng) for _ in range(4)]:
            torch.testing.assert_close(net(xc, cfg=cfg), net(x, cfg=cfg), rtol=1e-5, atol=1e-5)


def test_device_key_names_cpu_and_threads():
    key = device_key("cpu", 3)
    assert re.fullmatch(r"cpu-[a-z0-9-]+-3t", key), key


# -- background CPU load ------------------------------------------------------------------------------

def _cpu(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _assert_gone(pids: list[int]) -> None:
    children = {c.pid for c in psutil.Process().children(recursive=True)}
    assert not children & set(pids)
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_cpu_load_starts_changes_share_and_stops():
    with CpuLoad(0.5, workers=2) as load:
        pids = load.pids
        assert len(pids) == 2 and load.running and load.share == 0.5
        procs = [psutil.Process(p) for p in pids]
        start = _cpu(procs)
        time.sleep(0.5)
        busy = _cpu(procs) - start
        assert busy > 0.05  # two workers at half duty for 0.5 s: ~0.5 s CPU when uncontended
        load.set_share(0.0)
        assert load.share == 0.0
        time.sleep(0.05)
        start = _cpu(procs)
        time.sleep(0.3)
        assert _cpu(procs) - start < busy
    assert not load.running and load.pids == []
    _assert_gone(pids)


def test_cpu_load_stops_on_exception_and_validates():
    with pytest.raises(RuntimeError, match="boom"):
        with CpuLoad(0.2, workers=1) as load:
            pids = load.pids
            raise RuntimeError("boom")
    _assert_gone(pids)
    with pytest.raises(ConfigError):
        CpuLoad(1.5)
    with pytest.raises(ConfigError):
        CpuLoad(0.5, workers=0)
    load = CpuLoad(0.1, workers=1)
    with pytest.raises(ConfigError):
        load.set_share(-0.1)
    load.stop()  # never started: a no-op


# -- latency table --------------------------------------------------------------------------------------

def test_units_cover_configs_and_space():
    cfg = TINY.largest()
    units = config_units(cfg, HW)
    assert len(units) == cfg.depth + 3
    assert units[0].key == "head-input:16x16x3-output:16-kernel:3"
    every = {u.key for u in space_units(TINY, HW)}
    rng = random.Random(0)
    for c in [TINY.sample(rng) for _ in range(20)]:
        assert {u.key for u in config_units(c, HW)} <= every


def test_latency_entry_merge_matches_pooled_statistics():
    a, b = [1.0, 2.0, 4.0], [3.0, 5.0]
    merged = LatencyEntry.of(a).merge(LatencyEntry.of(b))
    pooled = LatencyEntry.of(a + b)
    assert merged.count == 5
    assert merged.mean == pytest.approx(pooled.mean) and merged.std == pytest.approx(pooled.std)


def test_latency_table_build_predict_round_trip(net, tmp_path):
    rng = random.Random(1)
    small, large = TINY.smallest(), TINY.largest()
    cfgs = [small, large] + [TINY.sample(rng) for _ in range(3)]
    table = build_latency_table(supernet=net, configs=cfgs, lr_hw=HW, repeats=3, warmup=1, device_label="test-cpu")
    model = table.cost_model(HW)
    assert isinstance(model, CostModel)
    costs = [model.cost(c) for c in cfgs]
    assert all(c > 0 for c in costs)
    assert table.predict(large, HW, 0.0) > table.predict(small, HW, 0.0)
    # JSON round trip, in memory and through a file
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table and again.predict(large, HW) == table.predict(large, HW)
    table.save(tmp_path / "lut.json")
    assert LatencyTable.load(tmp_path / "lut.json") == table
    entry = next(iter(table.to_dict()["tables"]["test-cpu"]["0.00"].values()))
    assert set(entry) == {"count", "mean", "std"} and entry["count"] == 3
    # a config with ops the table lacks, a level it lacks
    missing = next(c for c in (TINY.sample(rng) for _ in range(200))
                   if not {u.key for u in config_units(c, HW)} <= set(table.keys()))
    with pytest.raises(ModelError, match="no entry"):
        table.predict(missing, HW)
    with pytest.raises(ModelError, match="resource level"):
        table.predict(small, HW, 0.5)
    # error against measurement, absolute and relative; a calibrated copy
    measured = [measure_latency(net, c, HW, warmup=1, repeats=3).median_s for c in cfgs]
    err = median_abs_error(model, cfgs, measured)
    rel = median_abs_error(model, cfgs, {c.id: m for c, m in zip(cfgs, measured)}, relative=True)
    assert err >= 0 and np.isfinite(err) and rel >= 0
    calibrated = model.calibrated(cfgs, measured)
    assert all(np.isfinite(calibrated.cost(c)) for c in cfgs)


def test_static_table_and_bad_json():
    table = build_latency_table(TINY, HW, configs=[TINY.smallest()], repeats=2, warmup=0, device_label="x")
    assert len(table) == 4 and table.devices() == ["x"] and table.loads() == ["0.00"]
    data = table.to_dict()
    with pytest.raises(ModelError, match="schema version"):
        LatencyTable.from_dict({**data, "schema_version": 99})
    data["tables"]["x"]["0.00"][next(iter(data["tables"]["x"]["0.00"]))] = {"count": 1}
    with pytest.raises(ModelError):
        LatencyTable.from_dict(data)


def test_macs_cost_model_is_monotone():
    model = MacsCostModel(HW)
    assert 0 < model.cost(TINY.smallest()) < model.cost(TINY.largest())
