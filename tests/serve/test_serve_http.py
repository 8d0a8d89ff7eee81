"""The live server and client over loopback HTTP: endpoints, a played session, and the faults
(corrupt update, server death, slow link, malformed requests). Every request loop is bounded in
count and time and talks only to 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

from adasr.serve.channel import Channel, ChannelConfig, GivenModel, Hub, NamedModel
from adasr.serve.client import LiveClient
from adasr.serve.config import TrainerConfig
from adasr.serve.media import LiveSource, decode_segment
from adasr.serve.server import BASE_REF_KIND, LiveServer
from adasr.stream.codec import ModelState

from .test_serve import tiny_model

TRAIN = TrainerConfig(t_update=0.4, k=2, batch=2, patch=12)


def make_server(data_root, frames=40, model_source=None, segment_s=0.2, name="bikes") -> LiveServer:
    src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(64, 64), max_frames=frames)
    if model_source is None:
        model_source = GivenModel(*tiny_model())
    ch = Channel(name, src, TRAIN, model_source=model_source, config=ChannelConfig(segment_s=segment_s))
    return LiveServer(Hub([ch]), duration_s=120)


def hash_after(ch: Channel, n: int) -> bytes:
    """The model hash a client holds after the channel's first `n` updates."""
    state = ModelState.from_full(ch.init_record)
    for i in range(n):
        state.apply(ch.update(i))
    return state.hash


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


