"""adasr.reuse: zoo round trip and damage, gating growth, safety check, scheduler, admission/pruning,
and the controller end to end on tiny real crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adasr.errors import AdasrError, ConfigError, ModelError
from adasr.reuse.controller import Controller, ReuseConfig
from adasr.reuse.gating import FrameMemory, GatingNet, GatingSelector
from adasr.reuse.policy import Admission, Candidate, Pruner
from adasr.reuse.quality import ExpertEvaluator, check_frames
from adasr.reuse.safety import safety_check
from adasr.reuse.scheduler import InBand, OutOfBand, RetrainJob, RoundRobin, micro_config
from adasr.reuse.zoo import BaseModel, Zoo, delta_record
from adasr.stream.codec import ModelState, encode_full


@pytest.fixture(scope="module")
def base() -> BaseModel:
    return BaseModel.from_package()


@pytest.fixture(scope="module")
def scenes(data_root):
    """Three 'scenes': (LR, HR) stacks of 3 aligned 16x16 / 32x32 crops from three Set5 images."""
    from adasr.data.datasets import make_lr
    from adasr.images import read_image

    out = []
    for path in sorted((data_root / "benchmarks" / "Set5").glob("*.png"))[:3]:
        img = read_image(path).rgb
        hr = np.stack([img[y:y + 32, x:x + 32] for y, x in ((40, 40), (72, 40), (40, 72))]).copy()
        out.append((np.stack([make_lr(h, 2) for h in hr]), hr))
    return out


def _perturbed(base: BaseModel, seed: int, count: int = 500) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = base.vector.clone()
    idx = torch.randperm(base.n, generator=g)[:count]
    v[idx] += 0.01 * torch.randn(count, generator=g)
    return v


# -- zoo --

def test_zoo_round_trip_and_codec_record(tmp_path, base):
    zoo = Zoo(base)
    a = zoo.add(_perturbed(base, 1), [base.levels[3].id], {"channel": "cam-1", "window": 4, "created": 12.5})
    b = zoo.add(_perturbed(base, 2), [c.id for c in base.levels], {"channel": "cam-2", "window": 0})
    a.chosen = 3
    assert a.changed == 500 and zoo.nbytes() > 0
    zoo.save(tmp_path / "zoo")
    again = Zoo.load(tmp_path / "zoo", base)
    assert again.ids == [a.id, b.id]
    assert torch.equal(again.vector(a.id), zoo.vector(a.id))
    assert again[a.id].meta == {"channel": "cam-1", "window": 4, "created": 12.5} and again[a.id].chosen == 3
    assert again[b.id].levels == tuple(c.id for c in base.levels)
    c = again.add(_perturbed(base, 3), [base.levels[0].id])
    assert c.id not in (a.id, b.id)
    # an expert reaches a client as a stream-codec delta on top of the full base record
    spec = {"arch": "supernet", "args": {"space": base.supernet.space.to_dict()}, "scale": base.scale}
    state = ModelState.from_full(encode_full(base.supernet, spec, "float32"))
    record, after = delta_record(state.vector, zoo.vector(b.id), 0, state.base_hash)
    state.apply(record)
    assert torch.equal(state.vector, zoo.vector(b.id)) and torch.equal(after, state.vector)


def test_damaged_zoo_is_refused_with_one_line(tmp_path, base):
    zoo = Zoo(base)
    zoo.add(_perturbed(base, 1), [base.levels[3].id])
    folder = zoo.save(tmp_path / "zoo")
    tensors = next(folder.glob("experts-*.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(ModelError) as err:
        Zoo.load(folder, base)
    assert "damaged model zoo" in str(err.value) and "\n" not in str(err.value)
    zoo.save(folder)  # repaired; now mangle the JSON
    doc = json.loads((folder / "zoo.json").read_text())
    doc["experts"][0]["levels"] = ["x2-no-such-level"]
    (folder / "zoo.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="bad id or levels"):
        Zoo.load(folder, base)
    (folder / "zoo.json").write_text("{not json")
    with pytest.raises(AdasrError) as err:
        Zoo.load(folder, base)
    assert "\n" not in str(err.value)
    other = Zoo(base)
    other.save(tmp_path / "z2")
    doc = json.loads((tmp_path / "z2" / "zoo.json").read_text())
    doc["base"]["hash"] = "00" * 16
    (tmp_path / "z2" / "zoo.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="another base"):
        Zoo.load(tmp_path / "z2", base)


def test_zoo_refuses_foreign_levels_and_bad_frames(base):
    with pytest.raises(ConfigError):
        Zoo(base).add(base.vector, ["x2-d99"])
    with pytest.raises(ConfigError):
        check_frames(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 15, 16, 3), np.uint8), 2)
    with pytest.raises(ConfigError):
        check_frames(np.zeros((2, 8, 8, 3), np.float32), None, 2)


# -- gating --

def test_growing_the_head_keeps_old_outputs():
    net = GatingNet(width=8, seed=0)
    gen = torch.Generator().manual_seed(0)
    net.grow(["a", "b", "c"], gen)
    with torch.no_grad():
        net.weight.add_(torch.randn(net.weight.shape, generator=gen))
    x = torch.rand(4, 3, 24, 40, generator=gen)
    before = net(x).detach()
    net.grow(["d", "e"], gen)
    after = net(x).detach()
    assert after.shape == (4, 5) and net.ids == ["a", "b", "c", "d", "e"]
    assert torch.equal(after[:, :3], before)
    w = net.weight.detach()
    assert not torch.equal(w[3], w[4])  # drawn, not copied
    assert (w[3:] - w[:3].mean(0)).abs().mean() < 4 * w[:3].std(0).mean()  # from the old rows' spread
    net.keep(["a", "c", "e"])
    assert torch.equal(net(x).detach(), after[:, [0, 2, 4]])


@pytest.mark.slow
def test_gating_learns_which_expert_fits(base, scenes):
    """Two experts, each fine-tuned on one scene: the trained gate ranks the right one first."""
    cfg = base.levels[0]
    ev = ExpertEvaluator(base, [cfg])
    vectors = {}
    for name, (lr, hr) in zip(("x", "y"), scenes[:2]):
        job = RetrainJob(base, base.vector, lr, hr, [cfg], micro_config(eta=0.2, steps=6, batch=3, patch=16, lr=1e-3))
        for _ in range(3):
            job.train_micro()
        vectors[name] = job.vector()
    mem = FrameMemory(16)
    sel = GatingSelector(width=8, steps=150, batch=6, lr=1e-2)
    mem.add(scenes[0][0], scenes[0][1], ev, {"x": vectors["x"]}, {"x": vectors["x"]})
    mem.add(scenes[1][0], scenes[1][1], ev, vectors, {"y": vectors["y"]})
    assert len(mem) == 6 and len(mem.gains["x"]) == 6 and len(mem.gains["y"]) == 6
    table = mem.table(["x", "y"])
    assert table[:3, 0].mean() > table[:3, 1].mean() and table[3:, 1].mean() > table[3:, 0].mean()
    sel.update(mem, ["x", "y"], ["x", "y"])
    assert sel.select(scenes[0][0], 1) == ["x"] and sel.select(scenes[1][0], 1) == ["y"]


# -- safety checker --

def test_safety_check_picks_the_best_on_the_labelled_frames(base, scenes):
    lr, hr = scenes[0]
    ev = ExpertEvaluator(base, [base.levels[0]])
    job = RetrainJob(base, base.vector, lr, hr, [base.levels[0]],
                     micro_config(eta=0.2, steps=6, batch=3, patch=16, lr=1e-3))
    for _ in range(3):
        job.train_micro()
    good = job.vector()
    bad = base.vector + 0.02 * torch.randn(base.n, generator=torch.Generator().manual_seed(0))
    v = safety_check(ev, {"bad": bad, "current": base.vector.clone(), "retrained": good}, lr, hr)
    assert v.best == "retrained" and v.gain > 0
    assert v.psnr["bad"] < v.psnr["current"] == pytest.approx(v.base_psnr)
    assert v.psnr.keys() == {"bad", "current", "retrained", "base"}


# -- scheduler --

class _Toy:
    """A job whose accuracy after n micro-windows is a * (1 - exp(-n / 4))."""

    def __init__(self, a: float) -> None:
        self.a, self.n = a, 0

    def evaluate(self) -> float:
        return self.a * (1 - np.exp(-self.n / 4))

    def train_micro(self) -> None:
        self.n += 1

    def clone(self):
        c = _Toy(self.a)
        c.n = self.n
        return c


def test_inband_gives_more_micro_windows_to_the_job_that_gains_more():
    jobs = [_Toy(0.2), _Toy(2.0), _Toy(0.5)]
    alloc = InBand().run(jobs, 24)
    assert sum(alloc.micro) == 24 and alloc.order[:3] == [0, 1, 2]
    assert alloc.micro[1] > alloc.micro[2] > alloc.micro[0] >= 1
    total = sum(j.evaluate() for j in jobs)
    rr = [_Toy(0.2), _Toy(2.0), _Toy(0.5)]
    assert RoundRobin().run(rr, 24).micro == [8, 8, 8]
    assert total > sum(j.evaluate() for j in rr)
    ob = [_Toy(0.2), _Toy(2.0), _Toy(0.5)]
    a2 = OutOfBand(profile=2).run(ob, 24)
    assert a2.profile_micro == 6 and sum(a2.micro) == 18 and a2.micro[1] == max(a2.micro)
    assert [j.n for j in ob] == a2.micro  # profiling trained copies only


def test_retrain_job_improves_its_frames(base, scenes):
    lr, hr = scenes[1]
    job = RetrainJob(base, base.vector, lr, hr, [base.levels[0]],
                     micro_config(eta=0.2, steps=5, batch=3, patch=16, lr=1e-3))
    start = job.evaluate()
    InBand().run([job], 3)
    assert job.micro == 3 and job.latest() > start
    changed = int((job.vector() != base.vector).sum())
    assert 0 < changed < base.n  # a sparse delta


# -- admission and pruning --

def test_admission_queue_and_pruning():
    adm = Admission(alpha=0.1, gamma=2)
    c = Candidate(None, None, None)
    assert not adm.consider(30.05, [30.0], c)
    assert adm.consider(30.2, [30.0, 29.0], c) and not adm.ready()
    assert adm.consider(30.2, [], c) and adm.ready() and len(adm.flush()) == 2 and not adm.ready()
    pr = Pruner(eta=2, q=4)
    pr.admit("a")
    pr.admit("b")
    for chosen in ("a", None, "a", "b"):
        pr.record(chosen)
    assert pr.to_prune() == ["b"]
    pr.admit("c")  # too young to judge
    assert "c" not in pr.to_prune()
    with pytest.raises(ConfigError):
        Pruner(eta=5, q=4)


# -- controller --

@pytest.mark.slow
def test_controller_reuses_an_expert_when_a_scene_recurs(base, scenes):
    cfg = ReuseConfig(level=0, k=3, gamma=1, alpha=0.0, eta=0, selector_steps=80, sparse=0.2, steps=5,
                      batch=3, patch=16, lr=1e-3)
    ctl = Controller(cfg, base)
    for _ in range(2):  # cam-a learns scene 0, cam-b scene 1
        ctl.on_window("cam-a", *scenes[0])
        ctl.on_window("cam-b", *scenes[1])
        alloc = ctl.retrain(6)
        assert sum(alloc.micro) == 6
    ctl.on_window("cam-a", *scenes[0])
    ctl.on_window("cam-b", *scenes[1])
    ctl.retrain(2)
    st = ctl.stats()
    assert st["zoo"] >= 2 and st["admitted"] == st["zoo"]
    # a new channel sees scene 0: the zoo answers at once, before any retraining of its own
    d = ctl.on_window("cam-c", *scenes[0])
    assert d.reused and d.verdict.gain > 0 and d.chosen in d.topk
    assert ctl.zoo[d.chosen].meta["channel"] == "cam-a"
    assert ctl.current("cam-c")[0] == d.chosen
    none = Controller(ReuseConfig(level=0, reuse=False, retrain=False), base)
    assert none.on_window("cam-a", *scenes[0]).chosen == "base"
    with pytest.raises(ConfigError):
        ctl.on_window("", *scenes[0])


# -- bench and CLI --

def test_bench_plan_recurs_across_sessions_at_other_times():
    from adasr.bench.reuse import session_plan

    for sessions, slots in ((2, 3), (3, 4), (4, 2)):
        plan = session_plan(sessions, slots)
        flat = [k for row in plan for k in row]
        assert all(flat.count(k) == 2 for k in set(flat))  # every kind twice (two segments)
        where = {}
        for s, row in enumerate(plan):
            for j, k in enumerate(row):
                where.setdefault(k, []).append((s, j))
        assert all(a[0] != b[0] and a[1] != b[1] for a, b in where.values())  # other session, other time


def test_bench_plan_recurs_as_often_as_asked():
    """--recur N: every kind N times; where there are sessions enough, every two appearances of a kind in
    other sessions at other times; with two sessions, at least at other times."""
    from adasr.bench.reuse import session_plan

    for sessions, slots, recur, sessions_differ in ((3, 4, 3, True), (4, 4, 4, True), (3, 6, 3, True),
                                                     (2, 6, 3, False), (2, 6, 2, True)):
        plan = session_plan(sessions, slots, recur)
        flat = [k for row in plan for k in row]
        assert len(set(flat)) == sessions * slots // recur and all(flat.count(k) == recur for k in set(flat))
        where = {}
        for s, row in enumerate(plan):
            for j, k in enumerate(row):
                where.setdefault(k, []).append((s, j))
        pairs = [(a, b) for v in where.values() for i, a in enumerate(v) for b in v[i + 1:]]
        assert all(a[1] != b[1] and (a[0] != b[0] or not sessions_differ) for a, b in pairs), (sessions, slots, plan)


def test_bench_windows_carry_codec_lr_when_asked():
    """--degradation: a window's LR frames went through the codec as one moving clip (not the clean
    bicubic LR), HR untouched; the same frames are labelled and held out either way."""
    from adasr.bench.reuse import ReuseBenchConfig, _windows_of

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
    frames = np.stack([np.roll(base, 2 * i, axis=1)[:, :64] for i in range(12)])  # a pan, 64x48 HR
    clean = ReuseBenchConfig(sessions=2, windows=1, scene_windows=1, schemes=("none",))
    coded = ReuseBenchConfig(sessions=2, windows=1, scene_windows=1, schemes=("none",),
                             degradation="h264:crf=40,kernel=bicubic")
    (a,), (b,) = _windows_of("clip", "x", frames, clean, 2), _windows_of("clip", "x", frames, coded, 2)
    assert a.lr.shape == b.lr.shape == (3, 24, 32, 3) and np.array_equal(a.hr, b.hr)
    diff = np.abs(a.lr.astype(int) - b.lr.astype(int)).mean()
    assert diff > 2  # CRF 40 on noise: far from the clean LR


@pytest.mark.slow
def test_bench_reuse_refuses_bad_options(monkeypatch, capsys, tmp_path):
    from tests.cli.test_cli import run_cli

    for args, word in ((["--sessions", "1"], "--sessions"), (["--schemes", "recl,magic"], "magic"),
                       (["--windows", "5", "--scene-windows", "2"], "multiple"), (["--lr-size", "9x9"], "lr-size"),
                       (["--eta", "30", "--q", "4"], "eta"), (["--degradation", "h264:crf=23-33"], "one setting"),
                       (["--degradation", "h266:crf=28"], "degradation")):
        code, _, err = run_cli(monkeypatch, capsys, "bench", "reuse", "--out", tmp_path / "o", *args)
        assert code != 0 and "Traceback" not in err and err.strip().count("\n") == 0, err
        assert word in err, (word, err)
    assert not (tmp_path / "o" / "reuse.json").exists()
