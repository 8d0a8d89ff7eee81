"""Model reuse on the live server (adasr.reuse.live): a scene change is answered from the zoo and
the expert reaches the clients as an update; the gating network survives a restart; a damaged
zoo folder is refused with one line. Tiny model, 64x64 crops, loopback only, bounded loops."""

from __future__ import annotations

import copy
import json
import time
import urllib.request

import numpy as np
import pytest
import torch

from adasr.errors import AdasrError, ModelError
from adasr.reuse.controller import Controller, ReuseConfig
from adasr.reuse.gating import GATE_JSON, GatingSelector
from adasr.reuse.live import LiveReuse, LiveReuseConfig, histogram, histogram_distance
from adasr.reuse.quality import ExpertEvaluator, to_tensor
from adasr.reuse.zoo import BaseModel, Zoo
from adasr.serve.channel import Channel, ChannelConfig, GivenModel, Hub
from adasr.serve.config import TrainerConfig
from adasr.serve.media import LiveSource, downsample
from adasr.serve.server import LiveServer
from adasr.stream.adapt import AdaptConfig, PatchSampler, SparseAdapter
from adasr.stream.codec import ModelState
from tests.serve.test_serve import tiny_model

N = 10  # frames per scene
SKIP = 0  # frames skipped at the start of each clip


class TwoScenes:
    """A live source of two scenes back to back (bikes, then megamind's fade-in): one hard cut."""

    def __init__(self, data_root, fps: float = 10.0) -> None:
        a = LiveSource(data_root / "video" / "bikes_640x272.mp4", scale=2, crop_hw=(64, 64), max_frames=N + SKIP)
        b = LiveSource(data_root / "video" / "megamind_720x528.avi", scale=2, crop_hw=(64, 64), max_frames=N + SKIP)
        self.hr = list(a.frames())[SKIP:] + list(b.frames())[SKIP:]
        self.scale, self.fps, self.width, self.height = 2, fps, a.width, a.height

    def cut_threshold(self, every: int) -> float:
        """Halfway between the largest histogram step within a scene and the cut, for samples of
        every `every`-th frame (64x64 crops move a lot; the default threshold is for larger ones)."""
        h = [histogram(f) for f in self.hr[::every]]
        steps = [histogram_distance(h[i], h[i - 1]) for i in range(1, len(h))]
        cut = steps.pop(N // every - 1)
        assert cut > max(steps) + 0.2, (cut, steps)  # the premise: the cut stands out
        return (cut + max(steps)) / 2

    def frames(self):
        yield from self.hr


def _expert(model, hr: list[np.ndarray], steps: int = 150) -> torch.Tensor:
    """The tiny model trained on one scene's frames (every weight, a few Adam steps)."""
    m = copy.deepcopy(model)
    for p in m.parameters():  # the channel's base model is frozen; its copy learns
        p.requires_grad_(True)
    lr = np.stack([downsample(f, 2) for f in hr])
    cfg = AdaptConfig(eta=1.0, strategy="full", steps=steps, batch=4, patch=16, lr=3e-3, seed=0)
    ad = SparseAdapter(m, cfg)
    ad.adapt(PatchSampler(lr, np.stack(hr), 2, 16, 4, torch.device("cpu")), 0)
    return ad.vector().detach().clone()


def _channel(src, scheme: str = "ams") -> Channel:
    train = TrainerConfig(scheme=scheme, t_update=0.4, k=2, batch=2, patch=12)
    return Channel("cam", src, train, model_source=GivenModel(*tiny_model()), config=ChannelConfig(segment_s=0.2))


def _base(ch: Channel) -> BaseModel:
    return BaseModel.from_model(ch.trainer.base, None, 2, "tiny")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory, data_root):
    """A zoo of two experts, one per scene, each the best of the two on its own scene."""
    src = TwoScenes(data_root)
    ch = _channel(src)
    base = _base(ch)
    vx, vy = _expert(ch.trainer.base, src.hr[:N]), _expert(ch.trainer.base, src.hr[N:])
    ev = ExpertEvaluator(base, [None])
    for scene, own, other in ((src.hr[:N], vx, vy), (src.hr[N:], vy, vx)):
        x = to_tensor(np.stack([downsample(f, 2) for f in scene]))
        y = to_tensor(np.stack(scene))
        # the premise of the test: each expert is the better one on its own scene
        assert float(ev.psnr(own, x, y).mean()) > float(ev.psnr(other, x, y).mean()) + 0.3
    zoo = Zoo(base)
    zoo.add(vx, ["model"], {"channel": "prep", "window": 0}, expert_id="bikes")
    zoo.add(vy, ["model"], {"channel": "prep", "window": 1}, expert_id="megamind")
    folder = tmp_path_factory.mktemp("zoo") / "zoo"
    Controller(ReuseConfig(retrain=False), base, zoo).save(folder)
    return folder


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