@pytest.mark.integration
def test_endpoints_answer_and_refuse(data_root):
    with make_server(data_root, frames=12, model_source=NamedModel("generic")) as srv:
        srv.wait(60)  # the whole source served: 12 frames, 3 segments
        ch = srv.hub.channels["bikes"]
        u = srv.url
        status, body, _ = get(f"{u}/channels")
        assert status == 200 and json.loads(body)["channels"][0]["name"] == "bikes"
        m = json.loads(get(f"{u}/channel/bikes")[1])
        assert [s["duration_s"] for s in m["segments"]] == [0.2, 0.2, 0.08] and m["model"]["id"] == "generic"
        status, seg, ctype = get(f"{u}/channel/bikes/segment/0.ts")
        assert status == 200 and ctype == "video/mp2t" and len(decode_segment(seg)) == 5
        status, full, _ = get(f"{u}/channel/bikes/model/init")
        state = ModelState.from_full(full)
        assert state.base_hash.hex() == m["model"]["base_hash"] and len(full) == m["model"]["init_bytes"]
        status, ref, ctype = get(f"{u}/channel/bikes/model/init?have={m['model']['base_hash']}")
        assert ctype == "application/json" and json.loads(ref)["kind"] == BASE_REF_KIND and len(ref) < 200
        for i in range(m["n_updates"]):
            state.apply(get(f"{u}/channel/bikes/model/{i}.bin")[1])
        assert state.hash == ch.trainer.state.hash
        later = json.loads(get(f"{u}/channel/bikes?segments_from=2&updates_from=1")[1])
        assert [s["index"] for s in later["segments"]] == [2] and len(later["updates"]) == m["n_updates"] - 1
        st = json.loads(get(f"{u}/status")[1])
        assert st["channels"][0]["segments"] == 3 and st["channels"][0]["down_kbps"] > 0
        assert b"<table" in get(f"{u}/")[1]
        for path, code in (("/nope", 404), ("/channel/other", 404), ("/channel/bikes/segment/99.ts", 404),
                           ("/channel/bikes/segment/-1.ts", 400), ("/channel/bikes/model/99.bin", 404),
                           ("/channel/bikes/segment/99999999999.ts", 400), ("/channel/bikes?after=x", 400),
                           ("/channel/bikes?after=1&wait=1e9", 400), ("/channel/..%2F..%2Fetc", 404)):
            assert get(u + path)[0] == code, path
        req = urllib.request.Request(f"{u}/status", data=b"x" * 10, method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 405


@pytest.mark.integration
def test_client_plays_the_channel_and_follows_every_update(data_root):
    with make_server(data_root, frames=30, model_source=NamedModel("generic")) as srv:
        # a buffer of all 6 segments: the client starts from segment 0 however late it connects
        client = LiveClient(f"{srv.url}/channel/bikes", have_model="generic", reconnect_s=20, buffer_segments=6)
        result = client.run(policy="fixed")
        ch = srv.hub.channels["bikes"]
        srv.wait(60)
        s = result.stats
        assert result.summary["frames"] == 30 and len(result.outputs) == 30
        assert s.base_by_hash and s.model_bytes < 20_000  # the base model was named, not sent
        # an update made after the source's last segment may come after the client left
        assert len(ch.trainer.updates) - 1 <= s.updates_applied <= len(ch.trainer.updates) and s.updates_applied >= 2
        assert s.refused == 0
        assert client.swap.state.hash == hash_after(ch, s.updates_applied)  # the server's model, bit for bit
        assert s.updates_applied - 1 <= s.swaps <= s.updates_applied  # the last may start after the last frame
        assert s.bytes_down > s.segment_bytes + s.model_bytes and s.bytes_up > 0
        assert srv.hub.status()["channels"][0]["down_kbps"] > 0


@pytest.mark.integration
def test_damaged_update_is_refused_and_the_model_stays(data_root):
    with make_server(data_root, frames=30) as srv:
        client = LiveClient(f"{srv.url}/channel/bikes", reconnect_s=20)
        seen: dict[int, int] = {}
        held: list[bytes] = []

        def damage(index: int, body: bytes) -> bytes:
            seen[index] = seen.get(index, 0) + 1
            if index == 1 and seen[index] == 1:  # the first copy of update 1 arrives with one bit flipped
                held.append(client.swap.state.hash)
                return body[:40] + bytes([body[40] ^ 1]) + body[41:]
            return body

        client.damage = damage
        result = client.run(policy="fixed")
        ch = srv.hub.channels["bikes"]
        srv.wait(60)
        assert result.stats.refused == 1 and "checksum" in result.stats.errors[0]
        assert seen[1] == 2  # refetched, then applied
        # the server's model after the updates the client took (one made after the source's last
        # segment may come after the client left)
        applied = result.stats.updates_applied
        assert len(ch.trainer.updates) - 1 <= applied <= len(ch.trainer.updates)
        assert client.swap.state.hash == hash_after(ch, applied)


@pytest.mark.integration
def test_model_swap_refuses_an_out_of_order_update(data_root):
    from adasr.serve.client import ModelSwap
    from adasr.stream.codec import DeltaError

    with make_server(data_root, frames=30) as srv:
        srv.wait(60)
        ch = srv.hub.channels["bikes"]
        assert len(ch.trainer.updates) >= 2
        swap = ModelSwap(ModelState.from_full(ch.init_record), lambda m: m)
        before = swap.state.hash
        with pytest.raises(DeltaError, match="out of order"):
            swap.stage(ch.update(1), 0, "update 1")
        assert swap.state.hash == before and not swap.busy and not swap.take(10)
        swap.stage(ch.update(0), 3, "update 0")
        assert not swap.take(2) and swap.take(3)  # swapped only once its first segment is reached


@pytest.mark.integration
def test_server_death_client_keeps_playing_then_resumes(data_root):
    with make_server(data_root, frames=60) as srv:
        client = LiveClient(f"{srv.url}/channel/bikes", buffer_segments=5, max_lag=20, reconnect_s=30)
        shown: list[float] = []
        box: dict = {}
        t = threading.Thread(target=lambda: box.update(r=client.run(
            policy="fixed", on_output=lambda s, i, f: shown.append(time.monotonic()))), daemon=True)
        t.start()
        for _ in range(600):  # until the client has played a few frames (bounded: 60 s)
            if len(shown) >= 3:
                break
            time.sleep(0.1)
        down = time.monotonic()
        srv.stop_http()  # the server is gone: connections refused
        time.sleep(1.5)
        up = time.monotonic()
        srv.start_http()  # back on the same port
        t.join(90)
        srv.wait(60)
        r = box["r"]
        ch = srv.hub.channels["bikes"]
        assert any(down < x < up for x in shown), "no frame was shown while the server was down"
        assert r.stats.reconnects >= 1 and r.stats.failed_requests >= 1
        assert r.stats.updates_applied >= 2 and r.stats.refused == 0
        assert client.swap.state.hash == hash_after(ch, r.stats.updates_applied)  # a clean chain of updates
        assert r.summary["frames"] + 5 * r.stats.skipped_segments >= 60 - 5


class ThrottledProxy:
    """A loopback TCP proxy whose server-to-client direction is a token bucket of `rate` bytes/s."""

    def __init__(self, target_port: int, rate: float, burst: int = 2048) -> None:
        self.target, self.rate, self.burst = target_port, rate, burst
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.sent = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer, throttle: bool) -> None:
            tokens, last = float(self.burst), time.monotonic()
            try:
                while True:
                    data = await reader.read(1024 if throttle else 65536)
                    if not data:
                        break
                    if throttle:
                        while True:
                            now = time.monotonic()
                            tokens = min(self.burst, tokens + (now - last) * self.rate)
                            last = now
                            if tokens >= len(data):
                                tokens -= len(data)
                                break
                            await asyncio.sleep((len(data) - tokens) / self.rate)
                        self.sent += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(cr, cw) -> None:
            try:
                sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                cw.close()
                return
            await asyncio.gather(pipe(cr, sw, False), pipe(sr, cw, True))

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.mark.integration
def test_slow_link_client_falls_behind_and_skips_to_the_live_edge(data_root):
    with make_server(data_root, frames=50, segment_s=0.2) as srv:
        # 3 kB/s for a channel of ~13 kB/s: a segment (~2.6 kB) takes ~0.9 s to arrive, while the live edge
        # moves ~4 segments (more than max_lag); slower links only make the session longer
        proxy = ThrottledProxy(srv.port, rate=3_000)
        try:
            client = LiveClient(f"http://127.0.0.1:{proxy.port}/channel/bikes", max_lag=2, reconnect_s=30,
                                timeout_s=20, max_segments=4)
            r = client.run(policy="fixed")
        finally:
            proxy.close()
        srv.wait(60)
        assert r.summary["frames"] > 0 and r.stats.refused == 0
        assert not r.stats.errors  # it ended with the channel, not by giving up on a wait
        assert r.stats.skipped_segments > 0  # it could not keep up: it jumped to the live edge
        assert r.stats.segments <= 4 and proxy.sent >= r.stats.segment_bytes


def _raw(port: int, payload: bytes) -> int:
    """Send `payload` on a fresh connection; the status code answered (0: none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(payload)
        data = b""
        try:
            while len(data) < 64:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else 0


@pytest.mark.integration
def test_a_thousand_malformed_requests_get_4xx_and_the_server_stays_up(data_root):
    with make_server(data_root, frames=10) as srv:
        srv.wait(60)
        proc = psutil.Process()
        bad = [
            b"GARBAGE\r\n\r\n",
            b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n",
            b"GET /channel/bikes/segment/abc.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            b"GET /channel/bikes?after=-5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /channel/bikes/model/1" + b"9" * 20 + b".bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS hello
            b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(100)) + b"\r\n",
        ]
        codes = [_raw(srv.port, bad[i % len(bad)]) for i in range(60)]
        rss0 = proc.memory_info().rss
        codes += [_raw(srv.port, bad[i % len(bad)]) for i in range(940)]
        rss1 = proc.memory_info().rss
        assert all(400 <= c < 500 for c in codes), sorted(set(codes))
        assert get(f"{srv.url}/status")[0] == 200
        assert rss1 - rss0 < 32 << 20  # memory stays flat (no per-request growth)
