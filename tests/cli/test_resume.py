"""`--resume`: an interrupted video upscale goes on from its kept chunks to the same bytes as an
uninterrupted run; kept work from other options is refused."""

from __future__ import annotations

import pytest

from adasr.errors import ConfigError, Interrupted
from adasr.upscale_run import Reporter, upscale_file
from adasr.video import probe
from tests.video.test_video import audio_packets, make_clip_with_audio


class StopAt(Reporter):
    """Ctrl-C once `n` frames are done."""

    def __init__(self, n: int) -> None:
        self.n = n

    def update(self, done, total, fps, level, eta):
        if done >= self.n:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_and_resumed_is_byte_identical(tmp_path):
    src = make_clip_with_audio(tmp_path / "src.mp4", frames=23, size=(32, 24))
    opts = {"resume": True, "chunk_frames": 5, "level": "0"}
    upscale_file(src, tmp_path / "full.mp4", **opts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.mp4", "src.mp4"]  # the work folder is gone
    with pytest.raises(Interrupted, match="10 frames are kept"):
        upscale_file(src, tmp_path / "cut.mp4", reporter=StopAt(12), **opts)
    work = tmp_path / ".cut.mp4.adasr-partial"
    assert not (tmp_path / "cut.mp4").exists()
    assert sorted(p.name for p in work.iterdir()) == ["chunk_000000.mp4", "chunk_000001.mp4", "resume.json"]
    with pytest.raises(ConfigError, match="other options"):
        upscale_file(src, tmp_path / "cut.mp4", resume=True, chunk_frames=5, level="0", crf=30)
    result = upscale_file(src, tmp_path / "cut.mp4", **opts)
    assert result.summary["frames"] == 23 and result.summary["frames_resumed"] == 10
    assert (tmp_path / "cut.mp4").read_bytes() == (tmp_path / "full.mp4").read_bytes()
    assert not work.exists()
    info = probe(tmp_path / "cut.mp4")
    assert (info.frame_count, info.width, info.has_audio) == (23, 64, True)
    assert audio_packets(tmp_path / "cut.mp4")[1] == audio_packets(src)[1]


def test_resume_refusals(tmp_path):
    src = make_clip_with_audio(tmp_path / "src.mp4", frames=2, size=(16, 12))
    with pytest.raises(ConfigError, match="--realtime"):
        upscale_file(src, tmp_path / "o.mp4", resume=True, realtime=True)
    (tmp_path / ".o.mp4.adasr-partial").mkdir()
    with pytest.raises(Exception, match="not adasr's kept work"):
        upscale_file(src, tmp_path / "o.mp4", resume=True, level="0")