@pytest.mark.integration
def test_scene_change_is_answered_from_the_zoo_and_sent_to_clients(data_root, zoo_dir, tmp_path):
    import shutil

    folder = tmp_path / "zoo"
    shutil.copytree(zoo_dir, folder)
    src = TwoScenes(data_root)
    ch = _channel(src)
    hub = Hub([ch])
    reuse = LiveReuse.attach(hub, folder, LiveReuseConfig(cut=src.cut_threshold(2), window=5, rate=5.0))
    sent: list[tuple[int, bytes]] = []  # (update index, model hash after it) of each reuse update
    ch.on_update.append(lambda c, u: sent.append((u.index, c.trainer.state.hash)) if u.steps == 0 else None)
    with LiveServer(hub, train=False) as srv:  # HTTP only: the test drives the hub on a fake clock
        t0 = time.monotonic()
        for i in range(2 * N + 5):  # one frame (10 fps) and one training turn per step
            hub.step(t0 + 0.1 * i)
        assert ch.ended
        status = json.loads(_get(f"{srv.url}/status"))
        page = _get(f"{srv.url}/").decode()
    r = status["reuse"]
    print(json.dumps(r))  # shown when an assertion below fails
    assert r["zoo"] >= 2 and r["selections"] == 2 and r["reuses"] == 2 and r["reuse_rate"] == 1.0
    assert r["channels"]["cam"]["expert"] == "megamind" and r["channels"]["cam"]["scene_changes"] == 2
    assert status["channels"][0]["expert"] == "megamind"
    assert 'id="reuse"' in page and "megamind" in page and "reuse rate 100%" in page
    # both experts went to the clients through the update path: a client replaying the updates
    # holds exactly the megamind expert right after the second reuse update
    assert len(sent) == 2
    state = ModelState.from_full(ch.init_record)
    for i in range(sent[-1][0] + 1):
        state.apply(ch.update(i))
    assert state.hash == sent[-1][1]
    # the expert up to float32 rounding of (expert - current) + current
    assert torch.allclose(state.vector, reuse.ctl.zoo.vector("megamind"), rtol=0, atol=1e-6)
    reuse.close()
    again = Zoo.load(folder, _base(ch))
    assert again["megamind"].chosen == 1 and again["bikes"].chosen == 1


