"""The browser player: a web page served by `adasr serve` that runs the levels in the viewer's
browser (onnxruntime-web), switches levels to hold the frame rate and applies the live model
updates. See docs/LIVE.md, "The browser player".

Routes (GET; added to the live server's app by `add_web_routes`):

=======================================  ===========================================================
``/play/NAME``                           the player page (``adasr/serve/web/player.html``)
``/play/NAME/index.m3u8``                HLS playlist of the LR segments (MPEG-TS) as they are: any
                                         standard player (ffplay, VLC, hls.js) plays it
``/play/NAME/segment/N.mp4``             LR segment N remuxed into MP4 (the same H.264 packets, no
                                         re-encode): what the page demuxes (mp4box.js) and decodes
                                         (WebCodecs)
``/play/NAME/levels.json``               the channel's levels: LR size, scale, fps, per level its
                                         id, params, MACs, and the weight layout (the model
                                         stream's flat vector, as ``adasr.export`` lays it out)
``/play/NAME/level/K.onnx``              level K as ONNX, weights as graph inputs (``adasr.export``),
                                         exported on first request, smallest level first;
                                         ``?variant=residual``: the graph outputs the learned
                                         residual's phases without the bicubic skip (the page
                                         adds the upscale itself); ``frozen``, ``frozen-residual``:
                                         float32 with the weights inside the graph (slices
                                         folded); ``int8``, ``int8-residual``: those quantized
                                         (ONNX Runtime static QDQ, calibrated on LR frames spread
                                         over the kept segments). Weights inside a graph are the
                                         base model's: updates do not reach them. Exported on
                                         first request, then cached
``/play/NAME/model/init``, ``.../latest``, ``.../U.bin``
                                         the channel's model records (as under ``/channel/NAME``)
                                         with LZMA2 payloads re-packed as zlib (browsers have no
                                         LZMA decoder; ``DecompressionStream`` reads zlib): same
                                         header, hashes and payload, checksum recomputed; cached
``/play/NAME/report?...``                a page's stats (frames, on time, levels, updates, ...):
                                         shown on the status page and in ``/status`` under
                                         ``players``
``/play/static/FILE``                    the page's own JS and CSS
``/play/lib/ort/FILE``, ``/play/lib/mp4box/FILE``
                                         onnxruntime-web and mp4box.js from ``node_modules``
                                         (``make js``; never fetched at run time)
=======================================  ===========================================================

Every ``/play`` response carries ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` (cross-origin isolation: WASM threads need
SharedArrayBuffer) and ``Cross-Origin-Resource-Policy: same-origin``.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import re
import struct
import threading
import time
import zlib
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["ISOLATION", "LIBS", "VARIANTS", "WebPlayers", "add_web_routes", "browser_record", "node_modules",
           "ts_to_mp4"]

WEB_DIR = Path(__file__).with_name("web")
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}
LIBS = {"ort": ("onnxruntime-web", "dist"), "mp4box": ("mp4box", "dist")}
FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
         ".html": "text/html", ".map": "application/json", ".json": "application/json"}
MAX_PLAYERS = 64  # reports kept per channel
REPORT_FIELDS = {"frames": int, "on_time": int, "late": int, "dropped": int, "level": int, "updates": int,
                 "refused": int, "model_segment": int, "ttff_ms": int, "fps": float, "sr_ms": float}
REPORT_TEXT = {"levels": r"^[0-9:,-]{0,200}$", "model": r"^[0-9a-f]{0,32}$", "backend": r"^[a-z0-9-]{0,24}$",
               "client": r"^[A-Za-z0-9_-]{1,64}$"}


def node_modules() -> Path | None:
    """Where the JS dependencies are: $ADASR_NODE_MODULES, else the checkout's node_modules
    (beside the adasr package), else ./node_modules; None if none has onnxruntime-web."""
    env = os.environ.get("ADASR_NODE_MODULES")
    for cand in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[2] / "node_modules",
                                                  Path.cwd() / "node_modules"]:
        if (cand / "onnxruntime-web" / "dist").is_dir():
            return cand
    return None


def ts_to_mp4(data: bytes) -> bytes:
    """An MPEG-TS H.264 segment's packets in an MP4 (no re-encode; avcC from the stream)."""
    import av

    with av.open(io.BytesIO(data), format="mpegts") as inp:
        s_in = inp.streams.video[0]
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as out:
            s_out = out.add_stream_from_template(s_in)
            for pkt in inp.demux(s_in):
                if pkt.dts is None:
                    continue
                pkt.stream = s_out
                out.mux(pkt)
    return buf.getvalue()


