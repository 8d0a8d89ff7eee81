"""Media fidelity of `adasr upscale` (a package, through the player): every stream, its tags, the frame
times, bit depth, colour tags and aspect ratio survive; trimming cuts every stream; what cannot be
carried is refused before any frame. Probed with PyAV on tiny synthetic clips."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from adasr.errors import ConfigError, InputError
from adasr.runtime.player import PlayOptions, play
from adasr.video import check_carried, check_sdr, probe, read_frames
from tests.video.synth import make_rich_clip, stream_duration, stream_summary, video_times

FRAME_S = 0.04  # one frame at 25 fps: the tolerance of every duration below


@pytest.fixture(scope="module")
def engine():
    from adasr.api import load_engine

    e = load_engine(profile=False, precision="fp32")
    e.switch(0)
    return e


def _upscale(engine, src, dst, **kw):
    return play(engine, src, PlayOptions(policy="fixed", level=0, out=dst, pace=False, **kw))


@pytest.mark.slow
def test_every_stream_and_tag_survives(tmp_path, engine):
    """Two audio tracks with languages and titles, a subtitle track, an attachment, a variable
    frame rate, a 4:3 sample aspect ratio and BT.709 tags all come through."""
    times = [0, 30, 230, 300, 800]
    src = make_rich_clip(tmp_path / "src.mkv", times_ms=times)
    out = tmp_path / "out.mkv"
    _upscale(engine, src, out)
    assert stream_summary(out) == stream_summary(src) == [
        ("audio", "eng", "Main"), ("audio", "fra", "Commentary"), ("subtitle", "ger", "Deutsch"),
        ("attachment", None, None)]
    assert video_times(out) == pytest.approx([t / 1000 for t in times], abs=1e-3)  # Matroska: 1 ms clock
    info = probe(out)
    assert (info.width, info.height) == (128, 96)
    assert info.sar == Fraction(4, 3)
    assert (info.color.primaries, info.color.trc, info.color.matrix) == (1, 1, 1)
    with av.open(str(out)) as c:
        att = c.streams.attachments[0]
        assert att.name == "font.ttf" and bytes(att.data) == b"\0font" * 20
        subs = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert subs[0].endswith(b"line 0\n") and len(subs) == 2
    for k in (0, 1):
        assert stream_duration(out, "audio", k) == pytest.approx(stream_duration(src, "audio", k), abs=FRAME_S)


@pytest.mark.slow
def test_ten_bit_hevc_stays_ten_bit(tmp_path, engine):
    if "yuv420p10le" not in {f.name for f in av.Codec("libx265", "w").video_formats}:
        pytest.skip("this FFmpeg's x265 has no 10-bit")
    src = make_rich_clip(tmp_path / "src10.mkv", ten_bit=True, times_ms=[0, 40, 80], subtitles=False,
                         attachment=False, audio_langs=())
    assert probe(src).bit_depth == 10
    lr = next(read_frames(src, depth=16))
    assert lr.dtype.name == "uint16" and lr.max() > 255  # the 16-bit read keeps more than 8 bits
    out = tmp_path / "out10.mkv"
    _upscale(engine, src, out)
    info = probe(out)
    assert info.bit_depth == 10 and info.pix_fmt == "yuv420p10le"
    hr = next(read_frames(out, depth=16))
    # more than 256 distinct values in a channel: the SR output was not squeezed through 8 bits
    assert len({int(v) for v in hr[..., 1].ravel()}) > 256


@pytest.mark.slow
@pytest.mark.parametrize("how", ["max_frames", "range"])
def test_trimming_cuts_every_stream(tmp_path, engine, how):
    src = make_rich_clip(tmp_path / "src.mkv", times_ms=[40 * i for i in range(20)], attachment=False)
    out = tmp_path / "cut.mkv"
    if how == "max_frames":
        _upscale(engine, src, out, max_frames=5)
        want_times = [0.04 * i for i in range(5)]
    else:
        _upscale(engine, src, out, start_s=0.2, duration_s=0.2)
        want_times = [0.04 * i for i in range(5)]  # frames 5..9, shifted to start at 0
    assert video_times(out) == pytest.approx(want_times, abs=1e-3)
    video_s = 5 * FRAME_S
    for k in (0, 1):
        assert stream_duration(out, "audio", k) == pytest.approx(video_s, abs=FRAME_S)
    with av.open(str(out)) as c:
        subs = [p for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert all(0 <= float(p.pts * p.time_base) < video_s for p in subs)


def test_streams_a_container_cannot_hold_are_refused_up_front(tmp_path):
    src = make_rich_clip(tmp_path / "src.mkv", times_ms=[0, 40], audio_langs=(("eng", "Main"),))
    assert check_carried(src, tmp_path / "ok.mkv") == [
        'audio #1 (aac, language eng, "Main")', 'subtitle #2 (subrip, language ger, "Deutsch")',
        "attachment #3 (font.ttf)"]
    with pytest.raises(ConfigError, match=r"\.mp4 cannot hold subtitle #2 \(subrip.*attachment #3"):
        check_carried(src, tmp_path / "x.mp4")
    pcm = make_rich_clip(tmp_path / "pcm.mkv", times_ms=[0, 40], audio_codec="pcm_s16le", subtitles=False,
                         attachment=False, audio_langs=(("eng", "x"),))
    with pytest.raises(ConfigError, match="pcm_s16le"):
        check_carried(pcm, tmp_path / "x.webm")


def test_hdr_is_refused_in_one_line(tmp_path):
    src = make_rich_clip(tmp_path / "pq.mkv", times_ms=[0, 40], trc=16, primaries=9, matrix=9, subtitles=False,
                         attachment=False, audio_langs=())
    info = probe(src)
    assert info.hdr == "smpte2084"
    with pytest.raises(ConfigError, match="HDR") as e:
        check_sdr(info)
    assert "\n" not in str(e.value)


def test_url_input_is_refused_clearly():
    with pytest.raises(InputError, match="URL inputs are not supported"):
        probe("https://example.com/clip.mp4")
