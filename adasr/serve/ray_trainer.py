"""Channel trainers as Ray actors (`adasr serve --ray auto|HOST:PORT`; extra ``adasr[cluster]``).

The HTTP front and the hub stay one process; each channel's `ChannelTrainer` lives in a Ray
actor (one CPU each, on whichever node of the cluster Ray places it). `RayTrainer` is the
channel's handle on it and answers what a `ChannelTrainer` answers (`offer`, `due`, `train`,
`updates`, `state`, ...), so `Channel` and `Hub` run unchanged (`Channel(trainer_factory=...)`):

* **What travels.** To the actor: the channel's model as the codec's full record (the bytes
  `encode_full` writes and a client reads: architecture as JSON, the parameters as a raw
  float16 vector), the `TrainerConfig` and level configs (adasr's own frozen dataclasses), and
  the (LR, HR) frames as numpy uint8 arrays, a segment's frames per call. Back: each update as
  the codec's delta record (bytes, with its `Update` numbers) through Ray's object store, and a
  few numbers of the trainer's state. Ray serialises these between adasr's own processes; no
  user file or network input is unpickled anywhere (the sources are decoded by PyAV in the
  server process, clients only ever receive codec records over HTTP).
* **Training runs beside the ingest and the other channels.** `train(t)` starts the actor's
  training phase and returns at once (None); the hub then goes on to the next channel, so N
  channels train on N actors at once. The update is taken up by a later `due`/`train` call
  once its object is ready: applied to the handle's own `ModelState` (the codec's checks: the
  record chains onto the model the clients hold, bit for bit), then published as usual.
* **Offers** are sent in order (numbered; the actor applies them in number order) on a
  concurrency group of their own, so a segment's frames join the buffer while a training phase
  runs, as in one process. At most `MAX_IN_FLIGHT` offer calls are outstanding per channel.

`RaySession` starts or joins Ray: ``auto`` joins the Ray that `ray start --head` runs on this
machine, or else starts one in this process (`num_cpus` bounded, no dashboard, its node on
127.0.0.1); ``HOST:PORT`` joins a running cluster's head (GCS port, 6379 by default), after a
TCP check bounded by `connect_timeout_s`. Ray is imported only here, and only when used.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any

from adasr.errors import AdasrError, ConfigError, InputError
from adasr.serve.config import TrainerConfig
from adasr.serve.trainer import Update

__all__ = ["INSTALL_HINT", "MAX_HELD", "MAX_IN_FLIGHT", "READY_TIMEOUT_S", "RaySession", "RayTrainer",
           "RayTrainerFactory", "TrainerActor", "parse_address"]

MAX_IN_FLIGHT = 32  # offer calls outstanding per channel before the ingest waits for the actor
MAX_HELD = 1024  # out-of-order offer batches an actor keeps before it refuses more
READY_TIMEOUT_S = 300.0  # an actor's start (process, imports, model); 80-105 s seen on a loaded 2-core machine
INSTALL_HINT = "pip install 'adasr[cluster]'"


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed ({INSTALL_HINT})") from None
    return ray


def _snapshot(trainer) -> dict[str, Any]:
    """What the handle needs of the trainer's state to answer `due` without a round trip."""
    s = trainer.cfg.scheme
    inf = float("inf")
    if s == "none" or not len(trainer.buffer):
        due_at = inf
    elif s == "one_time":
        due_at = inf if trainer.one_time_done else trainer.cfg.one_time_s
    elif s == "jit":
        due_at = -inf if trainer._jit_pending is not None else inf
    else:
        due_at = trainer.next_update_t
    return {"due_at": due_at, "sampling_rate": trainer.sampling_rate, "t_update": trainer.t_update,
            "train_cpu_s": trainer.train_cpu_s, "samples_seen": trainer.samples_seen,
            "last_phi": trainer.last_phi}


