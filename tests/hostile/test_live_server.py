"""Hostile input, round 3 (issue 34): the live server's surface, on 127.0.0.1 only.

`REQUESTS`: a table of hostile requests (path, headers) and the status each must get; a new
endpoint gets its rows here. Classes: 16 (ASCII-only numbers), 17 (a bounded client table with
expiry and a share per address), and serving a real network (a token, limits per address, a
non-loopback address only when asked, with a token). The server runs without training
(`train=False`): these tests are about HTTP, not models.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from adasr.errors import ConfigError
from adasr.serve.channel import Channel, ChannelConfig, GivenModel, Hub
from adasr.serve.config import TrainerConfig
from adasr.serve.media import LiveSource
from adasr.serve.server import LiveServer
from tests.serve.test_serve import tiny_model

pytestmark = pytest.mark.integration  # a server on 127.0.0.1, end to end

TOKEN = "t0ken-for-the-tests-0123456789"


def _hub(data_root) -> Hub:
    src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(64, 64), max_frames=8)
    ch = Channel("c", src, TrainerConfig(t_update=0.4, k=2, batch=2, patch=12), model_source=GivenModel(*tiny_model()),
                 config=ChannelConfig(segment_s=0.2))
    for frame in src.frames():  # one segment, published without the worker thread
        ch.ingest(frame)
        if ch.live_edge >= 0:
            break
    return Hub([ch])


@pytest.fixture(scope="module")
def hub(data_root):
    return _hub(data_root)


@pytest.fixture(scope="module")
def server(hub):
    with LiveServer(hub, train=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def guarded(hub):
    with LiveServer(hub, train=False, token=TOKEN, max_per_address=2) as srv:
        yield srv


def _get(srv: LiveServer, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# path -> the status it must get (16: digits of other scripts, superscripts, signs, spaces, floats
# in other notations are refused with 400 instead of 500 or an alias of another number)
REQUESTS = {
    "/channel/c/segment/0.ts": 200,
    "/channel/c/segment/\u00b2.ts": 400,             # superscript two: was a 500
    "/channel/c/segment/\u0661.ts": 400,             # Arabic-Indic one: was served as segment 1
    "/channel/c/segment/\uff10.ts": 400,             # fullwidth zero: was segment 0
    "/channel/c/segment/+0.ts": 400,
    "/channel/c/segment/-1.ts": 400,
    "/channel/c/segment/00000000000.ts": 400,        # 11 digits
    "/channel/c/model/\u0660.bin": 400,
    "/channel/c?after=\u0660": 400,
    "/channel/c?after=0&wait=\u0661": 400,
    "/channel/c?after=0&wait=1_0": 400,              # float() takes 1_0 as 10
    "/channel/c?after=0&wait=1e1": 400,
    "/channel/c?after=0&wait=nan": 400,
    "/channel/c?after=0&wait=0.01": 200,
    "/channel/c?segments_from=\u00b9": 400,
    "/channel/nope": 404,
    "/status": 200,
}


class TestAsciiNumbers:
    @pytest.mark.parametrize("path", sorted(REQUESTS))
    def test_request(self, server, path):
        from urllib.parse import quote

        status, _ = _get(server, quote(path, safe="/?&=.+-_"))
        assert status == REQUESTS[path], (path, status)


class TestClientTable:
    """17: 1,100 invented viewer ids no longer push a real viewer out of the count."""

    def test_invented_ids_from_one_address(self):
        from adasr.serve.clients import ClientTable

        table = ClientTable(capacity=1024, ttl_s=120, per_address=16)
        for i in range(1100):
            table.seen(f"fake-{i}", "10.0.0.9", 100.0)
        table.seen("viewer", "10.0.0.1", 100.0)
        assert "viewer" in table and len(table) <= 18
        assert table.active(100.5) == len(table)

    def test_lru_evicts_the_least_recently_seen(self):
        from adasr.serve.clients import ClientTable

        table = ClientTable(capacity=3, ttl_s=120, per_address=16)
        for i, c in enumerate(["a", "b", "c"]):
            table.seen(c, f"10.0.0.{i}", float(i))
        table.seen("a", "10.0.0.0", 3.0)  # a seen again: b is now the oldest
        table.seen("d", "10.0.0.4", 4.0)
        assert "b" not in table and all(c in table for c in "acd")

    def test_entries_expire(self):
        from adasr.serve.clients import ClientTable

        table = ClientTable(capacity=10, ttl_s=5, per_address=16)
        table.seen("old", "a", 0.0)
        table.seen("new", "b", 10.0)
        assert "old" not in table and "new" in table

    def test_over_http(self, hub, server):
        for i in range(40):  # one address, many invented ids
            _get(server, "/channel/c", {"X-Adasr-Client": f"fake-{i}"})
        ch = hub.channels["c"]
        assert len(ch.clients) <= ch.clients.per_address + 1  # one address holds at most its share


class TestAccessToken:
    def test_status_page_is_open(self, guarded):
        assert _get(guarded, "/status")[0] == 200
        assert _get(guarded, "/")[0] == 200

    @pytest.mark.parametrize("path", ["/channels", "/channel/c", "/channel/c/segment/0.ts", "/channel/c/model/init",
                                      "/channel/c/model/0.bin", "/channel/c/model/latest"])
    def test_everything_else_needs_it(self, guarded, path):
        assert _get(guarded, path)[0] == 401
        assert _get(guarded, path, {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        assert _get(guarded, path, {"Authorization": f"Bearer {TOKEN}"})[0] in (200, 404)

    def test_client_with_and_without_token(self, guarded):
        from adasr.errors import InputError
        from adasr.serve.client import LiveClient

        with pytest.raises(InputError, match="access token"):
            LiveClient(f"{guarded.url}/channel/c", timeout_s=2, reconnect_s=1).start()
        client = LiveClient(f"{guarded.url}/channel/c", timeout_s=5, reconnect_s=5, token=TOKEN).start()
        client.stop()
        assert client.manifest["name"] == "c"

    def test_non_loopback_needs_a_token(self, hub):
        from adasr.serve.server import is_loopback

        # constructed only, never bound: tests bind loopback alone
        with pytest.raises(ConfigError, match="token"):
            LiveServer(hub, host="0.0.0.0", train=False)
        with pytest.raises(ConfigError, match="token"):
            LiveServer(hub, host="0.0.0.0", train=False, token="short")
        assert LiveServer(hub, host="0.0.0.0", train=False, token=TOKEN).url.startswith("http://0.0.0.0:")
        assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
        assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.org")
        for bad in (0, 257, 1.5, True):  # the worker's torch threads: bounded, an integer
            with pytest.raises(ConfigError, match="train_threads"):
                LiveServer(hub, train=False, train_threads=bad)


class TestLimitsPerAddress:
    def test_requests_in_flight_per_address(self, guarded):
        """max_per_address=2: a third long poll from the same address is answered 429 at once."""
        results: list[int] = []
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def poll() -> None:
            results.append(_get(guarded, "/channel/c?after=1000&wait=2", auth)[0])

        threads = [threading.Thread(target=poll) for _ in range(2)]
        for t in threads:
            t.start()
        for _ in range(100):  # bounded: until both polls are held (or 2 s)
            if sum(guarded_in_flight(guarded).values()) >= 2:
                break
            time.sleep(0.02)
        third = _get(guarded, "/channel/c", auth)[0]
        for t in threads:
            t.join(10)
        assert third == 429, third
        assert sorted(results) == [200, 200]
        assert _get(guarded, "/status")[0] == 200  # and it is over once they end


def guarded_in_flight(srv: LiveServer) -> dict[str, int]:
    app = srv._runner.app
    return app.middlewares[0].__self__.in_flight


class TestStatusUnderBurst:
    """/status still answers during a burst of long polls and invalid requests (bounded: 8
    threads, 128 requests). The latency is printed, not asserted (a shared machine)."""

    def test_burst(self, server):
        stop = threading.Event()
        sent = [0]

        def burst() -> None:
            for i in range(16):
                if stop.is_set():
                    return
                path = ["/channel/c?after=1000&wait=0.3", "/channel/c/segment/%D9%A1.ts", "/nope",  # %D9%A1: U+0661
                        "/channel/c/segment/0.ts"][i % 4]
                try:
                    _get(server, path, {"X-Adasr-Client": f"b{i}"}, timeout=10)
                except OSError:
                    pass
                sent[0] += 1

        threads = [threading.Thread(target=burst) for _ in range(8)]
        for t in threads:
            t.start()
        worst, asked = 0.0, 0
        for _ in range(400):  # bounded: while the burst lasts
            if not any(t.is_alive() for t in threads):
                break
            asked += 1
            t0 = time.perf_counter()
            status, body = _get(server, "/status")
            worst = max(worst, time.perf_counter() - t0)
            assert status == 200 and json.loads(body)["channels"][0]["name"] == "c"
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join(20)
        assert asked >= 1
        print(f"/status asked {asked} times during a burst of {sent[0]} requests: slowest answer {1e3 * worst:.1f} ms")
