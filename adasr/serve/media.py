"""A live channel's media: the HR source (a file played at its rate, looped; or a URL PyAV opens)
and the LR segments (MPEG-TS written by PyAV, each starting with a key frame, so each plays on
its own in ffplay, and decoded back exactly as a client decodes it).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from adasr.data.imresize import area_downscale
from adasr.errors import ConfigError, InputError
from adasr.threads import x264_options

__all__ = ["LiveSource", "MAX_SEGMENT_BYTES", "MAX_SEGMENT_DECODED", "MAX_SEGMENT_FRAMES", "SEGMENT_CODECS",
           "decode_segment", "downsample", "encode_segment"]

MAX_SEGMENT_BYTES = 32 << 20  # one LR segment on the wire
MAX_SEGMENT_FRAMES = 1200
MAX_SEGMENT_DECODED = 1 << 30  # bytes of one segment's decoded RGB frames
SEGMENT_CODECS = {"h264": "libx264", "h265": "libx265"}


def _is_url(source: str) -> bool:
    return "://" in source


class LiveSource:
    """HR frames of `source`, centre-cropped to `crop_hw` (H, W) and to multiples of 2 x `scale` (so the
    LR frames have even sides, as H.264's 4:2:0 needs). A file loops `loops` times at most; a URL
    is read once. `fps`: the source's own rate (override with `fps`)."""

    def __init__(self, source: str | Path, *, scale: int, crop_hw: tuple[int, int] | None = None,
                 fps: float | None = None, loops: int = 1000, max_frames: int | None = None) -> None:
        self.source, self.scale, self.loops, self.max_frames = str(source), int(scale), int(loops), max_frames
        if not _is_url(self.source) and not Path(self.source).is_file():
            raise InputError(f"live source not found: {self.source}")
        try:
            with av.open(self.source, mode="r", timeout=10.0) as c:
                if not c.streams.video:
                    raise InputError(f"no video stream in {self.source}")
                vs = c.streams.video[0]
                w, h = vs.codec_context.width, vs.codec_context.height
                rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        except av.FFmpegError as exc:
            raise InputError(f"cannot open live source {self.source}: {exc}") from None
        ch, cw = crop_hw if crop_hw else (h, w)
        if cw > w or ch > h:
            raise ConfigError(f"crop {cw}x{ch} is larger than the source ({w}x{h})")
        step = 2 * self.scale
        self.width, self.height = cw - cw % step, ch - ch % step
        if self.width < 8 * self.scale or self.height < 8 * self.scale:
            raise ConfigError(f"frames of {self.width}x{self.height} are too small for x{self.scale}")
        self.x0, self.y0 = (w - self.width) // 2, (h - self.height) // 2
        self.fps = float(fps) if fps is not None else float(rate)
        if not (math.isfinite(self.fps) and 0 < self.fps <= 240):
            raise ConfigError(f"source frame rate must be in (0, 240], got {self.fps}")

    def frames(self) -> Iterator[np.ndarray]:
        """HR frames, looping a file; stops after `loops` passes or `max_frames` frames."""
        n = 0
        for _ in range(1 if _is_url(self.source) else self.loops):
            got = 0
            try:
                with av.open(self.source, mode="r", timeout=10.0) as c:
                    for frame in c.decode(video=0):
                        rgb = frame.to_ndarray(format="rgb24")
                        yield np.ascontiguousarray(rgb[self.y0:self.y0 + self.height, self.x0:self.x0 + self.width])
                        got += 1
                        n += 1
                        if self.max_frames is not None and n >= self.max_frames:
                            return
            except av.FFmpegError as exc:
                raise InputError(f"live source {self.source} failed: {exc}") from None
            if not got:
                raise InputError(f"live source {self.source} gave no frames")


def downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """Area downsampling of one HR frame by `scale` (the SRVC encoder's rule, `area_downscale`)."""
    return area_downscale(hr, scale)


def encode_segment(frames: list[np.ndarray], fps: float, *, codec: str = "h264", crf: int = 28,
                   preset: str = "veryfast", start_pts: int = 0) -> bytes:
    """MPEG-TS bytes of `frames` (uint8 HxWx3, even sides), one GOP starting with a key frame."""
    if codec not in SEGMENT_CODECS:
        raise ConfigError(f"segment codec must be one of {', '.join(SEGMENT_CODECS)}, got {codec!r}")
    if not frames or len(frames) > MAX_SEGMENT_FRAMES:
        raise ConfigError(f"a segment needs 1..{MAX_SEGMENT_FRAMES} frames, got {len(frames)}")
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(buf, mode="w", format="mpegts") as out:
        opts = {"crf": str(crf), "preset": preset}
        if codec == "h265":
            opts["x265-params"] = "log-level=error"
        elif SEGMENT_CODECS[codec] == "libx264":
            opts.update(x264_options())  # the same segment bytes every time on an AVX-512 CPU
        vs = out.add_stream(SEGMENT_CODECS[codec], rate=rate, options=opts)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.gop_size = len(frames)
        vs.codec_context.thread_count = 1
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = start_pts + i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decode_segment(data: bytes, max_frames: int = MAX_SEGMENT_FRAMES,
                   size_hw: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The RGB frames of one segment (InputError if it is damaged, holds too many frames or
    more than MAX_SEGMENT_DECODED bytes of them). `size_hw`: the (H, W) the stream's manifest
    declares; each frame's size is checked against it before the frame is converted, so a
    segment of larger frames costs no memory."""
    if len(data) > MAX_SEGMENT_BYTES:
        raise InputError(f"segment of {len(data):,} bytes exceeds {MAX_SEGMENT_BYTES:,}")
    frames = []
    decoded = 0
    try:
        with av.open(io.BytesIO(data), mode="r", format="mpegts") as c:
            if not c.streams.video:
                raise InputError("segment holds no video stream")
            for frame in c.decode(video=0):
                if size_hw is not None and (frame.height, frame.width) != tuple(size_hw):
                    raise InputError(f"frame {len(frames)} is {frame.width}x{frame.height}, the manifest says "
                                     f"{size_hw[1]}x{size_hw[0]}")
                decoded += 3 * frame.width * frame.height
                if len(frames) >= max_frames or decoded > MAX_SEGMENT_DECODED:
                    raise InputError(f"segment holds more than {max_frames} frames or "
                                     f"{MAX_SEGMENT_DECODED >> 20} MiB of them")
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:
        raise InputError(f"damaged segment: {exc}") from None
    if not frames:
        raise InputError("segment decoded to no frames")
    return frames
