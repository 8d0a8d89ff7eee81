"""Stream decoding: LR frames with the model brought up to date at each segment boundary.

`StreamReader` is what a player uses::

    with StreamReader("clip.adasrs") as reader:
        for frame in reader.frames():      # applies segment t's delta before its first frame
            sr = sr_array(reader.model, frame.lr, reader.scale)

For a package stream (a supernet), `reader.levels` lists the family's level configs and
`reader.model` is the supernet: the adaptive runtime switches its active level as usual.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adasr.errors import ConfigError, InputError, ModelError
from adasr.stream.codec import ModelState
from adasr.stream.container import StreamFile


@dataclass(frozen=True)
class StreamFrame:
    index: int
    segment: int
    lr: np.ndarray  # (h, w, 3) uint8, as decoded


class StreamReader:
    def __init__(self, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        self.file = StreamFile(path)
        m = self.file.manifest
        try:
            self.scale = int(m["scale"])
            self.fps = Fraction(m["fps"])
            self.segments = list(m["segments"])
            self.width, self.height = int(m["width"]), int(m["height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{self.file.path}: stream manifest lacks or mangles {exc}") from None
        self.state = ModelState.from_full(self.file.blob(m["model"]["init"]), device=device,
                                          what=f"{self.file.path}: full model")
        self.levels = list(m["model"].get("levels") or [])
        self.applied_bits = 0

    @property
    def manifest(self) -> dict[str, Any]:
        return self.file.manifest

    @property
    def model(self) -> torch.nn.Module:
        return self.state.model

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def apply_segment(self, t: int) -> None:
        """Apply the delta of segment `t` (it must be the next one)."""
        name = self.segments[t]["record"]
        self.state.apply(self.file.blob(name), f"{self.file.path}: {name}")
        self.applied_bits += 8 * self.manifest["blobs"][name]["size"]

    def frames(self, max_frames: int | None = None) -> Iterator[StreamFrame]:
        """Decoded LR frames in order; each segment's delta is applied before its first frame."""
        from adasr.video import read_frames

        starts = {int(s["start_frame"]): i for i, s in enumerate(self.segments)}
        lr_h, lr_w = int(self.manifest["lr_height"]), int(self.manifest["lr_width"])
        segment = -1
        with self.file.content_file() as content:
            for i, frame in enumerate(read_frames(content, max_frames=max_frames)):
                if i in starts:
                    segment = starts[i]
                    if segment != self.state.next_segment:
                        raise ModelError(f"{self.file.path}: segment table out of order at frame {i}")
                    self.apply_segment(segment)
                yield StreamFrame(i, segment, frame[:lr_h, :lr_w])


@dataclass
class DecodeSummary:
    frames: int
    seconds: float
    width: int
    height: int
    segments: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def decode_stream(stream: str | os.PathLike[str], out: str | os.PathLike[str], *, level: int | None = None,
                  codec: str = "h264", crf: int = 18, preset: str | None = None, device: str = "cpu",
                  max_frames: int | None = None, on_frame=None) -> DecodeSummary:
    """Decode a stream to an HR video file: content frames super-resolved by the streamed model."""
    from adasr.upscale import sr_array
    from adasr.video import VideoWriter, codec_for_suffix

    codec_for_suffix(out, codec)
    reader = StreamReader(stream, device=device)
    model = reader.model
    if reader.levels:
        idx = len(reader.levels) - 1 if level is None else level
        if not 0 <= idx < len(reader.levels):
            raise ConfigError(f"stream has {len(reader.levels)} levels; --level must be 0..{len(reader.levels) - 1}")
        model.set_active(reader.levels[idx])
    elif level is not None:
        raise ConfigError(f"--level picks a level of a package stream; {stream} carries a single model "
                          f"(leave --level out)")
    total = reader.manifest["frames"] if max_frames is None else min(max_frames, reader.manifest["frames"])
    started = time.perf_counter()
    done = 0
    with VideoWriter(out, reader.width, reader.height, reader.fps, codec=codec, crf=crf, preset=preset) as writer:
        for frame in reader.frames(max_frames):
            writer.write(sr_array(model, frame.lr, reader.scale, tile=None))
            done += 1
            if on_frame is not None:
                on_frame(done, total)
    return DecodeSummary(done, time.perf_counter() - started, reader.width, reader.height, reader.state.next_segment)


def stream_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a stream (no model is built)."""
    return StreamFile(Path(path)).manifest
