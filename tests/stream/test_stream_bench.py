"""Supernet streams (every level adapted at once) and a miniature `bench codec` run."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from adasr.space import SearchSpace
from adasr.stream.adapt import AdaptConfig
from adasr.stream.codec import ModelState
from adasr.stream.encoder import EncodeSettings, build_model_stream, downsample
from tests.helpers import make_net


@pytest.mark.slow
def test_supernet_stream_round_trip_and_levels(small_pairs):
    space = SearchSpace.named("tiny")
    net = make_net(space)
    levels = [space.smallest(), space.largest()]
    hr = np.stack([p.hr for p in small_pairs])  # 3 real 64x64 crops as a 3-frame clip
    lr = downsample(hr, 2)
    spec = {"arch": "supernet", "args": {"space": space.to_dict()}, "scale": 2}
    settings = EncodeSettings(tau=0.04, device="cpu", adapt=AdaptConfig(eta=0.2, steps=4, batch=2, patch=16, lr=2e-3))
    ms = build_model_stream(lr, hr, Fraction(25), settings, evaluate_every=1,
                            base=(net, spec, levels, {"model": "package"}))
    assert len(ms.deltas) == 3
    dec = ModelState.from_full(ms.init)
    for record in ms.deltas:
        dec.apply(record)
    assert torch.equal(dec.vector, ms.state.vector)
    x = torch.rand(1, 3, 16, 16)
    for cfg in levels:  # the decoder's supernet runs every level exactly like the encoder's
        assert torch.equal(dec.model(x, cfg=cfg), ms.state.model(x, cfg=cfg))
    for seg in ms.segments:  # per-level PSNR measured before and after each update
        assert len(seg["psnr_before"]) == len(seg["psnr_after"]) == 2


@pytest.mark.slow
def test_bench_codec_miniature(tmp_path, data_root):
    from adasr.bench.codec import RD_GATED, CodecBenchConfig, run_codec_bench, summary_lines

    cfg = CodecBenchConfig(max_frames=4, crop_hw=(64, 128), hr_crfs=(24, 32, 40, 48), lr_crfs=(20, 28, 36, 44),
                           sweeps=False, steps=2, oneshot_steps=2, ssim_every=3, tau=0.08, device="cpu", lr=2e-3,
                           patch=16)
    result = run_codec_bench([data_root / "video" / "bikes_640x272.mp4"], tmp_path, cfg)
    clip = result["clips"][0]
    assert clip["defaults"]["lr"] == 2e-3 and clip["defaults"]["patch"] == 16
    assert set(clip["curves"]) == {"HR H.264 slow", "HR H.265 slow", "LR H.265 + bicubic", "LR H.265 + generic SR",
                                   "LR H.265 + one-shot", "LR H.265 + adasr stream",
                                   "LR H.265 + adasr stream, base by hash", RD_GATED}
    for name, pts in clip["curves"].items():
        assert len(pts) == 4 and all(p["bpp"] > 0 and 10 < p["psnr"] < 60 and 0 < p["ssim"] <= 1 for p in pts), name
    hr265 = sorted(clip["curves"]["HR H.265 slow"], key=lambda p: p["crf"])
    assert hr265[0]["bpp"] > hr265[-1]["bpp"] and hr265[0]["psnr"] > hr265[-1]["psnr"]  # lower CRF: more bits, better
    stream = clip["curves"]["LR H.265 + adasr stream"][0]
    bic = clip["curves"]["LR H.265 + bicubic"][0]
    assert stream["bits"] == bic["bits"] + stream["model_init_bits"] + stream["model_delta_bits"]
    assert stream["segments"] == 2
    by_hash = clip["curves"]["LR H.265 + adasr stream, base by hash"][0]  # the same frames, a tiny first record
    assert by_hash["psnr"] == stream["psnr"] and 0 < by_hash["model_init_bits"] < stream["model_init_bits"] / 50
    assert by_hash["bits"] == bic["bits"] + by_hash["model_init_bits"] + stream["model_delta_bits"]
    assert "LR H.265 + adasr stream, base by hash" in clip["bd_psnr"]
    assert "LR H.265 + adasr stream" in clip["bd_psnr"]
    for gated, generic in zip(clip["curves"][RD_GATED], clip["curves"]["LR H.265 + generic SR"]):
        assert gated["rd"]["lambda"] >= 0 and 0 <= gated["sent"] <= gated["segments"] == 2
        assert gated["bits"] == generic["bits"] + gated["model_init_bits"] + gated["model_delta_bits"]
        if gated["sent"] == 0:  # no update paid: the receiver shows the generic model's frames, from its
            # weights rounded to float16 as a stream's first record names them (a change far below 0.01 dB)
            assert gated["psnr"] == pytest.approx(generic["psnr"], abs=0.01)
    saved = json.loads((tmp_path / "codec.json").read_text())
    assert saved["clips"][0]["frames"] == 4
    assert (tmp_path / "rd_bikes_640x272.png").stat().st_size > 1000
    assert any("BD-rate" in line for line in summary_lines(result))
