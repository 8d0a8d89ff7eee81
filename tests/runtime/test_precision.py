"""Which levels run in int8: the rule on a profile's int8 entry, the package's precision field
(old packages load as fp32), and an engine that quantizes only the levels the rule picks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adasr.errors import ConfigError, ModelError
from adasr.family import Family, Level
from adasr.metrics import psnr
from adasr.nn.supernet import subnet_cost
from adasr.package import PROFILE_KIND, PROFILE_SCHEMA_VERSION, load_package, save_package
from adasr.runtime.engine import Engine
from adasr.runtime.int8_rule import int8_choice, int8_timed
from adasr.runtime.precision import int8_levels, section_from_bench
from adasr.space import SearchSpace
from adasr.timing import LatencySample, device_key
from tests.helpers import make_net

SPACE = SearchSpace.named("lite-x2")
HW = (16, 16)


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    small = g.random((h // 4, w // 4, 3))
    return (np.kron(small, np.ones((4, 4, 1))) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def net():
    net = make_net(SPACE).eval()
    for p in net.parameters():
        p.data.mul_(0.3)
    return net


@pytest.fixture(scope="module")
def family() -> Family:
    cfgs = [SPACE.smallest(), SPACE.largest()]
    return Family(tuple(Level(c, 30.0 + i, *subnet_cost(c, HW), {"0.00": 0.01 * (i + 1)})
                        for i, c in enumerate(cfgs)), 2, HW)


def _section(family: Family, entries: list[tuple[float, float, float] | None], tol: float = 0.05) -> dict:
    levels = {lv.config.id: {"fp32_s": e[0], "int8_s": e[1], "psnr_change_db": e[2]}
              for lv, e in zip(family, entries) if e is not None}
    return {"tolerance_db": tol, "set": "Set5", "levels": levels}


def _profile(family: Family, int8: dict | None) -> dict:
    sample = LatencySample(0.01, 0.01, 0.01, 0.0, 1, 1, "cpu").to_dict()
    profile = {"kind": PROFILE_KIND, "schema_version": PROFILE_SCHEMA_VERSION, "device": device_key(),
               "levels": {"0.00": {"share": 0.0, "measured": {lv.config.id: sample for lv in family}}}}
    if int8 is not None:
        profile["int8"] = int8
    return profile


def test_the_rule_needs_faster_and_within_tolerance(family):
    a, b = family[0].config.id, family[1].config.id
    assert a != b
    # L0 faster and 0.02 dB lost: int8; L1 faster but 0.08 dB lost: float
    assert int8_choice(family, _section(family, [(0.02, 0.01, -0.02), (0.04, 0.02, -0.08)])) == [0]
    assert int8_choice(family, _section(family, [(0.02, 0.01, -0.02), (0.04, 0.02, -0.08)]), 0.1) == [0, 1]
    # slower in int8 (even lossless): float; a level without an entry: float
    assert int8_choice(family, _section(family, [(0.01, 0.02, 0.0), None])) == []
    assert int8_choice(family, _section(family, [None, (0.04, 0.02, 0.01)])) == [1]
    assert int8_choice(family, None) == [] and int8_choice(family, {}) == []
    with pytest.raises(ConfigError, match="tolerance_db"):
        int8_choice(family, {"levels": {}})
    with pytest.raises(ConfigError, match="int8_s"):
        int8_choice(family, {"tolerance_db": 0.05, "levels": {a: {"fp32_s": 0.01, "psnr_change_db": 0.0}}})


def test_old_packages_load_as_fp32_and_a_bad_precision_is_refused(tmp_path, net, family):
    pkg = save_package(tmp_path / "new", net, family, precision="auto")
    assert load_package(tmp_path / "new").precision == "auto"
    save_package(tmp_path / "old", net, family)
    manifest = tmp_path / "old" / "manifest.json"
    data = json.loads(manifest.read_text())
    assert data.pop("precision") == "fp32"
    manifest.write_text(json.dumps(data))  # as packages were written before the field
    old = load_package(tmp_path / "old")
    assert old.precision == "fp32" and int8_levels(old, old.family) == []
    data["precision"] = "fp16"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="precision"):
        load_package(tmp_path / "old")
    with pytest.raises(ConfigError, match="precision"):
        save_package(tmp_path / "bad", net, family, precision="int4")
    # profiles with and without an int8 entry are stored; a broken entry is refused
    pkg.add_profile(device_key(), _profile(family, None))
    assert int8_levels(load_package(tmp_path / "new"), family) == []
    with pytest.raises(ModelError, match="int8"):
        pkg.add_profile(device_key(), _profile(family, {"tolerance_db": -1, "levels": {}}))


def test_engine_auto_quantizes_only_the_levels_the_profile_allows(tmp_path, net, family):
    pkg = save_package(tmp_path / "p.adasr", net, family, precision="auto")
    pkg.add_profile(device_key(), _profile(family, _section(family, [(0.02, 0.03, 0.0), (0.04, 0.02, -0.01)])))
    pkg = load_package(tmp_path / "p.adasr")
    calib = [_smooth(16, 16, s) for s in range(2)]
    assert int8_levels(pkg, pkg.family) == [1]
    auto = Engine(pkg, precision="auto", calibration=calib)
    assert auto.int8_levels[0] is None and auto.int8_levels[1] is not None
    assert [q is None for q in Engine(pkg, precision="int8", calibration=calib).int8_levels] == [False, False]
    assert all(q is None for q in Engine(pkg).int8_levels)
    fp32 = Engine(pkg)
    frame = _smooth(16, 16, 9)
    for i in (1, 0):
        fp32.switch(i)
        auto.switch(i)
        a, b = fp32.process(frame), auto.process(frame)
        close = psnr(a.astype(np.float64), b.astype(np.float64), 255.0)
        assert (close == float("inf")) == (i == 0) and close > 35.0  # L0 float: identical; L1 int8: close
    # the policy's table sees the int8 level's int8 time (0.02 / 0.04 of its 0.02 s); order kept
    assert auto.levels[1].seconds("0.00") == pytest.approx(0.01) and auto.levels[0].seconds("0.00") == 0.01
    assert [lv.config.id for lv in auto.levels] == [lv.config.id for lv in pkg.family]
    assert fp32.levels[1].seconds("0.00") == 0.02
    with pytest.raises(ConfigError, match="calibration"):
        Engine(pkg, precision="auto")
    with pytest.raises(ConfigError, match="package"):
        Engine(net, family, precision="auto", calibration=calib)


def test_section_from_bench_keeps_levels_with_both_backends():
    result = {"threads": 1, "clock": "cpu",
              "levels": [{"index": 0, "id": "a", "Set5": {"torch-fp32": 30.0, "torch-int8": 29.97}},
                         {"index": 1, "id": "b", "Set5": {"torch-fp32": 31.0}}],
              "sizes": [{"lr_hw": [180, 320], "rows": [
                  {"level": 0, "backend": "torch-fp32", "ms": 20.0}, {"level": 0, "backend": "torch-int8", "ms": 10.0},
                  {"level": 1, "backend": "torch-fp32", "ms": 30.0}]}]}
    s = section_from_bench(result, "Set5", 0.05)
    assert list(s["levels"]) == ["a"] and s["levels"]["a"]["int8_s"] == pytest.approx(0.01)
    assert s["levels"]["a"]["psnr_change_db"] == pytest.approx(-0.03) and s["tolerance_db"] == 0.05


def test_int8_timed_scales_only_measured_int8_levels(family):
    measured = family.with_measured({"0.00": {lv.config.id: 0.1 for lv in family},
                                     "0.50": {lv.config.id: 0.2 for lv in family}})
    section = _section(family, [(0.02, 0.01, 0.0), (0.04, 0.01, 0.0)])
    timed = int8_timed(measured, section, [1])
    assert timed[0].measured_s == measured[0].measured_s
    assert timed[1].measured_s == {"0.00": pytest.approx(0.025), "0.50": pytest.approx(0.05)}
    assert timed[1].latency_s == measured[1].latency_s  # the predicted float32 cost still orders the family
    assert int8_timed(measured, None, [0, 1]) is measured and int8_timed(measured, section, []) is measured
    assert int8_timed(family, section, [0, 1])[0].measured_s == {"0.00": pytest.approx(0.005)}  # predicted, scaled


@pytest.mark.parametrize("name", ["folder", "p.adasr"])
def test_set_precision_is_written_to_the_package(tmp_path, net, family, name):
    pkg = save_package(tmp_path / name, net, family)
    pkg.set_precision("auto")
    again = load_package(tmp_path / name)
    assert again.precision == "auto" and [lv.config.id for lv in again.family] == [lv.config.id for lv in family]
    with pytest.raises(ConfigError, match="precision must be one of"):
        again.set_precision("fp16")
    assert load_package(tmp_path / name).precision == "auto"
