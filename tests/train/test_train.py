"""The training loop: losses, exact resume, checkpoints, phases as data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from adasr.errors import ConfigError, InputError
from adasr.train import Phase, TrainConfig, Trainer
from adasr.train.losses import SRLoss, hfen_loss, log_kernel


def _cfg(**kw) -> TrainConfig:
    base = dict(arch="fsrcnn", scale=2, train_data=("unused",), arch_args={"d": 16, "s": 8, "m": 1},
                patch=16, batch_size=4, steps=6, lr=1e-3, val_every=3, ckpt_every=3, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_resume_after_step_3_is_exact(cfg, run_dir, pairs, full) -> None:
    """Interrupt a run of `cfg` after step 3 (Ctrl-C), resume it, and check that its weights equal
    those of `full`, the same run left uninterrupted."""
    from adasr.train.loop import TrainingInterrupted

    def interrupt(kind, data):
        if kind == "step" and data["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, run_dir, train_pairs=pairs, on_event=interrupt).run()
    resumed = Trainer(cfg, run_dir, resume=True, train_pairs=pairs)
    resumed.run()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_log_kernel_is_zero_sum_and_hfen_sees_edges_not_offsets():
    assert abs(float(log_kernel().sum())) < 1e-6
    x = torch.rand(1, 3, 32, 32)
    assert float(hfen_loss(x + 0.1, x)) < 1e-5  # a flat offset has no high frequencies
    assert float(hfen_loss(x, torch.zeros_like(x))) > 1e-3
    loss = SRLoss(1.0, 0.2)(x, x + 0.1)
    assert abs(float(loss) - 0.1) < 1e-3
    with pytest.raises(ValueError):
        SRLoss(0.0, 0.0)


@pytest.mark.slow
def test_training_reduces_loss_and_writes_model(tmp_path, small_pairs):
    from adasr.modelfile import load_model

    cfg = _cfg(steps=30, val_every=30, ckpt_every=30)
    events = []
    trainer = Trainer(cfg, tmp_path / "run", train_pairs=small_pairs, val_pairs=small_pairs[:1],
                      on_event=lambda k, d: events.append((k, d)))
    state = trainer.run()
    losses = [d["loss"] for k, d in events if k == "step"]
    assert state.step == 30 and len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert state.history and state.history[-1]["psnr"] > 10
    model, spec = load_model(tmp_path / "run" / "model.safetensors")
    assert spec.arch == "fsrcnn" and spec.scale == 2 and spec.info["trained_steps"] == 30
    for k, v in model.state_dict().items():
        assert torch.equal(v, trainer.model.state_dict()[k])


@pytest.mark.slow
def test_bf16_steps_train_a_supernet_like_fp32_and_keep_float32_weights(tmp_path, small_pairs):
    from adasr.space import SearchSpace

    cfg = _cfg(arch="supernet", arch_args={"space": SearchSpace.named("tiny").to_dict()}, hfen_weight=0.0, steps=40,
               val_every=40, ckpt_every=40, lr=2e-3)
    runs = {}
    for precision in ("fp32", "bf16"):
        trainer = Trainer(replace(cfg, precision=precision), tmp_path / precision, train_pairs=small_pairs,
                          val_pairs=small_pairs[:1])
        runs[precision] = trainer.run().history[-1]["psnr"]
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    start = Trainer(replace(cfg, steps=1), tmp_path / "start", train_pairs=small_pairs,
                    val_pairs=small_pairs[:1]).run().history[-1]["psnr"]
    # bf16 keeps 8 mantissa bits: the steps' gradients differ by well under a percent, so 40 steps
    # must reach most of what fp32's reach from the same start (a broken cast reaches nothing)
    assert runs["fp32"] - start > 0.5
    assert runs["bf16"] - start > 0.8 * (runs["fp32"] - start)


@pytest.mark.parametrize("ema", [0.0, 0.9])
@pytest.mark.slow
def test_resume_after_interrupt_equals_uninterrupted(tmp_path, small_pairs, ema):
    cfg = _cfg(ema=ema)
    full = Trainer(cfg, tmp_path / "full", train_pairs=small_pairs, val_pairs=small_pairs[:1])
    full.run()

    # Interrupt after step 4 (Ctrl-C): the loop saves a checkpoint of step 4 and raises.
    class Interrupt:
        def __init__(self):
            self.trainer = None

        def __call__(self, kind, data):
            if kind == "step" and data["step"] == 4:
                raise KeyboardInterrupt

    from adasr.train.loop import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, tmp_path / "cut", train_pairs=small_pairs, val_pairs=small_pairs[:1], on_event=Interrupt()).run()
    resumed = Trainer(cfg, tmp_path / "cut", resume=True, train_pairs=small_pairs, val_pairs=small_pairs[:1])
    assert resumed.state.step == 4
    resumed.run()
    a, b = _weights(full.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if ema:
        for x, y in zip(full.ema.parameters(), resumed.ema.parameters(), strict=True):
            assert torch.equal(x, y)
    assert [h["step"] for h in resumed.state.history] == [h["step"] for h in full.state.history]


def test_resume_refuses_changed_settings_and_missing_run(tmp_path, small_pairs):
    Trainer(_cfg(steps=3), tmp_path / "run", train_pairs=small_pairs).run()
    with pytest.raises(ConfigError, match="lr"):
        Trainer(_cfg(steps=3, lr=5e-4), tmp_path / "run", resume=True, train_pairs=small_pairs)
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(_cfg(steps=3), tmp_path / "run", train_pairs=small_pairs)
    with pytest.raises(InputError, match="nothing to resume"):
        Trainer(_cfg(), tmp_path / "empty", resume=True, train_pairs=small_pairs)


def test_config_validation_and_json_roundtrip():
    cfg = _cfg(phases=(Phase("warm", steps=2), Phase("sandwich", sampling="sandwich", distill=1.0)))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.phase_at(0).name == "warm" and cfg.phase_at(2).name == "sandwich" and cfg.phase_at(99).name == "sandwich"
    assert cfg.lr_at(0) == pytest.approx(1e-3) and cfg.lr_at(5) < cfg.lr_at(1)
    with pytest.raises(ConfigError, match="scale"):
        _cfg(scale=5)
    with pytest.raises(ConfigError, match="sampling"):
        Phase(sampling="bogus")
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="precision"):
        _cfg(precision="fp16")


def test_same_seed_same_weights_different_seed_differs(tmp_path, small_pairs):
    runs = [Trainer(_cfg(steps=3, seed=s), tmp_path / f"r{i}", train_pairs=small_pairs)
            for i, s in enumerate((1, 1, 2))]
    for r in runs:
        r.run()
    w = [_weights(r.model) for r in runs]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(torch.equal(w[0][k], w[2][k]) for k in w[0])


@pytest.mark.slow
def test_supernet_sandwich_and_progressive_phases_train_and_resume(tmp_path, small_pairs):
    from adasr.space import SearchSpace
    from adasr.train.sampling import recipe, step_subnets

    space = SearchSpace.named("tiny").to_dict()
    cfg = _cfg(arch="supernet", arch_args={"space": space}, steps=6, phases=recipe("progressive", 6))
    assert [p.name for p in cfg.phases] == ["largest", "kernel", "depth", "all"]
    trainer = Trainer(cfg, tmp_path / "full", train_pairs=small_pairs, val_pairs=small_pairs[:1])
    # progressive shrinking: the kernel phase varies only the kernel
    kernel_phase = cfg.phases[1]
    subnets = step_subnets(trainer.model, kernel_phase, torch.Generator().manual_seed(0))
    largest = trainer.model.space.largest()
    assert subnets[0] == largest and len(subnets) == 4
    for s in subnets:
        assert (s.width, s.depth, s.blocks, s.upsampler) == (largest.width, largest.depth, largest.blocks,
                                                             largest.upsampler)
    assert any(s.kernel != largest.kernel for s in subnets)
    trainer.run()
    assert {"psnr", "psnr_min"} <= set(trainer.state.history[-1])

    _assert_resume_after_step_3_is_exact(cfg, tmp_path / "cut", small_pairs, trainer)


def test_warm_start_copies_matching_tensors_only(tmp_path):
    import torch

    from adasr.errors import ModelError
    from adasr.modelfile import ModelSpec, save_model
    from adasr.nn.registry import build_model
    from adasr.train.loop import warm_start

    x2 = build_model("espcn", scale=2)
    save_model(tmp_path / "x2.safetensors", x2, ModelSpec("espcn", {"scale": 2}, 2))
    x4 = build_model("espcn", scale=4)
    copied, total = warm_start(x4, tmp_path / "x2.safetensors")
    assert 0 < copied < total  # the body matches, the last (sub-pixel) layer does not
    sd2, sd4 = x2.state_dict(), x4.state_dict()
    same = [k for k in sd4 if k in sd2 and sd2[k].shape == sd4[k].shape]
    assert len(same) == copied and all(torch.equal(sd2[k], sd4[k]) for k in same)
    fsrcnn = build_model("fsrcnn", scale=2, d=8, s=4, m=1)
    save_model(tmp_path / "f.safetensors", fsrcnn, ModelSpec("fsrcnn", {"scale": 2, "d": 8, "s": 4, "m": 1}, 2))
    with pytest.raises(ModelError):
        warm_start(build_model("espcn", scale=2), tmp_path / "f.safetensors")


def test_anchored_phase_trains_only_the_largest_and_the_anchors(tmp_path):
    import json
    import random

    from adasr.space import SearchSpace
    from adasr.train.sampling import recipe, step_subnets, with_anchors

    space = SearchSpace.named("tiny")
    rng = random.Random(1)
    anchors = list(dict.fromkeys(space.sample(rng).id for _ in range(12)))[:4]
    phases = with_anchors(recipe("lite", 10), anchors)
    cfg = _cfg(arch="supernet", arch_args={"space": space.to_dict()}, steps=10, phases=phases)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # config.json round trip
    assert again.phases[0].anchors == tuple(anchors)
    from types import SimpleNamespace

    model = SimpleNamespace(space=space)  # step_subnets needs only the space
    seen = set()
    for seed in range(20):
        subnets = step_subnets(model, again.phases[0], torch.Generator().manual_seed(seed))
        assert subnets[0] == space.largest() and subnets[1].id == anchors[0]
        assert len(subnets) == 3
        seen.update(s.id for s in subnets[1:])
    assert seen <= set(anchors) and len(seen) > 2
    # the CLI reads ids from a JSON list; configs outside the space are refused with one line
    from adasr._cli.train_cmd import anchor_ids
    from adasr.train.options import from_options

    good = tmp_path / "anchors.json"
    good.write_text(json.dumps(anchors))
    assert anchor_ids(good) == anchors
    made = from_options(supernet="tiny", recipe="lite", steps=10, val="none", anchors=anchor_ids(good))
    assert made.phases[0].anchors == tuple(anchors)
    with pytest.raises(ConfigError, match="--anchors"):
        from_options(supernet="tiny", recipe="lite", steps=10, val="none",
                     anchors=[anchors[0].replace("x2-", "x4-")])
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InputError, match="--anchors"):
        anchor_ids(tmp_path / "junk.json")
    with pytest.raises(ConfigError, match="anchors need sampling"):
        Phase("p", sampling="single", anchors=("a",))


@pytest.mark.slow
def test_small_steps_update_only_the_small_subnets_and_resume_exactly(tmp_path, small_pairs):
    """Phase.small_steps: extra updates of the sandwich's sub-networks but the largest (never the
    largest itself), with their own Adam state, checkpointed so a resumed run is exact."""
    import json

    from adasr.space import SearchSpace
    from adasr.train.sampling import recipe, with_small_steps

    space = SearchSpace.named("tiny")
    phases = with_small_steps(recipe("lite", 4), 3, 8)
    assert phases[0].small_steps == 3 and phases[0].small_patch == 8
    cfg = _cfg(arch="supernet", arch_args={"space": space.to_dict()}, steps=4, ckpt_every=2, phases=phases)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.phases[0].small_steps == 3 and again.to_dict() == cfg.to_dict()

    trainer = Trainer(cfg, tmp_path / "full", train_pairs=small_pairs)
    seen: list[str] = []
    real = trainer.model.forward
    trainer.model.forward = lambda x, cfg=None, **kw: (seen.append(getattr(cfg, "id", cfg)), real(x, cfg=cfg, **kw))[1]
    before = _weights(trainer.model)
    trainer._small_update(0, phases[0], torch.Generator().manual_seed(3))
    assert seen and space.largest().id not in seen  # the extra update never runs the largest
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed  # it trains something
    trainer.model.forward = real
    plain = Trainer(_cfg(arch="supernet", arch_args={"space": space.to_dict()}, steps=4, phases=recipe("lite", 4)),
                    tmp_path / "plain", train_pairs=small_pairs)
    plain.run()
    trainer = Trainer(cfg, tmp_path / "full2", train_pairs=small_pairs)
    trainer.run()
    assert any(not torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(),
                                                   trainer.model.state_dict().values(), strict=True))

    _assert_resume_after_step_3_is_exact(cfg, tmp_path / "cut", small_pairs, trainer)
    with pytest.raises(ConfigError, match="small_steps"):
        Phase("p", sampling="single", small_steps=1)
    with pytest.raises(ConfigError, match="small_steps"):
        Phase("p", sampling="sandwich", small_steps=99)


@pytest.mark.slow
def test_small_steps_until_splits_the_phase_and_stops_the_extra_updates(tmp_path, small_pairs):
    """with_small_steps(until=S): the sandwich phase spanning step S is split there; the extra
    updates run before S and never after it, and the split is read back from the phases."""
    from adasr.space import SearchSpace
    from adasr.train.sampling import recipe, small_steps_until, with_small_steps

    lite = with_small_steps(recipe("lite", 4), 3, 8, until=2)
    assert [(p.steps, p.small_steps) for p in lite] == [(2, 3), (None, 0)]
    assert small_steps_until(lite) == 2 and small_steps_until(with_small_steps(recipe("lite", 4), 3, 8)) is None
    assert [p.anchors for p in lite] == [(), ()]
    # progressive: 10 steps of "largest" (single), then sandwich phases of 15 and 25; split at 30
    prog = with_small_steps(recipe("progressive", 100), 2, 8, until=30)
    assert [(p.name, p.steps, p.small_steps) for p in prog] == [
        ("largest", 10, 0), ("kernel", 15, 2), ("depth", 5, 2), ("depth-end", 20, 0), ("all", None, 0)]
    assert small_steps_until(prog) == 30
    late = with_small_steps(recipe("progressive", 100), 2, 8, until=1000)  # the open last phase splits at 1000
    assert [(p.name, p.steps, p.small_steps) for p in late][3:] == [("all", 950, 2), ("all-end", None, 0)]
    with pytest.raises(ConfigError, match="at least one step"):
        with_small_steps(recipe("lite", 4), 3, 8, until=0)

    space = SearchSpace.named("tiny")
    cfg = _cfg(arch="supernet", arch_args={"space": space.to_dict()}, steps=4, phases=lite)
    trainer = Trainer(cfg, tmp_path / "run", train_pairs=small_pairs)
    calls: list[int] = []
    real = trainer._small_update
    trainer._small_update = lambda step, phase, gen: (calls.append(step), real(step, phase, gen))[1]
    trainer.run()
    assert calls == [0, 0, 0, 1, 1, 1]  # three extra updates at steps 0 and 1, none at 2 and 3
