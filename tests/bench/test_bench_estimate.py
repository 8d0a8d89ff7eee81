"""`adasr bench estimate`: the announced estimate against the run's time, one row per input."""

import json

import pytest

from adasr.bench.estimate import run_estimate_bench, within
from adasr.errors import ConfigError


def test_within_is_symmetric_in_ratio():
    assert within(1.0) and within(1.3) and within(1 / 1.3)
    assert not within(1.31) and not within(0.76)


def test_rows_pair_the_estimate_with_the_run(tmp_path):
    from tests.video.test_video import make_clip_with_audio

    clip = make_clip_with_audio(tmp_path / "in.mp4", frames=6, size=(32, 24))
    result = run_estimate_bench([clip], frames=4, level="0", load_share=0.0)
    json.dumps(result, allow_nan=False)
    (row,) = result["rows"]
    assert row["frames"] == 4 and row["level"] == 0 and row["estimated_s"] > 0 and row["actual_s"] > 0
    assert row["ratio"] == pytest.approx(row["actual_s"] / row["estimated_s"])
    assert row["within"] == within(row["ratio"]) and result["met"] == int(row["within"])
    assert any("level 0" in line for line in row["said"])  # the line a user reads before the work
    assert not list(tmp_path.glob("*.mkv"))  # outputs go to a removed temporary folder


def test_bounds_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--frames"):
        run_estimate_bench([tmp_path / "x.mp4"], frames=0)
    with pytest.raises(ConfigError, match="--load"):
        run_estimate_bench([tmp_path / "x.mp4"], load_share=1.5)
    with pytest.raises(ConfigError, match="inputs"):
        run_estimate_bench([])
