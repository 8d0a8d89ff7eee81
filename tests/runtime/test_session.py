"""The pipeline's option records and the playback session (load trace, monitor, writer)."""

from __future__ import annotations

import dataclasses

import pytest

from adasr.errors import ConfigError
from adasr.runtime.engine import Engine
from adasr.runtime.pipeline import FrameRecord, RunStats, StreamOptions, run_stream
from adasr.runtime.session import PlaybackSession
from adasr.runtime.traces import load_trace
from tests.bench.test_bench_adaptivity import _load_children
from tests.runtime.test_runtime import FakeClock, SlowRunner, _family, _frames
from tests.runtime.test_runtime import net as net  # noqa: F401 - the module fixture


class Writer:
    """A context manager that records what reached it and how it was closed."""

    def __init__(self) -> None:
        self.frames: list = []
        self.closed_with: list = []

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.closed_with.append(exc_type)

    def write(self, frame) -> None:
        self.frames.append(frame)


def test_stream_options_are_frozen_validated_records(net):  # noqa: F811
    opts = StreamOptions(queue_size=2, pace=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.queue_size = 3  # type: ignore[misc]
    for bad in ({"queue_size": 0}, {"max_frames": -1}, {"poll_s": 0.0}, {"stall_periods": float("nan")}):
        with pytest.raises(ConfigError):
            StreamOptions(**bad)
    engine = Engine(net, _family())
    stats = run_stream(engine, _frames(6), None, 1000.0, options=dataclasses.replace(opts, max_frames=3))
    assert isinstance(stats, RunStats) and len(stats.frames) == 3
    assert opts.max_frames is None  # the record itself is unchanged
    with pytest.raises(TypeError, match="no_such_option"):
        run_stream(engine, _frames(2), None, 1000.0, no_such_option=1)  # options are a record, not keywords
    with pytest.raises(ConfigError):
        run_stream(engine, _frames(2), None, 1000.0, options={"pace": False})
    # the engine's method reaches the same pipeline
    again = engine.run_stream(_frames(4), None, 1000.0, None, None, opts)
    assert [type(f) for f in again.frames] == [FrameRecord] * 4


def test_session_commits_the_writer_on_success_and_aborts_it_on_error(net):  # noqa: F811
    family = _family()
    clock = FakeClock()
    runner = SlowRunner(Engine(net, family), clock, [0.001] * len(family))
    writer = Writer()
    with PlaybackSession(target_fps=50.0, level=runner.level, open_writer=lambda: writer) as session:
        assert session.monitor is not None and session.writer is writer
        stats = session.run(runner, _frames(5), writer.write, None, StreamOptions(clock=clock, sleep=clock.sleep))
    assert len(stats.frames) == 5 and len(writer.frames) == 5 and writer.closed_with == [None]
    assert session.load_offset_s == 0.0 and session.applied == []  # no trace: no load

    broken = Writer()

    def fail(record, state):
        if record.index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with PlaybackSession(target_fps=50.0, level=0, open_writer=lambda: broken) as session:
            session.run(runner, _frames(5), broken.write, None, StreamOptions(clock=clock, sleep=clock.sleep,
                                                                             on_frame=fail))
    assert broken.closed_with == [KeyboardInterrupt]

    early = Writer()
    with pytest.raises(RuntimeError):
        with PlaybackSession(target_fps=50.0, level=0, open_writer=lambda: early) as session:
            session.commit_writer()  # what decoded so far stays
            raise RuntimeError("damaged source")
    assert early.closed_with == [None] and session.writer is None


@pytest.mark.slow
def test_session_replays_the_trace_and_always_stops_the_load(net):  # noqa: F811
    trace = load_trace("stable", 1.0)
    engine = Engine(net, _family())
    with PlaybackSession(target_fps=200.0, level=0, trace=trace, load_workers=1) as session:
        assert _load_children()  # the load runs while the session is open
        stats = session.run(engine, _frames(4), None, None, options=StreamOptions(pace=False))
        session.stop_load()
        assert not _load_children()
        session.stop_load()  # idempotent
    assert len(stats.frames) == 4 and session.load_offset_s >= 0.0
    assert session.applied and session.applied[0][1] == trace.steps[0][1] and session.trace_error is None
    with pytest.raises(ValueError):
        with PlaybackSession(target_fps=200.0, level=0, trace=trace, load_workers=1):
            raise ValueError("the block failed")
    assert not _load_children()
