"""The live AMS server over HTTP (aiohttp), bound to 127.0.0.1 unless another address is asked for.

Endpoints (GET only; every other method 405, every other path 404, bad numbers 400):

=======================================  ===========================================================
``/``                                    HTML status page (channels, clients, sampling rate, ...)
``/status``                              the same as JSON
``/channels``                            the channel names and their manifest paths
``/channel/NAME[?after=N&wait=S]``       the manifest (segments, durations, codec, scale, model id,
                                         updates); with ``after``: waits up to S <= 10 s for a
                                         segment newer than N (long poll); ``segments_from`` and
                                         ``updates_from`` list only those from that index on
``/channel/NAME/segment/N.ts``           LR segment N (MPEG-TS, plays on its own)
``/channel/NAME/model/init[?have=HASH]`` the stream's first record (the full model); with ``have``
                                         equal to the base model's hash, a small JSON record that
                                         names the base by hash instead (the client holds it)
``/channel/NAME/model/latest``           the newest model as one full record (float32, exact; header
                                         ``X-Adasr-Updates``: the updates it includes), for late
                                         joiners; 404 before the first update
``/channel/NAME/model/U.bin``            update U (a delta record of `adasr.stream.codec`)
``/play/NAME``, ``/play/...``            the browser player and what it loads (`adasr.serve.web`)
=======================================  ===========================================================

Clients may name themselves with an ``X-Adasr-Client`` header (status counts them, in a bounded
table with expiry and a share per address: `adasr.serve.clients`). Request lines and headers are
bounded (2 KiB each), bodies refused (GETs carry none), names checked against a strict pattern,
numbers are ASCII digits only and bounded; a handler's failure answers 500 and the server goes on.

Access: with a `token`, every path but the status page (``/`` and ``/status``) needs the header
``Authorization: Bearer TOKEN`` (401 otherwise; compared in constant time). One address may have
at most `max_per_address` requests in flight (429 beyond), and the server at most
`max_requests` (503 beyond); the status page, answered at once, is outside both limits. A
non-loopback `host` is bound only when asked for, and only with a token (`adasr serve --host`
makes one when none is given); TLS belongs to a reverse proxy in front (docs/LIVE.md).

`LiveServer` runs the hub's worker thread and the HTTP server on an asyncio loop in a thread of
its own (`start()`, `stop()`; `port` after start): tests, benchmarks and `adasr serve` share it.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import ipaddress
import json
import logging
import re
import threading
import time
from typing import Any

from aiohttp import web

from adasr.errors import ConfigError
from adasr.serve.channel import Hub
from adasr.serve.numbers import MAX_INDEX, query_float, query_int

__all__ = ["BASE_REF_KIND", "Handlers", "LiveServer", "MAX_INDEX", "MAX_LINE", "MAX_WAIT_S", "NAME_RE", "OPEN_PATHS",
           "check_token", "is_loopback", "make_app", "status_html"]

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_WAIT_S = 10.0
MAX_LINE = 2048
OPEN_PATHS = frozenset({"/", "/status"})  # the status page: no token needed
BASE_REF_KIND = "adasr-base-ref"
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")
# aiohttp logs every malformed request with a traceback; it has been answered 400 already.
_QUIET = logging.getLogger("adasr.serve.http")
_QUIET.setLevel(logging.CRITICAL)
_QUIET.propagate = False


def check_token(token: str | None) -> str | None:
    """`token` if it is None or 16 to 256 characters of A-Z a-z 0-9 - _ . ~; ConfigError otherwise."""
    if token is not None and (not isinstance(token, str) or not _TOKEN.fullmatch(token)):
        raise ConfigError("an access token (--token) is 16 to 256 characters of A-Z a-z 0-9 - _ . ~")
    return token


def is_loopback(host: str) -> bool:
    """True for localhost and any address of 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def status_html(status: dict[str, Any]) -> str:
    """The status page: one row per channel."""
    rows = []
    for ch in status["channels"]:
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            ch["name"], ch["scheme"], ch["clients"], f"{ch['video_s']:.1f}", ch["segments"], ch["updates"],
            f"{ch['sampling_rate']:.2f}", f"{ch['t_update']:.1f}", f"{ch['up_kbps']:.1f}", f"{ch['down_kbps']:.1f}",
            f"{ch['psnr_gain_db']:+.2f}", f"{100 * ch['train_share']:.0f}%")) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in (
        "channel", "scheme", "clients", "video s", "segments", "updates", "sampling fps", "T_update s",
        "up kbps", "down kbps", "PSNR gain dB", "training time"))
    reuse = _reuse_html(status["reuse"]) if isinstance(status.get("reuse"), dict) else ""
    reuse += _players_html(status["players"]) if status.get("players") else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>adasr live</title>
