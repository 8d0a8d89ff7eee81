"""The runtime engine: one resident supernet, levels switched between frames.

`Engine` keeps a package's supernet in memory once and upscales frames with the active level.
A switch is `SuperNet.set_active(cfg)`: one reference swap of a routing that the engine
prebuilt for every level at start (so no switch builds anything, and no weight tensor is ever
allocated or copied; DySR section 4.2). A level that carries its own weights (`Package.own`)
runs its resident static module instead, chosen by the same index swap. Each switch's latency
is recorded in nanoseconds (`time.perf_counter_ns`).

The streaming pipeline that drives an engine (or a baseline) frame by frame, `run_stream`, and
its records live in `adasr.runtime.pipeline`; `Engine.run_stream` delegates to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from adasr.errors import ConfigError
from adasr.family import Family, Level
from adasr.frames import to_frame, to_tensor
from adasr.nn.supernet import SuperNet
from adasr.package import check_precision
from adasr.runtime.int8_rule import int8_choice, int8_section, int8_timed
from adasr.runtime.pipeline import Streams, check_level_index

if TYPE_CHECKING:
    from adasr.package import Package

__all__ = ["ENGINE_TILE", "Engine", "check_frame", "frame_to_tensor", "module_bytes", "phases_to_frame",
           "tensor_to_frame"]


# -- frames <-> tensors (shared with the baselines) --------------------------------------------------

# Frames with a side over this many LR pixels run in overlapping tiles. 384 keeps 320x180 frames
# (the profiled size) whole and cuts 960x540 into 3 x 2 tiles, whose activations stay in cache:
# float32 1.1-1.3x faster than 512 there, int8 within -11 % / +8 % (docs/BENCHMARKS.md section 22).
ENGINE_TILE = 384

def check_frame(frame: Any) -> None:
    """ConfigError unless `frame` is a uint8 HxWx3 RGB array."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ConfigError(f"a frame must be a uint8 HxWx3 RGB array, got {got}")


def frame_to_tensor(frame: np.ndarray, channels_last: bool = True) -> torch.Tensor:
    """uint8 HxWx3 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    check_frame(frame)
    x = to_tensor(frame)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def tensor_to_frame(y: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> uint8 HxWx3 (rounded, clipped)."""
    return to_frame(y)


def phases_to_frame(z: torch.Tensor, scale: int) -> np.ndarray:
    """(1, 3*s*s, H, W) float, the SR output before its pixel shuffle -> uint8 (sH)x(sW)x3.

    Equals ``tensor_to_frame(F.pixel_shuffle(z, scale))`` exactly (rounding and clipping are
    per element, so they commute with the shuffle), but rounds in place at LR layout and
    shuffles bytes instead of floats. `z` is overwritten."""
    from adasr.nn.upsample import phases_to_hwc

    u = z.detach().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
    return phases_to_hwc(u.cpu(), scale)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers of `module`."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


# -- the engine ---------------------------------------------------------------------------------------

