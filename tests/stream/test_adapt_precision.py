"""Training precision of the sparse adapter: bf16 autocast steps, fp32 weights, the same stream contract."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from adasr.errors import ConfigError
from adasr.nn.precision import autocast_dtype
from adasr.serve.config import TrainerConfig, parse_row
from adasr.stream.adapt import AdaptConfig, PatchSampler, SparseAdapter, segment_psnr
from adasr.stream.codec import ModelState
from adasr.stream.encoder import EncodeSettings, build_model_stream, downsample


def _frames(n=4, h=48, w=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4, w // 4, 3)).astype(np.float32)
    hr = np.stack([np.clip(np.kron(np.roll(base, i, axis=1), np.ones((4, 4, 1))), 0, 255).astype(np.uint8)
                   for i in range(n)])
    return downsample(hr, 2), hr


def test_precision_names_are_checked():
    with pytest.raises(ConfigError, match="precision"):
        AdaptConfig(precision="fp16")
    with pytest.raises(ConfigError, match="precision"):
        TrainerConfig(precision="half")
    with pytest.raises(ConfigError, match="precision"):
        autocast_dtype("int8", torch.device("cpu"))
    assert parse_row("ams:precision=bf16").trainer_config().precision == "bf16"
    assert TrainerConfig().precision == AdaptConfig().precision


def test_auto_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr("adasr.threads.cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    monkeypatch.setattr("adasr.threads.cpu_flags", lambda: frozenset({"avx512f", "avx512bw"}))
    assert autocast_dtype("auto", cpu) is None  # emulated bf16 would be slower than fp32


def _adapted(precision):
    from adasr.nn.registry import build_model

    lr, hr = _frames()
    torch.manual_seed(0)
    model = build_model("espcn", scale=2)
    before = segment_psnr(model, lr, hr, border=2)
    ad = SparseAdapter(model, AdaptConfig(strategy="full", steps=40, batch=4, patch=16, lr=3e-3,
                                          precision=precision))
    ad.adapt(PatchSampler(lr, hr, 2, 16, 4, torch.device("cpu")), 0)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # bf16 computes; the weights stay fp32
    return segment_psnr(model, lr, hr, border=2) - before


def test_bf16_steps_learn_like_fp32_steps():
    fp32, bf16 = _adapted("fp32"), _adapted("bf16")
    assert fp32 > 1.0  # the segment is learnable: 40 full steps gain well over a dB
    # bf16 keeps 8 mantissa bits: each step's gradient is off by about 0.4 %, not its direction, so the
    # same steps must reach most of fp32's gain (a broken cast - fp16 overflow, a detached graph - reaches none)
    assert bf16 > 0.8 * fp32


def test_a_bf16_stream_decodes_to_the_senders_model_exactly():
    lr, hr = _frames(n=6)
    settings = EncodeSettings(tau=0.08, delta_dtype="int8", device="cpu",
                              adapt=AdaptConfig(eta=0.1, steps=3, batch=2, patch=8, precision="bf16"))
    ms = build_model_stream(lr, hr, Fraction(25), settings)
    dec = ModelState.from_full(ms.init)
    for record in ms.deltas:
        dec.apply(record)
    # the receiver holds what the sender holds, bit for bit: precision only changes which update is
    # trained, never what the stream carries
    assert torch.equal(dec.vector, ms.state.vector)
    assert not torch.equal(ModelState.from_full(ms.init).vector, dec.vector)