def test_damaged_zoo_folder_is_refused_with_one_line(data_root, zoo_dir, tmp_path):
    import shutil

    ch = _channel(TwoScenes(data_root), scheme="none")
    bad = tmp_path / "bad"
    shutil.copytree(zoo_dir, bad)
    tensors = next(bad.glob("experts-*.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        LiveReuse.attach(Hub([ch]), bad)
    assert "\n" not in str(exc.value) and "checksum" in str(exc.value)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a zoo")
    with pytest.raises(AdasrError) as exc:
        LiveReuse.attach(Hub([ch]), other)
    assert "not a model zoo" in str(exc.value)
    gate = tmp_path / "gate"
    shutil.copytree(zoo_dir, gate)
    doc = json.loads((gate / GATE_JSON).read_text())
    doc["ids"] = doc["ids"] + ["ghost"]  # one output more than the weights hold
    (gate / GATE_JSON).write_text(json.dumps(doc))
    with pytest.raises(ModelError) as exc:
        LiveReuse.attach(Hub([ch]), gate)
    assert "\n" not in str(exc.value) and "gating network" in str(exc.value)


def test_gating_weights_round_trip(tmp_path):
    sel = GatingSelector(width=8, seed=3)
    sel.net.grow(["e00000", "e00001", "e00002"], torch.Generator().manual_seed(1))
    with torch.no_grad():
        sel.net.weight.add_(0.5)
    sel.updates = 4
    sel.save(tmp_path)
    again = GatingSelector(width=8, seed=99)
    assert again.load(tmp_path) and again.net.ids == sel.net.ids and again.updates == 4
    x = torch.rand(2, 3, 48, 80)
    assert torch.equal(again.net(x), sel.net.eval()(x))
    assert not GatingSelector().load(tmp_path / "empty")  # nothing saved: a fresh gate stays


def test_controller_reopens_zoo_with_its_trained_gate(tmp_path, data_root):
    ch = _channel(TwoScenes(data_root), scheme="none")
    base = _base(ch)
    ctl = Controller(ReuseConfig(retrain=False, selector_steps=20), base)
    src = TwoScenes(data_root)
    for i, scene in enumerate((src.hr[:N], src.hr[N:])):
        hr = np.stack(scene[:4])
        lr = np.stack([downsample(f, 2) for f in hr])
        vec = _expert(ch.trainer.base, list(hr), steps=20)
        assert ctl.judge(f"ch{i}", vec, lr, hr)  # far better than the random base: promising
        ctl.maintain()
    assert len(ctl.zoo) == 2 and ctl.selector.updates >= 1
    ctl.save(tmp_path / "z")
    lr = np.stack([downsample(f, 2) for f in src.hr[N:N + 3]])
    again = Controller.open(tmp_path / "z", ReuseConfig(retrain=False), base)
    assert again.selector.scores(lr) == pytest.approx(ctl.selector.scores(lr), abs=0)
    assert again.zoo.ids == ctl.zoo.ids
    empty = Controller.open(tmp_path / "new", ReuseConfig(retrain=False), base)
    assert len(empty.zoo) == 0


def test_reuse_hook_leaves_a_hub_without_it_unchanged(data_root):
    """Without attach the hub has no hooks: the serve behaviour stays exactly what it was."""
    ch = _channel(TwoScenes(data_root), scheme="none")
    hub = Hub([ch])
    assert hub.before_train == [] and hub.on_status == [] and ch.on_segment == []
    assert "reuse" not in hub.status()
    t = time.monotonic()
    hub.step(t + 0.5)
    assert ch.trainer.updates == []


@pytest.mark.integration
def test_serve_zoo_cli_runs_saves_and_refuses_bad_zoos(monkeypatch, capsys, data_root, tmp_path):
    from tests.cli.test_cli import run_cli

    bikes = data_root / "video" / "bikes_640x272.mp4"
    folder = tmp_path / "zoo"
    code, out, err = run_cli(monkeypatch, capsys, "serve", bikes, "--port", "0", "--crop", "64x64", "--seconds",
                             "2", "--segment-s", "0.2", "--k", "1", "--quiet", "--zoo", folder)
    assert code == 0, err
    assert "model zoo" in out and "scene changes answered from the zoo" in out
    assert (folder / "zoo.json").is_file()  # saved when the server stopped
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zoo.json").write_text("{not json")
    for args, message in (([bad], "zoo"), ([tmp_path / "zoo", "--zoo-cut", "0"], "--zoo-cut must be"),
                          ([tmp_path / "zoo", "--zoo-k", "0"], "--zoo-k must be"),
                          ([tmp_path / "zoo", "--ray", "auto"], "cannot be combined")):
        code, out, err = run_cli(monkeypatch, capsys, "serve", bikes, "--port", "0", "--zoo", *args)
        assert code != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