def snapshot_record(ch: Any) -> tuple[bytes, int] | None:
    """The channel's newest model as a full float32 record for the page (what ``model/latest``
    holds: the same header, parameters and hashes as `encode_snapshot`), packed with zlib at a
    fast level instead of trying LZMA2 at its slowest preset: a page that joins waits for it."""
    from adasr.stream import codec as c

    with ch._lock:
        snap = ch._snapshot
    if snap is None:
        return None
    vector, n = snap
    vec = vector.detach().to("cpu").float().contiguous()
    spec = ch.trainer.state.spec
    header = {"arch": spec["arch"], "args": spec["args"], "scale": int(spec["scale"]),
              "params": [[name, list(shape)] for name, shape in ch._param_shapes]}
    meta = json.dumps(header, sort_keys=True).encode()
    body = zlib.compress(struct.pack("<I", len(meta)) + meta + vec.numpy().tobytes(), 6)
    head = c._HEAD.pack(c.MAGIC, c.CODEC_VERSION, c.FULL, c._ZLIB, c.DTYPES["float32"], int(n), vec.numel(),
                        ch.base_hash, b"\0" * c._DIGEST, c.vector_hash(vec), len(body))
    return head + body + c._digest(head + body), int(n)


def browser_record(data: bytes) -> bytes:
    """A model record with an LZMA2 payload re-packed as zlib (anything else returned as is).
    The header (kind, segment, value type, the base/before/after hashes) and the decompressed
    payload are unchanged; the record's checksum is recomputed over the new bytes."""
    from adasr.stream import codec as c

    if len(data) < c._HEAD.size or data[:4] != c.MAGIC or data[6] != c._LZMA:
        return data
    info, payload = c._parse(data, "model record")  # checks the checksum and bounds the payload
    fields = list(c._HEAD.unpack_from(data))
    body = zlib.compress(payload, 9)
    fields[3], fields[-1] = c._ZLIB, len(body)
    head = c._HEAD.pack(*fields)
    return head + body + c._digest(head + body)


# torch.onnx.export is not thread-safe (the tracer's state is global): one export at a time, in
# any channel's background thread or a variant's request thread
_TRACE_LOCK = threading.Lock()
VARIANTS = ("plain", "residual", "frozen", "frozen-residual", "int8", "int8-residual")