class TrainerActor:
    """The actor's side: a `ChannelTrainer` rebuilt from the codec's full record."""

    def __init__(self, init_record: bytes, levels: list | None, config: TrainerConfig, scale: int,
                 threads: int = 1) -> None:
        import torch

        from adasr.serve.trainer import ChannelTrainer
        from adasr.stream.codec import ModelState

        torch.set_num_threads(max(1, int(threads)))
        state = ModelState.from_full(bytes(init_record), what="the channel's model")
        self.trainer = ChannelTrainer(state.model, state.spec, levels, config, scale=scale)
        self._next, self._held = 0, {}
        self._lock = threading.Condition()

    def ready(self) -> dict[str, Any]:
        return {"init_record": self.trainer.init_record, "pid": os.getpid(), "node": socket.gethostname(),
                **_snapshot(self.trainer)}

    def offer_many(self, seq: int, items: list[tuple[float, Any, Any]]) -> dict[str, Any]:
        """Batch `seq` of (t, lr, hr); batches join the buffer in number order."""
        with self._lock:
            if len(self._held) >= MAX_HELD:
                raise RuntimeError(f"offer batch {seq}: {MAX_HELD} batches wait for batch {self._next}")
            self._held[int(seq)] = items
            while self._next in self._held:
                for t, lr, hr in self._held.pop(self._next):
                    self.trainer.offer(float(t), lr, hr)
                self._next += 1
            self._lock.notify_all()
            return _snapshot(self.trainer)

    def train(self, t: float, offers: int) -> tuple[Update | None, dict[str, Any]]:
        """The training phase at video time `t`, once the first `offers` batches are in the buffer
        (what the channel offered before it asked, as in one process)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._next >= offers, timeout=READY_TIMEOUT_S):
                raise RuntimeError(f"offer batches {self._next}..{offers - 1} did not arrive within "
                                   f"{READY_TIMEOUT_S:g} s")
        update = self.trainer.train(float(t))
        return update, _snapshot(self.trainer)


_remote_cls = None


def _actor_class():
    """The Ray actor class (made once, on first use: importing this module does not import ray)."""
    global _remote_cls
    if _remote_cls is None:
        ray = _ray()
        cls = ray.remote(concurrency_groups={"ingest": 1, "train": 1})(TrainerActor)
        _remote_cls = cls
    return _remote_cls


class RayTrainer:
    """A channel's handle on its trainer actor; the interface of `ChannelTrainer` (see the module doc)."""

    def __init__(self, model, spec: dict[str, Any], levels: list | None, config: TrainerConfig, *, scale: int,
                 base_dtype: str = "float16", device: str = "cpu", num_cpus: float = 1.0, threads: int = 1) -> None:
        from adasr.stream.codec import ModelState, encode_full

        ray = _ray()
        if not ray.is_initialized():
            raise ConfigError("Ray is not connected: start a RaySession first (adasr serve --ray)")
        self.cfg, self.scale, self.levels = config, int(scale), levels
        self.init_record = encode_full(model, spec, base_dtype)
        self.state = ModelState.from_full(self.init_record, device=device)  # what the clients hold
        self._base = None
        cls = _actor_class()
        self._actor = cls.options(num_cpus=num_cpus).remote(self.init_record, levels, config, self.scale, threads)
        # the actor starts in the background (several channels' actors at once): the channel is not
        # due until it is up, and `ready()` waits for it (bounded)
        self._ready_ref = self._actor.ready.remote()
        self._deadline = time.monotonic() + READY_TIMEOUT_S
        self.actor_pid: int | None = None
        self.actor_node: str | None = None
        self.updates: list[Update] = []
        self._snap = {"due_at": float("inf"), "sampling_rate": config.asr.r_init,
                      "t_update": config.t_update, "train_cpu_s": 0.0, "samples_seen": 0, "last_phi": None}
        self._lock = threading.Lock()
        self._batch: list[tuple[float, Any, Any]] = []
        self._seq = 0
        self._offers: list[Any] = []  # outstanding offer refs, oldest first
        self._job = None  # the training phase in flight (an ObjectRef), if any
        self.closed = False

    def ready(self, timeout_s: float | None = None) -> bool:
        """Whether the actor is up (waiting up to `timeout_s`, None: until the start deadline)."""
        with self._lock:
            return self._ready(timeout_s)

    def _ready(self, timeout_s: float | None = 0.0) -> bool:
        if self._ready_ref is None:
            return True
        ray = _ray()
        wait = max(0.0, self._deadline - time.monotonic()) if timeout_s is None else timeout_s
        if not ray.wait([self._ready_ref], timeout=wait)[0]:
            if time.monotonic() >= self._deadline:
                self._fail(f"did not start within {READY_TIMEOUT_S:g} s")
            return False
        try:
            info = ray.get(self._ready_ref)
        except Exception as exc:  # noqa: BLE001 - Ray's errors vary (actor died, import error)
            self._fail(_first_line(exc))
        self._ready_ref = None
        if info.pop("init_record") != self.init_record:
            self._fail("it rebuilt another model than the channel's")
        self.actor_pid, self.actor_node = info.pop("pid"), info.pop("node")
        self._snap = {**self._snap, **info}
        return True

    def _fail(self, why: str):
        self.close()
        raise AdasrError(f"the trainer actor {why}")

    # -- what the channel reads --

    @property
    def sampling_rate(self) -> float:
        return float(self._snap["sampling_rate"])

    @property
    def t_update(self) -> float:
        return float(self._snap["t_update"])

    @property
    def train_cpu_s(self) -> float:
        return float(self._snap["train_cpu_s"])

    @property
    def samples_seen(self) -> int:
        return int(self._snap["samples_seen"])

    @property
    def base(self):
        """The generic model, frozen (built here from the first record, as a client builds it)."""
        if self._base is None:
            from adasr.stream.codec import ModelState

            self._base = ModelState.from_full(self.init_record).model
            for p in self._base.parameters():
                p.requires_grad_(False)
        return self._base

    @property
    def busy(self) -> bool:
        """A training phase is in flight (the hub waits for it before it ends)."""
        return self._job is not None

    # -- data --

    def offer(self, t: float, lr, hr) -> bool:
        """Queue a frame for the actor (sent with the next `flush`, by segment); whether the trainer
        samples it is decided there, so this answers False."""
        with self._lock:
            self._batch.append((float(t), lr, hr))
            if len(self._batch) >= 256:
                self._flush()
        return False

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        self._take_offers()
        if not self._batch:
            return
        ray = _ray()
        if len(self._offers) >= MAX_IN_FLIGHT:  # back-pressure: wait for the oldest (bounded)
            self._snap_from(ray.get(self._offers.pop(0), timeout=READY_TIMEOUT_S))
        self._offers.append(self._actor.offer_many.options(concurrency_group="ingest").remote(self._seq, self._batch))
        self._seq += 1
        self._batch = []

    def _take_offers(self) -> None:
        """Take up the answers of the offers that are done (in order)."""
        if not self._offers:
            return
        ray = _ray()
        done, _ = ray.wait(self._offers, num_returns=len(self._offers), timeout=0)
        ready = set(done)
        while self._offers and self._offers[0] in ready:
            self._snap_from(ray.get(self._offers.pop(0)))

    def _snap_from(self, snap: dict[str, Any]) -> None:
        if self._job is None:  # a training phase in flight will bring a newer state
            self._snap = {**self._snap, **snap}

    def due(self, t: float) -> bool:
        with self._lock:
            self._flush()
            if not self._ready():
                return False
            if self._job is not None:
                return bool(_ray().wait([self._job], timeout=0)[0])  # an update to take up
            return t + 1e-9 >= float(self._snap["due_at"])

    def lag(self, t: float) -> float:
        if not self.due(t) or self.cfg.scheme != "ams":
            return 0.0
        return max(0.0, t - float(self._snap["due_at"]))

    # -- training --

    def train(self, t: float) -> Update | None:
        """Take up the finished phase's update, or start the due phase on the actor; see the module doc."""
        ray = _ray()
        with self._lock:
            self._flush()
            if self._job is None:
                if not self._ready() or t + 1e-9 < float(self._snap["due_at"]):
                    return None
                self._job = self._actor.train.options(concurrency_group="train").remote(float(t), self._seq)
                return None
            if not ray.wait([self._job], timeout=0)[0]:
                return None
            job, self._job = self._job, None
        try:
            update, snap = ray.get(job)  # ready: no wait
        except Exception as exc:  # noqa: BLE001 - the actor died or its phase raised: the server stops
            raise AdasrError(f"the trainer actor failed: {_first_line(exc)}") from None
        with self._lock:
            self._snap = {**self._snap, **snap}
            self._take_offers()
        if update is None:
            return None
        if update.index != len(self.updates):
            raise RuntimeError(f"the trainer actor sent update {update.index}, expected {len(self.updates)}")
        self.state.apply(update.record, f"update {update.index} from the trainer actor")
        self.updates.append(update)
        return update

    def wait(self, timeout_s: float = 60.0) -> None:
        """Wait (bounded) until the offers sent and the training phase in flight are done."""
        ray = _ray()
        with self._lock:
            self._flush()
            refs = list(self._offers) + [r for r in (self._job, self._ready_ref) if r is not None]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        self.ready(0.0)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                _ray().kill(self._actor)
            except Exception:  # noqa: BLE001 - Ray may be gone already
                pass


