"""Stream decoding: LR frames with the model brought up to date at each segment boundary.

`StreamReader` is what a player uses::

    with StreamReader("clip.adasrs") as reader:
        for frame in reader.frames():      # applies segment t's delta before its first frame
            sr = sr_array(reader.model, frame.lr, reader.scale)

For a package stream (a supernet), `reader.levels` lists the family's level configs and
`reader.model` is the supernet: the adaptive runtime switches its active level as usual.

A stream encoded with `base_by_hash` does not carry its first model: its first record names the
base model by hash, and the reader needs `base=` (generic, srvc, a model file or a package, as
`adasr encode --model` takes them); a base whose hash differs is refused (`DeltaError`).
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

from adasr.errors import ConfigError, ModelError
from adasr.stream.codec import ModelState, read_record, record_kind
from adasr.stream.container import StreamFile

__all__ = ["DecodeSummary", "MAX_FRAMES", "MAX_LEVELS", "MAX_SIDE", "StreamFrame", "StreamReader", "check_stream_sizes",
           "decode_stream", "stream_info"]

MAX_SIDE = 16384  # pixels of a frame side (HR or LR)
MAX_FRAMES = 10_000_000
MAX_LEVELS = 1024


def _bounded_int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_stream_sizes(m: dict[str, Any], source: str) -> None:
    """Every size in a stream manifest within bounds, and consistent: scale, frame sizes, frame
    and segment counts, the segment table, the number of levels; ModelError otherwise."""
    def bad(what: str) -> ModelError:
        return ModelError(f"{source}: damaged stream manifest: {what}")

    if not _bounded_int(m.get("scale"), 1, 8):
        raise bad(f"scale {m.get('scale')!r} is not an integer in [1, 8]")
    for key in ("width", "height", "lr_width", "lr_height"):
        if not _bounded_int(m.get(key), 1, MAX_SIDE):
            raise bad(f"{key} {m.get(key)!r} is not an integer in [1, {MAX_SIDE}]")
    if m["width"] != m["lr_width"] * m["scale"] or m["height"] != m["lr_height"] * m["scale"]:
        raise bad("the frame size is not the content size times the scale")
    if not _bounded_int(m.get("frames"), 0, MAX_FRAMES):
        raise bad(f"frames {m.get('frames')!r} is not an integer in [0, {MAX_FRAMES}]")
    fps = Fraction(m["fps"])
    if not 0 < fps <= 1000:
        raise bad(f"fps {m['fps']!r} is not in (0, 1000]")
    segments = m["segments"]
    if not isinstance(segments, list) or len(segments) > max(1, m["frames"]):
        raise bad("the segment table is not a list of at most one segment per frame")
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or not _bounded_int(seg.get("start_frame"), 0, m["frames"]) \
                or not isinstance(seg.get("record"), str):
            raise bad(f"segment {i} needs a start_frame within the clip and a record name")
    levels = m["model"].get("levels") if isinstance(m["model"], dict) else None
    if levels is not None and (not isinstance(levels, list) or len(levels) > MAX_LEVELS):
        raise bad(f"model levels must be a list of at most {MAX_LEVELS}")


@dataclass(frozen=True)
class StreamFrame:
    index: int
    segment: int
    lr: np.ndarray  # (h, w, 3) uint8, as decoded


def resolve_base(base: str | os.PathLike[str], scale: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model, spec) of the base model a receiver holds: generic, srvc, a model file or a package."""
    from adasr.stream.encoder import EncodeSettings, initial_model

    base_file(base)  # an empty name is refused, not read as "."
    model, spec, _, _ = initial_model(EncodeSettings(scale=scale, model=str(base), device="cpu"))
    return model, spec


def first_model(record: bytes, scale: int, base: str | os.PathLike[str] | None, device: str | torch.device,
                what: str, wanted: str = "") -> ModelState:
    """The model state a stream's first record gives: the full model it carries, or, for a base
    reference, the receiver's `base` checked against the hash it names."""
    if record_kind(record) != "ref":
        return ModelState.from_full(record, device=device, what=what)
    if base is None:
        info, _ = read_record(record, what)
        raise ModelError(f"{what}: the stream names its base model by hash ({info.base_hash.hex()[:12]}"
                         f"{', ' + wanted if wanted else ''}) instead of carrying it: give that model with --base")
    model, spec = resolve_base(base, scale)
    return ModelState.from_base(record, model, spec, device=device, what=f"{what} (--base {base})")


class StreamReader:
    def __init__(self, path: str | os.PathLike[str], device: str | torch.device = "cpu",
                 base: str | os.PathLike[str] | None = None) -> None:
        self.file = StreamFile(path)
        m = self.file.manifest
        try:
            self.scale = int(m["scale"])
            self.fps = Fraction(m["fps"])
            self.segments = list(m["segments"])
            self.width, self.height = int(m["width"]), int(m["height"])
            m["model"]["init"]
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ModelError(f"{self.file.path}: stream manifest lacks or mangles {exc}") from None
        check_stream_sizes(m, str(self.file.path))
        named = m["model"].get("model") if m["model"].get("base_by_hash") else None
        self.state = first_model(self.file.blob(m["model"]["init"]), self.scale, base, device,
                                 f"{self.file.path}: first model", f"encoded from {named}" if named else "")
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
                  max_frames: int | None = None, on_frame=None,
                  base: str | os.PathLike[str] | None = None) -> DecodeSummary:
    """Decode a stream to an HR video file: content frames super-resolved by the streamed model
    (`base`: the base model, for a stream that names it by hash)."""
    from adasr._atomic import check_not_input, check_writable
    from adasr.upscale import sr_array
    from adasr.video import VideoWriter, codec_for_suffix

    codec_for_suffix(out, codec)
    check_writable(out)
    check_not_input([out], [stream, base_file(base)])
    reader = StreamReader(stream, device=device, base=base)
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


def base_file(base: str | os.PathLike[str] | None) -> Path | None:
    """The file a --base names (None for the named models generic / srvc)."""
    from adasr.safepath import user_path

    return None if base is None or str(base) in ("generic", "srvc") else user_path(base, "--base")


def stream_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a stream (no model is built)."""
    return StreamFile(Path(path)).manifest
