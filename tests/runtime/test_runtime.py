"""Runtime: engine switching, baselines, monitors, policies, the streaming pipeline.

Everything runs on the tiny space with 16x16 to 48x32 LR frames; timing is never asserted:
fake clocks and fake latencies drive the behaviour tests.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import numpy as np
import pytest
import torch

from adasr.errors import ConfigError
from adasr.family import Family, Level
from adasr.nn.supernet import SuperNet, subnet_cost
from adasr.package import load_package, save_package
from adasr.runtime.baseline_runners import AssembledRunner, StaticRunner
from adasr.runtime.engine import Engine, frame_to_tensor
from adasr.runtime.monitors import CpuMonitor, LatencyMonitor, Monitor, RuntimeState, StreamMonitor
from adasr.runtime.pipeline import RunStats, StreamOptions, run_stream
from adasr.runtime.policies import FixedPolicy, LookupPolicy, MultiWorkloadManager, Policy, ReactivePolicy
from adasr.space import SearchSpace, SubnetConfig
from tests.helpers import make_net

TINY = SearchSpace.named("tiny")
HW = (16, 16)



def _configs() -> list[SubnetConfig]:
    c = TINY.smallest()
    return [
        c,
        SubnetConfig(2, 8, 1, 3, ("c", "c"), True, "tc"),
        SubnetConfig(2, 16, 2, 5, ("c",), True, "bic"),
        TINY.largest(),
    ]


def _family(latency: dict[str, list[float]] | None = None, psnr: list[float] | None = None) -> Family:
    cfgs = _configs()
    psnr = psnr or [30.0, 31.0, 32.0, 33.0]
    levels = []
    for i, cfg in enumerate(cfgs):
        params, macs = subnet_cost(cfg, HW)
        lat = {name: values[i] for name, values in (latency or {}).items()}
        if not lat:
            lat = {"0.00": 1e-3 * (i + 1), "0.50": 2e-3 * (i + 1)}
        levels.append(Level(cfg, psnr[i], params, macs, lat))
    return Family(tuple(levels), 2, HW)


@pytest.fixture(scope="module")
def net() -> SuperNet:
    return make_net(TINY).eval()


@pytest.fixture(scope="module")
def family() -> Family:
    return _family()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def refs(net, family, x) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [net.extract(lv.config).eval()(x) for lv in family]


def _frames(n: int, h: int = 16, w: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# -- engine and baselines: same outputs as the extracted levels ------------------------------------------

def _check_all_pairs(runner, refs, x):
    n = len(refs)
    for a, b in itertools.permutations(range(n), 2):
        for level in (a, b):
            runner.switch(level)
            assert runner.level == level
            with torch.inference_mode():
                out = runner.process_tensor(x)
            assert out.shape == refs[level].shape
            assert (out - refs[level]).abs().max().item() <= 1e-5, (a, b, level)
    assert len(runner.switch_latencies) == 2 * n * (n - 1)
    assert all(isinstance(ns, int) and ns >= 0 for ns in runner.switch_latencies)


def test_engine_switches_match_extracted(net, family, refs, x):
    engine = Engine(net, family)
    assert engine.level == 0 and engine.resident_bytes() == engine.supernet_bytes() == net.supernet_bytes()
    _check_all_pairs(engine, refs, x)
    # the uint8 path agrees with the tensor path (up to rounding of near-half values)
    frame = _frames(1)[0]
    engine.switch(2)
    out = engine.process(frame)
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    with torch.inference_mode():
        ref = net.extract(family[2].config).eval()(frame_to_tensor(frame, channels_last=False))
    ref = ref.clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(np.float64) - ref).max() <= 1


def test_engine_switch_allocates_no_parameter_storage(net, family, x):
    engine = Engine(net, family)
    before = engine.data_ptrs()
    snapshot = {k: v.clone() for k, v in net.state_dict().items()}
    for level in [3, 0, 2, 1, 3, 3, 0]:
        engine.switch(level)
        with torch.inference_mode():
            engine.process_tensor(x)
    assert engine.data_ptrs() == before
    assert all(torch.equal(snapshot[k], v) for k, v in net.state_dict().items())
    assert net.active == family[0].config


def test_engine_refuses_bad_levels(net, family):
    engine = Engine(net, family)
    for bad in (-1, 4, 1.5, True, "1"):
        with pytest.raises(ConfigError):
            engine.switch(bad)
    with pytest.raises(ConfigError, match="family"):
        Engine(net)
    with pytest.raises(ConfigError, match="uint8"):
        engine.process(np.zeros((4, 4, 3), dtype=np.float32))


def test_assembled_runner_matches_and_holds_every_level(net, family, refs, x):
    runner = AssembledRunner(net, family)
    _check_all_pairs(runner, refs, x)
    sizes = [subnet_cost(lv.config)[0] * 4 for lv in family]
    assert runner.resident_bytes() == sum(sizes) == net.assembled_bytes(family.configs)


def test_static_runner_reloads_from_disk(net, family, refs, x):
    with StaticRunner(net, family) as runner:
        folder = runner.folder
        assert sorted(p.name for p in folder.iterdir()) == [f"level-0{i}.safetensors" for i in range(4)]
        ids_before = id(runner._model())
        _check_all_pairs(runner, refs, x)
        assert id(runner._model()) != ids_before  # a fresh model object after reloads
        assert runner.resident_bytes() == subnet_cost(family[runner.level].config)[0] * 4
    assert not folder.exists()


def test_engine_from_package(tmp_path, net, family, refs, x):
    pkg = save_package(tmp_path / "pkg", net, family)
    engine = Engine(load_package(pkg.path))
    _check_all_pairs(engine, refs, x)
    static = StaticRunner(pkg)
    try:
        static.switch(3)
        with torch.inference_mode():
            assert (static.process_tensor(x) - refs[3]).abs().max().item() <= 1e-5
    finally:
        static.close()


# -- monitors -----------------------------------------------------------------------------------------------

def test_latency_monitor_window():
    m = LatencyMonitor(window=4)
    assert m.mean is None and m.p90 is None and m.count == 0
    for v in [1.0, 2.0, 3.0, 4.0, 5.0]:
        m.record(v, level=1)
    assert m.count == 4 and m.mean == pytest.approx(3.5) and m.p90 == 5.0 and m.last == 5.0
    m.record(0.5, level=0)  # a new level starts a new window
    assert m.count == 1 and m.mean == 0.5 and m.level == 0
    with pytest.raises(ValueError):
        m.record(float("nan"))
    with pytest.raises(ConfigError):
        LatencyMonitor(window=0)


def test_cpu_monitor_and_stream_monitor():
    readings = iter([50.0, 80.0])  # first call primes
    cpu = CpuMonitor(cpu_percent=lambda: next(readings), own_percent=lambda: 60.0, cores=2)
    free, load = cpu.read()
    assert free == pytest.approx(0.2) and load == pytest.approx(0.5)  # 0.8 busy - 0.3 own
    real = CpuMonitor()  # psutil, non-blocking
    free, load = real.read()
    assert 0.0 <= free <= 1.0 and 0.0 <= load <= 1.0

    mon = StreamMonitor(LatencyMonitor(3), clock=lambda: 7.0, extra=lambda: {"battery": 0.5})
    assert isinstance(mon, Monitor)
    mon.observe(2, None, 0.04)
    mon.observe(2, 0.05, 0.04)
    s = mon.sample()
    assert s == RuntimeState(7.0, 2, 0.04, 0.05, 0.05, 1, 0.05, None, None, {"battery": 0.5})
    json.dumps(s.to_dict())


# -- policies ------------------------------------------------------------------------------------------------

def _state(level=0, period=0.1, mean=None, count=0, cpu_free=None, load=None) -> RuntimeState:
    return RuntimeState(0.0, level, period, mean, mean, count, mean, cpu_free, load)


def test_lookup_policy_algorithm_1():
    # profiled latency per resource level (load share); PSNR rises with the level
    fam = _family({"0.00": [0.01, 0.02, 0.04, 0.08], "0.50": [0.02, 0.04, 0.08, 0.16],
                   "0.90": [0.05, 0.10, 0.20, 0.40]})
    pol = LookupPolicy(fam, margin=1.0, max_step_up=None)
    assert isinstance(pol, Policy) and pol.shares == [0.0, 0.5, 0.9]
    period = 0.1
    assert pol.choose(_state(period=period, load=0.0)) == 3       # all fit: best PSNR
    assert pol.choose(_state(period=period, load=0.45)) == 2      # nearest profile 0.50: 0.08 fits, 0.16 not
    assert pol.choose(_state(period=period, load=0.8)) == 1       # 0.90 column: 0.10 <= 0.1
    assert pol.choose(_state(period=0.02, load=0.95)) == 0        # nothing fits: the fastest
    assert pol.choose(_state(period=period, cpu_free=0.55)) == 2  # load from cpu_free: 0.45 -> 0.50
    assert pol.choose(_state(period=period)) == 2                 # no reading: keeps the last column
    # the safety margin: 0.9 * 0.1 = 0.09 excludes the 0.10 level at 0.90
    assert LookupPolicy(fam, margin=0.9).choose(_state(period=period, load=0.9)) == 0
    # slow start: at most one level up per decision (down is never limited)
    slow = LookupPolicy(fam, margin=1.0)
    assert [slow.choose(_state(level=lv, period=period, load=0.0)) for lv in (0, 1, 2, 3)] == [1, 2, 3, 3]
    assert slow.choose(_state(level=3, period=0.02, load=0.95)) == 0
    # PSNR, not cost order, decides: level 2 better than 3
    fam2 = _family({"0.00": [0.01, 0.02, 0.04, 0.08]}, psnr=[30, 31, 34, 33])
    assert LookupPolicy(fam2, margin=1.0, max_step_up=None).choose(_state(period=0.1, load=0.0)) == 2
    # resource level from the measured latency of the running level
    lat = LookupPolicy(fam, resource="latency", margin=1.0)
    assert lat.choose(_state(level=3, period=period, mean=0.17, count=5)) == 2   # ~0.16: the 0.50 column
    assert lat.choose(_state(level=1, period=period, mean=0.11, count=5)) == 1   # ~0.10: the 0.90 column
    with pytest.raises(ConfigError):
        LookupPolicy(fam, resource="gpu")


def test_lookup_policy_calibrates_to_measured_latency():
    fam = _family({"0.00": [0.01, 0.02, 0.04, 0.08], "0.50": [0.02, 0.04, 0.08, 0.16]})
    pol = LookupPolicy(fam, margin=1.0, alpha=0.5, max_step_up=None)
    assert pol.choose(_state(period=0.1, load=0.0)) == 3
    # level 3 really takes 0.24 s in the pipeline (3x its table entry): k of column 0.00 rises
    for _ in range(8):
        slow = 3 * fam[pol._pending[0]].seconds("0.00")
        level = pol.choose(RuntimeState(0.0, pol._pending[0], 0.1, None, None, 0, slow, None, 0.0))
    assert 2.5 < pol.k[0] <= 3.0 and pol.k[1] == 1.0          # only the column that was measured
    assert level == 1                                          # 3 * 0.02 fits 0.1, 3 * 0.04 does not
    # a reading for another level than the one chosen (someone else switched) is ignored
    k = list(pol.k)
    pol.choose(RuntimeState(0.0, 3, 0.1, None, None, 0, 1.0, None, 0.0))
    assert pol.k == k
    # calibration off: the table alone decides
    raw = LookupPolicy(fam, margin=1.0, calibrate=False, max_step_up=None)
    for _ in range(8):
        assert raw.choose(RuntimeState(0.0, 3, 0.1, None, None, 0, 0.24, None, 0.0)) == 3


def test_auto_threads_rule():
    from adasr.runtime.pipeline import auto_threads

    assert auto_threads(_state(load=0.0), cores=4) == 4
    assert auto_threads(_state(load=0.05), cores=4) == 4
    assert auto_threads(_state(load=0.5), cores=4) == 1
    assert auto_threads(_state(), cores=4) == torch.get_num_threads()  # unknown load: unchanged
    assert auto_threads(None, cores=4) == torch.get_num_threads()


def test_reactive_policy_steps_down_then_up_with_hysteresis():
    fam = _family({"0.00": [0.01, 0.02, 0.04, 0.08]})
    pol = ReactivePolicy(fam, hysteresis=0.2, cooldown=2, min_samples=2)
    assert pol.choose(_state(level=3, period=0.05, mean=0.2, count=1)) == 3  # too few samples
    assert pol.choose(_state(level=3, period=0.05, mean=0.2, count=2)) == 2  # violation: one step
    assert pol.choose(_state(level=2, period=0.05, mean=0.2, count=2)) == 2  # cooldown
    assert pol.choose(_state(level=2, period=0.05, mean=0.2, count=2)) == 2  # cooldown
    assert pol.choose(_state(level=2, period=0.05, mean=0.1, count=2)) == 1
    for _ in range(2):
        pol.choose(_state(level=1, period=0.05, mean=0.03, count=3))
    # level 1 at 0.03: level 2 predicted 0.06 > 0.05: hold (no oscillation)
    assert pol.choose(_state(level=1, period=0.05, mean=0.03, count=3)) == 1
    # level 1 at 0.015: level 2 predicted 0.03 <= 0.8 * 0.05: step up
    assert pol.choose(_state(level=1, period=0.05, mean=0.015, count=3)) == 2
    # at the ends: nothing below 0, nothing above the top
    pol = ReactivePolicy(4, cooldown=0, min_samples=1)
    assert pol.choose(_state(level=0, period=0.01, mean=1.0, count=1)) == 0
    assert pol.choose(_state(level=3, period=1.0, mean=0.001, count=1)) == 3


def test_multi_workload_manager_with_fake_latencies():
    # A: big PSNR steps; B: small PSNR steps at the top -> B is the cheaper one to slow down
    fam_a = _family({"0.00": [0.01, 0.02, 0.04, 0.08]}, psnr=[28, 30, 32, 34])
    fam_b = _family({"0.00": [0.01, 0.02, 0.04, 0.08]}, psnr=[28, 30, 32, 32.2])
    mgr = MultiWorkloadManager([fam_a, fam_b], hysteresis=0.2, cooldown=1, min_samples=1)
    levels = [3, 3]
    # fake shared-CPU latency: each workload's latency grows with the other's level
    base = [0.01, 0.02, 0.04, 0.08]

    def latencies(lv):
        load = 1.0 + 0.5 * (base[lv[0]] + base[lv[1]]) / 0.08
        return [base[lv[0]] * load * 0.8, base[lv[1]] * load * 0.8]

    targets = [0.12, 0.06]
    history = [list(levels)]
    for _ in range(12):
        lat = latencies(levels)
        states = [_state(level=levels[i], period=targets[i], mean=lat[i], count=3) for i in range(2)]
        levels = mgr.choose_all(states)
        history.append(list(levels))
    lat = latencies(levels)
    assert all(lat[i] <= targets[i] for i in range(2)), (history, lat)
    first = mgr.decisions[0]
    assert first == (1, 3, 2)  # B stepped down first: 0.2 dB for the same seconds saved
    assert levels == [3, 2]       # A kept its best level, and nothing oscillates
    # headroom everywhere: one workload steps up
    mgr = MultiWorkloadManager([fam_a, fam_b], cooldown=0, min_samples=1)
    out = mgr.choose_all([_state(level=0, period=1.0, mean=0.01, count=1)] * 2)
    assert sorted(out) == [0, 1]
    with pytest.raises(ConfigError):
        mgr.choose_all([_state()])


# -- the pipeline --------------------------------------------------------------------------------------------

class FakeClock:
    """Time that moves only when told: by sleep() and by the fake SR work."""

    def __init__(self) -> None:
        self.t = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, dt: float) -> None:
        with self.lock:
            self.t += max(0.0, dt)


class SlowRunner:
    """Wraps a real runner; every frame "takes" `seconds[level]` on the fake clock."""

    def __init__(self, runner, clock: FakeClock, seconds: list[float]) -> None:
        self.runner, self.clock, self.seconds = runner, clock, seconds

    def __getattr__(self, name):
        return getattr(self.runner, name)

    @property
    def level(self):
        return self.runner.level

    def process(self, frame):
        out = self.runner.process(frame)
        self.clock.sleep(self.seconds[self.runner.level])
        return out


def test_stream_saturated_cpu_steps_down_to_fastest_and_stays(net, family):
    clock = FakeClock()
    engine = Engine(net, family, level=3)
    # far above the target at every level (a saturated CPU)
    runner = SlowRunner(engine, clock, [1.0, 2.0, 4.0, 8.0])
    policy = ReactivePolicy(family, cooldown=2, min_samples=2)
    monitor = StreamMonitor(LatencyMonitor(4), clock=clock)
    got = []
    opts = StreamOptions(clock=clock, sleep=clock.sleep, queue_size=2, stall_timeout_s=20, join_timeout_s=20)
    stats = run_stream(runner, _frames(24), got.append, 30.0, policy, monitor, options=opts)
    assert len(got) == 24 and all(f.shape == (32, 32, 3) for f in got)
    assert [f.index for f in stats.frames] == list(range(24))
    levels = [f.level for f in stats.frames]
    assert levels[0] == 3 and levels[-1] == 0
    first0 = levels.index(0)
    assert all(lv == 0 for lv in levels[first0:])  # stays at the fastest
    assert levels == sorted(levels, reverse=True)    # only ever steps down
    assert [(s.from_level, s.to_level) for s in stats.switches] == [(3, 2), (2, 1), (1, 0)]
    assert stats.missed == 24 and len(stats.stalls) == 24  # every frame late, every gap a freeze
    assert engine.switch_latencies == [s.ns for s in stats.switches]
    summary = json.loads(json.dumps(stats.to_dict()))["summary"]
    assert summary["frames"] == 24 and summary["switches"] == 3 and summary["psnr_mean"] < 33


def test_stream_on_time_with_pacing_counts_no_misses(net, family):
    clock = FakeClock()
    runner = SlowRunner(Engine(net, family), clock, [0.01, 0.02, 0.03, 0.04])
    opts = StreamOptions(clock=clock, sleep=clock.sleep, queue_size=1)
    stats = run_stream(runner, _frames(10), None, 20.0, FixedPolicy(1), options=opts)
    assert len(stats.frames) == 10 and stats.missed == 0 and stats.stalls == []
    assert [s.to_level for s in stats.switches] == [1]
    # paced: frame i starts at most one period ahead of its slot
    for f in stats.frames:
        assert f.deadline - f.ready_time <= 2 * 0.05 + 1e-9


def test_stream_resyncs_after_a_late_frame(net, family):
    clock = FakeClock()

    class OneSlow(SlowRunner):
        def process(self, frame):
            out = self.runner.process(frame)
            self.clock.sleep(0.3 if self.n == 3 else 0.01)
            self.n += 1
            return out

    runner = OneSlow(Engine(net, family), clock, [])
    runner.n = 0
    stats = run_stream(runner, _frames(10), None, 20.0, options=StreamOptions(clock=clock, sleep=clock.sleep,
                                                                              queue_size=1))
    assert [f.missed for f in stats.frames] == [i == 3 for i in range(10)]  # one slow frame, one miss
    assert len(stats.stalls) == 1 and stats.stalls[0].frame == 3
    late = stats.frames[3]
    assert stats.frames[4].deadline == pytest.approx(late.ready_time + 0.05)  # the clock re-anchored
    runner.n = 0
    clock.t = 0.0
    old = run_stream(runner, _frames(10), None, 20.0, options=StreamOptions(clock=clock, sleep=clock.sleep,
                                                                            queue_size=1, resync=False))
    assert old.missed > 1  # without re-anchoring the frames after it are late too


def test_stream_thread_rule_is_applied_and_restored(net, family):
    before = torch.get_num_threads()
    seen = []

    def rule(state):
        seen.append(state)
        return 1 if len(seen) % 2 else 2

    stats = run_stream(Engine(net, family), _frames(4), None, 1000.0, options=StreamOptions(threads=rule, pace=False))
    assert len(seen) == 4 and all(isinstance(s, RuntimeState) for s in seen)
    assert [f.threads for f in stats.frames] == [1, 2, 1, 2]
    assert torch.get_num_threads() == before


def test_stream_real_clip_end_to_end(net, family, data_root):
    from adasr.video import read_frames

    clip = data_root / "video" / "bikes_640x272.mp4"
    frames = (f[100:116, 200:224].copy() for f in read_frames(clip, max_frames=6))
    engine = Engine(net, family)
    got = []
    stats = engine.run_stream(frames, got.append, 30.0, ReactivePolicy(family, cooldown=1, min_samples=1),
                              options=StreamOptions(queue_size=2, pace=False))
    assert len(got) == 6 and len(stats.frames) == 6
    assert all(f.dtype == np.uint8 and f.shape == (32, 48, 3) for f in got)
    assert [f.index for f in stats.frames] == list(range(6))
    assert isinstance(stats, RunStats) and stats.wall_s > 0
    json.dumps(stats.to_dict())


def test_stream_max_frames_and_baselines(net, family):
    for runner in (AssembledRunner(net, family), StaticRunner(net, family)):
        stats = run_stream(runner, iter(_frames(50, 16, 16)), None, 1000.0, FixedPolicy(2),
                           options=StreamOptions(max_frames=5, pace=False, queue_size=1))
        assert len(stats.frames) == 5 and {f.level for f in stats.frames} == {2}
        assert len(runner.switch_latencies) == 1
        if isinstance(runner, StaticRunner):
            runner.close()


def test_stream_shuts_down_on_errors(net, family):
    engine = Engine(net, family)

    def bad_source():
        yield from _frames(3)
        raise OSError("decoder broke")

    with pytest.raises(OSError, match="decoder broke"):
        run_stream(engine, bad_source(), None, 30.0, options=StreamOptions(pace=False, queue_size=1))

    def bad_sink(frame):
        raise ValueError("disk full")

    closed = []

    def endless():  # a long source must be closed, not drained
        try:
            yield from itertools.cycle(_frames(2))
        finally:
            closed.append(True)

    with pytest.raises(ValueError, match="disk full"):
        run_stream(engine, endless(), bad_sink, 30.0, options=StreamOptions(pace=False, queue_size=1))
    assert closed == [True]

    class BadPolicy:
        def choose(self, state):
            return 99

    with pytest.raises(ConfigError, match="level"):
        run_stream(engine, endless(), None, 30.0, BadPolicy(), options=StreamOptions(pace=False))
    # a source that hangs: the SR loop gives up instead of deadlocking
    hang = threading.Event()

    def hanging():
        yield _frames(1)[0]
        hang.wait(5)
        return

    start = time.monotonic()
    with pytest.raises(TimeoutError):
        run_stream(engine, hanging(), None, 30.0, options=StreamOptions(pace=False, stall_timeout_s=0.3,
                                                                        join_timeout_s=0.1, poll_s=0.02))
    hang.set()
    assert time.monotonic() - start < 30  # bounded (generous: loaded machine)
    deadline = time.monotonic() + 10
    while any(t.name.startswith("adasr-") and t.name != "adasr-trace-player" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "stream threads left running"
        time.sleep(0.02)


def test_auto_threads_smooths_and_has_hysteresis():
    from adasr.runtime.pipeline import AutoThreads

    rule = AutoThreads(cores=4, high=0.25, low=0.1, alpha=0.5)
    assert rule(_state(load=0.0)) == 4
    assert rule(_state(load=0.4)) == 4          # one noisy reading: smoothed 0.2, below `high`
    assert rule(_state(load=0.4)) == 1          # sustained: 0.3 > 0.25
    assert rule(_state(load=0.15)) == 1         # 0.225: between low and high, keeps one thread
    assert rule(_state()) == 1                  # no reading: unchanged
    assert [rule(_state(load=0.0)) for _ in range(3)] == [1, 4, 4]  # 0.11, then 0.056 < low
    with pytest.raises(ConfigError):
        AutoThreads(high=0.1, low=0.2)
