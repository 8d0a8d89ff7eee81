"""The live client (the AMS edge device): fetch segments and model updates as they appear, play
them through the adaptive runtime, swap to each updated model between two frames.

* Model: the stream's first record, or, when the client already holds the base model (e.g. the
  bundled one: `have_model`), the server's record naming it by hash (only deltas travel). Each
  update is checked and applied by `ModelState.apply` to an *inactive* copy of the model; the SR
  loop swaps the copies between two frames once the update's first segment is reached
  (`ModelSwap`). A damaged, foreign or out-of-order update is refused: the model stays as it was
  and the client carries on with it (counted in `ClientStats.refused`).
* Late join: when replaying the channel's updates would cost more bytes than one full record of
  the newest model (`prefer_snapshot`: the first record + every update listed, against 4 bytes a
  parameter), the client starts from ``model/latest`` (`from_snapshot`) and follows the updates
  made after it; `snapshot` = "auto", "always" or "never".
* Segments: long-polled from the manifest, decoded into a playout buffer. A client more than
  `max_lag` segments behind the live edge skips to it (`skipped`).
* Faults: a failed request (server gone, network stalled past `timeout_s`, 429/503 answers) is
  retried with exponential backoff (0.1 s doubling to 2 s) for at most `reconnect_s` seconds in a
  row; playback meanwhile continues from the buffer with the last good model. A server that
  answers the long poll at once with nothing new is polled less and less often (0.05 s doubling
  to 2 s), never in a busy loop.
* Hostile servers: the manifest is read with the bounded JSON reader and each field it uses is
  checked (`check_manifest`) before use; a segment's frames must have the manifest's size; every
  response is bounded in bytes; a redirect is followed only within the channel's origin (scheme,
  host, port), at most `MAX_REDIRECTS` times. Errors name what failed: the field, the segment or
  record, and its URL.
* Any host, http or https (`parse_channel_url`); `token`: sent as ``Authorization: Bearer`` to a
  server that asks for one (`adasr serve --host`).
* Bounded: at most `max_segments` segments and `duration_s` seconds; every wait has a timeout.

`LiveClient.run(...)` plays through `adasr.runtime.pipeline.run_stream` and returns a
`LivePlayResult` (the runtime's QoS summary plus `ClientStats`).
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import numpy as np

from adasr._jsonfile import loads
from adasr.errors import ConfigError, InputError, ModelError
from adasr.serve.media import MAX_SEGMENT_BYTES, decode_segment
from adasr.stream.codec import DeltaError, ModelState, encode_full

__all__ = ["ClientStats", "LiveClient", "LivePlayResult", "LiveRunner", "MAX_MANIFEST_BYTES", "MAX_RECORD_BYTES",
           "MAX_REDIRECTS", "ModelSwap", "REQUEST_HEAD_BYTES", "RESPONSE_HEAD_BYTES", "check_manifest",
           "parse_channel_url"]

MAX_MANIFEST_BYTES = 8 << 20
MAX_RECORD_BYTES = 512 << 20
MAX_REDIRECTS = 5
REQUEST_HEAD_BYTES = 150  # request line + headers the client sends, about (uplink accounting)
RESPONSE_HEAD_BYTES = 200  # status line + headers of a response, about (downlink accounting)
MAX_LR_SIDE = 8192  # pixels per side of a channel's LR frames
MAX_OUT_SIDE = 16384  # pixels per side of the upscaled frames
MAX_LISTED = 100_000  # segments or updates one manifest may list
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def parse_channel_url(url: str) -> tuple[str, str]:
    """('SCHEME://HOST:PORT', NAME) of a channel URL http(s)://HOST[:PORT]/channel/NAME; ConfigError
    otherwise (credentials in the URL are refused: the token goes in `token`)."""
    parts = urlsplit(str(url))
    segs = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or not parts.hostname or len(segs) != 2 or segs[0] != "channel" \
            or parts.query or parts.fragment or not 1 <= len(segs[1]) <= 64 or not set(segs[1]) <= _NAME_CHARS:
        raise ConfigError(f"a live channel URL looks like http(s)://HOST:PORT/channel/NAME, got {str(url)[:120]!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("a live channel URL must not carry credentials: give the access token with --token")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ConfigError(f"a live channel URL has a bad port: {str(url)[:120]!r}") from None
    return f"{parts.scheme}://{parts.netloc}", segs[1]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = -1
    return parts.scheme, (parts.hostname or "").lower(), port


def _field(where: str, name: str, value: Any, why: str) -> InputError:
    shown = repr(value)
    return InputError(f"{where}: field {name!r} {why}, got {shown[:40] + '...' if len(shown) > 40 else shown}")


def _int_field(m: dict[str, Any], name: str, lo: int, hi: int, where: str, default: Any = ...) -> int:
    value = m.get(name, default)
    if value is ...:
        raise _field(where, name, None, "is missing")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _field(where, name, value, f"must be an integer in [{lo}, {hi}]")
    return value


def check_manifest(m: Any, where: str) -> dict[str, Any]:
    """`m` if it is a live channel manifest whose every field the client uses has the right type
    and a bounded value; InputError naming the field (and `where`: the URL) otherwise."""
    if not isinstance(m, dict) or m.get("kind") != "adasr-live-channel" or m.get("version") != 1:
        raise InputError(f"{where}: not an adasr live channel manifest (kind/version)")
    scale = _int_field(m, "scale", 1, 8, where)
    lr_w = _int_field(m, "lr_width", 2, MAX_LR_SIDE, where)
    lr_h = _int_field(m, "lr_height", 2, MAX_LR_SIDE, where)
    if max(lr_w, lr_h) * scale > MAX_OUT_SIDE:
        raise _field(where, "scale", scale, f"makes frames of {lr_w * scale}x{lr_h * scale} (at most {MAX_OUT_SIDE} "
                                            f"a side)")
    fps = m.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 240:
        raise _field(where, "fps", fps, "must be a number in (0, 240]")
    _int_field(m, "live_edge", -1, 10**9, where)
    _int_field(m, "n_updates", 0, 10**9, where, 0)
    if not isinstance(m.get("ended", False), bool):
        raise _field(where, "ended", m.get("ended"), "must be true or false")
    for name in ("segments", "updates"):
        items = m.get(name, [])
        if not isinstance(items, list) or len(items) > MAX_LISTED:
            raise _field(where, name, type(items).__name__, f"must be a list of at most {MAX_LISTED:,} entries")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise _field(where, f"{name}[{i}]", item, "must be an object")
            _int_field(item, "index", 0, 10**9, f"{where}: {name}[{i}]")
            if name == "updates":
                _int_field(item, "from_segment", 0, 10**9, f"{where}: updates[{i}]", 0)
                _int_field(item, "bytes", 0, MAX_RECORD_BYTES, f"{where}: updates[{i}]", 0)
    model = m.get("model")
    if not isinstance(model, dict):
        raise _field(where, "model", model, "must be an object")
    base = model.get("base_hash")
    if not isinstance(base, str) or len(base) != 32 or not set(base) <= set("0123456789abcdef"):
        raise _field(where, "model.base_hash", base, "must be 32 lowercase hex digits")
    for name in ("init_bytes", "params", "snapshot_updates"):
        _int_field(model, name, 0, 10**12, f"{where}: model", 0)
    if not isinstance(model.get("id", ""), str) or len(model.get("id", "")) > 256:
        raise _field(where, "model.id", model.get("id"), "must be a string of at most 256 characters")
    levels = model.get("levels")
    if levels is not None and (not isinstance(levels, list) or len(levels) > 1000):
        raise _field(where, "model.levels", levels, "must be a list of at most 1000 levels")
    return m


@dataclass
class ClientStats:
    segments: int = 0
    frames_buffered: int = 0
    updates_applied: int = 0
    refused: int = 0
    skipped_segments: int = 0
    reconnects: int = 0
    failed_requests: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    model_bytes: int = 0
    segment_bytes: int = 0
    base_by_hash: bool = False
    from_snapshot: bool = False  # started from the newest model's full record (a late joiner)
    swaps: int = 0
    errors: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(text)


class _Busy(Exception):
    """The server answered 429 or 503 (its limits): retried like a failed connection."""

    def __str__(self) -> str:
        return f"HTTP {self.args[0]}"


SNAPSHOT_SLACK_BYTES = 16384  # a snapshot record's header and names, at most about


def prefer_snapshot(manifest: dict[str, Any], base_named: bool) -> bool:
    """True if a client joining now spends fewer bytes on one full record of the newest model
    (at most 4 bytes a parameter + names) than on the first record and every update listed
    (`base_named`: the first record is the small one naming a base the client holds)."""
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    try:
        if int(model.get("snapshot_updates") or 0) <= 0:
            return False
        replay = sum(int(u.get("bytes", 0)) for u in manifest.get("updates") or [] if isinstance(u, dict))
        replay += 0 if base_named else int(model.get("init_bytes", 0))
        return replay > 4 * int(model.get("params", 0)) + SNAPSHOT_SLACK_BYTES
    except (TypeError, ValueError):
        return False


class ModelSwap:
    """Two copies of the model: updates go into the inactive one, the SR loop swaps between frames.

    `make_runner(module)` builds what upscales with a module (a one-level runner or an `Engine`).
    `stage(record, from_segment)` (fetch thread) applies a delta to the inactive copy; `take(segment)`
    (SR loop, between frames) swaps when a staged update applies to `segment`."""

    def __init__(self, state: ModelState, make_runner: Callable[[Any], Any]) -> None:
        self.state = state
        self._active_module = copy.deepcopy(state.model)
        self.active = make_runner(self._active_module)
        self._inactive_runner = make_runner(state.model)
        self._lock = threading.Lock()
        self._staged: int | None = None  # from_segment of the staged update
        self.applied = 0

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._staged is not None

    @property
    def active_module(self) -> Any:
        """The module the active runner upscales with (read it between `take` calls)."""
        return self._active_module

    @property
    def staged_from(self) -> int | None:
        """The first segment of the staged update (None: nothing staged)."""
        with self._lock:
            return self._staged

    def stage(self, record: bytes, from_segment: int, what: str) -> None:
        """Apply `record` to the inactive copy (DeltaError: refused, nothing changes)."""
        with self._lock:
            if self._staged is not None:
                raise RuntimeError("an update is staged already")
        self.state.apply(record, what)  # writes only the inactive copy
        with self._lock:
            self._staged = int(from_segment)

    def take(self, segment: int) -> bool:
        with self._lock:
            if self._staged is None or segment < self._staged:
                return False
            level = getattr(self.active, "level", 0)
            self.active, self._inactive_runner = self._inactive_runner, self.active
            self.state.model, self._active_module = self._active_module, self.state.model
            self._staged = None
            self.applied += 1
        if getattr(self.active, "level", 0) != level and hasattr(self.active, "switch"):
            self.active.switch(level)
        return True


class _OneLevel:
    def __init__(self, name: str) -> None:
        self.config = type("Cfg", (), {"id": name})()
        self.psnr = float("nan")


class _Autocast:
    """A runner whose frames run under `torch.autocast(dtype)` (LiveClient's precision bf16): the
    convolutions in bf16, the bicubic skip and the output in float32 (`adasr.nn.supernet`)."""

    def __init__(self, runner: Any, dtype: Any) -> None:
        self.runner, self.dtype = runner, dtype

    def __getattr__(self, name: str) -> Any:  # switch, levels, level, resident_bytes, ...: the runner's own
        if name in ("runner", "dtype"):
            raise AttributeError(name)
        return getattr(self.runner, name)

    def process(self, frame: np.ndarray) -> np.ndarray:
        from adasr.nn.precision import autocast

        with autocast(self.dtype):
            return self.runner.process(frame)


class _ModuleRunner:
    """One plain model: one level."""

    def __init__(self, module: Any, name: str) -> None:
        self.module, self.levels, self.level, self.switch_latencies = module, [_OneLevel(name)], 0, []

    def process(self, frame: np.ndarray) -> np.ndarray:
        import torch

        from adasr.runtime.engine import frame_to_tensor, tensor_to_frame

        with torch.inference_mode():
            return tensor_to_frame(self.module(frame_to_tensor(frame)))

    def switch(self, level: int) -> int:
        return 0

    def resident_bytes(self) -> int:
        from adasr.runtime.engine import module_bytes

        return module_bytes(self.module)


class LiveRunner:
    """The `Runner` the runtime drives: swaps models between frames, then upscales."""

    def __init__(self, swap: ModelSwap, on_output: Callable[[int, int], None] | None = None) -> None:
        self.swap = swap
        self.levels = swap.active.levels
        self.switch_latencies: list[int] = []
        self._on = on_output

    @property
    def level(self) -> int:
        return self.swap.active.level

    def process(self, item: tuple[int, int, np.ndarray]) -> np.ndarray:
        segment, index, frame = item
        if self.swap.take(segment):
            pass
        out = self.swap.active.process(frame)
        if self._on is not None:
            self._on(segment, index)
        return out

    def switch(self, level: int) -> int:
        ns = self.swap.active.switch(level)
        self.switch_latencies.append(ns)
        return ns

    def resident_bytes(self) -> int:
        return 2 * self.swap.active.resident_bytes()


def _runner_factory(spec: dict[str, Any], levels: list | None, lr_hw: tuple[int, int], name: str,
                    precision: str = "fp32"):
    import torch

    from adasr.nn.precision import autocast_dtype
    from adasr.nn.supernet import SuperNet, subnet_cost

    dtype = autocast_dtype(precision, torch.device("cpu"))

    def make(module: Any) -> Any:
        runner = _make(module)
        return runner if dtype is None else _Autocast(runner, dtype)

    def _make(module: Any) -> Any:
        if isinstance(module, SuperNet) and levels:
            from adasr.runtime.engine import Engine
            from adasr.search.family_search import Family, Level
            from adasr.space import SubnetConfig

            cfgs = [SubnetConfig.coerce(c) for c in levels]
            fam = Family(tuple(Level(c, float("nan"), *subnet_cost(c, lr_hw)) for c in cfgs), module.scale, lr_hw)
            return Engine(module, fam)
        return _ModuleRunner(module, name)

    return make


@dataclass
class LivePlayResult:
    summary: dict[str, Any]
    stats: ClientStats
    outputs: list[tuple[int, int]]  # (segment, frame index) of every frame played, in order

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "live": asdict(self.stats)}


class LiveClient:
    """One viewer of `url` (http(s)://HOST:PORT/channel/NAME); see the module doc."""

    def __init__(self, url: str, *, have_model: str | None = None, max_lag: int = 4, buffer_segments: int = 1,
                 timeout_s: float = 5.0, reconnect_s: float = 30.0, max_segments: int = 100_000,
                 duration_s: float = 3600.0, client_id: str | None = None,
                 connector: Callable[[], Any] | None = None, snapshot: str = "auto", token: str | None = None,
                 precision: str = "fp32") -> None:
        from adasr.threads import PRECISIONS

        self.base_url, self.name = parse_channel_url(url)
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision  # of the upscaling: fp32, bf16 or auto (bf16 where the CPU has it natively)
        if token is not None and (not isinstance(token, str) or not 1 <= len(token) <= 256
                                  or not token.isascii() or not token.isprintable() or " " in token):
            raise ConfigError("an access token is 1 to 256 printable ASCII characters without spaces")
        self.token = token
        if snapshot not in ("auto", "always", "never"):
            raise ConfigError(f"snapshot must be auto, always or never, got {snapshot!r}")
        self.snapshot = snapshot
        for what, v, lo, hi in (("max_lag", max_lag, 1, 1000), ("buffer_segments", buffer_segments, 0, 100),
                                ("max_segments", max_segments, 1, 10_000_000)):
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{what} must be an integer in [{lo}, {hi}], got {v!r}")
        for what, v in (("timeout_s", timeout_s), ("reconnect_s", reconnect_s), ("duration_s", duration_s)):
            if not 0 < float(v) <= 86400:
                raise ConfigError(f"{what} must be in (0, 86400] seconds, got {v!r}")
        self.have_model, self.max_lag, self.buffer_segments = have_model, max_lag, buffer_segments
        self.timeout_s, self.reconnect_s = float(timeout_s), float(reconnect_s)
        self.max_segments, self.duration_s = max_segments, float(duration_s)
        self.client_id = client_id or uuid.uuid4().hex[:12]
        self.stats = ClientStats()
        self.manifest: dict[str, Any] | None = None
        self.swap: ModelSwap | None = None
        self._segments: deque[tuple[int, list[np.ndarray]]] = deque()
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._all_in = threading.Event()  # the channel ended and every segment it had is fetched or skipped
        self._stop = threading.Event()
        self._next_segment = 0
        self._updates_seen = 0
        self._updates_broken = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session = None
        self._task: asyncio.Task | None = None
        self._closing = threading.Lock()
        self.fatal: BaseException | None = None
        self.damage: Callable[[int, bytes], bytes] | None = None  # test hook: alter update U's bytes

    # -- HTTP (on the client's own loop) --

    async def _get(self, path: str, limit: int, params: dict[str, str] | None = None,
                   timeout: float | None = None, what: str = "response") -> tuple[int, bytes, str]:
        """(status, body, content type) of GET `path`: at most `limit` bytes, redirects followed
        within the channel's origin only; InputError naming `what` and the URL otherwise."""
        import aiohttp

        t = aiohttp.ClientTimeout(total=timeout or self.timeout_s)
        url = f"{self.base_url}{path}"
        headers = {"X-Adasr-Client": self.client_id}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        for hop in range(MAX_REDIRECTS + 1):
            self.stats.bytes_up += REQUEST_HEAD_BYTES + len(path if hop == 0 else urlsplit(url).path)
            async with self._session.get(url, params=params, timeout=t, headers=headers, allow_redirects=False) as r:
                if r.status in (301, 302, 303, 307, 308):
                    target = urljoin(url, r.headers.get("Location", ""))
                    if _origin(target) != _origin(self.base_url):
                        raise InputError(f"{what} ({url}): the server redirects to another origin "
                                         f"({target[:100]}); not followed")
                    url, params = target, None
                    continue
                if r.status == 401:
                    raise InputError(f"{what} ({url}): the server wants an access token"
                                     + (" and refused the one given" if self.token else " (give it with --token)"))
                if r.content_length is not None and r.content_length > limit:
                    raise InputError(f"{what} ({url}): response of {r.content_length:,} bytes exceeds {limit:,}")
                body = bytearray()
                async for chunk in r.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > limit:
                        raise InputError(f"{what} ({url}): response exceeds {limit:,} bytes")
                self.stats.bytes_down += RESPONSE_HEAD_BYTES + len(body)
                if r.status in (429, 503):  # the server's limits: retried with backoff
                    raise _Busy(r.status)
                return r.status, bytes(body), r.content_type
        raise InputError(f"{what} ({self.base_url}{path}): more than {MAX_REDIRECTS} redirects")

    async def _retrying(self, path: str, limit: int, params: dict[str, str] | None = None,
                        timeout: float | None = None, what: str = "response") -> tuple[int, bytes, str]:
        """`_get` with exponential backoff on connection failures, for `reconnect_s` in a row."""
        import aiohttp

        delay, start, failed = 0.1, time.monotonic(), False
        while not self._stop.is_set():
            try:
                result = await self._get(path, limit, params, timeout, what)
                if failed:
                    self.stats.reconnects += 1
                return result
            except (TimeoutError, aiohttp.ClientError, OSError, _Busy) as exc:
                self.stats.failed_requests += 1
                failed = True
                if time.monotonic() - start + delay > self.reconnect_s:
                    why = "busy" if isinstance(exc, _Busy) else "unreachable or stalled"
                    raise InputError(f"{what} ({self.base_url}{path}): live server {why} for {self.reconnect_s:.0f} s "
                                     f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})") from None
                await self._pause(delay)
                delay = min(2.0, 2 * delay)
        raise InputError("stopped")

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, in short steps, so that `stop()` is seen within 0.05 s."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(0.05, left))

    async def _manifest(self, after: int | None = None) -> dict[str, Any]:
        params = {"segments_from": str(self._next_segment), "updates_from": str(self._updates_seen)}
        if after is not None:
            params.update(after=str(max(-1, after)), wait="2")
        where = f"live channel manifest ({self.base_url}/channel/{self.name})"
        status, body, _ = await self._retrying(f"/channel/{self.name}", MAX_MANIFEST_BYTES, params,
                                               timeout=self.timeout_s + (2.5 if after is not None else 0),
                                               what="live channel manifest")
        if status != 200:
            raise InputError(f"{where}: server answered {status}")
        return check_manifest(loads(body, where, InputError, MAX_MANIFEST_BYTES), where)

    async def _from_snapshot(self, m: dict[str, Any], base_hash: str) -> ModelState | None:
        """The newest model from ``model/latest`` when worth it (`snapshot`, `prefer_snapshot`)."""
        if self.snapshot == "never" or (self.snapshot == "auto"
                                        and not prefer_snapshot(m, self.have_model is not None)):
            return None
        status, body, _ = await self._retrying(f"/channel/{self.name}/model/latest", MAX_RECORD_BYTES,
                                               what="model snapshot")
        if status != 200:
            return None  # no update yet: the first record
        self.stats.model_bytes += len(body)
        state = ModelState.from_full(body, what=f"model snapshot ({self.base_url}/channel/{self.name}/model/latest)")
        if state.base_hash.hex() != base_hash:
            raise ModelError("the channel's model snapshot does not match its manifest's base hash")
        self._updates_seen = state.next_segment  # the next update to fetch
        self.stats.from_snapshot = True
        return state

    async def _init_model(self, m: dict[str, Any]) -> None:
        base_hash = str(m["model"]["base_hash"])
        state = await self._from_snapshot(m, base_hash)
        if state is None and self.have_model is not None:  # a model this client holds: the server names it by hash
            from adasr.serve.channel import NamedModel

            model, spec, _, _ = NamedModel(self.have_model).initial(int(m["scale"]))
            local = ModelState.from_full(encode_full(model, spec, "float16"))
            if local.base_hash.hex() == base_hash:
                status, body, ctype = await self._retrying(f"/channel/{self.name}/model/init", 4096,
                                                           {"have": base_hash}, what="base reference")
                ref = loads(body, "base reference") if status == 200 and ctype == "application/json" else {}
                if isinstance(ref, dict) and ref.get("base_hash") == base_hash:
                    state, self.stats.base_by_hash = local, True
                    self.stats.model_bytes += len(body)
        if state is None:
            url = f"{self.base_url}/channel/{self.name}/model/init"
            status, body, _ = await self._retrying(f"/channel/{self.name}/model/init", MAX_RECORD_BYTES,
                                                   what="first model record")
            if status != 200:
                raise InputError(f"first model record ({url}): server answered {status}")
            state = ModelState.from_full(body, what=f"first model record ({url})")
            self.stats.model_bytes += len(body)
            if state.base_hash.hex() != base_hash:
                raise ModelError("the channel's model record does not match its manifest's base hash")
        if int(state.spec.get("scale", 0)) != m["scale"]:
            raise InputError(f"live channel manifest ({self.base_url}/channel/{self.name}): field 'scale' is "
                             f"{m['scale']}, the model's is {state.spec.get('scale')}")
        lr_hw = (m["lr_height"], m["lr_width"])
        levels = m["model"].get("levels")
        make = _runner_factory(state.spec, levels, lr_hw, str(m["model"].get("id", "live model")), self.precision)
        try:
            self.swap = ModelSwap(state, make)
        except (ConfigError, ModelError, TypeError, ValueError, KeyError) as exc:
            raise InputError(f"live channel manifest ({self.base_url}/channel/{self.name}): field 'model.levels' "
                             f"does not fit the model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                             ) from None

    async def _pull_updates(self, m: dict[str, Any]) -> None:
        listed = {int(u["index"]): u for u in (m.get("updates") or []) if isinstance(u, dict) and "index" in u}
        while self._updates_seen in listed and not self._updates_broken and not self._stop.is_set():
            u = listed[self._updates_seen]
            if self.swap.busy:
                return  # the SR loop has not reached the staged update yet: fetch it next round
            status, body, _ = await self._retrying(f"/channel/{self.name}/model/{self._updates_seen}.bin",
                                                   MAX_RECORD_BYTES, what=f"model update {self._updates_seen}")
            if status != 200:
                return
            self.stats.model_bytes += len(body)
            if self.damage is not None:
                body = self.damage(self._updates_seen, body)
            try:
                self.swap.stage(body, int(u.get("from_segment", 0)),
                                f"model update {self._updates_seen} ({self.base_url}/channel/{self.name}/model/"
                                f"{self._updates_seen}.bin)")
                self.stats.updates_applied += 1
                self._updates_seen += 1
            except DeltaError as exc:
                self.stats.refused += 1
                self.stats.note(str(exc))
                if self.damage is None:  # refetching an honest server's bytes will not help: keep this model
                    self._updates_broken = True
                return

    async def _pull_segments(self, m: dict[str, Any]) -> None:
        edge = int(m.get("live_edge", -1))
        have = {int(s["index"]) for s in m.get("segments", [])}
        if edge - self._next_segment > self.max_lag:
            self.stats.skipped_segments += edge - self._next_segment
            self._next_segment = edge
        while self._next_segment <= edge and not self._stop.is_set():
            n = self._next_segment
            if self.stats.segments >= self.max_segments:
                self._done.set()
                return
            if n not in have:  # gone from the server's window: skip ahead
                self._next_segment += 1
                self.stats.skipped_segments += 1
                continue
            url = f"{self.base_url}/channel/{self.name}/segment/{n}.ts"
            status, body, _ = await self._retrying(f"/channel/{self.name}/segment/{n}.ts", MAX_SEGMENT_BYTES,
                                                   what=f"segment {n}")
            self._next_segment += 1
            if status != 200:
                self.stats.note(f"segment {n} ({url}): server answered {status}")
                self.stats.skipped_segments += 1
                continue
            try:
                frames = decode_segment(body, size_hw=(m["lr_height"], m["lr_width"]))
            except InputError as exc:
                self.stats.note(f"segment {n} ({url}): {exc}")
                self.stats.skipped_segments += 1
                continue
            self.stats.segments += 1
            self.stats.segment_bytes += len(body)
            with self._cond:
                self._segments.append((n, frames))
                self.stats.frames_buffered += len(frames)
                while len(self._segments) > max(self.max_lag, self.buffer_segments):  # player behind: skip
                    self._segments.popleft()
                    self.stats.skipped_segments += 1
                self._cond.notify_all()

    async def _main(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            self._session = session
            try:
                m = await self._manifest()
                self.manifest = m
                await self._init_model(m)
                self._next_segment = max(0, int(m.get("live_edge", -1)) - self.buffer_segments + 1)
                with self._cond:
                    self._cond.notify_all()
                end = time.monotonic() + self.duration_s
                idle = 0.0  # pause before the next poll while the server answers at once with nothing new
                while not self._stop.is_set() and time.monotonic() < end and not self._done.is_set():
                    await self._pull_updates(m)
                    await self._pull_segments(m)
                    if m.get("ended") and self._next_segment > int(m.get("live_edge", -1)):
                        # every segment is in: fetch the remaining updates as the player reaches them
                        self._all_in.set()  # the player starts now, even with fewer than buffer_segments
                        with self._cond:
                            self._cond.notify_all()
                        edge = int(m.get("live_edge", -1))
                        for _ in range(100_000):
                            await self._pull_updates(m)
                            staged = self.swap.staged_from
                            if self._updates_broken or self._updates_seen >= int(m.get("n_updates", 0)) \
                                    or staged is None or staged > edge or self._stop.is_set():
                                break  # all fetched, or the staged one starts after the last segment
                            await asyncio.sleep(0.05)  # the player takes the staged update soon
                        staged = self.swap.staged_from
                        if self._updates_broken or self._updates_seen >= int(m.get("n_updates", 0)) \
                                or (staged is not None and staged > edge):
                            break
                        await asyncio.sleep(0.1)
                    asked = time.monotonic()
                    m = await self._manifest(after=self._next_segment - 1)
                    self.manifest = m
                    if m["live_edge"] < self._next_segment and not m.get("ended") \
                            and time.monotonic() - asked < 0.2:  # the long poll was not held: back off
                        idle = min(2.0, max(0.05, 2 * idle))
                        await self._pause(idle)
                    else:
                        idle = 0.0
            except BaseException as exc:  # noqa: BLE001 - the player ends when the fetcher does
                if not isinstance(exc, asyncio.CancelledError) and not self._stop.is_set():
                    self.fatal = exc
                    self.stats.note(f"{type(exc).__name__}: {exc}")
            finally:
                self._done.set()
                with self._cond:
                    self._cond.notify_all()

    # -- the player's side --

    async def _run_main(self) -> None:
        self._task = asyncio.current_task()
        if self._stop.is_set():
            return
        try:
            await self._main()
        except asyncio.CancelledError:  # stop() while the session closes: nothing is left to do
            pass

    def start(self) -> LiveClient:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run_main(),),
                                        name="adasr-live-fetch", daemon=True)
        self._thread.start()
        with self._cond:  # wait for the model (bounded)
            self._cond.wait_for(lambda: self.swap is not None or self._done.is_set(), timeout=self.reconnect_s + 30)
        if self.swap is None:
            self.stop()
            raise self.fatal if isinstance(self.fatal, Exception) else InputError("live channel did not answer")
        return self

    def frames(self, give_up_s: float | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """(segment, index, LR frame) as they arrive; ends when the fetcher ends and the buffer is empty."""
        limit = give_up_s if give_up_s is not None else self.reconnect_s + 10
        with self._cond:  # the playout buffer: start once `buffer_segments` segments are in
            self._cond.wait_for(lambda: len(self._segments) >= max(1, self.buffer_segments) or self._done.is_set()
                                or self._all_in.is_set(), timeout=limit)
        while True:
            with self._cond:
                # all_in: the channel ended and nothing more will come (the fetcher may still wait for
                # the player to reach a staged update, which it never will once the buffer is empty)
                ok = self._cond.wait_for(lambda: bool(self._segments) or self._done.is_set() or self._all_in.is_set(),
                                         timeout=limit)
                if not ok:
                    self.stats.note(f"no segment for {limit:g} s: the player stops")
                if not ok or not self._segments:
                    return
                n, frames = self._segments.popleft()
            for i, f in enumerate(frames):
                yield n, i, np.ascontiguousarray(f)

    def stop(self) -> None:
        self._stop.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not task.done():
            try:  # a request in flight ends now, not at its timeout
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop has closed already
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.timeout_s + 15)
        with self._closing:  # stop() may run in two threads at once (start() giving up, and its caller)
            if self._loop is not None and not self._loop.is_running() and not self._loop.is_closed():
                self._loop.close()

    def run(self, *, target_fps: float | None = None, policy: str = "reactive", out: str | None = None,
            on_frame: Callable[[Any, Any], None] | None = None,
            on_output: Callable[[int, int, np.ndarray], None] | None = None,
            max_frames: int | None = None) -> LivePlayResult:
        """Play the channel through the runtime until it ends (or the bounds); see the module doc."""
        from adasr.runtime.monitors import CpuMonitor, StreamMonitor
        from adasr.runtime.pipeline import AutoThreads, StreamOptions, run_stream
        from adasr.runtime.player import pick_policy

        if self.swap is None:
            self.start()
        m = self.manifest
        fps = float(m["fps"])  # checked by check_manifest: (0, 240]
        target = fps if target_fps is None else float(target_fps)
        if not target > 0:
            raise ConfigError(f"target FPS must be positive, got {target_fps!r}")
        order: deque[tuple[int, int]] = deque()
        played: list[tuple[int, int]] = []
        runner = LiveRunner(self.swap, on_output=lambda s, i: order.append((s, i)))
        lr_w, lr_h, scale = m["lr_width"], m["lr_height"], m["scale"]
        writer = None
        if out is not None:
            from adasr.video import VideoWriter

            writer = VideoWriter(out, lr_w * scale, lr_h * scale, fps)
            writer.__enter__()

        def sink(frame: np.ndarray) -> None:
            key = order.popleft() if order else (-1, -1)
            played.append(key)
            if writer is not None:
                writer.write(frame)
            if on_output is not None:
                on_output(key[0], key[1], frame)

        levels = runner.levels
        pol = pick_policy("reactive" if policy == "lookup" else policy, levels, None) \
            if len(levels) > 1 and policy != "fixed" else None
        monitor = StreamMonitor(cpu=CpuMonitor(), level=runner.level, target_period_s=1.0 / target)
        try:
            options = StreamOptions(threads=AutoThreads(), on_frame=on_frame, stall_timeout_s=self.reconnect_s + 20,
                                    max_frames=max_frames)
            stats = run_stream(runner, self.frames(), sink, target, pol, monitor, options)
        except BaseException as exc:
            if writer is not None:
                writer.__exit__(type(exc), exc, exc.__traceback__)
            self.stop()
            raise
        self.stop()
        if not stats.frames:
            why = str(self.fatal) if self.fatal else (self.stats.errors[-1] if self.stats.errors else "")
            exc = InputError(f"no frames were played from {self.base_url}/channel/{self.name}"
                             + (f": {why}" if why else ""))
            if writer is not None:  # nothing is left behind
                writer.__exit__(InputError, exc, None)
            raise exc
        if writer is not None:
            writer.__exit__(None, None, None)
        from adasr.runtime.player import PlayResult

        self.stats.swaps = self.swap.applied
        names = [{"index": i, "config": lv.config.id} for i, lv in enumerate(levels)]
        result = PlayResult(stats=stats, target_fps=target, policy=policy if pol is not None else "fixed",
                            lr_hw=(lr_h, lr_w), out_hw=(lr_h * scale, lr_w * scale), source_fps=fps,
                            output=out, levels=names)
        return LivePlayResult(result.summary(), self.stats, played)
