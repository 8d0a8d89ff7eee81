"""`adasr bench adapt`: rows parse and are checked before a run; a tiny session scores every frame."""

from __future__ import annotations

import json

import pytest

from adasr.bench.adapt import ABLATION_ROWS, AdaptBenchConfig, parse_row, run_adapt_bench
from adasr.errors import ConfigError


def test_rows_parse_into_trainer_settings():
    row = parse_row("ams:k=60,eta=1,on_cut=reset")
    assert row.label == "ams:k=60,eta=1.0,on_cut=reset"
    cfg = row.trainer_config()
    assert (cfg.k, cfg.eta, cfg.on_cut) == (60, 1.0, "reset")
    assert parse_row("ams_asr_atr").trainer_config().asr.enabled
    assert parse_row("ams:delta_dtype=int8").trainer_config().delta_dtype == "int8"
    held = parse_row("ams:k=40,hold=2")  # the channel's hold, not the trainer's
    assert held.hold == 2 and held.trainer_config().k == 40 and parse_row("ams").hold == 0
    every = parse_row("ams:rate=25").trainer_config().asr  # every frame of a 25-fps source joins the buffer
    assert (every.r_init, every.r_max, every.enabled) == (25.0, 25.0, False)
    assert parse_row("ams_asr_atr:rate=1").trainer_config().asr.enabled  # ASR starts from it
    for r in ABLATION_ROWS:
        parse_row(r)


@pytest.mark.parametrize("bad", ["magic", "ams:k", "ams:depth=3", "ams:k=many", "ams:eta=2", "ams:lr=nan",
                                 "ams:on_cut=forget", "ams:delta_dtype=int3", "ams:hold=31",
                                 "ams:hold=-1", "ams:rate=500", "ams:rate=0"])
def test_bad_rows_are_refused_before_a_run(bad):
    with pytest.raises(ConfigError):
        parse_row(bad)


@pytest.mark.slow
def test_a_tiny_session_scores_every_frame_causally(data_root, tmp_path):
    clips = (data_root / "video" / "bikes_640x272.mp4",)
    cfg = AdaptBenchConfig(videos=clips, rows=(parse_row("none"), parse_row("ams:k=2,t_update=1,on_cut=reset")),
                           crop_hw=(64, 96), seconds=3, clip_seconds=3, ceiling_steps=(30,))
    result = run_adapt_bench(cfg, tmp_path)
    loaded = json.loads((tmp_path / "adapt.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert loaded["rows"] == result["rows"]
    none, ams, ceiling = result["rows"]
    assert none["frames_scored"] == ams["frames_scored"] == 75
    assert none["gain_db"] == 0.0 and none["updates"] == 0 and none["model_kbps"] == 0.0
    assert ams["updates"] >= 2 and ams["model_kbps"] > 0 and ams["gain_db"] is not None
    assert result["clips"] == [{"clip": "bikes_640x272", "frames": 75}]
    assert [c["clip"] for c in ams["per_clip"]] == ["bikes_640x272"]
    # the ceiling trains every parameter on each segment before scoring it: one update per segment
    assert ceiling["row"] == "ceiling:steps=30" and ceiling["frames_scored"] == 75 and ceiling["updates"] == 3
    assert ceiling["model_kbps"] is None and not ceiling["feasible"] and ceiling["gain_db"] > 0
    assert ceiling["base_psnr_db"] == none["base_psnr_db"]  # the same frames, the same base scores


def test_ceiling_steps_are_bounded():
    with pytest.raises(ConfigError, match="ceiling"):
        AdaptBenchConfig(ceiling_steps=(0,))
    with pytest.raises(ConfigError, match="ceiling"):
        AdaptBenchConfig(ceiling_steps=tuple(range(1, 10)))


def test_live_rows_take_the_channels_hold_and_the_buffers_rate():
    from adasr.bench.live import LiveBenchConfig, _hold, _trainer_config

    cfg = LiveBenchConfig()
    row = "ams:k=40,rate=25,hold=2"
    t = _trainer_config(row, cfg)
    assert t.k == 40 and t.asr.r_init == 25.0 and not t.asr.enabled
    assert _hold(row, cfg) == 2 and _hold("ams", cfg) == 0
    assert _trainer_config("ams_asr_atr:rate=1", cfg).asr.enabled
