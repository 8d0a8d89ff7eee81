"""Upscale images and videos with any SR model (baselines, extracted levels, a supernet level).

Frames larger than `tile` LR pixels are processed in tiles, each extended by a margin of
`overlap` pixels on every side and cropped back to its core after SR, so memory stays bounded
and a model whose receptive field fits in the margin gives the untiled output (no seams; up to
float rounding, since the kernels a backend picks can differ with the tensor's shape and layout).
`sr_array` streams the tiles straight into the integer output (`sr_tiles`): peak memory is the
uint8 (or uint16) output plus one tile, and an output over MAX_OUTPUT_BYTES is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adasr.errors import ConfigError, InputError
from adasr.frames import peak_of, to_frame, to_tensor

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_TILE", "MAX_OUTPUT_BYTES", "VideoSummary", "check_output_size", "sr_array",
           "sr_tensor", "sr_tiles", "tiled_pixels", "upscale_image_file", "upscale_video_file"]

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16
MAX_OUTPUT_BYTES = 4 << 30  # one upscaled frame, as integers


@torch.inference_mode()
def sr_tensor(model: nn.Module, x: torch.Tensor, scale: int, *, tile: int | None = DEFAULT_TILE,
              overlap: int = DEFAULT_OVERLAP) -> torch.Tensor:
    """SR of (1, C, H, W) float in [0, 1]; tiled when H or W exceeds `tile` (None = never).

    The float output is allocated whole (refused over MAX_OUTPUT_BYTES); for frames that end as
    integers, `sr_array` / `sr_tiles` stream the tiles into the integer output instead."""
    _, c, h, w = x.shape
    check_output_size(h, w, scale, x.element_size(), c)
    if tile is None or (h <= tile and w <= tile):
        return model(x)
    if tile < 8 or overlap < 0:
        raise ConfigError(f"tile must be at least 8 and overlap non-negative (got {tile}, {overlap})")
    out = x.new_empty(1, c, h * scale, w * scale)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
            yb, xb = min(h, y1 + overlap), min(w, x1 + overlap)
            sr = model(x[:, :, ya:yb, xa:xb])
            oy, ox = (y0 - ya) * scale, (x0 - xa) * scale
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                sr[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
    return out


def tiled_pixels(frame_hw: tuple[int, int], tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> int:
    """LR pixels `sr_tensor` runs the model on for one (H, W) frame: the frame itself when it
    fits in one tile, else every tile with its margins (what a time estimate should count)."""
    h, w = (int(v) for v in frame_hw)
    if tile is None or (h <= tile and w <= tile):
        return h * w
    total = 0
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            total += (min(h, y1 + overlap) - max(0, y0 - overlap)) * (min(w, x1 + overlap) - max(0, x0 - overlap))
    return total


def check_output_size(h: int, w: int, scale: int, itemsize: int = 1, channels: int = 3) -> int:
    """Bytes of the (s*h, s*w, channels) output; InputError above MAX_OUTPUT_BYTES, naming the size."""
    need = (h * scale) * (w * scale) * channels * itemsize
    if need > MAX_OUTPUT_BYTES:
        raise InputError(f"the x{scale} output of a {w}x{h} frame would need {need / 2**30:.1f} GiB "
                         f"(at most {MAX_OUTPUT_BYTES / 2**30:.0f} GiB); use a smaller input or scale")
    return need


@torch.inference_mode()
def sr_tiles(run: Callable[[torch.Tensor], torch.Tensor], rgb: np.ndarray, scale: int, tile: int,
             overlap: int = DEFAULT_OVERLAP) -> np.ndarray:
    """SR of an HxWx3 uint8/uint16 array in tiles, streamed into an output array of its dtype.

    `run` maps a (1, 3, h, w) float tile in [0, 1] to (1, 3, s*h, s*w). Each tile is cut from
    the integer input with a margin of `overlap` pixels, converted, upscaled, cropped back to
    its core and written into the output at once, so the float buffers are one tile's: peak
    memory is the integer output plus one tile, whatever the frame size. The result is `sr_tensor`
    on the whole frame, rounded (same tiles, same elementwise rounding), up to float rounding of
    the convolutions: a tile cut from the integer input may reach the model in another memory
    layout than a slice of the float frame, and the backend may pick other kernels for it, so a
    value at a rounding boundary can land one integer step away."""
    if tile < 8 or overlap < 0:
        raise ConfigError(f"tile must be at least 8 and overlap non-negative (got {tile}, {overlap})")
    h, w, c = rgb.shape
    check_output_size(h, w, scale, rgb.dtype.itemsize, c)
    peak = peak_of(rgb.dtype)
    out = np.empty((h * scale, w * scale, c), dtype=rgb.dtype)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
            yb, xb = min(h, y1 + overlap), min(w, x1 + overlap)
            sr = run(to_tensor(rgb[ya:yb, xa:xb], peak))
            oy, ox = (y0 - ya) * scale, (x0 - xa) * scale
            core = sr[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
            out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = to_frame(core, peak, rgb.dtype)
    return out


@torch.inference_mode()
def sr_array(model: nn.Module, rgb: np.ndarray, scale: int, *, tile: int | None = DEFAULT_TILE,
             overlap: int = DEFAULT_OVERLAP) -> np.ndarray:
    """SR of an RGB uint8 or uint16 HxWx3 array; returns the same dtype, rounded and clipped.

    Larger than `tile` on a side: tiles streamed into the output (`sr_tiles`), so no float
    buffer of the output's size is ever allocated. An output over MAX_OUTPUT_BYTES is refused
    with the size it would need."""
    h, w = rgb.shape[:2]
    if tile is not None and (h > tile or w > tile):
        return sr_tiles(model, rgb, scale, tile, overlap)
    check_output_size(h, w, scale, rgb.dtype.itemsize, rgb.shape[2])
    peak = peak_of(rgb.dtype)
    return to_frame(model(to_tensor(rgb, peak)), peak, rgb.dtype)


def upscale_image_file(model: nn.Module, scale: int, src: str | Path, dst: str | Path, *, image=None,
                       **kw) -> tuple[int, int]:
    """Upscale one image file; alpha is upscaled with bicubic, grayscale stays grayscale.

    Returns the output (width, height). The output is written atomically. `image`: the source's
    `Image` when the caller has already read it.
    """
    from adasr.data.imresize import imresize
    from adasr.images import read_image, write_image

    img = image if image is not None else read_image(src)
    sr = sr_array(model, img.rgb, scale, **kw)
    alpha = None
    if img.alpha is not None:
        alpha = imresize(img.alpha, output_shape=sr.shape[:2])
    write_image(dst, sr, alpha=alpha, gray=img.gray, bit_depth=img.bit_depth)
    return sr.shape[1], sr.shape[0]


@dataclass
class VideoSummary:
    frames: int
    seconds: float
    width: int
    height: int
    fps: float  # source frame rate
    level: int | None = None           # the package level run (None: a single model, or several levels)
    mode: str | None = None            # best, level, budget or realtime (a package path)
    estimated_s: float | None = None   # the estimate made before the work
    details: dict | None = None        # the full summary `adasr upscale --json` prints

    @property
    def sr_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def upscale_video_file(model: nn.Module, scale: int, src: str | Path, dst: str | Path, *, codec: str = "h264",
                       crf: int = 20, preset: str | None = None, max_frames: int | None = None,
                       on_frame: Callable[[int, int], None] | None = None, info=None,
                       start_s: float | None = None, duration_s: float | None = None, **kw) -> VideoSummary:
    """Upscale a video frame by frame, keeping frame times, rotation, bit depth, colour tags,
    aspect ratio and the audio, subtitle and attachment streams (cut to the frames written when
    `max_frames`, `start_s` or `duration_s` trim the video); atomic output.

    `on_frame(done, total)` is called after every frame (progress bars); `info` is the source's
    `VideoInfo` when the caller has already probed it.
    """
    from adasr.video import VideoWriter, output_pix_fmt, probe, read_frames

    info = info or probe(src)
    total = info.frame_count if max_frames is None else min(max_frames, info.frame_count)
    started = time.perf_counter()
    done = 0
    times: list[float] = []
    end_s = None if duration_s is None else (start_s or 0.0) + duration_s
    trimmed = max_frames is not None or start_s is not None or end_s is not None
    with VideoWriter(dst, info.width * scale, info.height * scale, info.fps, codec=codec, crf=crf,
                     preset=preset, audio_from=src if info.carried or info.has_audio else None,
                     rotation=info.rotation, pix_fmt=output_pix_fmt(info, codec), color=info.color, sar=info.sar,
                     time_base=info.time_base, trim=trimmed) as writer:
        depth = 16 if info.bit_depth > 8 else 8
        for frame in read_frames(src, max_frames=max_frames, depth=depth, start_s=start_s, end_s=end_s,
                                 times=times):
            writer.write(sr_array(model, frame, scale, **kw), times[done])
            done += 1
            if on_frame is not None:
                on_frame(done, total)
    return VideoSummary(done, time.perf_counter() - started, info.width * scale, info.height * scale, float(info.fps))
