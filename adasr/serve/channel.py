"""A live channel and the hub that runs every channel on the server's compute.

`Channel`: one HR source -> LR segments (published as they fill, or `ChannelConfig.hold`
segments later, so that the trainer sees each segment before the clients do) + one
`ChannelTrainer` (updates published as they are made; an update applies from the first segment
not yet published). Its model comes from a pluggable `ModelSource` (the
bundled generic model, SRVC's, a model file or a package by default; model reuse can pass its
own). Every published list is guarded by a lock: the hub's worker thread writes, the HTTP
handlers read.

`Hub`: the server's work. `pump(now)` pulls every channel's source up to wall time `now` (a
file plays at its own frame rate) and publishes the segments that filled; `train_once()` gives
the training compute to one channel whose update is due, as the scheduler picks
(`adasr.serve.scheduler`). `run(stop)` pumps in an ingest thread (live content never waits for
training) and trains in the calling thread until `stop` is set, `duration_s` passes or every
source ends; `step(now)` does one of each in the calling thread (fake-clock tests).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch

from adasr.errors import ConfigError
from adasr.serve.clients import ClientTable
from adasr.serve.config import TrainerConfig
from adasr.serve.media import LiveSource, decode_segment, downsample, encode_segment
from adasr.serve.scheduler import RoundRobin
from adasr.serve.trainer import ChannelTrainer, Update
from adasr.stream.codec import encode_snapshot, vector_hash

__all__ = ["Channel", "ChannelConfig", "GivenModel", "Hub", "MAX_CHANNELS", "ModelSource", "NamedModel", "Segment",
           "channel_config_dict"]

MAX_CHANNELS = 64
MAX_HOLD = 30  # segments a channel may hold back before publishing them


class ModelSource(Protocol):
    """Where a channel's model comes from: `initial(scale)` -> (model, spec, levels or None, info)."""

    def initial(self, scale: int) -> tuple[torch.nn.Module, dict[str, Any], list | None, dict[str, Any]]: ...


@dataclass(frozen=True)
class NamedModel:
    """generic (the bundled model), srvc, a model file or a package (what `adasr encode --model` takes)."""

    name: str = "generic"
    levels: str = "all"

    def initial(self, scale: int):
        from adasr.stream.encoder import EncodeSettings, initial_model

        return initial_model(EncodeSettings(scale=scale, model=self.name, levels=self.levels, device="cpu"))


@dataclass(frozen=True)
class GivenModel:
    """A model already built (tests, model reuse): handed out as is."""

    model: torch.nn.Module
    spec: dict[str, Any]
    levels: list | None = None
    info: dict[str, Any] | None = None

    def initial(self, scale: int):
        return self.model, self.spec, self.levels, dict(self.info or {"model": self.spec["arch"]})


@dataclass(frozen=True)
class ChannelConfig:
    segment_s: float = 1.0
    codec: str = "h264"
    crf: int = 28
    preset: str = "veryfast"
    max_segments: int = 120  # segments kept for clients (older ones: 404, clients skip ahead)
    max_updates: int = 100_000
    keep_hr: bool = False  # keep each segment's HR frames (benchmarks score clients with them)
    # segments held back after encoding before they are published: the trainer gets each segment
    # `hold` segments before the clients do, so an update can be trained on the very frames it is
    # applied to (clients wait hold x segment_s longer; 0 = publish at once, as the thesis's AMS)
    hold: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.segment_s) and 0.04 <= self.segment_s <= 30):
            raise ConfigError(f"segment length must be in [0.04, 30] s, got {self.segment_s}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf must be in [0, 51], got {self.crf}")
        if not 1 <= self.max_segments <= 100_000:
            raise ConfigError("max_segments must be in [1, 100000]")
        if not 0 <= self.hold <= MAX_HOLD:
            raise ConfigError(f"hold must be 0..{MAX_HOLD} segments, got {self.hold}")


