"""The model package: round trips (folder and single file), refusal of damaged or foreign
packages, device profiles."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from adasr.errors import ConfigError, ModelError, OutputError
from adasr.family import Family, Level
from adasr.nn.supernet import SuperNet, subnet_cost
from adasr.package import Package, load_package, save_package
from adasr.runtime.profile import device_key, profile_package
from adasr.search.family_search import search_family
from adasr.search.latency import LatencyTable, MacsCostModel
from adasr.space import SearchSpace
from tests.helpers import assert_frames_close, make_net

TINY = SearchSpace.named("tiny")
HW = (16, 16)



class Synthetic:
    def score(self, cfg) -> float:
        return 28.0 + 0.5 * math.log(subnet_cost(cfg, HW)[1])


@pytest.fixture(scope="module")
def net() -> SuperNet:
    return make_net(TINY).eval()


@pytest.fixture(scope="module")
def family() -> Family:
    return search_family(None, TINY, Synthetic(), MacsCostModel(HW), "dysr", seed=0, per_depth=3, bins=2, per_bin=2)


def _same(net_a: SuperNet, net_b: SuperNet, family: Family) -> None:
    sa, sb = net_a.state_dict(), net_b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for lv in family:
            assert torch.equal(net_a(x, cfg=lv.config), net_b(x, cfg=lv.config))


@pytest.mark.parametrize("name", ["pkg", "model.adasr"])
def test_round_trip(tmp_path, net, family, name):
    path = tmp_path / name
    saved = save_package(path, net, family, info={"trained": "test"})
    pkg = load_package(path)
    assert isinstance(pkg, Package) and pkg.family == family and pkg.scale == 2 and pkg.space == TINY
    assert pkg.manifest["info"] == {"trained": "test"} and saved.family == family
    _same(net, pkg.supernet, family)
    if name == "pkg":
        assert sorted(p.name for p in path.iterdir()) == ["levels.json", "manifest.json", "profiles",
                                                          "supernet.safetensors"]
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["schema_version"] == 1 and re.fullmatch(r"[0-9a-f]{64}", manifest["weights"]["sha256"])
        assert manifest["space"] == TINY.to_dict() and manifest["adasr_version"]
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporaries left
    with pytest.raises(OutputError, match="exists"):
        save_package(path, net, family)
    save_package(path, net, family, overwrite=True)
    assert load_package(path).family == family


def _flip_byte(path, offset_from_end: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_folder_packages_are_refused(tmp_path, net, family):
    def fresh(name: str):
        return save_package(tmp_path / name, net, family).path

    p = fresh("flipped")
    _flip_byte(p / "supernet.safetensors")
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_package(p)

    p = fresh("no-levels")
    (p / "levels.json").unlink()
    with pytest.raises(ModelError, match="levels.json is missing"):
        load_package(p)

    p = fresh("no-weights")
    (p / "supernet.safetensors").unlink()
    with pytest.raises(ModelError, match="supernet.safetensors is missing"):
        load_package(p)

    p = fresh("bad-levels")
    (p / "levels.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_package(p)

    p = fresh("version")
    manifest = json.loads((p / "manifest.json").read_text())
    (p / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ModelError, match="schema version 99"):
        load_package(p)

    p = fresh("foreign-format")
    (p / "manifest.json").write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(ModelError, match="not an adasr package"):
        load_package(p)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no manifest.json"):
        load_package(empty)
    with pytest.raises(ModelError, match="not found"):
        load_package(tmp_path / "missing")

    p = fresh("bad-profile")
    (p / "profiles" / "cpu-x-1t.json").write_text("[1, 2")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_package(p)


def test_damaged_single_file_is_refused(tmp_path, net, family):
    path = tmp_path / "m.adasr"
    save_package(path, net, family)
    _flip_byte(path)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_package(path)
    other = tmp_path / "plain.adasr"
    other.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelError, match="damaged"):
        load_package(other)


def test_save_refuses_levels_outside_the_space(tmp_path, net):
    foreign = SearchSpace.named("base-x2").largest()
    family = Family((Level(foreign, 30.0, 1, 1, {"0.00": 0.1}),), 2, HW)
    with pytest.raises(ConfigError, match="space"):
        save_package(tmp_path / "p", net, family)


@pytest.mark.parametrize("name", ["pkg", "model.adasr"])
def test_profile_and_add_profile(tmp_path, net, family, name):
    pkg = save_package(tmp_path / name, net, family)
    stages = []
    profile = profile_package(pkg, loads=(0.0, 0.5), repeats=2, warmup=1, lr_hw=HW, table_repeats=2,
                              load_workers=1, on_progress=lambda s, d, t: stages.append((s, d, t)))
    key = device_key()
    assert profile["device"] == key and set(profile["levels"]) == {"0.00", "0.50"}
    assert set(profile["levels"]["0.00"]["measured"]) == {lv.config.id for lv in family}
    assert stages[-1][1] == stages[-1][2]
    table = LatencyTable.from_dict(profile["latency_table"])
    assert table.loads(key) == ["0.00", "0.50"]
    assert table.predict(family[-1].config, HW, 0.0, key) > 0
    pkg.add_profile(key, profile)
    with pytest.raises(ConfigError, match="device key"):
        pkg.add_profile("../evil", profile)
    again = load_package(tmp_path / name)
    assert again.profiles[key]["levels"] == json.loads(json.dumps(profile["levels"]))
    measured = again.family_for(key)
    assert all(set(lv.measured_s) == {"0.00", "0.50"} and lv.seconds(0.5) > 0 for lv in measured)
    assert again.summary()["profiles"] == [key]


def test_overwrite_never_replaces_a_foreign_folder(tmp_path, net, family):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not an adasr package"):
        save_package(folder, net, family, overwrite=True)
    assert (folder / "precious.txt").read_text() == "keep me"


def _own_module(net: SuperNet, cfg, seed: int = 1):
    """The supernet's sub-network `cfg` with its weights moved: a level trained on its own."""
    module = net.extract(cfg).eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module


