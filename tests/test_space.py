"""SubnetConfig and SearchSpace: values, ids, JSON, validation, random operators, extremes."""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest

from adasr.errors import ConfigError
from adasr.nn.blocks import all_tokens
from adasr.nn.supernet import subnet_cost
from adasr.space import DIMENSIONS, UPSAMPLERS, SearchSpace, SubnetConfig

TINY = SearchSpace.named("tiny")


def cfg(**changes) -> SubnetConfig:
    base = dict(scale=2, width=16, expansion=2, kernel=3, blocks=("r", "c", "i+esa", "m.s5"),
                skip=True, upsampler="ps")
    return SubnetConfig(**(base | changes))


# -- SubnetConfig --------------------------------------------------------------------------------

def test_id_format_and_round_trip():
    c = cfg()
    assert c.id == "x2-d4-w16-e2-k3-s1-b:r,c,i+esa,m.s5-up:ps"
    assert c.depth == 4 and c.mid == 32
    assert SubnetConfig.from_id(c.id) == c
    half = cfg(expansion=0.5, skip=False, upsampler="bic", blocks=("m.d3",))
    assert half.id == "x2-d1-w16-e0.5-k3-s0-b:m.d3-up:bic"
    assert SubnetConfig.from_id(half.id) == half


def test_json_round_trip_and_coerce():
    c = cfg(expansion=1.5)
    text = json.dumps(c.to_dict())
    assert SubnetConfig.from_dict(json.loads(text)) == c
    assert SubnetConfig.coerce(c.id) == c and SubnetConfig.coerce(c.to_dict()) == c and SubnetConfig.coerce(c) is c


def test_hash_and_equality_are_by_value():
    a = cfg(blocks=["r", "c"], expansion=2.0)  # list and float are canonicalised
    b = cfg(blocks=("r", "c"), expansion=2)
    assert a == b and hash(a) == hash(b) and a.id == b.id
    assert isinstance(a.expansion, int) and isinstance(a.blocks, tuple)
    assert len({a, b, cfg(width=8)}) == 2
    with pytest.raises(AttributeError):
        a.width = 8  # frozen


@pytest.mark.parametrize("changes, field", [
    (dict(scale=5), "scale"),
    (dict(width=0), "width"),
    (dict(width=True), "width"),
    (dict(expansion=0.3), "expansion"),
    (dict(expansion=-1), "expansion"),
    (dict(kernel=4), "kernel"),
    (dict(blocks=()), "blocks"),
    (dict(blocks="r"), "blocks"),
    (dict(blocks=("r", "x")), "blocks[1]"),
    (dict(blocks=("m",)), "blocks[0]"),          # mixed block needs an op
    (dict(blocks=("m.c9",)), "blocks[0]"),
    (dict(blocks=("r+esa",)), "blocks[0]"),      # residual block has no attention switch
    (dict(blocks=("r.c3",)), "blocks[0]"),
    (dict(skip="yes"), "skip"),
    (dict(upsampler="nearest"), "upsampler"),
])
def test_invalid_config_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError, match=r"\." + re.escape(field)):
        cfg(**changes)


@pytest.mark.parametrize("text", [
    "x2-d4-w16", "x2-d2-w16-e2-k3-s1-b:r-up:ps", "x2-d1-wX-e2-k3-s1-b:r-up:ps",
    "x2-d1-w16-e2-k3-s2-b:r-up:ps", "d1-x2-w16-e2-k3-s1-b:r-up:ps", "x2-d1-w16-e2-k3-s1-b:q-up:ps",
])
def test_bad_ids_refused(text):
    with pytest.raises(ConfigError):
        SubnetConfig.from_id(text)


def test_bad_dicts_refused():
    data = cfg().to_dict()
    with pytest.raises(ConfigError, match="unknown field.*colour"):
        SubnetConfig.from_dict(data | {"colour": 1})
    with pytest.raises(ConfigError, match="missing field.*width"):
        SubnetConfig.from_dict({k: v for k, v in data.items() if k != "width"})
    with pytest.raises(ConfigError):
        SubnetConfig.from_dict(["not", "a", "dict"])


# -- SearchSpace ---------------------------------------------------------------------------------

def test_space_json_round_trip_and_canonical_order():
    for name in SearchSpace.names():
        space = SearchSpace.named(name)
        assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    shuffled = SearchSpace(scale=2, widths=[16, 8], depths=(3, 1, 2), expansions=(2, 1), kernels=(5, 3),
                           blocks=list(reversed(TINY.blocks)), skips=(True, False), upsamplers=("bic", "tc", "ps"))
    assert shuffled == TINY and hash(shuffled) == hash(TINY)


def test_named_spaces():
    assert {"tiny", "base-x2", "base-x3", "base-x4"} <= set(SearchSpace.names())
    assert set(TINY.blocks) == set(all_tokens()) and TINY.upsamplers == UPSAMPLERS
    assert 8 <= TINY.max_width <= 16 and 2 <= TINY.max_depth <= 3
    assert SearchSpace.named("base-x4").scale == 4 and SearchSpace.named("tiny", scale=3).scale == 3
    with pytest.raises(ConfigError, match="scale"):
        SearchSpace.named("base-x2", scale=4)
    with pytest.raises(ConfigError, match="unknown search space"):
        SearchSpace.named("huge")


