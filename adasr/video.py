"""Video probing, frame reading and encoding with PyAV (FFmpeg).

Reading
-------
`probe(path)` describes a clip; `read_frames(path)` yields uint8 HxWx3 RGB frames exactly as
stored: no rotation is applied (a phone clip shot upright comes out sideways, with
`VideoInfo.rotation` saying how to turn it), and the writer carries the rotation over as
metadata. YUV -> RGB uses the matrix the stream declares; when it declares none, BT.709 is
assumed for HD (width >= 1280 or height > 576) and BT.601 otherwise, as common players do.

`VideoInfo.frame_count` is exact when the container records the number of frames (MP4, MOV,
AVI: `frame_count_exact` is True); otherwise (Matroska/WebM, MPEG-TS, ...) it is
round(duration * fps), an estimate that can be off by a frame or two.

`VideoInfo.rotation` is in degrees *counter-clockwise*, normalised to 0..359, as FFmpeg's display
matrix (`av_display_rotation_get`) and PyAV's `VideoFrame.rotation` express it; the legacy
clockwise 'rotate' tag is converted. A typical portrait phone clip reads 270.

Broken input: a corrupt or truncated file yields every frame that decodes and then raises
InputError("... decoded N frames, then: <reason>"). Truncation is also detected when the stream
ends silently before the frame count the container declares. A missing file, a non-video file
(text, a still image such as PNG/JPEG), a file without a video stream or without a single
decodable frame raise InputError.

Writing
-------
`VideoWriter` encodes RGB frames with libx264 ('h264'), libx265 ('h265') or libsvtav1 ('av1',
libaom-av1 as a fallback) into .mp4, .mkv or .mov (.webm: AV1 only). Frames are uint8 (8-bit
output) or uint16 (16-bit RGB, for a 10-bit pixel format such as 'yuv420p10le'). Timing: by
default an exact frame rate (time base 1/fps, frame n at pts n); `write(frame, time=t)` with the
source's frame times instead keeps a variable frame rate as it was (times shifted so the first
written frame is at 0). Colour: `color` (a `ColorTags`, the source's) sets the RGB -> YUV matrix
and the primaries / transfer tags, limited range; the default is BT.709. `sar` keeps the
source's sample aspect ratio. On a clean exit it flushes the encoder, copies the streams of
`audio_from` (every audio, subtitle and attachment stream, packets remuxed unchanged with their
language and title tags and disposition, interleaved with the video) and renames the temporary
file onto the target; on an exception, KeyboardInterrupt included, the temporary file is
deleted. MP4/MOV are written with the index at the front (faststart); H.265 in MP4/MOV is tagged
'hvc1' for Apple players. Data streams (timecodes, chapters' helper tracks) are not copied.

Odd sizes: 4:2:0 and 4:2:2 chroma need even dimensions. An odd width or height is made even by
repeating the last column / row once (nothing is cut off; the output is one pixel larger in that
dimension); `VideoWriter.encoded_size` tells the size actually stored. 4:4:4 keeps odd sizes.

Rotation: `rotation` (counter-clockwise degrees, same convention as `VideoInfo.rotation`) is
stored as a display matrix, which MP4, MOV and Matroska/WebM all carry.

Carried streams: shifted by the same offset as the video (the first written frame's source
time, or the video stream's start), so A/V sync is kept. With `trim=True` they are cut to the
written video's time range (from its first frame to one frame after its last), as when only
part of the video is upscaled (`--max-frames`, `--start`, `--duration`); otherwise they are
copied to their end. `check_carried(src, dst)` refuses, before any work, a stream the target
container cannot hold (e.g. AAC into WebM, a text subtitle into MP4), naming it (ConfigError).
FFmpeg's log output is silenced.

Colour and depth: `VideoInfo.bit_depth` is the source's bits per sample (8, 10, 12);
`read_frames(..., depth=16)` yields uint16 RGB (the full precision of a 10-bit source).
`VideoInfo.color` holds the primaries, transfer, matrix and range codes (FFmpeg's numbering);
`VideoInfo.hdr` names an HDR transfer (PQ 'smpte2084' or HLG 'arib-std-b67'), which
`check_sdr` refuses in one line: the models are trained on SDR pictures, and HDR's mastering
metadata is not carried yet.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from adasr._atomic import atomic_path, check_writable
from adasr.errors import ConfigError, InputError, OutputError

__all__ = [
    "CODECS",
    "CONTAINERS",
    "ColorTags",
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "VideoWriter",
    "available_codecs",
    "check_carried",
    "check_sdr",
    "codec_for_suffix",
    "output_pix_fmt",
    "is_video_path",
    "probe",
    "read_frames",
]

# Silence FFmpeg: None installs PyAV's no-op log callback. (A numeric level such as PANIC would
# route FFmpeg's log through Python, which can deadlock with frame-threaded decoding on close.)
av.logging.set_level(None)

#: Suffixes treated as video inputs (lower case).
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
     ".flv", ".wmv", ".3gp", ".ogv", ".y4m"}
)

#: Output suffix -> FFmpeg muxer.
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}

#: Codec name -> FFmpeg encoders, in order of preference.
CODECS: dict[str, tuple[str, ...]] = {
    "h264": ("libx264",),
    "h265": ("libx265",),
    "av1": ("libsvtav1", "libaom-av1"),
}

_CODEC_ALIASES = {"avc": "h264", "x264": "h264", "hevc": "h265", "x265": "h265", "svt-av1": "av1"}
_CRF_RANGE = {"h264": (0, 51), "h265": (0, 51), "av1": (0, 63)}
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
_DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8", "libaom-av1": "6"}


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has a video suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


# --------------------------------------------------------------------------------------------
# probing and reading


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` finds out about a clip (see the module docstring for the conventions)."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int
    duration: float
    codec: str
    pix_fmt: str | None
    rotation: int
    has_audio: bool
    audio_codec: str | None
    frame_count_exact: bool = True
    bit_depth: int = 8
    color: ColorTags | None = None
    sar: Fraction | None = None
    time_base: Fraction | None = None
    start_time: float = 0.0
    carried: tuple[str, ...] = ()  # the audio / subtitle / attachment streams a writer copies, described

    @property
    def hdr(self) -> str | None:
        """'smpte2084' (PQ) or 'arib-std-b67' (HLG) for an HDR transfer, else None."""
        return None if self.color is None else _HDR_TRC.get(self.color.trc)


#: FFmpeg's transfer characteristic codes of HDR signals.
_HDR_TRC = {16: "smpte2084", 18: "arib-std-b67"}
_MATRIX = {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601, 6: Colorspace.SMPTE170M,
           7: Colorspace.SMPTE240M, 9: Colorspace.BT2020, 10: Colorspace.BT2020}


@dataclass(frozen=True)
class ColorTags:
    """A stream's colour description, in FFmpeg's codes (AVColorPrimaries, AVColorTransferCharacteristic,
    AVColorSpace, AVColorRange): 1 is BT.709, 2 unspecified; range 1 limited (tv), 2 full (pc)."""

    primaries: int = 2
    trc: int = 2
    matrix: int = 2
    range: int = 0

    @property
    def specified(self) -> bool:
        return any(v not in (0, 2) for v in (self.primaries, self.trc, self.matrix))

    def sws_matrix(self, width: int, height: int) -> Any:
        """The swscale matrix for this stream (unspecified: BT.709 for HD, BT.601 otherwise)."""
        if self.matrix in _MATRIX:
            return _MATRIX[self.matrix]
        return Colorspace.ITU709 if width >= 1280 or height > 576 else Colorspace.ITU601


def check_sdr(info: VideoInfo) -> None:
    """ConfigError (one line) for an HDR source, which is not upscaled yet."""
    if info.hdr is not None:
        raise ConfigError(f"{info.path.name} is HDR (transfer {info.hdr}); adasr upscales SDR video only, "
                          f"for now: convert it to SDR first (e.g. ffmpeg's zscale + tonemap filters)")


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def check_not_url(path: str | os.PathLike[str]) -> None:
    """InputError for a URL (http://, https://, rtmp://, ...): inputs are local files."""
    text = os.fspath(path)
    if _URL.match(text):
        if "://" not in text:  # a Path folds '//' into '/'
            text = text.replace(":/", "://", 1)
        raise InputError(f"URL inputs are not supported ({text}): download the file first "
                         f"(e.g. curl -L -o clip.mp4 URL) and give its path")


def _open_input(path: str | os.PathLike[str]) -> tuple[Path, Any, Any]:
    """Open `path` for reading; return (path, container, first video stream)."""
    check_not_url(path)
    path = Path(path)
    if not path.exists():
        raise InputError(f"video not found: {path}")
    if path.is_dir():
        raise InputError(f"expected a video file, got a directory: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read video (permission denied): {path}")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise InputError(f"not a readable video file: {path}: {_one_line(e)}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"cannot open video: {path}: {_one_line(e)}") from None
    fmt = container.format.name
    if fmt.startswith("image2") or fmt.endswith("_pipe"):
        container.close()
        raise InputError(f"not a video file (a still image, format '{fmt}'): {path}")
    if not container.streams.video:
        container.close()
        raise InputError(f"no video stream in {path}")
    if container.streams.video[0].codec_context is None:  # decoding it would crash FFmpeg
        container.close()
        raise InputError(f"cannot decode the video stream of {path} (truncated or unsupported)")
    return path, container, container.streams.video[0]


def _rate(stream: Any) -> Fraction | None:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return Fraction(r)
    return None


def _parse_hms(text: str) -> float | None:
    m = re.fullmatch(r"\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)\s*", text or "")
    if not m:
        return None
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def _stream_span(stream: Any) -> tuple[float, float | None]:
    """(start, end) of the video stream itself in seconds (not the container's); end may be None."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration and tb:
        return start, start + float(stream.duration * tb)
    meta = stream.metadata or {}
    for key in ("DURATION", "duration"):  # Matroska: the stream's end time, written per track
        if key in meta:
            end = _parse_hms(meta[key])
            if end is not None and end > start:
                return start, end
    return start, None


def _rotation_ccw(stream: Any, frame: Any | None) -> int:
    if frame is not None and frame.rotation:
        return int(round(frame.rotation)) % 360
    tag = (stream.metadata or {}).get("rotate")
    if tag:
        try:
            return (-int(round(float(tag)))) % 360  # the legacy tag is clockwise
        except ValueError:
            pass
    return 0


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe the video at `path`. Decodes the first frame (rotation; proves it decodes)."""
    path, container, stream = _open_input(path)
    with container:
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        try:
            first = next(frames, None)
        except av.FFmpegError as e:
            raise InputError(f"corrupt video: {path}: decoded 0 frames, then: {_one_line(e)}") from None
        finally:
            frames.close()
        if first is None:
            raise InputError(f"no decodable video frames in {path}")
        cc = stream.codec_context
        fps = _rate(stream)
        if fps is None:
            raise InputError(f"cannot determine the frame rate of {path}")
        start, end = _stream_span(stream)
        duration = end - start if end is not None else None
        if duration is None and container.duration:
            duration = container.duration / av.time_base
        exact = bool(stream.frames and stream.frames > 0)
        if exact:
            frame_count = int(stream.frames)
        else:
            frame_count = max(1, round((duration or 0.0) * fps))
        if duration is None:
            duration = float(frame_count / fps)
        audio = container.streams.audio
        src = first if first.format is not None else cc
        fmt_name = first.format.name if first.format is not None else cc.pix_fmt
        try:
            depth = max(c.bits for c in av.VideoFormat(fmt_name).components) if fmt_name else 8
        except (ValueError, TypeError):
            depth = 8
        color = ColorTags(int(src.color_primaries or 2), int(src.color_trc or 2), int(src.colorspace or 2),
                          int(src.color_range or 0))
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        sar = Fraction(sar) if sar and Fraction(sar) > 0 and Fraction(sar) != 1 else None
        return VideoInfo(
            path=path,
            width=int(first.width or cc.width),
            height=int(first.height or cc.height),
            fps=fps,
            frame_count=frame_count,
            duration=float(duration),
            codec=cc.codec.canonical_name,  # 'h264', 'hevc', 'av1', ... (not the decoder's name)
            pix_fmt=first.format.name if first.format is not None else cc.pix_fmt,
            rotation=_rotation_ccw(stream, first),
            has_audio=bool(audio),
            audio_codec=_audio_codec_name(audio[0]) if audio else None,
            frame_count_exact=exact,
            bit_depth=int(depth),
            color=color,
            sar=sar,
            time_base=Fraction(stream.time_base) if stream.time_base else None,
            start_time=start,
            carried=tuple(_describe(s) for s in _carried_streams(container)),
        )


def _carried_streams(container: Any) -> list[Any]:
    """The streams a writer copies: audio, subtitles, attachments, in file order."""
    return [s for s in container.streams if s.type in ("audio", "subtitle", "attachment")]


def _describe(stream: Any) -> str:
    """'audio #1 (aac, language eng, "Commentary")' for messages and `VideoInfo.carried`."""
    meta = stream.metadata or {}
    if stream.type == "attachment":
        what = meta.get("filename") or getattr(stream, "name", None) or "?"
        return f"attachment #{stream.index} ({what})"
    cc = stream.codec_context
    name = cc.codec.canonical_name if cc is not None else (getattr(stream, "codec_tag", None) or "?")
    parts = [name]
    if meta.get("language"):
        parts.append(f"language {meta['language']}")
    if meta.get("title"):
        parts.append(f'"{meta["title"]}"')
    return f"{stream.type} #{stream.index} ({', '.join(parts)})"


# swscale's fast 8-bit YUV<->RGB paths darken by about one level on average; accurate rounding
# with full-resolution chroma interpolation removes that bias (a few ms per HD frame).
_SWS_ACCURATE = Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP
_SWS_DECODE = Interpolation.BILINEAR | _SWS_ACCURATE
_SWS_ENCODE = Interpolation.AREA | _SWS_ACCURATE


def _audio_codec_name(stream: Any) -> str | None:
    cc = stream.codec_context
    if cc is None:
        return None
    return cc.codec.canonical_name


def _to_rgb(frame: Any, reformatter: VideoReformatter, hw: tuple[int, int] | None = None,
            rgb: str = "rgb24") -> np.ndarray:
    src_cs = ColorTags(matrix=int(frame.colorspace or 2)).sws_matrix(frame.width, frame.height)
    if hw is None or (frame.height, frame.width) == hw:
        return reformatter.reformat(
            frame, format=rgb, src_colorspace=src_cs, interpolation=_SWS_DECODE
        ).to_ndarray()
    return reformatter.reformat(
        frame, format=rgb, width=hw[1], height=hw[0], src_colorspace=src_cs, interpolation="AREA"
    ).to_ndarray()


def read_frames(
    path: str | os.PathLike[str], *, max_frames: int | None = None, start: int = 0,
    hw: tuple[int, int] | None = None, depth: int = 8, start_s: float | None = None,
    end_s: float | None = None, times: list[float] | None = None,
) -> Iterator[np.ndarray]:
    """Yield frames `start`, `start+1`, ... (at most `max_frames`) as uint8 HxWx3 RGB.

    hw: (H, W) to resize every frame to while converting it (swscale area filter; cheap, for
    previews and players), None for the stored size.
    depth: 8 for uint8 frames, 16 for uint16 (rgb48; a 10- or 12-bit source keeps its precision).
    start_s / end_s: only frames whose time, in seconds from the video stream's start, is in
    [start_s, end_s) (after `start` frames are skipped; `start_s` seeks to the keyframe before
    it, then decodes and drops the frames before it: frame-accurate).
    times: a list that gets each yielded frame's source time in seconds (the stream's clock,
    not shifted), in order; a variable frame rate is kept by writing frames at these times.

    Frame-accurate: frames before `start` are decoded and dropped. Frames come as stored (no
    rotation applied). Raises InputError as described in the module docstring; a corrupt file
    raises only after yielding every frame that decoded.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, not {start}")
    if max_frames is not None and max_frames <= 0:
        return
    if hw is not None and (len(hw) != 2 or not all(isinstance(v, int) and 1 <= v <= 16384 for v in hw)):
        raise ValueError(f"hw must be (H, W) positive integers, got {hw!r}")
    if depth not in (8, 16):
        raise ValueError(f"depth must be 8 or 16, not {depth!r}")
    rgb = "rgb24" if depth == 8 else "rgb48le"
    path, container, stream = _open_input(path)
    with container:
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        stream_start, expected_end = _stream_span(stream)
        if declared:
            expected_end = None
        t_lo = None if not start_s else stream_start + float(start_s)
        t_hi = None if end_s is None else stream_start + float(end_s)
        if t_lo is not None:
            declared, expected_end = 0, None  # a seek: the container's count no longer applies
            if stream.time_base:
                with contextlib.suppress(av.FFmpegError):
                    container.seek(int(t_lo / stream.time_base), stream=stream, backward=True)
        fps = _rate(stream)
        reformatter = VideoReformatter()  # one scaler context for the whole clip
        decoded = 0
        in_range = 0  # frames in [start_s, end_s) so far; the first `start` of them are dropped
        yielded = 0
        packets = 0
        last_time: float | None = None
        try:
            for packet in container.demux(stream):
                if packet.size or packet.dts is not None:  # not the final flush packet
                    packets += 1
                for frame in packet.decode():
                    decoded += 1
                    ft = frame.time
                    if ft is not None:
                        last_time = ft
                    if t_lo is not None and ft is not None and ft < t_lo - 1e-6:
                        continue
                    if t_hi is not None and ft is not None and ft >= t_hi - 1e-6:
                        if yielded == 0 and in_range >= start:
                            raise InputError(f"no frames of {path} in the time range asked for "
                                             f"(from {start_s or 0:g} s to {end_s:g} s)")
                        return
                    in_range += 1
                    if in_range <= start:
                        continue
                    if times is not None:
                        times.append(float(ft) if ft is not None else float(stream_start + yielded / (fps or 25)))
                    yield _to_rgb(frame, reformatter, hw, rgb)
                    yielded += 1
                    if max_frames is not None and yielded >= max_frames:
                        return
        except av.FFmpegError as e:
            raise InputError(
                f"corrupt or truncated video {path}: decoded {decoded} frames, then: {_one_line(e)}"
            ) from None
        if decoded == 0:
            raise InputError(f"no decodable video frames in {path}")
        if declared and packets < declared and decoded < declared:
            raise InputError(
                f"truncated video {path}: decoded {decoded} frames, then: the stream ended "
                f"before the {declared} frames the container declares"
            )
        if (
            expected_end is not None and fps and last_time is not None
            and last_time + 3 / fps < expected_end - 0.5
        ):
            raise InputError(
                f"truncated video {path}: decoded {decoded} frames, then: the stream ended at "
                f"{last_time:.2f}s of {expected_end:.2f}s"
            )
        if in_range == 0 and (t_lo is not None or t_hi is not None):
            raise InputError(f"no frames of {path} in the time range asked for "
                             f"(from {start_s or 0:g} s{'' if end_s is None else f' to {end_s:g} s'})")
        if in_range <= start:
            raise InputError(f"start frame {start} is past the end of {path} ({in_range} frames)")


# --------------------------------------------------------------------------------------------
# writing


def available_codecs() -> dict[str, str]:
    """Codec name -> the encoder this FFmpeg build will use for it (missing codecs left out)."""
    out = {}
    for name, encoders in CODECS.items():
        for enc in encoders:
            if _has_encoder(enc):
                out[name] = enc
                break
    return out


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:
        return False
    return True


def _canonical_codec(codec: str) -> str:
    c = str(codec).lower().strip()
    c = _CODEC_ALIASES.get(c, c)
    if c not in CODECS:
        raise ConfigError(f"unknown video codec '{codec}' (choose one of {', '.join(CODECS)})")
    return c


def codec_for_suffix(path: str | os.PathLike[str], codec: str | None = None) -> str:
    """Check that `path`'s suffix is a container we write and fits `codec`; return the codec.

    `codec` None picks the default for the container: 'av1' for .webm, else 'h264'.
    Unknown suffix -> OutputError; a codec the container cannot hold -> ConfigError.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise OutputError(
            f"cannot write video {path}: unknown video suffix '{path.suffix}' "
            f"(use one of {', '.join(CONTAINERS)})"
        )
    if codec is None:
        return "av1" if suffix == ".webm" else "h264"
    c = _canonical_codec(codec)
    if suffix == ".webm" and c != "av1":
        raise ConfigError(f"WebM output holds only AV1, not {c}: choose codec av1 or a .mp4/.mkv file ({path})")
    return c


def output_pix_fmt(info: Any, codec: str | None) -> str:
    """yuv420p10le for a source of more than 8 bits (when the codec's encoder takes it), else yuv420p."""
    if getattr(info, "bit_depth", 8) <= 8:
        return "yuv420p"
    codec = codec or "h264"
    for enc in CODECS[_canonical_codec(codec)]:
        if _has_encoder(enc):
            formats = {f.name for f in (av.Codec(enc, "w").video_formats or [])}
            return "yuv420p10le" if "yuv420p10le" in formats else "yuv420p"
    return "yuv420p"


def _fraction(fps: Any) -> Fraction:
    try:
        if isinstance(fps, float):
            f = Fraction(fps).limit_denominator(1001000)
        else:
            f = Fraction(fps)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ConfigError(f"invalid frame rate: {fps!r}") from None
    if not 0 < f <= 1000:
        raise ConfigError(f"frame rate out of range (0, 1000]: {fps!r}")
    return f


def _carry_meta(src: Any, out: Any) -> None:
    """Language, title and disposition of a copied stream (FFmpeg's stream copy keeps neither)."""
    meta = src.metadata or {}
    for key in ("language", "title", "handler_name", "filename", "mimetype"):
        if meta.get(key):
            out.metadata[key] = meta[key]
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        out.disposition = src.disposition


def check_carried(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> list[str]:
    """The descriptions of the streams of `src` that a writer to `dst` copies; ConfigError naming
    every one its container cannot hold (tried on an in-memory container of the same kind,
    before any frame is upscaled)."""
    import io

    suffix = Path(dst).suffix.lower()
    fmt = CONTAINERS.get(suffix)
    if fmt is None:
        return []
    _, container, _ = _open_input(src)
    with container:
        streams = _carried_streams(container)
        bad: list[str] = []
        for s in streams:
            buf = io.BytesIO()
            try:
                with av.open(buf, mode="w", format=fmt) as out:
                    if s.type == "attachment":
                        out.add_attachment(getattr(s, "name", None) or "attachment",
                                           getattr(s, "mimetype", None) or "application/octet-stream", b"")
                    else:
                        out.add_stream_from_template(s, opaque=True)
                    out.start_encoding()
            except (av.FFmpegError, ValueError, TypeError, OSError, NotImplementedError):
                bad.append(_describe(s))
        if bad:
            raise ConfigError(f"{suffix} cannot hold {'; '.join(bad)} of {Path(src).name}; write .mkv "
                              f"(it holds every audio, subtitle and attachment stream)")
        return [_describe(s) for s in streams]


class VideoWriter:
    """Encode RGB frames to a video file, atomically. Use as a context manager::

        with VideoWriter("out.mp4", w, h, info.fps, audio_from="in.mp4", rotation=info.rotation) as vw:
            for frame in frames:
                vw.write(frame)

    codec:    'h264' (libx264), 'h265' (libx265) or 'av1' (libsvtav1, else libaom-av1).
    crf:      constant quality; 0..51 for h264/h265, 0..63 for av1 (lower = better).
    preset:   None for the encoder's default ('medium' for x264/x265, 8 for SVT-AV1, cpu-used
              6 for libaom); x264/x265 take 'ultrafast'..'placebo', SVT-AV1 -1..13, libaom 0..8.
    pix_fmt:  an encoder pixel format such as 'yuv420p' (default), 'yuv420p10le', 'yuv444p'.
    audio_from: a file whose audio, subtitle and attachment streams are copied unchanged, with
              their language and title tags (none there: none written).
    rotation: display rotation in counter-clockwise degrees, stored as metadata.
    threads:  encoder threads (None or 0: the encoder's choice, about one per core plus extras);
              1 keeps the encoder off the cores an SR model runs on in the same process.
    color:    the source's `ColorTags` (matrix used for RGB -> YUV; primaries and transfer
              tagged); None: BT.709. The range is always limited (tv).
    sar:      sample aspect ratio to store (None: square pixels).
    time_base: the clock of `write(frame, time=...)` (None: 1/fps); give the source stream's
              time base to keep its timestamps exactly.
    trim:     cut the copied streams to the written video's time range (see the module doc).
    time_origin: the source time (seconds) that becomes output time 0 with `write(frame, time=...)`
              (default: the first written frame's; pieces of one video written apart share one).

    Bad options raise ConfigError, an unknown suffix or unwritable target OutputError, and an
    unreadable `audio_from` InputError, all before any frame is written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: Fraction | int | float | str,
        *,
        codec: str = "h264",
        crf: int = 23,
        preset: str | int | None = None,
        pix_fmt: str = "yuv420p",
        audio_from: str | os.PathLike[str] | None = None,
        rotation: int = 0,
        threads: int | None = None,
        color: ColorTags | None = None,
        sar: Fraction | None = None,
        time_base: Fraction | None = None,
        trim: bool = False,
        time_origin: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.codec = codec_for_suffix(self.path, codec)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 0):
            raise ConfigError("encoder threads must be a non-negative integer (0 = the encoder's choice), "
                              f"got {threads!r}")
        self.threads = threads
        self.width, self.height = int(width), int(height)
        if self.width < 1 or self.height < 1:
            raise ConfigError(f"invalid video size {width}x{height}")
        self.fps = _fraction(fps)
        lo, hi = _CRF_RANGE[self.codec]
        if not (isinstance(crf, int | np.integer) and lo <= int(crf) <= hi):
            raise ConfigError(f"crf for {self.codec} must be an integer in {lo}..{hi}, not {crf!r}")
        self.crf = int(crf)
        self.encoder = self._pick_encoder()
        self.preset = self._check_preset(preset)
        self.pix_fmt = self._check_pix_fmt(pix_fmt)
        self.bit_depth = max(c.bits for c in av.VideoFormat(self.pix_fmt).components)
        self.rotation = int(rotation) % 360
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.color = color if color is not None and color.specified else None
        self.sar = Fraction(sar) if sar else None
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self.trim = bool(trim)
        self.encoded_size = self._even_size()
        self.frames_written = 0
        self._reformatter = VideoReformatter()
        self._atomic: contextlib.AbstractContextManager[Path] | None = None
        self._out: Any = None
        self._in_audio: Any = None
        self._vstream: Any = None
        self._audio_map: dict[int, Any] = {}
        self._audio_iter: Iterator[Any] | None = None
        self._audio_next: Any = None
        self._t0: float | None = time_origin  # source seconds of output time 0 (default: the first frame's)
        self._t_last: float = 0.0           # seconds, written clock, of the last frame written
        self._last_pts = -1
        check_writable(self.path)

    # -- option checks --------------------------------------------------------------------

    def _pick_encoder(self) -> str:
        for enc in CODECS[self.codec]:
            if _has_encoder(enc):
                return enc
        have = available_codecs()
        listing = ", ".join(f"{k} ({v})" for k, v in have.items()) or "none"
        raise ConfigError(
            f"video codec '{self.codec}' needs encoder {' or '.join(CODECS[self.codec])}, which "
            f"this FFmpeg build lacks; available: {listing}"
        )

    def _check_preset(self, preset: str | int | None) -> str:
        if preset is None:
            return _DEFAULT_PRESET[self.encoder]
        p = str(preset).strip().lower()
        if self.encoder in ("libx264", "libx265"):
            if p not in _X26X_PRESETS:
                raise ConfigError(f"preset for {self.codec} must be one of {', '.join(_X26X_PRESETS)}, not {preset!r}")
            return p
        lo, hi = (-1, 13) if self.encoder == "libsvtav1" else (0, 8)
        try:
            n = int(p)
        except ValueError:
            n = hi + 1
        if not lo <= n <= hi:
            raise ConfigError(f"preset for {self.encoder} must be an integer in {lo}..{hi}, not {preset!r}")
        return str(n)

    def _check_pix_fmt(self, pix_fmt: str) -> str:
        formats = [f.name for f in (av.Codec(self.encoder, "w").video_formats or [])]
        if formats and pix_fmt not in formats:
            raise ConfigError(
                f"pixel format '{pix_fmt}' is not supported by {self.encoder} "
                f"(supported: {', '.join(formats)})"
            )
        return pix_fmt

    def _even_size(self) -> tuple[int, int]:
        desc = av.VideoFormat(self.pix_fmt)
        w, h = self.width, self.height
        if desc.chroma_width(2) == 1:  # horizontally subsampled chroma
            w += w % 2
        if desc.chroma_height(2) == 1:  # vertically subsampled chroma
            h += h % 2
        return w, h

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> VideoWriter:
        self._open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.close()
        else:
            self._abort(exc_type, exc, tb)
        return False

    def _open(self) -> None:
        if self._atomic is not None:
            raise RuntimeError("VideoWriter is already open")
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._open_container(tmp)
        except BaseException as e:
            self._abort(type(e), e, e.__traceback__)
            raise

    def _open_container(self, tmp: Path) -> None:
        suffix = self.path.suffix.lower()
        fmt = CONTAINERS[suffix]
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        try:
            self._out = av.open(str(tmp), mode="w", format=fmt, options=options)
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"cannot create video {self.path}: {_one_line(e)}") from None

        self._vstream = self._add_video_stream(fmt)

        if self.audio_from is not None:
            self._add_carried(suffix)

        restore = None
        if self.encoder == "libsvtav1" and "SVT_LOG" not in os.environ:
            os.environ["SVT_LOG"] = "1"  # SVT-AV1 prints its banner to stderr unless told not to
            restore = "SVT_LOG"
        try:
            self._out.start_encoding()
        except (av.FFmpegError, OSError, ValueError) as e:
            raise OutputError(f"cannot start writing video {self.path}: {_one_line(e)}") from None
        finally:
            if restore:
                os.environ.pop(restore, None)

    def _add_video_stream(self, fmt: str) -> Any:
        """The encoded video stream, its options, colour tags, aspect ratio and rotation."""
        opts = {"crf": str(self.crf)}
        if self.encoder in ("libx264", "libx265", "libsvtav1"):
            opts["preset"] = self.preset
        if self.encoder == "libx264":
            from adasr.threads import x264_options

            opts.update(x264_options())  # reproducible bytes on an AVX-512 CPU
        if self.encoder == "libx265":
            opts["x265-params"] = "log-level=error"
        if self.encoder == "libaom-av1":
            opts.update({"cpu-used": self.preset, "b": "0"})
        vs = self._out.add_stream(self.encoder, rate=self.fps, options=opts)
        vs.width, vs.height = self.encoded_size
        vs.pix_fmt = self.pix_fmt
        cc = vs.codec_context
        if self.threads:
            cc.thread_count = self.threads
        cc.time_base = self.time_base
        vs.time_base = self.time_base
        c = self.color
        if c is None:
            cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1  # BT.709
        else:
            cc.colorspace, cc.color_primaries, cc.color_trc = c.matrix, c.primaries, c.trc
        cc.color_range = 1  # limited (tv), as the encoder's input is converted
        if self.sar is not None:
            cc.sample_aspect_ratio = self.sar
            vs.sample_aspect_ratio = self.sar
        if self.encoder == "libx265" and fmt in ("mp4", "mov"):
            vs.codec_tag = "hvc1"
        if self.rotation:
            if hasattr(vs, "set_display_rotation"):  # PyAV >= 18: a display matrix
                vs.set_display_rotation(self.rotation)
            else:  # older PyAV: the legacy clockwise tag, which newer FFmpeg muxers ignore
                vs.metadata["rotate"] = str((-self.rotation) % 360)
        return vs

    def _add_carried(self, suffix: str) -> None:
        src = self.audio_from
        assert src is not None
        if not src.is_file():
            raise InputError(f"audio source not found: {src}")
        try:
            self._in_audio = av.open(str(src), mode="r")
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"cannot read audio source {src}: {_one_line(e)}") from None
        streams = _carried_streams(self._in_audio)
        if not streams:
            self._in_audio.close()
            self._in_audio = None
            return
        video = self._in_audio.streams.video
        if video and video[0].start_time is not None and video[0].time_base:
            self._video_start = float(video[0].start_time * video[0].time_base)
        else:
            self._video_start = 0.0
        packets = []
        for s in streams:
            try:
                if s.type == "attachment":
                    out = self._out.add_attachment(getattr(s, "name", None) or "attachment",
                                                   getattr(s, "mimetype", None) or "application/octet-stream",
                                                   bytes(getattr(s, "data", b"") or b""))
                else:
                    out = self._out.add_stream_from_template(s, opaque=True)
            except (ValueError, av.FFmpegError, TypeError, NotImplementedError) as e:
                what = "audio codec" if s.type == "audio" else s.type
                name = s.codec_context.name if s.codec_context is not None else _describe(s)
                raise ConfigError(
                    f"{what} '{name}' of {src} cannot be stored in {suffix} ({_one_line(e)}); use .mkv"
                ) from None
            _carry_meta(s, out)
            if s.type != "attachment":
                self._audio_map[s.index] = out
                packets.append(s)
        self._audio_iter = iter(self._in_audio.demux(packets)) if packets else None

    # -- writing --------------------------------------------------------------------------

    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        """Encode one HxWx3 RGB frame of the size given to the constructor: uint8, or uint16
        (16-bit RGB, for a 10-bit pixel format). `time`: the frame's source time in seconds
        (keeps a variable frame rate; None: the next frame at the constant rate)."""
        if self._out is None:
            raise RuntimeError("VideoWriter is not open; use it in a with statement")
        frame = np.asarray(frame)
        if frame.dtype not in (np.uint8, np.uint16) or frame.shape != (self.height, self.width, 3):
            raise ValueError(
                f"expected a uint8 or uint16 frame of shape {(self.height, self.width, 3)}, got "
                f"{frame.dtype} {frame.shape}"
            )
        ew, eh = self.encoded_size
        if (ew, eh) != (self.width, self.height):
            frame = np.pad(frame, ((0, eh - self.height), (0, ew - self.width), (0, 0)), mode="edge")
        rgb = "rgb24" if frame.dtype == np.uint8 else "rgb48le"
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=rgb)
        matrix = Colorspace.ITU709 if self.color is None else self.color.sws_matrix(self.width, self.height)
        vf = self._reformatter.reformat(
            vf, format=self.pix_fmt, dst_colorspace=matrix, dst_color_range=ColorRange.MPEG,
            interpolation=_SWS_ENCODE,
        )
        if time is None:
            pts = self._last_pts + 1 if self.time_base == 1 / self.fps else \
                round((self.frames_written / self.fps) / self.time_base)
            if self._t0 is None:
                self._t0 = getattr(self, "_video_start", 0.0)
        else:
            if self._t0 is None:
                self._t0 = float(time)
            pts = round((float(time) - self._t0) / self.time_base)
        pts = max(int(pts), self._last_pts + 1)
        vf.pts = pts
        vf.time_base = self.time_base
        self._last_pts = pts
        try:
            for packet in self._vstream.encode(vf):
                self._out.mux(packet)
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"cannot write video {self.path}: {_one_line(e)}") from None
        self.frames_written += 1
        self._t_last = float(pts * self.time_base)
        self._pump_audio(self._t_last + float(1 / self.fps))

    def _pump_audio(self, until: float | None, *, cut: bool = False) -> None:
        """Mux copied packets up to time `until` (seconds of the output clock; None: all of them).
        cut: drop the packets from `until` on instead of leaving them for later."""
        if self._audio_iter is None:
            return
        t0 = self._t0 if self._t0 is not None else getattr(self, "_video_start", 0.0)
        lead = t0 - getattr(self, "_video_start", 0.0)  # > 0 when the written video starts later (trimmed)
        try:
            while True:
                pkt = self._audio_next
                if pkt is None:
                    pkt = next(self._audio_iter, None)
                    if pkt is None:
                        self._audio_iter = None
                        return
                    if pkt.size == 0 or (pkt.dts is None and pkt.pts is None):
                        continue
                    if pkt.pts is None:
                        pkt.pts = pkt.dts
                    if pkt.dts is None:
                        pkt.dts = pkt.pts
                    tb = pkt.time_base
                    if tb and lead > 1e-9 and float(pkt.pts * tb) < t0 - 1e-6:
                        continue  # before the written range
                    shift = round(t0 / tb) if tb else 0
                    if shift:
                        pkt.pts -= shift
                        pkt.dts -= shift
                    self._audio_next = pkt
                if until is not None and float(pkt.dts * pkt.time_base) > until:
                    if cut:
                        self._audio_iter = None
                        self._audio_next = None
                    return
                if cut and until is not None and float(pkt.pts * pkt.time_base) >= until - 1e-6:
                    self._audio_next = None
                    continue
                self._audio_next = None
                pkt.stream = self._audio_map[pkt.stream.index]
                try:
                    self._out.mux(pkt)
                except (av.FFmpegError, OSError) as e:
                    raise OutputError(f"cannot write audio to {self.path}: {_one_line(e)}") from None
        except av.FFmpegError as e:
            raise InputError(
                f"cannot read audio from {self.audio_from}: {_one_line(e)}"
            ) from None

    def close(self) -> None:
        """Flush, copy the rest of the carried streams, and move the finished file into place."""
        if self._atomic is None:
            return
        try:
            if self.frames_written == 0:
                raise OutputError(f"no frames were written; nothing saved to {self.path}")
            try:
                for packet in self._flush_video():
                    self._out.mux(packet)
            except (av.FFmpegError, OSError) as e:
                raise OutputError(f"cannot write video {self.path}: {_one_line(e)}") from None
            if self.trim:
                self._pump_audio(self._t_last + float(1 / self.fps), cut=True)
            else:
                self._pump_audio(None)
            try:
                self._out.close()
            except (av.FFmpegError, OSError) as e:
                raise OutputError(f"cannot finish video {self.path}: {_one_line(e)}") from None
            self._out = None
            self._close_audio_source()
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(None, None, None)  # rename onto the target
        except BaseException as e:
            self._abort(type(e), e, e.__traceback__)
            raise

    def _flush_video(self) -> Any:
        return self._vstream.encode(None)

    def _close_audio_source(self) -> None:
        if self._in_audio is not None:
            with contextlib.suppress(Exception):
                self._in_audio.close()
            self._in_audio = None
        self._audio_iter = None
        self._audio_next = None

    def _abort(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Close everything and delete the temporary file."""
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        self._close_audio_source()
        atomic, self._atomic = self._atomic, None
        if atomic is not None:
            with contextlib.suppress(BaseException):
                atomic.__exit__(exc_type, exc, tb)
