"""`adasr play --pipe`: raw rgb24 frames on stdout for ffplay/mpv, the player line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.video.test_video import make_clip_with_audio

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_pipe_writes_every_frame_raw(tmp_path):
    clip = make_clip_with_audio(tmp_path / "c.mp4", frames=4, size=(32, 24))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # one fixed level: no adaptive policy, so no first-use profiling of every level in the child
    run = subprocess.run([sys.executable, "-m", "adasr", "play", str(clip), "--pipe", "--quiet", "--policy", "fixed",
                          "--level", "0"], capture_output=True,
                         env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr.decode()
    assert len(run.stdout) == 4 * 48 * 64 * 3  # four 64x48 rgb24 frames, nothing else
    assert b"ffplay -f rawvideo -pixel_format rgb24 -video_size 64x48 -framerate 25 -" in run.stderr
