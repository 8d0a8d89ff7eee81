"""adasr.video: probing the real clips, reading frames, encoding, audio copy, broken inputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from adasr.errors import ConfigError, InputError, OutputError
from adasr.video import VideoWriter, available_codecs, codec_for_suffix, is_video_path, probe, read_frames


@pytest.fixture(scope="module")
def clips(data_root: Path) -> Path:
    return data_root / "video"


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """A smooth moving colour pattern (codec-friendly, so reconstruction error stays small)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + i * 9) % 256, (y * 5) % 256, (x + y + i * 3) % 256], -1).astype(np.uint8)


def make_clip_with_audio(path, frames: int = 10, size: tuple[int, int] = (64, 48), fps=Fraction(25), *,
                         audio_codec: str = "aac", sample_rate: int = 48000) -> Path:
    """Write an H.264 clip of `frames` frames (size = (width, height)) with a mono sine-tone
    audio track of the same length, straight with PyAV (independent of VideoWriter)."""
    path = Path(path)
    w, h = size
    fps = Fraction(fps)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = c.add_stream(audio_codec, rate=sample_rate, layout="mono")
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(i, h, w), format="rgb24")
            f.pts, f.time_base = i, 1 / fps
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        n = int(round(frames / fps * sample_rate))
        tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / sample_rate)).astype(np.int16)[None]
        for s0 in range(0, n, 1000):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, s0:s0 + 1000]), format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = sample_rate, s0, Fraction(1, sample_rate)
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    return path


