"""Channel trainers as Ray actors (`adasr serve --ray`): a local Ray of 2 CPUs on this machine,
two channels' trainers in actors, clients on loopback receiving their updates; the bad address's
one-line error. One Ray start for the module; every wait is bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from adasr.errors import ConfigError, InputError
from adasr.serve.channel import Channel, ChannelConfig, GivenModel, Hub
from adasr.serve.client import LiveClient
from adasr.serve.media import LiveSource
from adasr.serve.server import LiveServer
from adasr.serve.trainer import ChannelTrainer
from adasr.stream.codec import ModelState
from tests.cli.test_cli import run_cli

from .test_serve import frames, tiny_model
from .test_serve_http import TRAIN, get, hash_after

ray = pytest.importorskip("ray")  # the extra adasr[cluster]; requirements.txt installs it

from adasr.serve.ray_trainer import RaySession, RayTrainer, RayTrainerFactory, parse_address  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    session = RaySession("auto", num_cpus=2, local="start").start()
    try:
        yield session
    finally:
        session.close()
    assert not ray.is_initialized()


@pytest.mark.integration
def test_importing_the_live_server_does_not_import_ray():
    code = ("import sys, adasr.serve, adasr.serve.server, adasr.serve.ray_trainer, adasr._cli.serve_cmd; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr


@pytest.mark.cluster
def test_addresses_and_the_unreachable_head_are_one_line_errors():
    assert parse_address("auto") is None and parse_address("10.0.0.1:6379") == ("10.0.0.1", 6379)
    for bad in ("6379", "host:", "host:0", "host:70000", "a b:1", "ray://h:1"):
        with pytest.raises(ConfigError):
            parse_address(bad)
    with pytest.raises(InputError, match=r"cannot reach the Ray head at 127\.0\.0\.1:1 within 1 s") as exc:
        RaySession("127.0.0.1:1", connect_timeout_s=1.0).start()
    assert "\n" not in str(exc.value) and not ray.is_initialized()


@pytest.mark.cluster
def test_serve_with_an_unreachable_ray_head_fails_in_one_line(monkeypatch, capsys, data_root):
    code, out, err = run_cli(monkeypatch, capsys, "serve", data_root / "video/bikes_640x272.mp4", "--port", "0",
                             "--crop", "64x64", "--seconds", "2", "--ray", "127.0.0.1:1")
    assert code == 2 and "cannot reach the Ray head at 127.0.0.1:1" in err and "Traceback" not in err, err
    code, out, err = run_cli(monkeypatch, capsys, "serve", data_root / "video/bikes_640x272.mp4", "--port", "0",
                             "--ray", "nowhere")
    assert code == 5 and "--ray takes auto or HOST:PORT" in err, err


@pytest.mark.cluster
def test_an_actor_trains_the_same_bits_as_one_process(local_ray, data_root):
    lr, hr = frames(data_root, 12)
    model, spec = tiny_model()
    here = ChannelTrainer(model, spec, None, TRAIN, scale=2)
    there = RayTrainer(model, spec, None, TRAIN, scale=2)
    try:
        assert there.init_record == here.init_record
        for i in range(12):
            here.offer(i / 25, lr[i], hr[i])
            there.offer(i / 25, lr[i], hr[i])
        there.wait(120)
        assert there.ready(None) and there.actor_pid not in (None, os.getpid())
        # the node this process started is on loopback only (Ray would move it to the machine's
        # routable address otherwise): every node Ray knows of, and where its GCS listens
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        t = 0.44
        assert here.due(t) and there.due(t)
        ours = here.train(t)
        assert there.train(t) is None and there.busy  # started on the actor; taken up when ready
        there.wait(120)
        theirs = there.train(t)
        assert theirs is not None and not there.busy
        assert theirs.record == ours.record and theirs.index == 0 and theirs.changed == ours.changed > 0
        assert there.state.hash == here.state.hash != ModelState.from_full(there.init_record).hash
        assert there.train_cpu_s > 0 and there.samples_seen == here.samples_seen > 0
    finally:
        there.close()


@pytest.mark.cluster
def test_two_channels_train_in_actors_and_the_clients_get_their_updates(local_ray, data_root):
    factory = RayTrainerFactory()
    channels = []
    for i, name in enumerate(("a", "b")):
        src = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(64, 64), max_frames=50 + 5 * i)
        channels.append(Channel(name, src, TRAIN, model_source=GivenModel(*tiny_model()), trainer_factory=factory,
                                config=ChannelConfig(segment_s=0.2)))
    results: dict[str, object] = {}
    try:
        assert all(ch.trainer.ready(None) for ch in channels)  # both actors started at once, bounded wait
        pids = {ch.trainer.actor_pid for ch in channels}
        assert len(pids) == 2 and os.getpid() not in pids  # two actors, neither is this process
        with LiveServer(Hub(channels), duration_s=120) as srv:
            def watch(name: str) -> None:
                client = LiveClient(f"{srv.url}/channel/{name}", reconnect_s=20, buffer_segments=8, duration_s=120)
                results[name] = (client, client.run(policy="fixed"))

            threads = [threading.Thread(target=watch, args=(ch.name,), daemon=True) for ch in channels]
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            assert srv.wait(120) and srv.worker_error is None  # sources ended, the last phases taken up
            for ch in channels:
                # a client of the channel over HTTP: the first record, then every update the server lists
                m = json.loads(get(f"{srv.url}/channel/{ch.name}")[1])
                state = ModelState.from_full(get(f"{srv.url}/channel/{ch.name}/model/init")[1])
                base = state.hash
                assert m["n_updates"] == len(ch.trainer.updates) >= 2, (ch.name, m["n_updates"])
                for u in range(m["n_updates"]):
                    state.apply(get(f"{srv.url}/channel/{ch.name}/model/{u}.bin")[1])  # decodes and chains
                assert state.hash == ch.trainer.state.hash != base  # the actor's training changed the model
                assert ch.status(0.0)["updates"] == m["n_updates"] and ch.trainer.train_cpu_s > 0
        for ch in channels:
            client, result = results[ch.name]
            s = result.stats
            assert s.refused == 0 and result.summary["frames"] == ch.source.max_frames, (ch.name, s)
            # the live client holds the server's model after the updates it took while playing
            assert client.swap.state.hash == hash_after(ch, s.updates_applied)
    finally:
        factory.close()