@pytest.mark.parametrize("name", ["pkg", "model.adasr"])
def test_a_level_with_its_own_weights(tmp_path, net, family, name):
    from safetensors.torch import load_file, save_file

    from adasr.runtime.engine import Engine

    mine = family[0]
    module = _own_module(net, mine.config)
    path = tmp_path / name
    save_package(path, net, family, own={mine.config.id: module})
    pkg = load_package(path)
    assert sorted(pkg.own) == [mine.config.id] and pkg.has_own(0) and not pkg.has_own(1)
    assert pkg.summary()["own_levels"] == [mine.config.id]
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = module(x)
        assert torch.equal(pkg.level_model(0)(x), want)
        assert not torch.allclose(net(x, cfg=mine.config), want)  # the shared weights compute something else
        assert torch.equal(pkg.level_model(1)(x), net(x, cfg=family[1].config))  # the others are the supernet's
    _same(net, pkg.supernet, family)
    # the runtime runs the level's own weights, and switches back and forth between both kinds
    engine = Engine(pkg)
    frame = (torch.rand(HW[0], HW[1], 3, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8).numpy()
    from adasr.runtime.engine import frame_to_tensor, tensor_to_frame

    # the engine feeds channels-last input, the references contiguous input: other conv kernels,
    # so the same frames up to float rounding (at most 1 uint8 step)
    with torch.inference_mode():
        assert_frames_close(engine.process(frame), tensor_to_frame(module(frame_to_tensor(frame, False))))
        engine.switch(1)
        assert_frames_close(engine.process(frame), tensor_to_frame(net(frame_to_tensor(frame, False),
                                                                       cfg=family[1].config)))
    assert engine.resident_bytes() > net.supernet_bytes()
    # a profile stored later, or a precision set later, keeps the own weights
    pkg.set_precision("fp32")
    assert sorted(load_package(path).own) == [mine.config.id]
    # own weights for a config that is not a level, or not a sub-network of that config, are refused
    with pytest.raises(ConfigError, match="not a level"):
        save_package(tmp_path / "bad", net, family.__class__(family.levels[1:], family.scale, family.lr_hw),
                     own={mine.config.id: module})
    with pytest.raises(ConfigError, match="SubNet of that config"):
        save_package(tmp_path / "bad", net, family, own={mine.config.id: _own_module(net, family[1].config)})
    if name != "model.adasr":
        return
    # a tampered file: a tensor of a level not listed, or a listed level's tensor missing, is refused
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    stray = dict(tensors)
    stray[f"own/{family[1].config.id}/head.weight"] = torch.zeros(1)
    save_file(stray, str(tmp_path / "stray.adasr"), metadata=meta)
    with pytest.raises(ModelError, match="belongs to no level"):
        load_package(tmp_path / "stray.adasr")
    short = {k: v for k, v in tensors.items() if not k.endswith("head.weight") or not k.startswith("own/")}
    save_file(short, str(tmp_path / "short.adasr"), metadata=meta)
    with pytest.raises(ModelError, match="damaged package"):
        load_package(tmp_path / "short.adasr")