class RayTrainerFactory:
    """`Channel(trainer_factory=RayTrainerFactory())`: each channel's trainer as a Ray actor."""

    def __init__(self, num_cpus: float = 1.0, threads: int = 1) -> None:
        self.num_cpus, self.threads = float(num_cpus), int(threads)
        self.made: list[RayTrainer] = []

    def __call__(self, model, spec, levels, config, *, scale: int, device: str = "cpu") -> RayTrainer:
        trainer = RayTrainer(model, spec, levels, config, scale=scale, device=device, num_cpus=self.num_cpus,
                             threads=self.threads)
        self.made.append(trainer)
        return trainer

    def close(self) -> None:
        for t in self.made:
            t.close()


def parse_address(address: str) -> tuple[str, int] | None:
    """``auto`` -> None; ``HOST:PORT`` -> (host, port); anything else: ConfigError."""
    if address == "auto":
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or len(address) > 255 \
            or any(c.isspace() for c in address) or "/" in address:
        raise ConfigError(f"--ray takes auto or HOST:PORT (the head's GCS port, e.g. 10.0.0.1:6379), got {address!r}")
    return host.strip("[]"), int(port)


class RaySession:
    """Ray for the live server: `start()` joins or starts it, `close()` leaves (and stops what it started)."""

    def __init__(self, address: str = "auto", *, num_cpus: int | None = None, connect_timeout_s: float = 5.0,
                 local: str = "join_or_start") -> None:
        self.target = parse_address(address)
        self.address = address
        if num_cpus is not None and not 1 <= num_cpus <= 256:
            raise ConfigError(f"Ray CPUs must be in [1, 256], got {num_cpus}")
        if not 0.1 <= connect_timeout_s <= 120:
            raise ConfigError("the Ray connect timeout must be in [0.1, 120] s")
        if local not in ("join_or_start", "start"):
            raise ConfigError(f"unknown local mode {local!r}")
        self.num_cpus = num_cpus or min(os.cpu_count() or 1, 64)
        self.connect_timeout_s, self.local = connect_timeout_s, local
        self.started_here = False
        self.how = ""
        self.start_s = 0.0

    def start(self) -> RaySession:
        ray = _ray()
        import logging

        started = time.monotonic()
        quiet = dict(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
        if ray.is_initialized():
            self.how = "already connected"
        elif self.target is not None:
            host, port = self.target
            problem = _reachable((host, port), self.connect_timeout_s, why=True)
            if problem:  # a bounded check first: ray.init itself waits a long time for an absent head
                raise InputError(f"cannot reach the Ray head at {host}:{port} within {self.connect_timeout_s:g} s "
                                 f"({problem}); is `ray start --head --port={port}` running there?")
            try:
                ray.init(address=f"{host}:{port}", **quiet)
            except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
                raise InputError(f"cannot join the Ray cluster at {host}:{port}: {_first_line(exc)}") from None
            self.how = f"joined the Ray cluster at {host}:{port}"
        else:
            joined = False
            head = _local_head() if self.local == "join_or_start" else None
            if head is not None and _reachable(head, self.connect_timeout_s):
                try:  # "auto": Ray finds it and, as for any local cluster it finds, sends the token
                    ray.init(address="auto", **quiet)
                    joined = True
                    self.how = f"joined the local Ray at {head[0]}:{head[1]} (ray start)"
                except Exception:  # noqa: BLE001 - a stale head: start one of our own instead
                    joined = False
            if not joined:
                try:
                    with _loopback_node():
                        ray.init(address="local", num_cpus=self.num_cpus, _node_ip_address="127.0.0.1", **quiet)
                except Exception as exc:  # noqa: BLE001 - a node that did not come up (see docs/CLUSTER.md)
                    raise ConfigError(f"Ray did not start on this machine: {_first_line(exc)}") from None
                self.started_here = True
                self.how = f"started a local Ray ({self.num_cpus} CPUs)"
        self.start_s = time.monotonic() - started
        return self

    def cpus(self) -> float:
        return float(_ray().cluster_resources().get("CPU", 0.0))

    def close(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RaySession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reachable(addr: tuple[str, int], timeout_s: float, why: bool = False):
    """Whether a TCP connection to `addr` opens within `timeout_s` (with `why`: '' or the reason)."""
    try:
        socket.create_connection(addr, timeout=timeout_s).close()
    except OSError as exc:
        return (exc.strerror or str(exc) or type(exc).__name__) if why else False
    return "" if why else True


_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's switch: "0" makes a node single-machine


@contextmanager
def _loopback_node():
    """While a node of our own starts: keep it on 127.0.0.1. Ray 2.60 replaces a loopback
    `_node_ip_address` with the machine's routable address (so that other nodes could join)
    unless it runs as a single-machine node, which it decides from one constant read at call time
    and, in the processes it starts (GCS, raylet, workers), from the environment variable below."""
    from ray._private import ray_constants

    saved_env = os.environ.get(_SINGLE_NODE_ENV)
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)  # None: a Ray without the switch (pinned: 2.60)
    os.environ[_SINGLE_NODE_ENV] = "0"
    if saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(_SINGLE_NODE_ENV, None)
        else:
            os.environ[_SINGLE_NODE_ENV] = saved_env


def _local_head() -> tuple[str, int] | None:
    """The head `ray start --head` runs on this machine (the address it leaves in Ray's temp
    folder, or RAY_ADDRESS), or None."""
    import tempfile

    text = os.environ.get("RAY_ADDRESS", "")
    if not text:
        path = os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(300).strip()
        except OSError:
            return None
    try:
        return parse_address(text)
    except ConfigError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
