"""Play a model stream in real time: content frames super-resolved by the streamed model, each
segment's delta applied at its boundary, through the runtime's pipeline (`run_stream`).

The decode thread only decodes; the delta of segment t is applied in the SR loop just before the
first frame of t is upscaled (`StreamRunner.process`), so a frame is always upscaled by the model
of its own segment even though decoding runs ahead. A supernet stream (encoded from a package)
plays through the `Engine` with its levels: the reactive policy (Dynamic-OFA's runtime manager,
costs from MACs: a stream carries no device profile) or a fixed level. A single-model stream
plays at its one level.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adasr.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from torch import nn

    from adasr.runtime.pipeline import Runner
    from adasr.stream.reader import StreamReader

__all__ = ["StreamRunner", "is_stream_path", "play_stream"]


def is_stream_path(path: str | os.PathLike[str]) -> bool:
    """A single-file stream (.adasrs) or a stream folder (a manifest of kind stream)."""

    from adasr.stream.container import MANIFEST, SINGLE_FILE_SUFFIX

    p = Path(path)
    if p.suffix == SINGLE_FILE_SUFFIX:
        return True
    if p.is_dir() and (p / MANIFEST).is_file():
        from adasr._jsonfile import MAX_MANIFEST_BYTES, loads
        from adasr.errors import AdasrError
        from adasr.safepath import read_confined

        try:
            data = loads(read_confined(p, MANIFEST, MAX_MANIFEST_BYTES), "stream manifest")
        except (AdasrError, ValueError):
            return False
        return isinstance(data, dict) and "segments" in data
    return False


class _OneLevel:
    """The single level of a stream whose model is not a supernet."""

    def __init__(self, name: str) -> None:
        self.config = type("Cfg", (), {"id": name})()
        self.psnr = float("nan")


class _ModelRunner:
    """`Runner` over a plain model: one level, no switching."""

    def __init__(self, model: nn.Module, name: str) -> None:
        self.model, self.levels, self.level, self.switch_latencies = model, [_OneLevel(name)], 0, []

    def process(self, frame: np.ndarray) -> np.ndarray:
        import torch

        from adasr.runtime.engine import frame_to_tensor, tensor_to_frame

        with torch.inference_mode():
            return tensor_to_frame(self.model(frame_to_tensor(frame)))

    def switch(self, level: int) -> int:
        if level != 0:
            raise ConfigError("this stream's model has one level")
        return 0

    def resident_bytes(self) -> int:
        from adasr.runtime.engine import module_bytes

        return module_bytes(self.model)


class StreamRunner:
    """Wraps the engine (or the one-model runner) of a stream: `process((segment, lr))` first
    brings the model up to `segment`, then upscales."""

    def __init__(self, reader: StreamReader, inner: Runner) -> None:
        self.reader, self.inner = reader, inner
        self.levels = inner.levels
        self.switch_latencies = inner.switch_latencies

    @property
    def level(self) -> int:
        return self.inner.level

    def process(self, item: tuple[int, np.ndarray]) -> np.ndarray:
        segment, lr = item
        while self.reader.state.next_segment <= segment:
            self.reader.apply_segment(self.reader.state.next_segment)
        return self.inner.process(lr)

    def switch(self, level: int) -> int:
        return self.inner.switch(level)

    def resident_bytes(self) -> int:
        return self.inner.resident_bytes()


def _frames(reader: StreamReader, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(segment, LR frame) in order, without touching the model."""
    from adasr.video import read_frames

    starts = sorted((int(s["start_frame"]), i) for i, s in enumerate(reader.segments))
    lr_h, lr_w = int(reader.manifest["lr_height"]), int(reader.manifest["lr_width"])
    segment, nxt = -1, 0
    with reader.file.content_file() as content:
        for i, frame in enumerate(read_frames(content, max_frames=max_frames)):
            while nxt < len(starts) and starts[nxt][0] <= i:
                segment = starts[nxt][1]
                nxt += 1
            yield segment, np.ascontiguousarray(frame[:lr_h, :lr_w])


