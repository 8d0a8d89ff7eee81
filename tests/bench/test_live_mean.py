"""`adasr bench live`'s quality figures: a mean that cannot be inf or NaN, and valid JSON."""

from __future__ import annotations

import json
import math

import pytest

from adasr.bench.live import frame_gains
from adasr.errors import ConfigError


def _strict(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))


def test_frames_the_base_reproduces_exactly_leave_the_mean_finite():
    # black frames at a join: both the client and the base reproduce them exactly (PSNR inf)
    pairs = [(math.inf, math.inf), (31.0, 30.0), (33.0, 32.0), (math.inf, 40.0)]
    g = frame_gains(pairs)
    assert g["frames_scored"] == 4 and math.isfinite(g["psnr_gain_db"]) and g["psnr_gain_db"] > 0
    assert all(v is not None and math.isfinite(v) for v in g["gain_cdf"].values())
    assert g["gain_cdf"]["p50"] == pytest.approx(1.0)  # capped per-frame gains: 0, 1, 1, 60
    _strict(json.dumps(g, allow_nan=False))


def test_no_frame_scored_is_null_not_nan():
    g = frame_gains([])
    assert g["psnr_gain_db"] is None and set(g["gain_cdf"].values()) == {None}
    _strict(json.dumps(g, allow_nan=False))


@pytest.mark.integration
def test_a_short_live_session_reports_its_real_time_fraction(data_root, tmp_path):
    from adasr.bench.live import LiveBenchConfig, run_live_bench

    cfg = LiveBenchConfig(videos=(data_root / "video" / "bikes_640x272.mp4",), schemes=("ams:k=1,t_horizon=4",),
                          crop_hw=(64, 96), seconds=2, clip_seconds=2, overrides=(("k", 2),))
    result = run_live_bench(cfg, tmp_path)
    json.loads((tmp_path / "live.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    for s in result["schemes"]:
        assert 0 < s["real_time_fraction"] <= 1
        assert s["valid"] == (s["real_time_fraction"] >= 0.95)
    assert result["config"]["overrides"] == (("k", 2),)
    assert [s["scheme"] for s in result["schemes"]] == ["ams:k=1,t_horizon=4"]


@pytest.mark.integration
def test_clients_that_upscale_after_the_session_score_every_frame_they_played(data_root, tmp_path):
    """client_sr="after": the client plays live but upscales later, each segment with the model it
    held; with no updates that is the base model on the same frames, so the gain is 0 (the same
    module on the same tensors in one process: equal to float rounding)."""
    from adasr.bench.live import LiveBenchConfig, run_live_bench

    cfg = LiveBenchConfig(videos=(data_root / "video" / "bikes_640x272.mp4",), schemes=("none",),
                          crop_hw=(64, 96), seconds=3, clip_seconds=3, client_sr="after")
    result = run_live_bench(cfg, tmp_path)
    (c,) = result["schemes"][0]["channels"]
    assert not c["errors"] and c["frames_scored"] >= 25  # at least one 1-s segment of 25 frames was played and scored
    assert abs(c["psnr_gain_db"]) < 1e-6
    assert result["config"]["client_sr"] == "after"
    with pytest.raises(ConfigError, match="client_sr"):
        LiveBenchConfig(client_sr="elsewhere")
