"""The supernet: extraction equals routing, atomic switching, analytic cost, sharing, threads."""

from __future__ import annotations

import copy
import random
import threading
import time

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from adasr.errors import ConfigError
from adasr.nn.blocks import all_tokens, block_type
from adasr.nn.cost import count_macs, count_params
from adasr.nn.registry import build_model
from adasr.nn.supernet import SubNet, SuperNet, op_keys, shared_ops, subnet_cost
from adasr.space import UPSAMPLERS, SearchSpace, SubnetConfig
from tests.helpers import make_net

TINY = SearchSpace.named("tiny")





@pytest.fixture(scope="module")
def net() -> SuperNet:
    return make_net()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def C(text: str) -> SubnetConfig:
    return SubnetConfig.from_id(text)


class OpRecorder(TorchFunctionMode):
    """Records every torch function / tensor method called from Python while active: any
    allocation (torch.empty, clone, ...), view (indexing) or math."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.ops.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def measured_macs(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(mod, inputs, out):
        nonlocal total
        per = x.shape[0]
        if isinstance(mod, nn.ConvTranspose2d):
            kh, kw = mod.kernel_size
            total += inputs[0].numel() // per * (mod.out_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out.numel() // per * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += out.numel() // per * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


# -- extraction ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_extract_equals_supernet_for_50_random_configs(net, x):
    rng = random.Random(0)
    cfgs = [TINY.sample(rng) for _ in range(50)]
    assert {t for c in cfgs for t in c.blocks} == set(all_tokens())  # every block type and op
    assert {c.upsampler for c in cfgs} == set(UPSAMPLERS)
    assert {c.kernel for c in cfgs} == set(TINY.kernels) and {c.skip for c in cfgs} == {True, False}
    param_ptrs = {p.data_ptr() for p in net.parameters()}
    with torch.no_grad():
        for c in cfgs:
            y = net(x, cfg=c)
            sub = net.extract(c)
            assert isinstance(sub, SubNet) and sub.config == c
            leaves = [m for m in sub.modules() if not list(m.children())]
            assert all(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in leaves)
            assert not param_ptrs & {p.data_ptr() for p in sub.parameters()}  # cloned, not views
            assert y.shape == (2, 3, 32, 32)
            assert (sub(x) - y).abs().max().item() <= 1e-5, c.id


@pytest.mark.parametrize("scale", [3, 4])
def test_other_scales(scale):
    space = SearchSpace.named("tiny", scale=scale)
    net = make_net(space)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for up in UPSAMPLERS:
            c = space.largest().replace(upsampler=up)
            y = net(x, cfg=c)
            assert y.shape == (1, 3, 16 * scale, 16 * scale)
            assert (net.extract(c)(x) - y).abs().max().item() <= 1e-5


def test_no_batch_norm(net):
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


# -- cost ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "x2-d1-w8-e1-k3-s1-b:m.c1-up:tc",
    "x2-d3-w16-e2-k5-s1-b:c,c,c-up:bic",
    "x2-d3-w16-e1-k3-s0-b:i+esa,i+cca,i-up:ps",
    "x2-d3-w8-e2-k5-s1-b:m.s7,m.d5,m.c5-up:tc",
    "x2-d2-w16-e2-k3-s1-b:r,m.s3-up:bic",
])
@pytest.mark.parametrize("hw", [(16, 16), (16, 24)])
def test_cost_equals_measured(net, text, hw):
    c = C(text)
    sub = net.extract(c)
    params, macs = net.cost(c, lr_hw=hw)
    assert params == sum(p.numel() for p in sub.parameters())
    assert macs == measured_macs(sub, torch.rand(1, 3, *hw))
    assert (params, macs) == (count_params(sub), count_macs(sub, hw))  # the project's counter agrees
    assert (params, macs) == subnet_cost(c, hw)


def test_memory_accounting(net):
    cfgs = [TINY.smallest(), TINY.largest(), C("x2-d2-w16-e1-k3-s1-b:i+esa,m.s5-up:ps")]
    sizes = [sum(p.numel() * p.element_size() for p in net.extract(c).parameters()) for c in cfgs]
    assert net.assembled_bytes(cfgs) == sum(sizes)
    assert net.supernet_bytes() == sum(p.numel() * 4 for p in net.parameters())
    assert net.supernet_bytes() > max(sizes)


# -- switching -----------------------------------------------------------------------------------

def test_set_active_runs_no_tensor_op_and_is_a_reference_swap(x):
    net = make_net()
    a, b = C("x2-d3-w16-e2-k5-s1-b:i+esa,c,m.s7-up:bic"), C("x2-d1-w8-e1-k3-s0-b:m.d3-up:tc")
    ptrs = [p.data_ptr() for p in net.parameters()]
    with OpRecorder() as fresh:
        net.set_active(a)  # not cached yet: routing is built
    with OpRecorder() as cached:
        net.set_active(b)
        net.set_active(a)
    assert fresh.ops == [] and cached.ops == []
    assert [p.data_ptr() for p in net.parameters()] == ptrs
    with OpRecorder() as check:  # the detector does see tensor work, even a mere view
        net.head.weight[:4]
    assert check.ops

    assert net.active == a and net.routing is net._routing_cache[a.id]
    ra = net.routing
    net.set_active(b)
    assert net.routing is not ra and net.routing.config == b
    builds = []
    original = net._build_routing
    net._build_routing = lambda cfg: builds.append(cfg) or original(cfg)
    net.set_active(a)
    assert net.routing is ra and builds == []  # switching back: a cache hit, no rebuild
    net.set_active(C("x2-d2-w8-e1-k3-s1-b:r,r-up:ps"))
    assert len(builds) == 1
    del net._build_routing


def test_set_active_refuses_configs_outside_the_space(net):
    before = net.routing
    with pytest.raises(ConfigError, match="width"):
        net.set_active(C("x2-d1-w12-e1-k3-s1-b:r-up:ps"))
    with pytest.raises(ConfigError, match="scale"):
        net.set_active(C("x3-d1-w8-e1-k3-s1-b:r-up:ps"))
    assert net.routing is before


def test_forward_with_cfg_leaves_active_alone(net, x):
    a, b = TINY.smallest(), TINY.largest()
    net.set_active(a)
    cache = dict(net._routing_cache)
    with torch.no_grad():
        yb = net(x, cfg=b)
        assert net.active == a and dict(net._routing_cache) == cache
        net.set_active(b)
        assert torch.equal(net(x), yb)
        assert torch.equal(net(x, cfg=b.id), yb)


def test_routing_cache_is_bounded():
    net = make_net()
    rng = random.Random(5)
    for _ in range(net.cache_size + 20):
        net.set_active(TINY.sample(rng))
    assert len(net._routing_cache) <= net.cache_size


def test_switch_during_a_forward_does_not_affect_it(x, monkeypatch):
    net = make_net()
    a = C("x2-d3-w16-e1-k3-s1-b:r,i+esa,c-up:bic")
    b = C("x2-d1-w8-e2-k5-s0-b:m.s5-up:tc")
    net.set_active(a)
    residual = block_type("r")
    original = residual.forward

    def switching_forward(*args, **kwargs):  # the first block switches the net mid-forward
        net.set_active(b)
        return original(*args, **kwargs)

    monkeypatch.setattr(residual, "forward", switching_forward)
    with torch.no_grad():
        y = net(x)
        assert net.active == b
        assert (y - net.extract(a)(x)).abs().max().item() <= 1e-5  # finished on a's routing
        assert (net(x) - net.extract(b)(x)).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_thread_switching_gives_consistent_outputs(x):
    net = make_net()
    a = C("x2-d3-w16-e2-k5-s1-b:i+esa,c,m.s7-up:bic")
    b = C("x2-d2-w8-e1-k3-s1-b:r,m.d3-up:ps")
    with torch.no_grad():
        refs = [net.extract(c)(x) for c in (a, b)]
    net.set_active(a)
    outputs: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with torch.no_grad():
                for _ in range(60):
                    outputs.append(net(x))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    switches = 0
    while thread.is_alive():
        net.set_active(b if switches % 2 == 0 else a)
        switches += 1
        time.sleep(1e-4)  # switch often, but leave the worker the interpreter (a busy spin starves it)
    thread.join()
    assert not errors and len(outputs) == 60 and switches > 10
    for y in outputs:
        assert any(torch.allclose(y, r, atol=1e-5) for r in refs)


# -- sharing -------------------------------------------------------------------------------------

def test_shared_ops_properties():
    rng = random.Random(3)
    for _ in range(30):
        a, b = TINY.sample(rng), TINY.sample(rng)
        n = shared_ops(a, a)
        assert n == len(op_keys(a)) > 0
        assert shared_ops(a, b) == shared_ops(b, a) <= min(n, len(op_keys(b)))
    base = C("x2-d2-w16-e1-k3-s1-b:r,i+esa-up:ps")
    deeper = C("x2-d3-w16-e1-k3-s1-b:r,i+esa,m.c3-up:ps")
    assert shared_ops(base, deeper) == len(op_keys(base))  # a shallower prefix: all shared
    assert shared_ops(base, base.replace(upsampler="bic")) == len(op_keys(base)) - 1
    assert shared_ops(base, base.replace(width=8)) == 0  # every op has another shape
    # RCAB = residual + CA: the residual block's ops are all RCAB's; the mixed block's 3x3 conv
    # is the residual block's first conv at expansion 1.
    r, c, m3 = (C(f"x2-d1-w16-e1-k3-s1-b:{t}-up:ps") for t in ("r", "c", "m.c3"))
    assert shared_ops(r, c) == len(op_keys(r))
    assert shared_ops(r, m3) == len(op_keys(r)) - 1
    assert ("body", 0, "conv_a", 16, 16, 3) in op_keys(r) & op_keys(m3)


def test_gradients_reach_shared_weights_from_two_configs(x):
    net = make_net()
    a = C("x2-d1-w16-e1-k3-s1-b:r-up:ps")      # conv_a at kernel 3: transform of the 5x5 bank
    b = C("x2-d1-w16-e1-k3-s1-b:i+cca-up:bic")  # same conv_a slice, different block and upsampler
    conv_a = net.body[0]["conv_a"]
    params = dict(net.named_parameters())

    def grads(*cfgs):
        net.zero_grad(set_to_none=True)
        sum(net(x, cfg=c).square().mean() for c in cfgs).backward()
        return {k: None if p.grad is None else p.grad.clone() for k, p in params.items()}

    ga, gb, gab = grads(a), grads(b), grads(a, b)
    for g in (ga, gb):
        assert g["body.0.conv_a.weight"][:16, :16].abs().sum() > 0
        assert g["body.0.conv_a.transforms.k3"].abs().sum() > 0  # kernel transforms are trained
        assert g["head.weight"][:16].abs().sum() > 0
    assert ga["body.0.conv_a.weight"][16:].abs().sum() == 0  # outside the slice: untouched
    assert ga["up.bic.weight"] is None and gb["up.ps.weight"] is None
    torch.testing.assert_close(gab["body.0.conv_a.weight"], ga["body.0.conv_a.weight"] + gb["body.0.conv_a.weight"])
    assert conv_a.weight.shape[-1] == 5


# -- building, copying, persistence ----------------------------------------------------------------

def test_model_file_round_trip(tmp_path, x):
    from adasr.modelfile import ModelSpec, load_model, save_model

    net = make_net()
    path = tmp_path / "supernet.safetensors"
    save_model(path, net, ModelSpec("supernet", {"space": TINY.to_dict(), "scale": 2}, 2))
    loaded, spec = load_model(path)
    c = C("x2-d3-w8-e2-k3-s1-b:i+esa,m.d5,c-up:bic")
    with torch.no_grad():
        assert isinstance(loaded, SuperNet) and loaded.space == TINY
        assert torch.equal(loaded(x, cfg=c), net(x, cfg=c))


def test_registry_builders_and_state_dict(x):
    net = make_net()
    rebuilt = build_model("supernet", space=TINY.to_dict(), scale=2)
    assert isinstance(rebuilt, SuperNet) and rebuilt.space == TINY
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    c = C("x2-d2-w16-e2-k5-s0-b:m.s5,i+esa-up:tc")
    with torch.no_grad():
        assert torch.equal(rebuilt(x, cfg=c), net(x, cfg=c))
    assert build_model("supernet", space="tiny").space == TINY
    with pytest.raises(ConfigError, match="scale"):
        build_model("supernet", space=TINY.to_dict(), scale=4)
    sub = build_model("subnet", config=c.id, scale=2)
    sub.load_state_dict(net.extract(c).state_dict(), strict=True)
    with torch.no_grad():
        assert (sub(x) - net(x, cfg=c)).abs().max().item() <= 1e-5
    assert not hasattr(sub, "space")  # a static model is not mistaken for a supernet


def test_deepcopy_routes_to_the_copy(x):
    net = make_net()
    c = C("x2-d2-w16-e2-k5-s1-b:c,i+cca-up:ps")
    net.set_active(c)
    twin = copy.deepcopy(net)
    assert twin.active == c
    assert all(p.op is not q.op for p, q in zip((twin.routing.head, twin.routing.tail),
                                                (net.routing.head, net.routing.tail)))
    with torch.no_grad():
        assert torch.equal(twin(x), net(x))
        for p in twin.parameters():
            p.mul_(0.5)
        assert not torch.equal(twin(x), net(x))


def test_base_spaces_build():
    for name in ("base-x2", "base-x4"):
        net = SuperNet(SearchSpace.named(name))
        small, large = net.space.smallest(), net.space.largest()
        assert subnet_cost(small)[1] < subnet_cost(large)[1]
        assert net.supernet_bytes() >= net.assembled_bytes([large])


def test_trimmed_supernet_computes_the_same_with_fewer_weights():
    from adasr.nn.elastic import ElasticConv2d
    from adasr.nn.supernet import trim_supernet

    space = SearchSpace.named("tiny")
    net = make_net(space, seed=3).eval()
    cfgs = [SubnetConfig(2, 8, 1, 3, ("m.s3",), True, "bic"), SubnetConfig(2, 16, 2, 5, ("c", "m.s3"), True, "ps"),
            SubnetConfig(2, 16, 2, 3, ("r", "m.s3", "c"), False, "bic")]
    trimmed = trim_supernet(net, cfgs)
    assert trimmed.supernet_bytes() < net.supernet_bytes()
    assert set(trimmed.space.blocks) == {"c", "m.s3", "r"} and set(trimmed.space.upsamplers) == {"ps", "bic"}
    old = dict(net.named_modules())
    shrunk = [n for n, m in trimmed.named_modules()
              if isinstance(m, ElasticConv2d) and m.kernels[-1] < old[n].kernels[-1]]
    assert shrunk  # the separable ops lost their 7x7 storage: the effective 3x3 kernel is stored
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for cfg in cfgs:
            net.set_active(cfg)
            trimmed.set_active(cfg)
            assert torch.allclose(net(x), trimmed(x), atol=1e-6), cfg.id
    with pytest.raises(ConfigError):
        trimmed.set_active(SubnetConfig(2, 8, 1, 3, ("i+esa",), True, "bic"))  # a dropped block type


@pytest.mark.slow
def test_trimming_random_families_keeps_outputs():
    from adasr.nn.supernet import trim_supernet

    space = SearchSpace.named("tiny")
    net = make_net(space, seed=5).eval()
    x = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    for seed in range(6):
        rng = random.Random(seed)
        cfgs = [space.sample(rng) for _ in range(3)]
        trimmed = trim_supernet(net, cfgs)
        with torch.inference_mode():
            for cfg in cfgs:
                net.set_active(cfg)
                trimmed.set_active(cfg)
                assert torch.allclose(net(x), trimmed(x), atol=1e-5), (seed, cfg.id)
