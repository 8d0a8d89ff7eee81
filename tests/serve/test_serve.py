"""adasr.serve without the network: ASR / ATR controllers, the buffer, the trainer on a fake
clock, the schedulers, and a channel's segments."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch

from adasr.errors import ConfigError
from adasr.serve.adaptive import SamplingRate, TrainingRate, phi_score
from adasr.serve.config import ASRConfig, ATRConfig, TrainerConfig
from adasr.serve.scheduler import GainDriven, RoundRobin, make_scheduler
from adasr.serve.trainer import ChannelTrainer, Sample, SampleBuffer
from adasr.stream.codec import DeltaError, ModelState


def tiny_model():
    from adasr.nn.registry import build_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("espcn", scale=2, f1=8, f2=4)
    return model, {"arch": "espcn", "args": {"scale": 2, "f1": 8, "f2": 4}, "scale": 2}


def frames(data_root, n=24):
    """n real 64x64 HR frames of bikes and their 32x32 area-downsampled LR frames."""
    from adasr.serve.media import LiveSource, downsample

    src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(64, 64), max_frames=n)
    hr = list(src.frames())
    return [downsample(f, 2) for f in hr], hr


def test_phi_score_is_the_mse_between_labels():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 51, np.uint8)
    assert phi_score(a, a) == 0.0
    assert phi_score(b, a, step=1) == pytest.approx(0.04)


def test_asr_follows_eq_4_1_and_stays_in_range():
    cfg = ASRConfig(enabled=True, r_min=0.5, r_max=5.0, r_init=2.0, eta_r=100.0, phi_target=0.004, delta_t=2.0)
    asr = SamplingRate(cfg)
    asr.update(0.0)
    asr.observe(0.006)
    asr.observe(0.008)  # mean 0.007: r += 100 * 0.003
    assert asr.update(1.0) == 2.0  # delta_t has not passed: no decision
    assert asr.update(2.0) == pytest.approx(2.3)
    for t in range(3, 40):  # a static scene: phi far below target, r falls to r_min and stays there
        asr.observe(0.0)
        asr.update(2.0 * t)
    assert asr.rate == 0.5
    for t in range(40, 80):  # a scene changing fast: r rises to r_max, no further
        asr.observe(1.0)
        asr.update(2.0 * t)
    assert asr.rate == 5.0
    off = SamplingRate(ASRConfig(enabled=False, r_init=2.0))
    off.update(0.0)
    off.observe(1.0)
    assert off.update(10.0) == 2.0


def test_asr_spaces_samples_one_over_r_apart():
    asr = SamplingRate(ASRConfig(r_init=2.0))
    taken = [t / 25 for t in range(50) if asr.due(t / 25)]
    assert len(taken) == 4 and np.allclose(np.diff(taken), 0.52, atol=0.05)  # 1/2 s, on 25 fps frame times


def test_atr_follows_eq_b_1():
    atr = TrainingRate(ATRConfig(enabled=True, gamma_0=1.25, gamma_1=1.75, delta=1.0, tau_min=2.0, tau_max=5.0,
                                 delta_t=2.0), t_update=2.0)
    assert atr.update(0.0, 1.0) == 3.0  # r < gamma_0: slowdown, + Delta
    assert atr.update(1.0, 1.0) == 3.0  # not yet delta_t later
    assert atr.update(2.0, 1.5) == 4.0  # between the thresholds: still in slowdown
    assert atr.update(4.0, 1.0) == 5.0
    assert atr.update(6.0, 1.0) == 5.0  # bounded by tau_max
    assert atr.update(8.0, 1.8) == 2.0 and not atr.slowdown  # r > gamma_1: back to tau_min at once
    assert TrainingRate(ATRConfig(enabled=False), t_update=3.0).update(0.0, 0.1) == 3.0


def test_config_refuses_bad_values():
    with pytest.raises(ConfigError):
        TrainerConfig(scheme="magic")
    with pytest.raises(ConfigError):
        TrainerConfig(eta=1.5)
    with pytest.raises(ConfigError):
        ASRConfig(r_min=2.0, r_init=1.0)
    with pytest.raises(ConfigError):
        ATRConfig(gamma_0=2.0, gamma_1=1.0)


def test_buffer_keeps_the_horizon():
    buf = SampleBuffer(horizon=4.0, max_items=3)
    z = np.zeros((2, 2, 3), np.uint8)
    for t in (0.0, 1.0, 2.0, 3.0):
        buf.add(Sample(t, z, z))
    assert len(buf) == 3  # bounded count
    assert [s.t for s in buf.window(5.5)] == [2.0, 3.0]  # the last 4 s


def _trainer(scheme="ams", **kw):
    model, spec = tiny_model()
    cfg = TrainerConfig(scheme=scheme, t_update=0.4, k=3, batch=2, patch=12, eta=0.05, **kw)
    return ChannelTrainer(model, spec, None, cfg, scale=2)


@pytest.mark.slow
def test_ams_trainer_on_a_fake_clock_makes_sparse_updates_the_client_can_follow(data_root):
    lr, hr = frames(data_root)
    tr = _trainer("ams")
    client = ModelState.from_full(tr.init_record)
    made = []
    for i, (a, b) in enumerate(zip(lr, hr)):
        t = i / 25
        tr.offer(t, a, b)
        if tr.due(t):
            made.append(tr.train(t))
    assert [round(u.t, 2) for u in made] == [0.4, 0.8]  # every T_update of video time
    n = client.vector.numel()
    for u in made:
        assert 0 < u.changed <= round(0.05 * n) + 1 and u.steps == 3
        client.apply(u.record)
    assert client.hash == tr.state.hash  # the client holds the trainer's model bit for bit
    with pytest.raises(DeltaError):  # replaying an update is refused: out of order
        client.apply(made[0].record)
    assert client.hash == tr.state.hash


@pytest.mark.slow
def test_schemes_none_one_time_and_jit(data_root):
    lr, hr = frames(data_root, 16)
    none, once = _trainer("none"), _trainer("one_time", one_time_s=0.3)
    jit = _trainer("jit", jit_gain_db=0.05, jit_chunk=2, jit_max_steps=4)
    for i, (a, b) in enumerate(zip(lr, hr)):
        t = i / 25
        for tr in (none, once, jit):
            tr.offer(t, a, b)
            if tr.due(t):
                tr.train(t)
    assert none.updates == [] and len(none.buffer) == 0
    assert len(once.updates) == 1 and once.updates[0].changed > 0.5 * once.state.vector.numel()  # every parameter
    assert 1 <= len(jit.updates) and all(u.samples == 1 and u.steps <= 4 for u in jit.updates)


def test_asr_in_the_trainer_slows_sampling_on_a_static_scene(data_root):
    lr, hr = frames(data_root, 2)
    cfg = ASRConfig(enabled=True, delta_t=0.2)
    model, spec = tiny_model()
    tr = ChannelTrainer(model, spec, None, TrainerConfig(asr=cfg, k=1, batch=1, patch=8), scale=2)
    for i in range(100):  # the same frame for 4 s: phi = 0
        tr.offer(i / 25, lr[0], hr[0])
    assert tr.sampling_rate == cfg.r_min


def test_round_robin_takes_turns():
    rr = RoundRobin()
    assert [rr.pick(["a", "b", "c"]) for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.pick(["c"]) == "c" and rr.pick([]) is None
    rr = RoundRobin()
    assert rr.pick(["a"]) == "a" and rr.pick(["a", "b"]) == "b"  # a channel that becomes due gets its turn


def test_gain_driven_gives_time_to_the_channel_that_gains_most():
    g = GainDriven(starve_after=3)
    assert g.pick(["a", "b"]) == "a"  # unknown channels go first
    g.record("a", 1.0, 0.1)
    assert g.pick(["a", "b"]) == "b"
    g.record("b", 1.0, 0.5)
    picks = [g.pick(["a", "b"]) for _ in range(4)]
    assert picks == ["b", "b", "a", "b"]  # b gains 5x more per second; a, passed over 3 times, is served
    assert make_scheduler("gain").name == "gain"
    with pytest.raises(ConfigError):
        make_scheduler("fifo")


@pytest.mark.slow
def test_channel_segments_play_on_their_own(data_root):
    from adasr.serve.channel import Channel, ChannelConfig, GivenModel, Hub
    from adasr.serve.media import LiveSource

    model, spec = tiny_model()
    src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(64, 64), max_frames=12)
    ch = Channel("bikes", src, TrainerConfig(t_update=0.2, k=2, batch=2, patch=12),
                 model_source=GivenModel(model, spec), config=ChannelConfig(segment_s=0.2))
    hub = Hub([ch])
    for i in range(20):  # a fake clock: 25 frames a second
        hub.step(now=i / 25)
    m = ch.manifest()
    assert ch.ended and [s["frames"] for s in m["segments"]] == [5, 5, 2]
    assert m["lr_width"] == 32 and m["scale"] == 2 and m["codec"] == "h264" and m["container"] == "mpegts"
    for s in m["segments"]:  # each segment alone is a complete MPEG-TS stream
        with av.open(io.BytesIO(ch.segment(s["index"]).data), format="mpegts") as c:
            got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(got) == s["frames"] and got[0].shape == (32, 32, 3)
    assert len(m["updates"]) == len(ch.trainer.updates) >= 1
    assert all(u["from_segment"] >= 1 for u in m["updates"])  # an update applies from the next segment on


def test_a_held_channel_trains_on_a_segment_before_its_clients_get_it(data_root):
    """hold=2: a segment is published two segments after it was encoded, so an update trained on
    its frames reaches the clients before it does and applies from it on."""
    from adasr.serve.channel import Channel, ChannelConfig, GivenModel, Hub
    from adasr.serve.media import LiveSource

    model, spec = tiny_model()
    src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(64, 64), max_frames=20)
    ch = Channel("bikes", src, TrainerConfig(t_update=0.2, k=2, batch=2, patch=12),
                 model_source=GivenModel(model, spec), config=ChannelConfig(segment_s=0.2, hold=2))
    encoded, published = [], []
    ch.on_segment.append(lambda _c, seg, *_: encoded.append(seg.index))
    ch.on_publish.append(lambda c, seg, *_: published.append((seg.index, len(encoded), c.live_edge)))
    hub = Hub([ch])
    edges = []
    for i in range(30):  # a fake clock: 25 frames a second
        hub.step(now=i / 25)
        edges.append((len(encoded), ch.live_edge))
    assert ch.ended and encoded == [0, 1, 2, 3] and [p[0] for p in published] == [0, 1, 2, 3]
    # while the source plays, segment i is published when segment i + 2 is encoded; at its end, the rest at once
    assert published[:2] == [(0, 3, 0), (1, 4, 1)] and published[2:] == [(2, 4, 2), (3, 4, 3)]
    assert all(edge == max(-1, n - 3) for n, edge in edges if n < 4)
    m = ch.manifest()
    assert [s["index"] for s in m["segments"]] == [0, 1, 2, 3]
    # an update made after segment 1 was encoded (trained on its frames), before it was published, applies from it
    assert any(u["from_segment"] == 1 for u in m["updates"]), m["updates"]
    with pytest.raises(ConfigError, match="hold"):
        ChannelConfig(hold=31)


def test_a_scene_cut_resets_the_buffer_and_base_sends_the_clients_back(data_root):
    lr, hr = frames(data_root, 6)
    other_hr = [255 - f for f in hr]  # a different shot: far above cut_phi from the frames before it
    other_lr = [255 - f for f in lr]
    for on_cut in ("keep", "reset", "base"):
        tr = _trainer("ams", on_cut=on_cut)
        client = ModelState.from_full(tr.init_record)
        for i in range(3):  # one still shot, then a cut
            tr.offer(i / 2, lr[0], hr[0])  # 2 fps: every frame is sampled
        first = tr.train(1.0)
        client.apply(first.record)
        assert first is not None and client.hash != client.base_hash
        tr.offer(1.5, other_lr[0], other_hr[0])
        assert tr.cuts == (0 if on_cut == "keep" else 1)
        assert len(tr.buffer) == (4 if on_cut == "keep" else 1)  # reset / base: the new shot alone
        update = tr.train(2.0)
        client.apply(update.record)
        if on_cut == "base":  # first the clients' model goes back to the generic base, then training resumes
            assert update.steps == 0 and client.vector.equal(tr.base_vector()) and tr.due(2.0)
            client.apply(tr.train(2.0).record)
        assert client.hash == tr.state.hash


def test_trainer_config_refuses_an_unknown_cut_rule():
    with pytest.raises(ConfigError, match="on_cut"):
        TrainerConfig(on_cut="forget")
    with pytest.raises(ConfigError):
        TrainerConfig(cut_phi=float("nan"))