class _Export:
    """A channel's levels exported one by one in a background thread (smallest first); the
    other variants (`VARIANTS`) exported when first asked for."""

    def __init__(self, ch: Any) -> None:
        self.ch = ch
        self._variants: dict[tuple[str, int], bytes] = {}
        self._variant_lock = threading.Lock()
        self._calibration: list[Any] | None = None
        from adasr.export import weight_layout

        trainer = ch.trainer
        self.model = copy.deepcopy(trainer.base).eval()  # the frozen base: the clients' architecture
        self.configs = list(trainer.levels) if getattr(trainer, "levels", None) else [None]
        self.lr_hw, self.scale, self.fps = ch.lr_hw, ch.scale, ch.fps
        h, w = self.lr_hw
        levels = []
        for cfg in self.configs:
            if cfg is None:
                params = sum(p.numel() for p in self.model.parameters())
                levels.append({"id": ch.model_info.get("model", "model"), "params": params, "macs": 0})
            else:
                params, macs = self.model.cost(cfg, (h, w))
                levels.append({"id": cfg.id, "params": int(params), "macs": int(macs)})
        residual_ok = all(cfg is not None and cfg.upsampler == "bic" for cfg in self.configs)
        self.variants = [v for v in VARIANTS if residual_ok or "residual" not in v]
        self.info = {"kind": "adasr-web-levels", "name": ch.name, "scale": self.scale, "fps": self.fps,
                     "variants": self.variants,
                     "lr_width": w, "lr_height": h, "input": "x", "output": "y", "levels": levels,
                     "weights": {"count": sum(p.numel() for p in self.model.parameters()),
                                 "tensors": weight_layout(self.model)}}
        self.graphs: list[Future] = [Future() for _ in self.configs]
        # cancelled (and joined) when the HTTP side stops
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"adasr-export-{ch.name}")
        self.thread.start()

    def _run(self) -> None:
        import torch

        from adasr.export import level_onnx

        torch.set_num_threads(1)
        for cfg, fut in zip(self.configs, self.graphs):
            if self.cancel.is_set():
                fut.set_exception(RuntimeError("the server stopped"))
                continue
            try:
                with _TRACE_LOCK:
                    graph = level_onnx(self.model, self.lr_hw, cfg)[0]
                fut.set_result(graph)
            except BaseException as exc:  # noqa: BLE001 - answered as a 500 to the page
                fut.set_exception(exc)

    def variant(self, name: str, k: int) -> bytes:
        """Level k's graph in variant `name` (not "plain"), exported on first call (one at a time)."""
        import torch

        from adasr.export import calibration_inputs, frozen_level_onnx, level_onnx, quantize_level_onnx

        with self._variant_lock:
            got = self._variants.get((name, k))
            if got is not None:
                return got
            if self.cancel.is_set():
                raise RuntimeError("the server stopped")
            torch.set_num_threads(1)
            cfg, residual = self.configs[k], name.endswith("residual")
            if name.startswith("int8"):
                if self._calibration is None:
                    self._calibration = calibration_inputs(self._frames(), self.lr_hw)
                with _TRACE_LOCK:
                    frozen = frozen_level_onnx(self.model, self.lr_hw, cfg, residual)
                got = quantize_level_onnx(frozen, self._calibration)
            else:
                with _TRACE_LOCK:
                    if name.startswith("frozen"):
                        got = frozen_level_onnx(self.model, self.lr_hw, cfg, residual)
                    else:
                        got = level_onnx(self.model, self.lr_hw, cfg, residual=residual)[0]
            self._variants[(name, k)] = got
            return got

    def _frames(self, count: int = 8) -> list[Any]:
        """`count` LR frames for int8 calibration, spread over the channel's kept segments (one
        segment's frames alone cover too little of the content's range: measured, calibrating
        on the first second loses twice the PSNR of calibrating on frames across the clip)."""
        from adasr.serve.media import decode_segment

        kept = [s["index"] for s in self.ch.manifest()["segments"]]
        picks = sorted({kept[round(i * (len(kept) - 1) / max(1, count - 1))] for i in range(count)}) if kept else []
        frames = []
        per = -(-count // max(1, len(picks)))  # frames from each picked segment
        for idx in picks:
            seg = self.ch.segment(idx)
            if seg is not None:
                got = decode_segment(seg.data)
                frames += got[::max(1, len(got) // per)][:per]
        if not frames:
            raise RuntimeError("no segment yet to calibrate int8 on")
        return frames[:count]


class WebPlayers:
    """The player routes' state: exports, remuxed segments, the pages' reports."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self._lock = threading.Lock()
        self._exports: dict[str, _Export] = {}
        self._mp4: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._records: OrderedDict[tuple[str, str, int], tuple[bytes, int]] = OrderedDict()
        self.reports: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        hub.on_status.append(self._status)

    def export(self, ch: Any) -> _Export:
        with self._lock:
            exp = self._exports.get(ch.name)
            if exp is None or exp.cancel.is_set():
                exp = self._exports[ch.name] = _Export(ch)
            return exp

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the exports in progress and wait for the level being traced (the HTTP side is
        closing: a process that exits while torch traces in another thread aborts); a later
        request starts anew."""
        with self._lock:
            exports = list(self._exports.values())
        for exp in exports:
            exp.cancel.set()
        for exp in exports:
            exp.thread.join(timeout_s)
            if exp._variant_lock.acquire(timeout=timeout_s):  # a variant being exported
                exp._variant_lock.release()

    def mp4(self, ch: Any, seg: Any) -> bytes:
        key = (ch.name, seg.index, seg.sha256)
        with self._lock:
            got = self._mp4.get(key)
        if got is None:
            got = ts_to_mp4(seg.data)
            with self._lock:
                self._mp4[key] = got
                while len(self._mp4) > 64:
                    self._mp4.popitem(last=False)
        return got

    def record(self, ch: Any, kind: str, index: int) -> tuple[bytes, int] | None:
        """(record for the page, updates it includes): "init", "latest" or "update" `index`; cached."""
        key = (ch.name, kind, index)
        with self._lock:
            got = self._records.get(key)
        if got is not None:
            return got
        if kind == "init":
            got = (browser_record(ch.init_record), 0)
        elif kind == "latest":
            got = snapshot_record(ch)
        else:
            raw = ch.update(index)
            got = None if raw is None else (browser_record(raw), index + 1)
        if got is not None:
            with self._lock:
                if kind == "latest":  # only the newest snapshot is asked for: drop the older ones
                    for old in [k for k in self._records if k[:2] == key[:2]]:
                        del self._records[old]
                self._records[key] = got
                while len(self._records) > 128:
                    self._records.popitem(last=False)
        return got

    def report(self, name: str, query: Any) -> None:
        entry: dict[str, Any] = {"t": time.monotonic()}
        for key, kind in REPORT_FIELDS.items():
            text = query.get(key, "0")
            try:
                value = kind(text)
            except ValueError:
                raise web.HTTPBadRequest(text=f"{key} must be a number\n") from None
            if not ((-1 if key == "level" else 0) <= value <= 10**9):  # level -1: the bicubic floor
                raise web.HTTPBadRequest(text=f"{key} out of range\n")
            entry[key] = value
        for key, pattern in REPORT_TEXT.items():
            text = query.get(key, "")
            if not re.match(pattern, text):
                raise web.HTTPBadRequest(text=f"{key} malformed\n")
            entry[key] = text
        with self._lock:
            per = self.reports.setdefault(name, OrderedDict())
            per[entry["client"]] = entry
            per.move_to_end(entry["client"])
            while len(per) > MAX_PLAYERS:
                per.popitem(last=False)

    def _status(self, status: dict[str, Any]) -> None:
        now = time.monotonic()
        rows = []
        with self._lock:
            for name, per in self.reports.items():
                for client, e in per.items():
                    if now - e["t"] < 30:
                        seen = max(1, e["frames"] + e["dropped"])
                        rows.append({"channel": name, "client": client, "level": e["level"], "fps": e["fps"],
                                     "sr_ms": e["sr_ms"], "frames": e["frames"], "dropped": e["dropped"],
                                     "on_time": e["on_time"], "on_time_share": e["on_time"] / seen,
                                     "levels": e["levels"], "updates": e["updates"], "refused": e["refused"],
                                     "model": e["model"], "model_segment": e["model_segment"],
                                     "backend": e["backend"], "ttff_ms": e["ttff_ms"], "age_s": now - e["t"]})
        status["players"] = rows


def _headers(content_type: str, **more: str) -> dict[str, str]:
    return {**ISOLATION, "Content-Type": content_type, "Cache-Control": "no-store", **more}


class _Handlers:
    def __init__(self, hub: Any, handlers: Any) -> None:
        self.hub, self.h = hub, handlers
        self.web: WebPlayers | None = None

    def _ch(self, request: web.Request) -> Any:
        return self.h._channel(request)

    def _send(self, ch: Any, body: bytes, ctype: str, **headers: str) -> web.Response:
        ch.served(len(body) + 200)
        return web.Response(body=body, headers=_headers(ctype, **headers))

    async def page(self, request: web.Request) -> web.Response:
        ch = self._ch(request)
        self.web.export(ch)  # start exporting now: the page asks for level 0 within a second
        return web.Response(body=(WEB_DIR / "player.html").read_bytes(), headers=_headers("text/html"))

    async def playlist(self, request: web.Request) -> web.Response:
        ch = self._ch(request)
        m = ch.manifest()
        segs = m["segments"]
        target = max([s["duration_s"] for s in segs] + [m["segment_s"]])
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(-(-target // 1))}",
                 f"#EXT-X-MEDIA-SEQUENCE:{segs[0]['index'] if segs else 0}"]
        for s in segs:
            lines += [f"#EXTINF:{s['duration_s']:.3f},", f"/channel/{ch.name}/segment/{s['index']}.ts"]
        if m["ended"]:
            lines.append("#EXT-X-ENDLIST")
        return self._send(ch, ("\n".join(lines) + "\n").encode(), "application/vnd.apple.mpegurl")

    async def segment(self, request: web.Request) -> web.Response:
        from adasr.serve.numbers import query_int

        ch = self._ch(request)
        seg = ch.segment(query_int(request.match_info["index"], "segment"))
        if seg is None:
            raise web.HTTPNotFound(text="segment not available (not yet, or no longer)\n")
        body = await asyncio.to_thread(self.web.mp4, ch, seg)
        return self._send(ch, body, "video/mp4")

    async def levels(self, request: web.Request) -> web.Response:
        import json

        ch = self._ch(request)
        exp = await asyncio.to_thread(self.web.export, ch)
        return self._send(ch, json.dumps(exp.info).encode(), "application/json")

    async def level(self, request: web.Request) -> web.Response:
        from adasr.serve.numbers import query_int

        ch = self._ch(request)
        exp = await asyncio.to_thread(self.web.export, ch)
        k = query_int(request.match_info["index"], "level", 0, len(exp.graphs) - 1)
        variant = request.query.get("variant", "plain")
        if variant not in exp.variants:
            raise web.HTTPBadRequest(text=f"variant must be one of {', '.join(exp.variants)}\n")
        if variant == "plain":
            graph = await asyncio.wait_for(asyncio.wrap_future(exp.graphs[k]), 120)
        else:
            graph = await asyncio.wait_for(asyncio.to_thread(exp.variant, variant, k), 300)
        return self._send(ch, graph, "application/octet-stream")

    async def model_init(self, request: web.Request) -> web.Response:
        ch = self._ch(request)
        body, _ = await asyncio.to_thread(self.web.record, ch, "init", 0)
        return self._send(ch, body, "application/octet-stream")

    async def model_latest(self, request: web.Request) -> web.Response:
        ch = self._ch(request)
        with ch._lock:
            snap = ch._snapshot
        got = None if snap is None else await asyncio.to_thread(self.web.record, ch, "latest", snap[1])
        if got is None:
            raise web.HTTPNotFound(text="no update yet: start from model/init\n")
        return self._send(ch, got[0], "application/octet-stream", **{"X-Adasr-Updates": str(got[1])})

    async def model_update(self, request: web.Request) -> web.Response:
        from adasr.serve.numbers import query_int

        ch = self._ch(request)
        got = await asyncio.to_thread(self.web.record, ch, "update", query_int(request.match_info["index"], "update"))
        if got is None:
            raise web.HTTPNotFound(text="no such update (yet)\n")
        return self._send(ch, got[0], "application/octet-stream")

    async def report(self, request: web.Request) -> web.Response:
        ch = self._ch(request)
        self.web.report(ch.name, request.query)
        return web.Response(status=204, headers=ISOLATION)

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._file(WEB_DIR, request.match_info["file"])

    async def lib(self, request: web.Request) -> web.StreamResponse:
        lib = request.match_info["lib"]
        root = node_modules()
        if lib not in LIBS:
            raise web.HTTPNotFound(text="no such library\n")
        if root is None:
            raise web.HTTPNotFound(text="the player's JS dependencies are not installed: run `make js` (npm ci) "
                                        "in the adasr checkout, or set ADASR_NODE_MODULES\n")
        package, sub = LIBS[lib]
        return self._file(root / package / sub, request.match_info["file"])

    @staticmethod
    def _file(folder: Path, name: str) -> web.StreamResponse:
        if not FILE_RE.match(name):
            raise web.HTTPNotFound(text="no such file\n")
        path = folder / name
        ctype = TYPES.get(path.suffix)
        if ctype is None or not path.is_file() or path.is_symlink():
            raise web.HTTPNotFound(text="no such file\n")
        return web.FileResponse(path, headers=_headers(ctype))


def add_web_routes(app: web.Application, hub: Any, handlers: Any) -> WebPlayers:
    """Add the player's routes to the live server's `app` (`handlers`: its `Handlers`)."""
    h = _Handlers(hub, handlers)
    if getattr(hub, "web_players", None) is None:  # one per hub: the HTTP side may be restarted
        hub.web_players = WebPlayers(hub)
    h.web = hub.web_players

    async def stop_exports(_app: web.Application) -> None:
        await asyncio.to_thread(h.web.stop)

    app.on_cleanup.append(stop_exports)
    r = app.router
    r.add_get("/play/static/{file}", h.static)
    r.add_get("/play/lib/{lib}/{file}", h.lib)
    r.add_get("/play/{name}", h.page)
    r.add_get("/play/{name}/index.m3u8", h.playlist)
    r.add_get("/play/{name}/segment/{index}.mp4", h.segment)
    r.add_get("/play/{name}/levels.json", h.levels)
    r.add_get("/play/{name}/level/{index}.onnx", h.level)
    r.add_get("/play/{name}/model/init", h.model_init)
    r.add_get("/play/{name}/model/latest", h.model_latest)
    r.add_get("/play/{name}/model/{index}.bin", h.model_update)
    r.add_get("/play/{name}/report", h.report)
    return h.web