def play_stream(path: str | os.PathLike[str], *, target_fps: float | None = None, policy: str = "reactive",
                level: int | None = None, out: str | os.PathLike[str] | None = None, codec: str = "h264",
                crf: int = 20, max_frames: int | None = None, on_frame: Callable[[Any, Any], None] | None = None,
                on_ready: Callable[[Any, float], None] | None = None,
                base: str | os.PathLike[str] | None = None) -> tuple[Any, Any]:
    """Play the stream at `path` (see the module doc); returns (PlayResult, the engine or runner).

    base: the base model (generic, srvc, a model file or a package) for a stream whose first
    record names it by hash; refused if its hash is not the one named.

    on_ready(engine, target_fps): called once the engine is built, before the first frame (live views).
    """
    from adasr.family import Family, Level
    from adasr.nn.supernet import SuperNet, subnet_cost
    from adasr.runtime.engine import Engine
    from adasr.runtime.monitors import CpuMonitor, StreamMonitor
    from adasr.runtime.pipeline import AutoThreads, StreamOptions, run_stream
    from adasr.runtime.player import PlayResult
    from adasr.runtime.policies import pick_policy
    from adasr.space import SubnetConfig
    from adasr.stream.reader import StreamReader
    from adasr.video import VideoWriter

    if policy not in ("reactive", "fixed", "lookup"):
        raise ConfigError(f"policy must be reactive, lookup or fixed, got {policy!r}")
    if out is not None:
        from adasr._atomic import check_not_input
        from adasr.stream.reader import base_file

        check_not_input([out], [path, base_file(base)])
    reader = StreamReader(path, base=base)
    model = reader.model
    lr_w, lr_h = int(reader.manifest["lr_width"]), int(reader.manifest["lr_height"])
    if isinstance(model, SuperNet) and reader.levels:
        cfgs = [SubnetConfig.coerce(c) for c in reader.levels]
        levels = tuple(Level(c, float("nan"), *subnet_cost(c, (lr_h, lr_w))) for c in cfgs)
        family = Family(levels, reader.scale, (lr_h, lr_w))
        start = level if level is not None else (len(levels) - 1 if policy == "fixed" else 0)
        inner: Any = Engine(model, family, level=start)
        inner.warmup((lr_h, lr_w), levels=[start] if policy == "fixed" else None)
        pol = pick_policy(policy, family, start) if len(levels) > 1 else None
    else:
        if level not in (None, 0):
            raise ConfigError("this stream's model has one level (0)")
        inner, pol = _ModelRunner(model, str(reader.manifest.get("model", {}).get("kind", "stream model"))), None
    runner = StreamRunner(reader, inner)
    fps = float(reader.fps)
    target = fps if target_fps is None else float(target_fps)
    if not target > 0:
        raise ConfigError(f"target FPS must be positive, got {target_fps!r}")
    writer = None
    if out is not None:
        writer = VideoWriter(out, lr_w * reader.scale, lr_h * reader.scale, reader.fps, codec=codec, crf=crf)
        writer.__enter__()
    monitor = StreamMonitor(cpu=CpuMonitor(), level=runner.level, target_period_s=1.0 / target)
    if on_ready is not None:
        on_ready(inner, target)
    try:
        stats = run_stream(runner, _frames(reader, max_frames), None if writer is None else writer.write, target, pol,
                           monitor, StreamOptions(threads=AutoThreads(), on_frame=on_frame))
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
        raise
    if writer is not None:
        writer.__exit__(None, None, None)
    if not stats.frames:
        raise ModelError(f"no frames were played from {path}")
    names = [{"index": i, "config": lv.config.id} for i, lv in enumerate(runner.levels)]
    result = PlayResult(stats=stats, target_fps=target, policy=policy if pol is not None else "fixed",
                        lr_hw=(lr_h, lr_w), out_hw=(lr_h * reader.scale, lr_w * reader.scale), source_fps=fps,
                        output=None if out is None else str(out), levels=names)
    result.segments_applied = reader.state.next_segment
    return result, inner
