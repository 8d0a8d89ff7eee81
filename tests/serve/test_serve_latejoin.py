"""A late joiner of a live channel starts from one full record of the newest model (a snapshot)
instead of replaying every update, and then follows the channel as usual."""

from __future__ import annotations

import json

import pytest

from adasr.serve.channel import GivenModel
from adasr.serve.client import LiveClient, prefer_snapshot
from adasr.stream.codec import DeltaError, ModelState, encode_snapshot, read_record

from .test_serve import _trainer, frames, tiny_model
from .test_serve_http import get, hash_after, make_server


@pytest.mark.slow
def test_snapshot_record_stands_in_for_the_updates_before_it(data_root):
    lr, hr = frames(data_root)
    tr = _trainer("ams")
    made, snap = [], None
    for i, (a, b) in enumerate(zip(lr, hr)):
        t = i / 25
        tr.offer(t, a, b)
        if tr.due(t):
            made.append(tr.train(t))
            if len(made) == 1:  # a late joiner's start after the first update
                shapes = [(n, tuple(p.shape)) for n, p in tr.state.model.named_parameters()]
                snap = encode_snapshot(tr.state.vector, shapes, tr.state.spec, tr.state.next_segment,
                                       tr.state.base_hash)
    assert len(made) == 2 and snap is not None
    joiner = ModelState.from_full(snap)
    info = read_record(snap)[0]
    assert info.kind == "full" and info.dtype == "float32" and info.segment == 1 and joiner.next_segment == 1
    assert joiner.base_hash == tr.state.base_hash
    joiner.apply(made[1].record)  # the next update applies to it as to a client that saw them all
    assert joiner.hash == tr.state.hash
    with pytest.raises(DeltaError):  # an update it already holds is refused (out of order)
        ModelState.from_full(snap).apply(made[0].record)
    damaged = bytearray(snap)
    damaged[200] ^= 0x01
    with pytest.raises(DeltaError, match="damaged"):
        ModelState.from_full(bytes(damaged))


def test_prefer_snapshot_weighs_replay_bytes_against_one_full_record():
    m = {"model": {"params": 1000, "init_bytes": 2100, "snapshot_updates": 3},
         "updates": [{"index": i, "bytes": 8000} for i in range(3)]}
    assert prefer_snapshot(m, base_named=False)  # 26.1 kB of replay > 4 kB + slack
    m["updates"] = m["updates"][:1]
    assert not prefer_snapshot(m, base_named=False)  # 10.1 kB < 20.4 kB
    m["model"]["snapshot_updates"] = 0
    m["updates"] = [{"index": i, "bytes": 8000} for i in range(9)]
    assert not prefer_snapshot(m, base_named=True)  # no snapshot yet
    assert not prefer_snapshot({"model": "x", "updates": None}, base_named=False)


@pytest.mark.integration
def test_late_joiner_starts_from_the_newest_model(data_root):
    with make_server(data_root, frames=30, model_source=GivenModel(*tiny_model())) as srv:
        srv.wait(60)  # the whole source served: 6 segments and every update made
        ch = srv.hub.channels["bikes"]
        n = len(ch.trainer.updates)
        assert n >= 2
        m = json.loads(get(f"{srv.url}/channel/bikes")[1])
        assert m["model"]["snapshot_updates"] == n
        status, body, _ = get(f"{srv.url}/channel/bikes/model/latest")
        snap = ModelState.from_full(body)
        assert status == 200 and snap.next_segment == n and snap.hash == hash_after(ch, n) == ch.trainer.state.hash
        assert get(f"{srv.url}/channel/bikes/model/latest")[1] == body  # the same bytes again (cached)
        client = LiveClient(f"{srv.url}/channel/bikes", snapshot="always", reconnect_s=20, buffer_segments=2)
        result = client.run(policy="fixed")
        s = result.stats
        assert s.from_snapshot and s.updates_applied == 0 and s.refused == 0
        assert s.model_bytes == len(body) and result.summary["frames"] == 10  # the last 2 segments
        assert client.swap.state.hash == ch.trainer.state.hash  # every update's bits, none replayed
        # "never": the first record and every update, the same model in the end
        client = LiveClient(f"{srv.url}/channel/bikes", snapshot="never", reconnect_s=20, buffer_segments=2)
        s2 = client.run(policy="fixed").stats
        assert not s2.from_snapshot and n - 1 <= s2.updates_applied <= n  # the last may come after the end
        assert client.swap.state.hash == hash_after(ch, s2.updates_applied)
