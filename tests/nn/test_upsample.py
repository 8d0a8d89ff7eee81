"""LR-size bicubic (sub-pixel phases) and the fused pixel shuffle of the frame path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from adasr.nn.upsample import bicubic_phases, bicubic_up, phase_weights, phases_to_hwc
from adasr.runtime.engine import Engine, frame_to_tensor, phases_to_frame, tensor_to_frame
from adasr.search.family_search import Family, Level
from adasr.space import SearchSpace, SubnetConfig
from tests.conftest import random_image
from tests.helpers import make_net


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (7, 5), (16, 12)])
def test_bicubic_phases_equal_torch_bicubic(scale, hw):
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(scale))
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert bicubic_phases(x, scale).shape == (2, 3 * scale * scale, *hw)
    assert torch.allclose(bicubic_up(x, scale), ref, atol=2e-6, rtol=0)
    xc = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(bicubic_up(xc, scale), ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_phase_weights_sum_to_one(scale):
    for row in phase_weights(scale):
        assert len(row) == 5 and abs(sum(row) - 1.0) < 1e-12
    with pytest.raises(ValueError):
        phase_weights(0)


def test_phases_to_hwc_is_the_pixel_shuffle():
    z = torch.rand(1, 12, 5, 7)
    ref = F.pixel_shuffle(z, 2)[0].permute(1, 2, 0).numpy()
    for t in (z, z.contiguous(memory_format=torch.channels_last)):
        out = phases_to_hwc(t, 2)
        assert out.flags.c_contiguous and np.array_equal(out, ref)


def test_phases_to_frame_equals_tensor_to_frame():
    z = torch.rand(1, 27, 6, 5) * 1.4 - 0.2  # values outside [0, 1] are clipped
    ref = tensor_to_frame(F.pixel_shuffle(z, 3))
    out = phases_to_frame(z.clone(), 3)
    assert out.shape == (18, 15, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out, ref)


def test_engine_frame_path_matches_the_float_path():
    space = SearchSpace.named("tiny")
    net = make_net(space)
    cfgs = [space.smallest(), SubnetConfig(2, 8, 1, 3, ("c", "c"), True, "tc"),
            SubnetConfig(2, 16, 2, 5, ("c",), True, "bic"), space.largest()]
    from adasr.nn.supernet import subnet_cost

    levels = [Level(c, 30.0 + i, *subnet_cost(c, (16, 16)), {"0.00": 0.01 * (i + 1)}) for i, c in enumerate(cfgs)]
    fam = Family(tuple(levels), 2, (16, 16))
    eng = Engine(net, fam)
    frame = random_image(16, 12)
    for i in range(len(fam)):
        eng.switch(i)
        with torch.inference_mode():
            ref_float = eng.supernet.extract(cfgs[i]).eval()(frame_to_tensor(frame, False))
        out = eng.process(frame)
        assert out.shape == (32, 24, 3)
        assert np.abs(out.astype(int) - tensor_to_frame(ref_float)).max() <= 1
