"""A live client's upscaling precision: bf16 convolutions with a float32 skip, within a rounding of fp32."""

from __future__ import annotations

import numpy as np
import pytest

from adasr.errors import ConfigError
from adasr.metrics import psnr_y


def _frame(h=72, w=96, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.float32)
    img = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_bf16_client_frames_match_fp32_within_rounding():
    from adasr.modelfile import load_model
    from adasr.paths import bundled_model
    from adasr.serve.client import _runner_factory

    model, _ = load_model(bundled_model(2))
    frame = _frame()
    fp32 = _runner_factory({}, None, frame.shape[:2], "generic", "fp32")(model)
    bf16 = _runner_factory({}, None, frame.shape[:2], "generic", "bf16")(model)
    a, b = fp32.process(frame), bf16.process(frame)
    assert a.shape == b.shape == (144, 192, 3) and a.dtype == b.dtype == np.uint8
    # the skip and the output stay float32, so bf16 only perturbs the learned residual (a few hundredths
    # of a grey level): the two outputs agree to within one or two levels, far above 40 dB apart. With the
    # skip added in bf16 the output itself is rounded to 8 mantissa bits: errors of several levels.
    assert psnr_y(b, a, 2) > 50 and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 3
    assert len(bf16.levels) == len(fp32.levels) == 1 and bf16.switch(0) == 0  # the wrapper is the runner to the runtime


def test_live_client_precision_is_checked():
    from adasr.serve.client import LiveClient

    with pytest.raises(ConfigError, match="precision"):
        LiveClient("http://127.0.0.1:9/channel/x", precision="int8")