def audio_packets(path) -> tuple[str, list[bytes], float]:
    """(codec, packet payloads, total packet duration in seconds) of the first audio stream."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        pkts = [p for p in c.demux(s) if p.size]
        dur = sum(float(p.duration * p.time_base) for p in pkts)
        return s.codec_context.name, [bytes(p) for p in pkts], dur


def write_clip(path, n=10, size=(64, 48), fps=Fraction(25), **kw) -> list[np.ndarray]:
    w, h = size
    frames = [pattern(i, h, w) for i in range(n)]
    with VideoWriter(path, w, h, fps, **kw) as vw:
        for f in frames:
            vw.write(f)
    return frames


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# probing and reading the real clips


def test_probe_real_clips(clips):
    bbb = probe(clips / "bigbuckbunny_720p.mp4")
    assert (bbb.width, bbb.height, bbb.fps, bbb.frame_count) == (1280, 720, Fraction(25), 132)
    assert bbb.frame_count_exact and bbb.codec == "h264" and bbb.pix_fmt == "yuv420p"
    assert bbb.has_audio and bbb.audio_codec == "aac" and bbb.rotation == 0
    assert bbb.duration == pytest.approx(5.28, abs=0.01)

    bikes = probe(clips / "bikes_640x272.mp4")
    assert (bikes.width, bikes.height, bikes.frame_count, bikes.has_audio) == (640, 272, 250, False)

    mm = probe(clips / "megamind_720x528.avi")
    assert (mm.width, mm.height, mm.fps, mm.frame_count) == (720, 528, Fraction(2997, 125), 270)
    assert mm.has_audio and mm.audio_codec == "ac3"

    vt = probe(clips / "vtest_768x576.avi")
    assert (vt.fps, vt.frame_count, vt.has_audio) == (Fraction(10), 795, False)


@pytest.mark.slow
def test_read_first_frames(clips):
    frames = list(read_frames(clips / "bigbuckbunny_720p.mp4", max_frames=3))
    assert len(frames) == 3
    assert all(f.shape == (720, 1280, 3) and f.dtype == np.uint8 for f in frames)
    assert 20 < frames[0].mean() < 235  # a real picture, not a blank frame
    late = list(read_frames(clips / "bikes_640x272.mp4", start=247))
    assert len(late) == 3 and late[0].shape == (272, 640, 3)
    with pytest.raises(InputError, match="past the end"):
        list(read_frames(clips / "bikes_640x272.mp4", start=250))


def test_is_video_path():
    assert is_video_path("a/b.MP4") and is_video_path("x.avi") and not is_video_path("x.png")


# ---------------------------------------------------------------------------------------------
# writing


@pytest.mark.parametrize(
    ("name", "codec", "fps"),
    [("h264.mp4", "h264", Fraction(25)),
     ("h265.mkv", "h265", Fraction(30000, 1001)),
     ("av1.webm", "av1", Fraction(24)),
     ("h264.mov", "h264", Fraction(2997, 125))],
)
@pytest.mark.slow
def test_write_and_read_back(tmp_path, name, codec, fps):
    if codec not in available_codecs():
        pytest.skip(f"no {codec} encoder in this FFmpeg build")
    out = tmp_path / name
    src = write_clip(out, fps=fps, codec=codec)
    assert leftovers(tmp_path) == [name]
    info = probe(out)
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, fps, 10)
    assert info.codec == {"h264": "h264", "h265": "hevc", "av1": "av1"}[codec]
    got = list(read_frames(out))
    assert len(got) == 10
    assert max(mae(a, b) for a, b in zip(got, src)) < 6.0
    bias = np.mean([(a.astype(float) - b).mean(axis=(0, 1)) for a, b in zip(got, src)], axis=0)
    assert np.abs(bias).max() < 1.0, bias  # no systematic colour shift through YUV and back


def test_odd_size_is_padded_by_replication(tmp_path):
    out = tmp_path / "odd.mp4"
    src = write_clip(out, n=3, size=(65, 47))
    info = probe(out)
    assert (info.width, info.height) == (66, 48)
    got = list(read_frames(out))
    assert mae(got[0][:47, :65], src[0]) < 6.0
    # the added column / row repeat the last real ones
    assert mae(got[0][:47, 65], src[0][:, 64]) < 8.0 and mae(got[0][47, :65], src[0][46]) < 8.0


def test_odd_size_kept_with_444(tmp_path):
    out = tmp_path / "odd444.mkv"
    write_clip(out, n=2, size=(17, 13), pix_fmt="yuv444p")
    info = probe(out)
    assert (info.width, info.height, info.pix_fmt) == (17, 13, "yuv444p")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rot.mp4", "rot.mkv"])
def test_rotation_metadata_round_trip(tmp_path, name):
    out = tmp_path / name
    write_clip(out, n=2, rotation=90)
    assert probe(out).rotation == 90
    write_clip(tmp_path / f"m{name}", n=2, rotation=-90)
    assert probe(tmp_path / f"m{name}").rotation == 270
    assert list(read_frames(out))[0].shape == (48, 64, 3)  # frames stay as stored


@pytest.mark.slow
@pytest.mark.parametrize("target", ["with_audio.mp4", "with_audio.mkv"])
def test_audio_copied_unchanged(tmp_path, target):
    src = make_clip_with_audio(tmp_path / "src.mp4", frames=10)
    out = tmp_path / target
    write_clip(out, audio_from=src)
    codec_in, pk_in, dur_in = audio_packets(src)
    codec_out, pk_out, dur_out = audio_packets(out)
    assert codec_out == codec_in == "aac"
    assert len(pk_out) == len(pk_in) and pk_out == pk_in
    # Matroska stores times in milliseconds: each packet's duration may round by up to 1 ms
    assert dur_out == pytest.approx(dur_in, abs=1e-3 * (len(pk_in) if target.endswith(".mkv") else 1))
    info = probe(out)
    assert info.has_audio and info.frame_count == 10 and info.fps == 25


def test_audio_from_real_clips(tmp_path, clips):
    out = tmp_path / "bbb_audio.mp4"
    write_clip(out, n=5, audio_from=clips / "bigbuckbunny_720p.mp4")
    _, pk_in, dur_in = audio_packets(clips / "bigbuckbunny_720p.mp4")
    _, pk_out, dur_out = audio_packets(out)
    assert len(pk_in) == len(pk_out) == 249 and pk_in == pk_out
    assert dur_out == pytest.approx(dur_in, abs=1e-3)
    out2 = tmp_path / "mm_audio.mkv"  # AC-3 from an AVI
    write_clip(out2, n=5, audio_from=clips / "megamind_720x528.avi")
    c_in, pk_in, _ = audio_packets(clips / "megamind_720x528.avi")
    c_out, pk_out, _ = audio_packets(out2)
    assert c_in == c_out == "ac3" and pk_in == pk_out


def test_opus_audio_into_webm(tmp_path):
    if "av1" not in available_codecs():
        pytest.skip("no AV1 encoder")
    src = make_clip_with_audio(tmp_path / "src.mkv", frames=5, audio_codec="libopus")
    out = tmp_path / "out.webm"
    write_clip(out, n=5, codec="av1", audio_from=src)
    assert audio_packets(out)[1] == audio_packets(src)[1]


def test_audio_source_without_audio_gives_silent_output(tmp_path, clips):
    out = tmp_path / "silent.mp4"
    write_clip(out, n=2, audio_from=clips / "bikes_640x272.mp4")
    assert not probe(out).has_audio


def test_audio_codec_the_container_cannot_hold(tmp_path):
    if "av1" not in available_codecs():
        pytest.skip("no AV1 encoder")
    src = make_clip_with_audio(tmp_path / "src.mp4", frames=3)
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="aac"):
        write_clip(tmp_path / "out" / "x.webm", n=2, codec="av1", audio_from=src)
    assert leftovers(tmp_path / "out") == []


# ---------------------------------------------------------------------------------------------
# broken inputs


def test_truncated_real_video_keeps_what_decodes(tmp_path, clips):
    data = (clips / "megamind_720x528.avi").read_bytes()
    bad = tmp_path / "cut.avi"
    bad.write_bytes(data[: len(data) // 4])
    got = []
    with pytest.raises(InputError, match=r"decoded \d+ frames, then") as e:
        for f in read_frames(bad):
            got.append(f)
    assert 10 < len(got) < 270
    assert f"decoded {len(got)} frames" in str(e.value) and "cut.avi" in str(e.value)
    assert got[-1].shape == (528, 720, 3)


@pytest.mark.slow
def test_truncated_mp4_keeps_what_decodes(tmp_path):
    good = tmp_path / "good.mp4"
    write_clip(good, n=30)  # the writer puts the index first, so a cut file stays readable
    data = good.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) - (len(data) - data.find(b"mdat")) // 3])  # lose the last third
    got = []
    with pytest.raises(InputError, match=r"decoded \d+ frames, then"):
        for f in read_frames(bad):
            got.append(f)
    assert 0 < len(got) < 30


def test_zero_frame_video(tmp_path):
    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    for fn in (probe, lambda p: list(read_frames(p))):
        with pytest.raises(InputError, match="empty.mp4"):
            fn(path)


def test_not_a_video(tmp_path, data_root):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    png = data_root / "benchmarks" / "Set5" / "baby.png"
    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as c:
        a = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        af = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        af.sample_rate, af.pts = 8000, 0
        for p in a.encode(af):
            c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    for path, words in [(text, "notes.mp4"), (png, "still image"), (wav, "no video stream"),
                        (tmp_path / "missing.mp4", "not found"), (tmp_path, "directory")]:
        with pytest.raises(InputError, match=words):
            list(read_frames(path))
        with pytest.raises(InputError):
            probe(path)


# ---------------------------------------------------------------------------------------------
# writer failures leave nothing behind


@pytest.mark.slow
def test_exception_inside_writer_leaves_nothing(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out_dir / "x.mp4", 64, 48, 25, audio_from=make_clip_with_audio(tmp_path / "a.mp4", 3)) as vw:
            vw.write(pattern(0, 48, 64))
            assert len(leftovers(out_dir)) == 1  # the temporary file, not the target
            raise RuntimeError("boom")
    assert leftovers(out_dir) == []
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out_dir / "y.mkv", 64, 48, 25) as vw:
            vw.write(pattern(0, 48, 64))
            raise KeyboardInterrupt
    assert leftovers(out_dir) == []


@pytest.mark.slow
def test_no_frames_written_saves_nothing(tmp_path):
    with pytest.raises(OutputError, match="no frames"):
        with VideoWriter(tmp_path / "x.mp4", 64, 48, 25):
            pass
    assert leftovers(tmp_path) == []


def test_bad_writer_options(tmp_path, monkeypatch):
    with pytest.raises(OutputError, match=r"\.gif"):
        VideoWriter(tmp_path / "x.gif", 64, 48, 25)
    with pytest.raises(ConfigError, match="WebM"):
        VideoWriter(tmp_path / "x.webm", 64, 48, 25, codec="h264")
    with pytest.raises(ConfigError, match="crf"):
        VideoWriter(tmp_path / "x.mp4", 64, 48, 25, crf=99)
    with pytest.raises(ConfigError, match="preset"):
        VideoWriter(tmp_path / "x.mp4", 64, 48, 25, preset="warp")
    with pytest.raises(ConfigError, match="codec"):
        VideoWriter(tmp_path / "x.mp4", 64, 48, 25, codec="mpeg2")
    with pytest.raises(ConfigError, match="pixel format"):
        VideoWriter(tmp_path / "x.mp4", 64, 48, 25, pix_fmt="rgb48le")
    with pytest.raises(ConfigError, match="frame rate"):
        VideoWriter(tmp_path / "x.mp4", 64, 48, 0)
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "nowhere" / "x.mp4", 64, 48, 25)
    with pytest.raises(InputError, match="audio source"):
        with VideoWriter(tmp_path / "x.mp4", 64, 48, 25, audio_from=tmp_path / "missing.mp4"):
            pass
    import adasr.video as video

    monkeypatch.setattr(video, "_has_encoder", lambda name: name == "libx264")
    with pytest.raises(ConfigError, match=r"lacks; available: h264"):
        VideoWriter(tmp_path / "x.mkv", 64, 48, 25, codec="av1")
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_write_checks_frame_shape(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        with VideoWriter(tmp_path / "x.mp4", 64, 48, 25) as vw:
            vw.write(np.zeros((48, 64, 3), np.float32))
    assert leftovers(tmp_path) == []


def test_codec_for_suffix():
    assert codec_for_suffix("a.webm") == "av1" and codec_for_suffix("a.MKV") == "h264"
    assert codec_for_suffix("a.mp4", "hevc") == "h265"
    with pytest.raises(OutputError):
        codec_for_suffix("a.avi")


def test_x264_is_held_to_avx2_only_where_it_would_run_avx512(monkeypatch):
    from adasr import threads

    monkeypatch.setattr(threads.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(threads, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512cd", "avx512bw",
                                                                 "avx512dq", "avx512vl"}))
    assert threads.x264_options() == {"x264-params": "asm=AVX2"}
    monkeypatch.setattr(threads, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))  # x264 stays at AVX2 itself
    assert threads.x264_options() == {}
    monkeypatch.setattr(threads.platform, "machine", lambda: "aarch64")
    assert threads.x264_options() == {}

