"""`package_levels`: the levels a channel or stream offers from a package: "all", level indices and
sub-networks of its supernet named dD-wW (what `adasr bench browser --levels` takes)."""

from __future__ import annotations

import pytest
import torch

from adasr.errors import ConfigError
from adasr.package import load_package
from adasr.paths import bundled_package
from adasr.stream.encoder import package_levels


@pytest.fixture(scope="module")
def pkg():
    return load_package(bundled_package(2))


def test_all_indices_and_a_subnetwork_ordered_by_cost(pkg):
    # "all": the levels a model stream can update, those on the supernet's shared weights
    family = [lv.config.id for lv in pkg.family if not pkg.has_own(lv)]
    assert [c.id for c in package_levels(pkg, "all")] == family
    ids = [lv.config.id for lv in pkg.family]
    assert [c.id for c in package_levels(pkg, "4,0")] == [ids[4], ids[0]]  # indices alone: as given
    own = [i for i in range(len(ids)) if pkg.has_own(i)]
    assert own == [3]  # the bundled x2's generic level carries its own weights: a model stream refuses it
    with pytest.raises(ConfigError, match="its own weights"):
        package_levels(pkg, "3")
    got = package_levels(pkg, "all,d6-w16")
    ids = [c.id for c in got]
    assert len(ids) == len(family) + 1 and set(family) <= set(ids)
    new = next(c for c in got if c.id not in family)
    assert (new.depth, new.width, new.upsampler) == (6, 16, pkg.family[0].config.upsampler)
    costs = [pkg.supernet.cost(c, (64, 64))[1] for c in got]
    assert costs == sorted(costs)
    params = pkg.supernet.cost(new, (64, 64))[0]
    assert 30_000 <= params <= 45_000
    # the sub-network runs on the supernet's shared weights: the same output as the supernet set to it
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        assert torch.allclose(pkg.supernet.extract(new)(x), pkg.supernet(x, cfg=new), atol=1e-5)


@pytest.mark.parametrize("bad", ["", "d9-w16", "d6-w20", "9", "x", "d6-w16;rm", ",".join(["0"] * 33)])
def test_bad_items_refused_with_one_line(pkg, bad):
    with pytest.raises(ConfigError) as err:
        package_levels(pkg, bad)
    assert "\n" not in str(err.value)
