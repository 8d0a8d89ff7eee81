"""`adasr bench live`'s quality figures: a mean that cannot be inf or NaN, and valid JSON."""

from __future__ import annotations

import json
import math

import pytest

from adasr.bench.live import frame_gains


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
