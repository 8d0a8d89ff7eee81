"""Resource traces: seeded generators, CSV round trip and refusal, replay on a CpuLoad."""

from __future__ import annotations

import os
import time

import pytest

from adasr.cpuload import CpuLoad
from adasr.errors import ConfigError, InputError
from adasr.runtime.traces import KINDS, Trace, TracePlayer, bursty, generate, random_walk, stable


@pytest.mark.parametrize("kind", KINDS)
def test_generators_reproducible_from_seed(kind):
    a, b, c = generate(kind, 30.0, seed=1), generate(kind, 30.0, seed=1), generate(kind, 30.0, seed=2)
    assert a == b and a.steps == b.steps
    assert a != c
    assert a.steps[0][0] == 0.0 and a.duration_s == 30.0
    assert all(0.0 <= v <= 1.0 for v in a.loads)
    assert all(t1 < t2 for t1, t2 in zip(a.times, a.times[1:]))


def test_generators_follow_their_descriptions():
    b = bursty(120.0, seed=3)
    lows, highs = [v for v in b.loads if v <= 0.2], [v for v in b.loads if v >= 0.7]
    assert lows and highs and len(lows) + len(highs) == len(b)  # only extremes
    s = stable(120.0, seed=3)
    assert max(s.loads) - min(s.loads) <= 0.1 + 1e-9          # small variation
    r = random_walk(120.0, seed=3)
    assert max(r.loads) - min(r.loads) > 0.1 and len(set(r.loads)) > 10
    assert generate("random", 10.0, 0) == random_walk(10.0, 0)
    with pytest.raises(ConfigError):
        generate("spiky", 10.0)
    with pytest.raises(ConfigError):
        bursty(-1.0)


def test_trace_at_and_validation():
    t = Trace(((0.0, 0.1), (1.0, 0.5), (2.5, 0.9), (4.0, 0.9)))
    assert [t.at(x) for x in (-1, 0, 0.99, 1.0, 2.0, 3.0, 99)] == [0.1, 0.1, 0.1, 0.5, 0.5, 0.9, 0.9]
    assert t.scaled(0.5).times == [0.0, 0.5, 1.25, 2.0]
    for bad in ([], [(0, 1.5)], [(1, 0.1), (1, 0.2)], [(-1, 0.1)], [("x", 0.1)]):
        with pytest.raises(ConfigError):
            Trace(tuple(bad))


def test_csv_round_trip(tmp_path):
    for trace in (bursty(20.0, 5), stable(20.0, 5), random_walk(20.0, 5)):
        path = tmp_path / f"{trace.name}.csv"
        trace.to_csv(path)
        again = Trace.from_csv(path)
        assert again == trace and again.steps == trace.steps and again.name == trace.name
    # extra columns, whitespace, blank lines and column order are fine
    path = tmp_path / "x.csv"
    path.write_text("load, note ,time\n0.5,a,0\n\n0.25,b,1.5\n")
    assert Trace.from_csv(path).steps == ((0.0, 0.5), (1.5, 0.25))


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("t,load\n0,0.5\n", r"lacks column\(s\) \['time'\]"),
    ("time\n0\n", r"lacks column\(s\) \['load'\]"),
    ("time,load\n", "no rows"),
    ("time,load\n0,abc\n", "line 2: time and load must be numbers"),
    ("time,load\n0,0.5\n1,1.5\n", "line 3: load must be in"),
    ("time,load\n0,-0.1\n", "load must be in"),
    ("time,load\n0,0.5\n2,0.5\n1,0.5\n", "line 4: time must increase"),
    ("time,load\n0,0.5\n0,0.6\n", "time must increase"),
    ("time,load\n-1,0.5\n", "time must be a finite"),
    ("time,load\nnan,0.5\n", "time must be a finite"),
    ("time,load\n0\n", "line 2: expected columns"),
])
def test_bad_csv_refused(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        Trace.from_csv(path)


def test_missing_csv_refused(tmp_path):
    with pytest.raises(InputError, match="cannot read trace"):
        Trace.from_csv(tmp_path / "nope.csv")


class FakeLoad:
    def __init__(self) -> None:
        self.shares: list[float] = []

    def set_share(self, share: float) -> None:
        self.shares.append(share)


def test_player_applies_steps_in_order_and_stops():
    trace = Trace(((0.0, 0.1), (0.02, 0.3), (0.04, 0.2), (0.06, 0.2)))
    load = FakeLoad()
    with TracePlayer(trace, load) as player:
        assert player.join(timeout_s=10)
    assert load.shares == [0.1, 0.3, 0.2, 0.2] and [s for _, s in player.applied] == load.shares
    assert player.error is None
    # stop() is prompt even in the middle of a long wait
    long = Trace(((0.0, 0.1), (3600.0, 0.9)))
    load = FakeLoad()
    player = TracePlayer(long, load, loop=True).start()
    deadline = time.monotonic() + 10
    while not load.shares:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    player.stop(timeout_s=10)
    assert not player.running and load.shares == [0.1]
    with pytest.raises(ConfigError):
        TracePlayer(long, object())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_player_drives_a_real_cpu_load_without_orphans():
    trace = Trace(((0.0, 0.05), (0.15, 0.1), (0.3, 0.0)))
    with CpuLoad(0.0, workers=1) as load:
        pids = load.pids
        assert pids and all(_alive(p) for p in pids)
        with TracePlayer(trace, load) as player:
            assert player.join(timeout_s=10)
        assert [s for _, s in player.applied] == [0.05, 0.1, 0.0]
        assert load.share == 0.0
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "CpuLoad workers outlived the load"
        time.sleep(0.02)
