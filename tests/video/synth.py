"""Small synthetic clips with the streams and tags a faithful upscaler must carry, written with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern(i: int, h: int, w: int, peak: int = 255) -> np.ndarray:
    """A smooth moving colour pattern (codec-friendly)."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x * 4 + i * 9) % 256, (y * 5) % 256, (x + y + i * 3) % 256], -1).astype(np.float64)
    if peak == 255:
        return rgb.astype(np.uint8)
    return (rgb * (peak / 255.0) + (np.arange(w)[None, :, None] % 4) * 64).clip(0, peak).astype(np.uint16)


def _tone(container, stream, seconds: float, rate: int, hz: float) -> None:
    n = int(round(seconds * rate))
    tone = (8000 * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype(np.int16)[None]
    for s0 in range(0, n, 1024):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, s0:s0 + 1024]), format="s16", layout="mono")
        af.sample_rate, af.pts, af.time_base = rate, s0, Fraction(1, rate)
        for p in stream.encode(af):
            container.mux(p)
    for p in stream.encode(None):
        container.mux(p)


def make_rich_clip(path: str | Path, *, times_ms: list[int] | None = None, size: tuple[int, int] = (64, 48),
                   ten_bit: bool = False, sar: Fraction | None = Fraction(4, 3), trc: int = 1,
                   primaries: int = 1, matrix: int = 1, subtitles: bool = True, attachment: bool = True,
                   audio_langs: tuple[tuple[str, str], ...] = (("eng", "Main"), ("fra", "Commentary")),
                   audio_codec: str = "aac") -> Path:
    """A Matroska clip: H.264 8-bit (or H.265 10-bit) video at the frame times `times_ms` (default
    10 frames at 25 fps; uneven times make a variable frame rate), a sample aspect ratio, colour
    tags, one mono tone per (language, title) in `audio_langs` lasting as long as the video, a
    SubRip subtitle track in German and a font attachment."""
    path = Path(path)
    times_ms = times_ms if times_ms is not None else [40 * i for i in range(10)]
    w, h = size
    end_s = (times_ms[-1] + 40) / 1000
    with av.open(str(path), "w", format="matroska") as c:
        enc = "libx265" if ten_bit else "libx264"
        v = c.add_stream(enc, rate=25, options={"x265-params": "log-level=error"} if ten_bit else {})
        v.width, v.height = w, h
        v.pix_fmt = "yuv420p10le" if ten_bit else "yuv420p"
        v.codec_context.time_base = Fraction(1, 1000)
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = primaries, trc, matrix, 1
        if sar is not None:
            cc.sample_aspect_ratio = sar
            v.sample_aspect_ratio = sar
        audios = []
        for lang, title in audio_langs:
            a = c.add_stream(audio_codec, rate=48000, layout="mono")
            a.metadata["language"], a.metadata["title"] = lang, title
            audios.append(a)
        sub = None
        if subtitles:
            sub = c.add_mux_stream("subrip")
            sub.metadata["language"] = "ger"
            sub.metadata["title"] = "Deutsch"
        if attachment:
            c.add_attachment("font.ttf", "font/ttf", b"\0font" * 20)
        for i, t in enumerate(times_ms):
            rgb = pattern(i, h, w, 1023 * 64 if ten_bit else 255)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if ten_bit else "rgb24")
            f = f.reformat(format=v.pix_fmt, dst_colorspace=av.video.reformatter.Colorspace.ITU709,
                           dst_color_range=av.video.reformatter.ColorRange.MPEG)
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        for k, a in enumerate(audios):
            _tone(c, a, end_s, 48000, 440 * (k + 1))
        if sub is not None:
            for k, t in enumerate(times_ms[::3]):
                text = f"{k + 1}\n00:00:00,000 --> 00:00:00,100\nline {k}\n".encode()
                p = av.Packet(text)
                p.stream, p.pts, p.dts, p.duration, p.time_base = sub, t, t, 100, Fraction(1, 1000)
                c.mux(p)
    return path


def stream_summary(path: str | Path) -> list[tuple[str, str | None, str | None]]:
    """(type, language, title) of every non-video stream, in file order."""
    with av.open(str(path)) as c:
        return [(s.type, (s.metadata or {}).get("language"), (s.metadata or {}).get("title"))
                for s in c.streams if s.type != "video"]


def video_times(path: str | Path) -> list[float]:
    """Presentation times in seconds of every decoded video frame, in order."""
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def stream_duration(path: str | Path, kind: str, index: int = 0) -> float:
    """End minus start of a stream's packets (seconds)."""
    with av.open(str(path)) as c:
        s = [s for s in c.streams if s.type == kind][index]
        pk = [p for p in c.demux(s) if p.size and p.pts is not None]
        start = min(float(p.pts * p.time_base) for p in pk)
        end = max(float((p.pts + (p.duration or 0)) * p.time_base) for p in pk)
        return end - start