class Engine(Streams):
    """Resident supernet + family; `process` upscales with the active level, `switch` changes it.

    source: a `Package` (its family, or `package.family_for(device_key)` when `device_key` is
    given), or a `SuperNet` with `family`. level: the starting level index (default: the
    fastest, 0). channels_last: feed NHWC-strided input on CPU (faster; the same output up to
    float rounding, as other convolution kernels run).
    precision: "fp32", "int8" (the levels in `int8_only`, default all) or "auto" (the levels
    `adasr.runtime.int8_rule.int8_choice` picks from the package's profile), int8 levels
    calibrated on `calibration` frames.
    """

    def __init__(self, source: Package | SuperNet, family: Family | None = None, *, device_key: str | None = None,
                 level: int = 0, channels_last: bool | None = None, tile: int | None = ENGINE_TILE,
                 overlap: int = 16, precision: str = "fp32",
                 calibration: Sequence[np.ndarray] | None = None, int8_only: Sequence[int] | None = None) -> None:
        if isinstance(source, SuperNet):
            if family is None:
                raise ConfigError("Engine(supernet, family): a supernet needs its family of levels")
            self.supernet = source
        else:
            self.supernet = source.supernet
            if family is None:
                family = source.family_for(device_key) if device_key is not None else source.family
        family.validate(self.supernet.space)
        if len(family) == 0:
            raise ConfigError("the family has no levels")
        self.levels: Family = family
        own = {} if isinstance(source, SuperNet) else source.own
        # Levels with their own weights: their resident static module (None: the supernet's routing).
        self.own_levels: list[Any] = [own.get(lv.config.id) for lv in family]
        for module in self.own_levels:
            if module is not None:
                module.eval()
        self.scale = self.supernet.scale
        self.device = self.supernet.head.weight.device
        self.channels_last = self.device.type == "cpu" if channels_last is None else bool(channels_last)
        self.supernet.eval()
        # Prebuild every level's routing (cached by the supernet): a later switch is a lookup + swap.
        if len(family) > self.supernet.cache_size:
            raise ConfigError(f"{len(family)} levels exceed the supernet's routing cache ({self.supernet.cache_size})")
        for lv in family:
            self.supernet.set_active(lv.config)
        self.switch_latencies: list[int] = []
        if tile is not None and (not isinstance(tile, int) or tile < 8):
            raise ConfigError(f"tile must be an integer of at least 8 LR pixels (or None), got {tile!r}")
        self.tile, self.overlap = tile, int(overlap)
        self.level = check_level_index(level, len(family))
        self.supernet.set_active(family[self.level].config)
        # precision "int8": every level that `adasr.runtime.int8` supports (or those in
        # `int8_only`) also gets a quantized copy (its own int8 weights, about a quarter of the
        # level's float32 bytes), calibrated on `calibration` frames and built here once, so a
        # switch still allocates nothing. "auto": the levels `adasr.runtime.int8_rule` picks from
        # the package's profile for `device_key` (measured faster, loss within its tolerance).
        self.precision = check_precision(precision)
        if precision == "auto":
            if isinstance(source, SuperNet):
                raise ConfigError("precision auto needs a package (its profile holds the int8 measurements)")
            int8_only = int8_choice(family, int8_section(source, device_key))
        quantize = [] if precision == "fp32" else range(len(family)) if int8_only is None else \
            [check_level_index(i, len(family)) for i in int8_only]
        self.int8_levels: list[Any] = [None] * len(family)
        if quantize:
            from adasr.runtime.int8 import quantize_level

            if not calibration:
                raise ConfigError(f"precision {precision} needs calibration frames (uint8 RGB)")
            for i in quantize:
                try:
                    static = self.own_levels[i] if self.own_levels[i] is not None else \
                        self.supernet.extract(family[i].config)
                    self.int8_levels[i] = quantize_level(static, calibration)
                except ConfigError:
                    pass  # this level runs in float32
        # A policy reads the engine's family: give its int8 levels their measured int8 seconds.
        running = [i for i, q in enumerate(self.int8_levels) if q is not None]
        if running and not isinstance(source, SuperNet):
            self.levels = int8_timed(family, int8_section(source, device_key), running)

    @classmethod
    def load(cls, path: str, *, device: str = "cpu", device_key: str | None = None, level: int = 0,
             **kw: Any) -> Engine:
        """Load a package once and keep its supernet resident."""
        from adasr.package import load_package

        return cls(load_package(path, device=device), device_key=device_key, level=level, **kw)

    def __len__(self) -> int:
        return len(self.levels)

    @property
    def active(self) -> Level:
        return self.levels[self.level]

    def switch(self, level: int) -> int:
        """Make `level` active (one routing swap); returns and records the switch time in ns."""
        level = check_level_index(level, len(self.levels))
        cfg = self.levels[level].config
        start = time.perf_counter_ns()
        self.supernet.set_active(cfg)
        ns = time.perf_counter_ns() - start
        self.level = level
        self.switch_latencies.append(ns)
        return ns

    @torch.inference_mode()
    def process_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, 3, sH, sW) with the active level (not clamped).

        A single frame larger than `tile` LR pixels on a side is processed in overlapping tiles
        (`adasr.upscale.sr_tensor`), so memory stays bounded on large frames."""
        if self.tile is not None and x.shape[0] == 1 and max(x.shape[2:]) > self.tile:
            from adasr.upscale import sr_tensor

            return sr_tensor(self._forward, x, self.scale, tile=self.tile, overlap=self.overlap)
        return self._forward(x)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        level = self.level
        quantized = self.int8_levels[level]
        if quantized is not None:
            return quantized(x)
        own = self.own_levels[level]
        return own(self._prepare(x)) if own is not None else self.supernet(self._prepare(x))

    @torch.inference_mode()
    def process(self, frame: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB -> uint8 (sH)x(sW)x3 with the active level (uint16 -> uint16: a
        10-bit video's frames keep their precision).

        A frame larger than `tile` is upscaled tile by tile straight into the uint8 output
        (`adasr.upscale.sr_tiles`): no float buffer of the output's size."""
        if isinstance(frame, np.ndarray) and frame.dtype == np.uint16 and frame.ndim == 3 and frame.shape[2] == 3:
            from adasr.upscale import sr_array

            return sr_array(self._forward, frame, self.scale, tile=self.tile, overlap=self.overlap)
        if self.tile is not None and isinstance(frame, np.ndarray) and frame.ndim == 3 \
                and max(frame.shape[:2]) > self.tile:
            from adasr.upscale import sr_tiles

            check_frame(frame)
            return sr_tiles(self._forward, frame, self.scale, self.tile, self.overlap)
        x = frame_to_tensor(frame, self.channels_last)
        level = self.level  # read once: a switch from another thread lands on the next frame
        quantized = self.int8_levels[level]
        if quantized is not None:
            return phases_to_frame(quantized.phases(x), self.scale)
        own = self.own_levels[level]
        routing = own if own is not None else self.supernet.routing
        if routing.config.upsampler == "tc":
            return tensor_to_frame(routing(self._prepare(x)))
        # Before the pixel shuffle: round to uint8 at LR layout, then shuffle bytes (no float
        # buffer at output size, no float shuffle).
        return phases_to_frame(routing(self._prepare(x), phases=True), self.scale)

    def warmup(self, lr_hw: tuple[int, int], repeats: int = 1, levels: Sequence[int] | None = None) -> None:
        """Run every level `repeats` times on a frame of `lr_hw` (H, W), then restore the active
        level: the first forward of a level at a new size builds kernels (oneDNN primitives, CUDA
        autotuning) and would otherwise land on a live frame. Switches made here are not recorded.
        levels: only these level indices (default: all)."""
        h, w = (int(v) for v in lr_hw)
        if h < 1 or w < 1:
            raise ConfigError(f"warm-up size must be positive, got {lr_hw!r}")
        x = torch.zeros(1, 3, h, w)
        keep, recorded = self.level, len(self.switch_latencies)
        for i in range(len(self.levels)) if levels is None else levels:
            self.level = check_level_index(i, len(self.levels))
            self.supernet.set_active(self.levels[self.level].config)
            for _ in range(max(1, int(repeats))):
                self.process_tensor(x)
        self.level = keep
        self.supernet.set_active(self.levels[keep].config)
        del self.switch_latencies[recorded:]

    def supernet_bytes(self) -> int:
        return self.supernet.supernet_bytes()

    def resident_bytes(self) -> int:
        """What is resident for every level at once: the supernet (and any int8 levels and levels
        with their own weights)."""
        return self.supernet_bytes() + sum(q.int8_bytes() for q in self.int8_levels if q is not None) \
            + sum(module_bytes(m) for m in self.own_levels if m is not None)

    def data_ptrs(self) -> list[int]:
        """Storage addresses of every parameter (unchanged by switches; a test hook)."""
        return [p.data_ptr() for p in self.supernet.parameters()]