@pytest.mark.parametrize("changes, field", [
    (dict(widths=()), "widths"),
    (dict(widths=(8, 8)), "widths"),
    (dict(widths=(2,)), "widths[0]"),
    (dict(depths=(0, 1)), "depths[0]"),
    (dict(expansions=(1, 0)), "expansions[1]"),
    (dict(kernels=(2,)), "kernels[0]"),
    (dict(blocks=("r", "zz")), "blocks[1]"),
    (dict(skips=(1,)), "skips[0]"),
    (dict(upsamplers=("ps", "nearest")), "upsamplers[1]"),
    (dict(scale=1), "scale"),
])
def test_invalid_space_refused_naming_the_field(changes, field):
    data = TINY.to_dict() | changes
    with pytest.raises(ConfigError, match=re.escape(f"SearchSpace.{field}")):
        SearchSpace(**data)


def test_space_validate_names_the_field():
    ok = SubnetConfig(2, 8, 1, 3, ("r",), True, "ps")
    assert TINY.validate(ok) is ok and TINY.contains(ok) and ok in TINY
    cases = [(ok.replace(width=12), "width"), (ok.replace(expansion=4), "expansion"),
             (ok.replace(kernel=7), "kernel"), (ok.replace(blocks=("r",) * 4), "depth"),
             (ok.replace(scale=3), "scale")]
    for bad, field in cases:
        assert not TINY.contains(bad)
        with pytest.raises(ConfigError, match=f"^{field} "):
            TINY.validate(bad)
    narrow = SearchSpace(scale=2, widths=(8,), depths=(2,), expansions=(1,), kernels=(3,), blocks=("r", "c"))
    with pytest.raises(ConfigError, match=r"^blocks\[1\] 'i'"):
        narrow.validate(ok.replace(blocks=("r", "i")))
    with pytest.raises(ConfigError, match="upsampler"):
        narrow.validate(ok.replace(blocks=("r", "c"), upsampler="tc"))


def test_size_counts_distinct_configs():
    small = SearchSpace(scale=2, widths=(8, 16), depths=(1, 2), expansions=(1,), kernels=(3, 5),
                        blocks=("r", "c", "m.d3"), skips=(False, True), upsamplers=("ps", "tc"))
    every = set()
    for w, k, d, s, u in itertools.product(small.widths, small.kernels, small.depths, small.skips, small.upsamplers):
        for blocks in itertools.product(small.blocks, repeat=d):
            every.add(SubnetConfig(2, w, 1, k, blocks, s, u).id)
    assert small.size() == len(every) == 2 * 2 * 2 * 2 * (3 + 9)
    assert TINY.size() == 2 * 2 * 2 * 2 * 3 * sum(13 ** d for d in (1, 2, 3))


def test_sample_mutate_crossover_stay_in_space_and_are_reproducible():
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        a, b = TINY.sample(rng), TINY.sample(rng)
        child = TINY.crossover(a, b, rng)
        mutant = TINY.mutate(child, rng, prob=0.3)
        for c in (a, b, child, mutant):
            TINY.validate(c)
        for field in ("width", "expansion", "kernel", "skip", "upsampler"):
            assert getattr(child, field) in (getattr(a, field), getattr(b, field))
        assert child.depth in (a.depth, b.depth)
        assert all(t in {p.blocks[i] for p in (a, b) if i < p.depth} for i, t in enumerate(child.blocks))
        seen.update(a.blocks)
    assert seen == set(TINY.blocks)
    r1, r2 = random.Random(3), random.Random(3)
    assert [TINY.sample(r1) for _ in range(20)] == [TINY.sample(r2) for _ in range(20)]


def test_mutate_extremes_and_local_rng_only():
    rng = random.Random(1)
    c = TINY.sample(rng)
    assert TINY.mutate(c, rng, prob=0.0) == c
    assert TINY.crossover(c, c, rng) == c
    for _ in range(50):
        TINY.validate(TINY.mutate(c, rng, prob=1.0))
    with pytest.raises(ConfigError, match="prob"):
        TINY.mutate(c, rng, prob=1.5)
    with pytest.raises(TypeError, match="random.Random"):
        TINY.sample(random)  # the global-state module is refused
    with pytest.raises(ConfigError):
        TINY.mutate(c.replace(width=12), rng)


def test_smallest_and_largest_bound_every_sample():
    small, large = TINY.smallest(), TINY.largest()
    assert small.id == "x2-d1-w8-e1-k3-s1-b:m.c1-up:tc"
    assert (large.width, large.expansion, large.kernel, large.depth) == (16, 2, 5, 3)
    hw = (64, 64)
    lo, hi = subnet_cost(small, hw)[1], subnet_cost(large, hw)[1]
    rng = random.Random(2)
    for _ in range(100):
        macs = subnet_cost(TINY.sample(rng), hw)[1]
        assert lo <= macs <= hi
    for name in SearchSpace.names():
        space = SearchSpace.named(name)
        assert space.smallest() in space and space.largest() in space


def test_restrict_fixes_the_other_dimensions():
    assert TINY.restrict(()) is TINY
    only_kernel = TINY.restrict(("kernel",))
    top = TINY.largest()
    assert only_kernel.kernels == TINY.kernels and only_kernel.widths == (top.width,)
    assert only_kernel.blocks == (top.blocks[0],) and only_kernel.size() == len(TINY.kernels)
    rng = random.Random(0)
    assert all(only_kernel.sample(rng) in TINY for _ in range(20))
    assert TINY.restrict(DIMENSIONS) == TINY
    with pytest.raises(ConfigError, match="elastic"):
        TINY.restrict(("colour",))
