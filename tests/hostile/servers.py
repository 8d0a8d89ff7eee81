"""A hostile live server for the client's tests: an aiohttp app on 127.0.0.1 whose every route the
test chooses (by default an honest tiny channel: one 16x16 segment of 3 frames, an ESPCN model).

`HostileServer(routes)` runs it on a thread of its own (`url`, `hits`: requests per path);
a route is a function of the request returning a `web.Response` (or a coroutine of one).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from aiohttp import web

__all__ = ["HostileServer", "channel_parts", "manifest"]

NAME = "c"


def channel_parts(nan: bool = False, frame_side: int = 16) -> dict[str, Any]:
    """An honest tiny channel's init record, base hash and one segment (`nan`: the model's first
    weight is NaN; `frame_side`: the segment's frames are this many pixels a side)."""
    from adasr.nn.registry import build_model
    from adasr.serve.media import encode_segment
    from adasr.stream.codec import encode_full, read_record

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("espcn", scale=2, f1=8, f2=4)
    if nan:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
    record = encode_full(model, {"arch": "espcn", "args": {"scale": 2, "f1": 8, "f2": 4}, "scale": 2}, "float32")
    info, _ = read_record(record)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (frame_side, frame_side, 3), dtype=np.uint8) for _ in range(3)]
    return {"init": record, "base_hash": info.base_hash.hex(), "params": info.n_params,
            "segment": encode_segment(frames, 10.0)}


def manifest(parts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The manifest of the channel `parts` describe (16x16 LR, x2, ended after segment 0)."""
    m = {"kind": "adasr-live-channel", "version": 1, "name": NAME, "scale": 2, "fps": 10.0, "lr_width": 16,
         "lr_height": 16, "codec": "h264", "container": "mpegts", "segment_s": 0.3,
         "segments": [{"index": 0}], "live_edge": 0, "ended": True, "n_updates": 0, "updates": [],
         "model": {"id": "tiny", "levels": None, "base_hash": parts["base_hash"],
                   "init_bytes": len(parts["init"]), "params": parts["params"], "snapshot_updates": 0}}
    for key, value in fields.items():
        if value is _DROP:
            m.pop(key, None)
        else:
            m[key] = value
    return m


_DROP = object()
manifest.DROP = _DROP  # type: ignore[attr-defined]


def honest_routes(parts: dict[str, Any], m: dict[str, Any] | None = None) -> dict[str, Callable]:
    body = json.dumps(m if m is not None else manifest(parts)).encode()
    return {
        f"/channel/{NAME}": lambda r: web.Response(body=body, content_type="application/json"),
        f"/channel/{NAME}/model/init": lambda r: web.Response(body=parts["init"],
                                                              content_type="application/octet-stream"),
        f"/channel/{NAME}/segment/0.ts": lambda r: web.Response(body=parts["segment"], content_type="video/mp2t"),
    }


class HostileServer:
    def __init__(self, routes: dict[str, Callable]) -> None:
        self.routes = routes
        self.hits: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404)
        result = route(request)
        return await result if asyncio.iscoroutine(result) else result

    def __enter__(self) -> HostileServer:
        self._thread.start()

        async def up() -> int:
            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            return self._runner.addresses[0][1]

        self.port = asyncio.run_coroutine_threadsafe(up(), self._loop).result(20)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/channel/{NAME}"

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