<style>
body {{ font-family: sans-serif; margin: 2em; background: #fafafa; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #bbb; padding: 4px 10px; text-align: right; }}
th {{ background: #2d5d8a; color: white; }} td:first-child {{ text-align: left; font-weight: bold; }}
</style></head><body>
<h1>adasr live model streaming</h1>
<p id="summary">{len(status['channels'])} channel(s), scheduler {html.escape(status['scheduler'])},
up {status['uptime_s']:.0f} s, worker CPU {status['worker_cpu_s']:.1f} s</p>
<table id="channels"><tr>{head}</tr>
{''.join(rows)}
</table>
{reuse}<p>PSNR gain: over the generic model, on the newest training samples, after the last update.
JSON: <a href="/status">/status</a>.</p>
</body></html>
"""


def _reuse_html(reuse: dict[str, Any]) -> str:
    """Model reuse (`adasr.reuse.live`): zoo size, reuse rate, and the expert each channel holds."""
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
        name, ch.get("expert"), ch.get("selections"), ch.get("reused"), f"{ch.get('gain_db', 0.0):+.2f}"))
        + "</tr>" for name, ch in sorted(reuse.get("channels", {}).items()))
    head = "".join(f"<th>{h}</th>" for h in ("channel", "expert", "scene changes", "answered from the zoo",
                                             "PSNR gain dB"))
    return (f'<h2>model reuse</h2>\n<p id="reuse">zoo {reuse.get("zoo", 0)} expert(s), reuse rate '
            f'{100 * reuse.get("reuse_rate", 0.0):.0f}% of {reuse.get("selections", 0)} selection(s), '
            f'admitted {reuse.get("admitted", 0)}, pruned {reuse.get("pruned", 0)}</p>\n'
            f'<table id="experts"><tr>{head}</tr>\n{rows}\n</table>\n')


def _players_html(players: list[dict[str, Any]]) -> str:
    """The browser players (`adasr.serve.web`) that reported in the last 30 s."""
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
        p["channel"], p["client"], p["backend"], p["level"], f"{p['fps']:.1f}", f"{p['sr_ms']:.0f}", p["frames"],
        f"{100 * p['on_time_share']:.0f}%", p["levels"], p["updates"], p["refused"], p["model"][:12]))
        + "</tr>" for p in players)
    head = "".join(f"<th>{h}</th>" for h in ("channel", "player", "backend", "level", "FPS", "SR ms", "frames",
                                             "on time", "frames per level", "updates", "refused", "model"))
    return f'<h2>browser players</h2>\n<table id="players"><tr>{head}</tr>\n{rows}\n</table>\n'


class Handlers:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _channel(self, request: web.Request):
        name = request.match_info["name"]
        if not NAME_RE.match(name) or name not in self.hub.channels:
            raise web.HTTPNotFound(text="no such channel\n")
        ch = self.hub.channels[name]
        address = request.remote or "?"
        client = request.headers.get("X-Adasr-Client", address)[:64]
        up = len(request.raw_path) + sum(len(k) + len(v) + 4 for k, v in request.raw_headers) + 16
        ch.seen(client, up, time.monotonic(), address)
        return ch

    @staticmethod
    def _send(ch, body: bytes, content_type: str, **headers: str) -> web.Response:
        ch.served(len(body) + 200)  # + the response head, about 200 bytes
        return web.Response(body=body, content_type=content_type, headers=headers)

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=status_html(self.hub.status()), content_type="text/html")

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.hub.status())

    async def channels(self, request: web.Request) -> web.Response:
        return web.json_response({"channels": [{"name": n, "manifest": f"/channel/{n}"} for n in self.hub.channels]})

    async def manifest(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        after = request.query.get("after")
        if after is not None:
            n = query_int(after, "after", 0, MAX_INDEX) if after != "-1" else -1
            wait = query_float(request.query.get("wait", "2"), "wait", MAX_WAIT_S)
            end = time.monotonic() + wait
            while ch.live_edge <= n and not ch.ended and time.monotonic() < end:
                await asyncio.sleep(0.02)
        seg_from = query_int(request.query.get("segments_from", "0"), "segments_from")
        upd_from = query_int(request.query.get("updates_from", "0"), "updates_from")
        body = json.dumps(ch.manifest(seg_from, upd_from)).encode()
        return self._send(ch, body, "application/json")

    async def segment(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        seg = ch.segment(query_int(request.match_info["index"], "segment"))
        if seg is None:
            raise web.HTTPNotFound(text="segment not available (not yet, or no longer)\n")
        return self._send(ch, seg.data, "video/mp2t", **{"X-Adasr-Sha256": seg.sha256})

    async def model_init(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        have = request.query.get("have", "")
        if have and have == ch.base_hash.hex():
            ref = {"kind": BASE_REF_KIND, "base_hash": ch.base_hash.hex(), "model": ch.model_info.get("model")}
            return self._send(ch, json.dumps(ref).encode(), "application/json")
        return self._send(ch, ch.init_record, "application/octet-stream")

    async def model_latest(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        snap = await asyncio.to_thread(ch.snapshot)  # coded once per update, off the event loop
        if snap is None:
            raise web.HTTPNotFound(text="no update yet: start from model/init\n")
        return self._send(ch, snap[0], "application/octet-stream", **{"X-Adasr-Updates": str(snap[1])})

    async def model_update(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        record = ch.update(query_int(request.match_info["index"], "update"))
        if record is None:
            raise web.HTTPNotFound(text="no such update (yet)\n")
        return self._send(ch, record, "application/octet-stream")


class _Guard:
    """GET/HEAD only, no bodies, the token (when set) outside the status page, requests in flight
    bounded per address and in all; any unexpected failure is a 500 for this request alone."""

    def __init__(self, token: str | None, max_per_address: int, max_requests: int) -> None:
        self.token = None if token is None else f"Bearer {token}".encode()
        self.max_per_address, self.max_requests = max_per_address, max_requests
        self.in_flight: dict[str, int] = {}  # address -> requests being answered (one event loop: no lock)
        self.total = 0

    @web.middleware
    async def handle(self, request: web.Request, handler):
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if request.content_length:
            raise web.HTTPRequestEntityTooLarge(max_size=0, actual_size=request.content_length)
        if self.token is not None and request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, self.token):
                raise web.HTTPUnauthorized(text="an access token is needed: Authorization: Bearer TOKEN\n",
                                           headers={"WWW-Authenticate": 'Bearer realm="adasr"'})
        address = request.remote or "?"
        if request.path in OPEN_PATHS:  # the status page: answered at once, never held, never limited
            return await self._answer(request, handler)
        if self.total >= self.max_requests:
            raise web.HTTPServiceUnavailable(text="server busy\n", headers={"Retry-After": "1"})
        if self.in_flight.get(address, 0) >= self.max_per_address:
            raise web.HTTPTooManyRequests(text="too many requests in flight from this address\n",
                                          headers={"Retry-After": "1"})
        self.in_flight[address] = self.in_flight.get(address, 0) + 1
        self.total += 1
        try:
            return await self._answer(request, handler)
        finally:
            self.total -= 1
            left = self.in_flight[address] - 1
            if left:
                self.in_flight[address] = left
            else:
                del self.in_flight[address]


    @staticmethod
    async def _answer(request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - one request must never take the server down
            return web.Response(status=500, text="internal error\n")


def make_app(hub: Hub, *, token: str | None = None, max_per_address: int = 32,
             max_requests: int = 1024) -> web.Application:
    app = web.Application(middlewares=[_Guard(token, max_per_address, max_requests).handle], client_max_size=1024)
    h = Handlers(hub)
    app.router.add_get("/", h.index)
    app.router.add_get("/status", h.status)
    app.router.add_get("/channels", h.channels)
    app.router.add_get("/channel/{name}", h.manifest)
    app.router.add_get("/channel/{name}/segment/{index}.ts", h.segment)
    app.router.add_get("/channel/{name}/model/init", h.model_init)
    app.router.add_get("/channel/{name}/model/latest", h.model_latest)
    app.router.add_get("/channel/{name}/model/{index}.bin", h.model_update)
    from adasr.serve.web import add_web_routes

    add_web_routes(app, hub, h)  # the browser player under /play (adasr.serve.web)
    return app


class LiveServer:
    """The hub's worker thread plus the HTTP server on its own asyncio loop thread.

    `start()` returns once the socket listens (`port` is then the bound port; 0 picks a free
    one); `stop()` closes both and joins the threads. `stop_http()` / `start_http()` close and
    reopen only the HTTP side (the channels keep running): what a server crash looks like to a
    client, used by the fault tests."""

    def __init__(self, hub: Hub, host: str = "127.0.0.1", port: int = 0, *, duration_s: float | None = None,
                 train: bool = True, token: str | None = None, max_per_address: int = 32,
                 max_requests: int = 1024, train_threads: int = 1) -> None:
        if not isinstance(host, str) or not host or len(host) > 255:
            raise ConfigError(f"--host must name an address to bind, got {host!r}")
        if not is_loopback(host) and not token:
            raise ConfigError(f"binding {host} (not loopback) needs an access token (--token)")
        check_token(token)
        for what, v, hi in (("max_per_address", max_per_address, 100_000), ("max_requests", max_requests, 1_000_000),
                            ("train_threads", train_threads, 256)):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise ConfigError(f"{what} must be an integer in [1, {hi}], got {v!r}")
        self.hub, self.host, self.port, self.duration_s, self.train = hub, host, int(port), duration_s, train
        self.token, self.max_per_address, self.max_requests = token, max_per_address, max_requests
        self.train_threads = train_threads  # torch threads of the worker (ingest, encoding, training)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.worker_error: BaseException | None = None

    def start(self) -> LiveServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        t = threading.Thread(target=self._loop_main, args=(ready,), name="adasr-http", daemon=True)
        t.start()
        self._threads.append(t)
        if not ready.wait(20):
            raise RuntimeError("the HTTP server did not start")
        self.start_http()
        if self.train:
            w = threading.Thread(target=self._worker, name="adasr-hub", daemon=True)
            w.start()
            self._threads.append(w)
        return self

    def _loop_main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()

    def _worker(self) -> None:
        import torch

        # one core for training by default; the other for HTTP (and, on one machine, the clients)
        torch.set_num_threads(self.train_threads)
        try:
            self.hub.run(self._stop, self.duration_s)
        except BaseException as exc:  # noqa: BLE001 - reported by the owner (serve, bench)
            self.worker_error = exc

    def _run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start_http(self) -> None:
        async def up() -> int:
            app = make_app(self.hub, token=self.token, max_per_address=self.max_per_address,
                           max_requests=self.max_requests)
            runner = web.AppRunner(app, max_line_size=MAX_LINE, max_field_size=MAX_LINE,
                                   max_headers=32, keepalive_timeout=15.0, access_log=None, shutdown_timeout=1.0,
                                   logger=_QUIET)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
            self._runner = runner
            return runner.addresses[0][1]

        self.port = self._run(up())

    def stop_http(self) -> None:
        if self._runner is not None:
            self._run(self._runner.cleanup())
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker ends (duration passed, sources ended); True if it did."""
        for t in self._threads[1:]:
            t.join(timeout)
        return not any(t.is_alive() for t in self._threads[1:])

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads[1:]:
            t.join(30)
        if self._loop is not None:
            try:
                self.stop_http()
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._threads[0].join(10)
                self._loop.close()
                self._loop = None
        self._threads.clear()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