@dataclass(frozen=True)
class Segment:
    index: int
    start_s: float
    duration_s: float
    frames: int
    data: bytes
    sha256: str

    def entry(self) -> dict[str, Any]:
        return {"index": self.index, "start_s": self.start_s, "duration_s": self.duration_s, "frames": self.frames,
                "bytes": len(self.data), "sha256": self.sha256}


class Channel:
    """One live channel (see the module doc)."""

    def __init__(self, name: str, source: LiveSource, trainer_config: TrainerConfig | None = None, *,
                 model_source: ModelSource | None = None, config: ChannelConfig | None = None,
                 device: str = "cpu", trainer_factory: Callable[..., Any] | None = None) -> None:
        from adasr.safepath import check_name

        check_name(name, "channel name", ConfigError)
        if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
            raise ConfigError(f"channel names are 1-64 letters, digits, - or _, got {name!r}")
        self.name, self.source = name, source
        self.cfg = config or ChannelConfig()
        self.trainer_config = trainer_config or TrainerConfig()
        self.model_source = model_source or NamedModel()
        model, spec, levels, info = self.model_source.initial(source.scale)
        self.model_info = dict(info)
        # the trainer: in this process (the default) or, e.g., a Ray actor's handle (`adasr.serve.ray_trainer`)
        make_trainer = trainer_factory or ChannelTrainer
        self.trainer = make_trainer(model, spec, levels, self.trainer_config, scale=source.scale, device=device)
        self.base_hash = self.trainer.state.base_hash
        self.scale, self.fps = source.scale, source.fps
        self.lr_hw = (source.height // source.scale, source.width // source.scale)
        self._lock = threading.Lock()
        self._segments: OrderedDict[int, Segment] = OrderedDict()
        self._hr: OrderedDict[int, np.ndarray] = OrderedDict()
        self._updates: list[tuple[Update, int]] = []  # (update, first segment it applies to)
        self._pending: list[np.ndarray] = []
        self._held: deque[tuple[Segment, list[np.ndarray], list[np.ndarray]]] = deque()  # encoded, not published
        self._encoded = 0  # segments encoded (published + held)
        self._frames_in = 0
        self._frames_per_segment = max(1, round(self.cfg.segment_s * self.fps))
        self._iter = None
        self._t0: float | None = None
        self.ended = False
        self.encode_cpu_s = 0.0
        self.last_segment_wall: float | None = None  # wall clock (pump's `now`) of the newest segment
        self.bytes_down = 0  # served to clients (counted by the HTTP layer)
        self.bytes_up = 0  # received from clients (request lines and headers)
        self.clients = ClientTable()  # viewers: a bounded LRU with expiry, a share per address
        self.on_update: list[Callable[[Channel, Update], None]] = []  # hooks (model reuse, logs)
        # the newest published model (vector, updates it includes), for late joiners; its full record is
        # coded on first request and kept until the next update
        self._snapshot: tuple[torch.Tensor, int] | None = None
        self._snapshot_record: tuple[bytes, int] | None = None
        self._snapshot_lock = threading.Lock()
        self._param_shapes = [(n, tuple(p.shape)) for n, p in self.trainer.state.model.named_parameters()]
        # (channel, segment, LR frames as clients decode them, HR frames): model reuse watches
        # the content with it; runs in the ingest thread, so a hook only copies what it needs
        self.on_segment: list[Callable[[Channel, Segment, list[np.ndarray], list[np.ndarray]], None]] = []
        # the same, when the segment is published (after `hold` more segments): what clients get, and
        # the model they hold for it (benchmarks score it there)
        self.on_publish: list[Callable[[Channel, Segment, list[np.ndarray], list[np.ndarray]], None]] = []

    # -- reading (any thread) --

    @property
    def video_time(self) -> float:
        return self._frames_in / self.fps

    @property
    def live_edge(self) -> int:
        """Index of the newest published segment (-1 before the first)."""
        with self._lock:
            return next(reversed(self._segments)) if self._segments else -1

    def segment(self, index: int) -> Segment | None:
        with self._lock:
            return self._segments.get(index)

    def hr_frames(self, index: int) -> np.ndarray | None:
        with self._lock:
            return self._hr.get(index)

    def update(self, index: int) -> bytes | None:
        with self._lock:
            return self._updates[index][0].record if 0 <= index < len(self._updates) else None

    @property
    def init_record(self) -> bytes:
        return self.trainer.init_record

    def snapshot(self) -> tuple[bytes, int] | None:
        """(a full record of the newest published model, the number of updates it includes), or
        None before the first update: a late joiner starts from it instead of replaying every
        delta (float32, exact: it holds the bits of a client that applied them all)."""
        with self._lock:
            snap = self._snapshot
        if snap is None:
            return None
        with self._snapshot_lock:
            if self._snapshot_record is None or self._snapshot_record[1] != snap[1]:
                record = encode_snapshot(snap[0], self._param_shapes, self.trainer.state.spec, snap[1], self.base_hash)
                self._snapshot_record = (record, snap[1])
            return self._snapshot_record

    def manifest(self, segments_from: int = 0, updates_from: int = 0) -> dict[str, Any]:
        """The channel's manifest; segments and updates listed from the given indices on."""
        with self._lock:
            segs = [s.entry() for s in self._segments.values() if s.index >= segments_from]
            edge = next(reversed(self._segments)) if self._segments else -1
            ups = [{"index": u.index, "t": u.t, "bytes": len(u.record), "from_segment": first, "changed": u.changed}
                   for u, first in self._updates[updates_from:]]
            n_updates = len(self._updates)
        return {
            "kind": "adasr-live-channel", "version": 1, "name": self.name, "scale": self.scale, "fps": self.fps,
            "lr_width": self.lr_hw[1], "lr_height": self.lr_hw[0], "codec": self.cfg.codec,
            "container": "mpegts", "segment_s": self.cfg.segment_s, "hold": self.cfg.hold,
            "segments": segs, "live_edge": edge, "ended": self.ended, "n_updates": n_updates,
            "model": {"id": self.model_info.get("model", "model"), "levels": self.model_info.get("levels"),
                      "base_hash": self.base_hash.hex(), "init_bytes": len(self.init_record),
                      "params": int(self.trainer.state.vector.numel()),
                      "snapshot_updates": 0 if self._snapshot is None else self._snapshot[1]},
            "updates": ups, "scheme": self.trainer_config.scheme,
            "sampling_rate": self.trainer.sampling_rate, "t_update": self.trainer.t_update,
        }

    def status(self, now: float) -> dict[str, Any]:
        vt = max(self.video_time, 1e-9)
        ups = self.trainer.updates
        clients = self.clients.active(now, 10.0)
        return {
            "name": self.name, "clients": clients, "video_s": self.video_time, "segments": self.live_edge + 1,
            "updates": len(ups), "scheme": self.trainer_config.scheme, "sampling_rate": self.trainer.sampling_rate,
            "t_update": self.trainer.t_update, "down_kbps": 8e-3 * self.bytes_down / vt,
            "up_kbps": 8e-3 * self.bytes_up / vt,
            "psnr_gain_db": ups[-1].psnr_vs_base_db if ups else 0.0,
            "train_share": self.trainer.train_cpu_s / vt, "encode_share": self.encode_cpu_s / vt,
            "ended": self.ended,
        }

    def seen(self, client: str, up_bytes: int, now: float, address: str = "?") -> None:
        self.clients.seen(client, address, now)
        with self._lock:
            self.bytes_up += up_bytes

    def served(self, n: int) -> None:
        with self._lock:
            self.bytes_down += n

    # -- the worker's side --

    def pump(self, now: float, max_frames: int | None = None) -> int:
        """Take the source's frames due by wall time `now` (at the source's rate); returns how many."""
        if self.ended:
            return 0
        if self._t0 is None:
            self._t0 = now
            self._iter = self.source.frames()
        due = int((now - self._t0) * self.fps) + 1 - self._frames_in
        if max_frames is not None:
            due = min(due, max_frames)
        taken, before = 0, self.live_edge
        for _ in range(max(0, due)):
            frame = next(self._iter, None)
            if frame is None:
                self.ended = True
                break
            self.ingest(frame)
            taken += 1
        if self.ended and self._pending:
            self._finish_segment()
        if self.ended:
            while self._held:  # the source ended: nothing more to wait for
                self._publish_segment(*self._held.popleft())
        if self.live_edge != before:
            self.last_segment_wall = now
        return taken

    def real_time_fraction(self) -> float | None:
        """Video seconds published per wall second from the first frame to the newest segment (1.0:
        the server kept up with the source; below: segments came out late). None before any segment."""
        if self._t0 is None or self.last_segment_wall is None or not self._frames_in:
            return None
        wall = self.last_segment_wall - self._t0 + 1.0 / self.fps
        return min(1.0, self.video_time / max(wall, 1e-9))

    def ingest(self, hr: np.ndarray) -> Segment | None:
        """One HR frame of the source; a segment when it fills."""
        self._pending.append(hr)
        self._frames_in += 1
        if len(self._pending) >= self._frames_per_segment:
            return self._finish_segment()
        return None

    def _finish_segment(self) -> Segment:
        started = time.thread_time()
        hr = self._pending
        self._pending = []
        index = self._encoded
        self._encoded += 1
        first = self._frames_in - len(hr)
        lr = [downsample(f, self.scale) for f in hr]
        data = encode_segment(lr, self.fps, codec=self.cfg.codec, crf=self.cfg.crf, preset=self.cfg.preset,
                              start_pts=first)
        decoded = decode_segment(data)  # the LR frames exactly as a client decodes them
        seg = Segment(index, first / self.fps, len(hr) / self.fps, len(hr), data, hashlib.sha256(data).hexdigest())
        self.encode_cpu_s += time.thread_time() - started
        shown = [f[: lr[0].shape[0], : lr[0].shape[1]] for f in decoded]
        for i, (lr_frame, hr_frame) in enumerate(zip(shown, hr)):
            self.trainer.offer((first + i) / self.fps, lr_frame, hr_frame)
        for hook in self.on_segment:
            hook(self, seg, shown, hr)
        self._held.append((seg, shown, hr))
        while len(self._held) > self.cfg.hold:
            self._publish_segment(*self._held.popleft())
        return seg

    def _publish_segment(self, seg: Segment, shown: list[np.ndarray], hr: list[np.ndarray]) -> None:
        with self._lock:
            self._segments[seg.index] = seg
            if self.cfg.keep_hr:
                self._hr[seg.index] = np.stack(hr)
            while len(self._segments) > self.cfg.max_segments:
                old = next(iter(self._segments))
                del self._segments[old]
                self._hr.pop(old, None)
        for hook in self.on_publish:
            hook(self, seg, shown, hr)

    def train_due(self) -> bool:
        return len(self._updates) < self.cfg.max_updates and self.trainer.due(self.video_time)

    def train(self) -> Update | None:
        update = self.trainer.train(self.video_time)
        if update is not None:
            self._publish(update)
        return update

    def adopt(self, vector: torch.Tensor) -> Update | None:
        """Send `vector` (a full flat parameter vector of the channel's model, e.g. a zoo expert)
        to the clients as the next update; from the training thread. None if nothing changes."""
        update = self.trainer.adopt(vector, self.video_time)
        if update is not None:
            self._publish(update)
        return update

    def _publish(self, update: Update) -> None:
        state = self.trainer.state  # published: its vector is replaced, never written in place
        with self._lock:
            self._updates.append((update, (next(reversed(self._segments)) + 1) if self._segments else 0))
            self._snapshot = (state.vector, state.next_segment)
        for hook in self.on_update:
            hook(self, update)

    def model_hash(self) -> str:
        return vector_hash(self.trainer.state.vector).hex()


class Hub:
    """The server's channels, sharing one worker (see the module doc)."""

    def __init__(self, channels: list[Channel] | None = None, scheduler: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.channels: dict[str, Channel] = {}
        self.scheduler = scheduler or RoundRobin()
        self.clock = clock
        self.started = clock()
        self.steps = 0
        self.worker_cpu_s = 0.0  # thread CPU time of the ingest and training work
        self._cpu_lock = threading.Lock()
        # model reuse: run in the training thread before each pick (True: the hook did work);
        # `on_status` hooks add to the status dict (JSON and HTML status)
        self.before_train: list[Callable[[Hub], bool]] = []
        self.on_status: list[Callable[[dict[str, Any]], None]] = []
        for ch in channels or []:
            self.add(ch)

    def add(self, channel: Channel) -> None:
        if channel.name in self.channels:
            raise ConfigError(f"channel {channel.name!r} exists already")
        if len(self.channels) >= MAX_CHANNELS:
            raise ConfigError(f"at most {MAX_CHANNELS} channels per server")
        self.channels[channel.name] = channel

    def pump(self, now: float | None = None) -> bool:
        """Pull every source up to wall time `now` and publish the segments that filled."""
        now = self.clock() if now is None else now
        started = time.thread_time()
        worked = False
        for ch in self.channels.values():
            worked |= ch.pump(now) > 0
        self._add_cpu(time.thread_time() - started)
        return worked

    def train_once(self) -> bool:
        """One training phase for the channel the scheduler picks among those due; True if one ran."""
        started = time.thread_time()
        hooked = False
        for hook in self.before_train:
            hooked |= bool(hook(self))
        due = [n for n, ch in self.channels.items() if ch.train_due()]
        pick = self.scheduler.pick(due, self.clock())
        if pick is not None:
            update = self.channels[pick].train()
            if update is not None:
                self.scheduler.record(pick, update.cpu_s, update.gain_db)
        self._add_cpu(time.thread_time() - started)
        return pick is not None or hooked

    def _add_cpu(self, seconds: float) -> None:
        with self._cpu_lock:
            self.worker_cpu_s += seconds

    def step(self, now: float | None = None) -> bool:
        """`pump(now)` then `train_once()` in the calling thread (tests drive a fake clock with it)."""
        worked = self.pump(now)
        worked |= self.train_once()
        self.steps += 1
        return worked

    def _finished(self) -> bool:
        return bool(self.channels) and all(ch.ended for ch in self.channels.values()) and \
            not any(ch.train_due() or getattr(ch.trainer, "busy", False) for ch in self.channels.values())

    def run(self, stop: threading.Event, duration_s: float | None = None, idle_s: float = 0.01,
            max_steps: int = 10_000_000) -> None:
        """Sources in an ingest thread (live content never waits for training), training in this one."""
        end = None if duration_s is None else self.clock() + duration_s
        halt = threading.Event()
        errors: list[BaseException] = []

        def over() -> bool:
            return stop.is_set() or halt.is_set() or (end is not None and self.clock() >= end)

        def ingest() -> None:
            try:
                for _ in range(max_steps):
                    if over() or all(ch.ended for ch in self.channels.values()):
                        return
                    if not self.pump():
                        halt.wait(idle_s)
            except BaseException as exc:  # noqa: BLE001 - re-raised by run
                errors.append(exc)
                halt.set()

        feeder = threading.Thread(target=ingest, name="adasr-ingest", daemon=True)
        feeder.start()
        try:
            for _ in range(max_steps):
                if over() or self._finished():
                    break
                if not self.train_once():
                    halt.wait(idle_s)
                self.steps += 1
        finally:
            halt.set()
            feeder.join(30)
        if errors:
            raise errors[0]

    def status(self) -> dict[str, Any]:
        now = self.clock()
        out = {"kind": "adasr-live-status", "uptime_s": now - self.started, "scheduler": self.scheduler.name,
               "worker_cpu_s": self.worker_cpu_s,
               "channels": [ch.status(now) for ch in self.channels.values()]}
        for hook in self.on_status:
            hook(out)
        return out


def channel_config_dict(cfg: ChannelConfig) -> dict[str, Any]:
    return asdict(cfg)
