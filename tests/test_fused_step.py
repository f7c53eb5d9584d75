"""WeightGuard.step: the fused guarded step keeps frozen entries bit-identical and equals the general path.

The general path (mask the gradients, ``optimizer.step()``, restore the frozen values) works with any
optimizer; the fused path applies weight decay itself, masks the decayed gradient and lets SGD / Adam / AdamW
step with ``weight_decay=0``, so it moves no frozen entry. These tests run both on the same start and
compare bits: frozen entries against the snapshot, and everything (weights and optimizer state) between the
two paths where the kernels are the same.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from packnet import PackNet, WeightGuard
from packnet.masks import INT_OF_SIZE

CONFIGS = {
    "SGD": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "SGD momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "SGD momentum + weight decay": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    "SGD nesterov + weight decay": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                                              weight_decay=0.05),
    "SGD dampening": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.1),
    "SGD foreach": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, foreach=True),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=0.05),
    "Adam + weight decay": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1),
    "Adam amsgrad": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1, amsgrad=True),
    "Adam foreach": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1, foreach=True),
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.5),
    "AdamW amsgrad": lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.5, amsgrad=True),
    "AdamW foreach": lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.5, foreach=True),
}
FUSED_KERNELS = {  # torch's own fused kernels: the update may round differently, frozen entries may not move
    "SGD fused": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, fused=True),
    "Adam fused": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1, fused=True),
    "AdamW fused": lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.5, fused=True),
}
SPECIAL = [-0.0, 0.0, float("inf"), float("-inf"), float("nan"), 1e30, -1e-40]  # -1e-40: a subnormal


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view(INT_OF_SIZE[t.element_size()])


def model_and_masks(dtype=torch.float32, seed=0):
    """Two layers: a partly trainable weight holding special values where frozen, a trainable bias, a frozen
    layer."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    trainable = torch.rand(5, 6) < 0.5
    with torch.no_grad():
        frozen_at = (~trainable).nonzero()
        for (i, j), v in zip(frozen_at.tolist(), SPECIAL):
            net[0].weight[i, j] = v
    return net, trainable


def specs(net, trainable):
    return [(net[0].weight, trainable), (net[0].bias, True), (net[2].weight, False), (net[2].bias, False)]


def loss_of(net, x):
    out = net[2](net[1](nn.functional.linear(x, torch.nan_to_num(net[0].weight, 0.0, 1.0, -1.0),
                                             net[0].bias)))
    return out.float().pow(2).mean()


def run(net, trainable, make, steps, fused, lr_steps=()):
    """``steps`` guarded steps; the learning rate halves before the steps listed in ``lr_steps``."""
    guard = WeightGuard.from_specs(specs(net, trainable))
    opt = make(guard.parameters())
    gen = torch.Generator().manual_seed(1)
    for s in range(steps):
        if s in lr_steps:
            for g in opt.param_groups:
                g["lr"] *= 0.5
        opt.zero_grad(set_to_none=True)
        x = torch.randn(8, 6, generator=gen).to(net[0].weight.dtype)
        loss_of(net, x).backward()
        guard.step(opt, fused=fused)
    return guard, opt


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_fused_step_is_bit_identical_to_the_general_path_and_never_moves_a_frozen_entry(name):
    a, trainable = model_and_masks()
    b = copy.deepcopy(a)
    before = copy.deepcopy(a.state_dict())
    guard, opt_a = run(a, trainable, CONFIGS[name], steps=6, fused=True, lr_steps=(3,))
    assert guard.fallback_reason(opt_a) is None
    _, opt_b = run(b, trainable, CONFIGS[name], steps=6, fused=False, lr_steps=(3,))
    w = a[0].weight
    assert torch.equal(bits(w)[~trainable], bits(before["0.weight"])[~trainable])  # NaN, -0.0, inf too
    assert torch.equal(bits(a[2].weight), bits(before["2.weight"]))
    assert not torch.equal(w[trainable], before["0.weight"][trainable])  # it did learn
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(bits(pa), bits(pb)), f"{na}: fused and general paths differ"
    for pa, pb in zip(opt_a.param_groups[0]["params"], opt_b.param_groups[0]["params"]):
        for key, va in opt_a.state[pa].items():  # the state on trainable entries is the same too
            vb = opt_b.state[pb][key]
            if va.shape == trainable.shape:
                va, vb = va[trainable], vb[trainable]
            assert torch.equal(va, vb), key
    assert opt_a.param_groups[0]["weight_decay"] == opt_b.param_groups[0]["weight_decay"]


@pytest.mark.parametrize("name", sorted(FUSED_KERNELS))
def test_torchs_fused_kernels_leave_frozen_entries_alone_and_learn_like_the_general_path(name):
    a, trainable = model_and_masks()
    b = copy.deepcopy(a)
    before = a[0].weight.detach().clone()
    guard, opt = run(a, trainable, FUSED_KERNELS[name], steps=5, fused=True)
    assert guard.fallback_reason(opt) is None
    run(b, trainable, FUSED_KERNELS[name], steps=5, fused=False)
    assert torch.equal(bits(a[0].weight)[~trainable], bits(before)[~trainable])
    torch.testing.assert_close(a[0].weight[trainable], b[0].weight[trainable], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["SGD momentum + weight decay", "AdamW", "Adam + weight decay"])
def test_every_float_width_is_bit_identical_on_both_paths(dtype, name):
    a, trainable = model_and_masks(dtype)
    b = copy.deepcopy(a)
    before = a[0].weight.detach().clone()
    make = CONFIGS[name]
    if dtype == torch.float16 and name.startswith("Adam"):  # eps=1e-8 is 0 in float16: the fallback
        guard = WeightGuard.from_specs(specs(copy.deepcopy(a), trainable))
        assert "rounds to 0" in guard.fallback_reason(make(guard.parameters()))
        make = lambda ps, make=make: type(make([nn.Parameter(torch.zeros(1))]))(  # noqa: E731
            ps, lr=0.05, weight_decay=0.1, eps=1e-3)
    run(a, trainable, make, steps=4, fused=True)
    run(b, trainable, make, steps=4, fused=False)
    assert torch.equal(bits(a[0].weight)[~trainable], bits(before)[~trainable])
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(bits(pa), bits(pb))


@pytest.mark.parametrize("make, reason", [
    (lambda ps: torch.optim.RMSprop(ps), "RMSprop is not SGD, Adam or AdamW"),
    (lambda ps: torch.optim.SGD(ps, lr=0.1, maximize=True), "maximize=True"),
    (lambda ps: torch.optim.Adam(ps, eps=0.0), "eps <= 0"),
    (lambda ps: torch.optim.Adam(ps, lr=torch.tensor(0.01)), "a tensor hyperparameter"),
    (lambda ps: torch.optim.SGD(ps, lr=float("inf")), "a non-finite hyperparameter"),
    (lambda ps: type("MyAdam", (torch.optim.Adam,), {})(ps), "MyAdam is not SGD, Adam or AdamW"),
])
def test_optimizers_the_argument_does_not_cover_take_the_general_path_and_stay_exact(make, reason):
    net, trainable = model_and_masks()
    before = net[0].weight.detach().clone()
    guard = WeightGuard.from_specs(specs(net, trainable))
    opt = make(guard.parameters())
    assert reason in guard.fallback_reason(opt)
    for _ in range(3):
        opt.zero_grad()
        loss_of(net, torch.randn(8, 6)).backward()
        guard.step(opt)
    assert torch.equal(bits(net[0].weight)[~trainable], bits(before)[~trainable])


def test_complex_parameters_and_differentiable_optimizers_take_the_general_path():
    p = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    guard = WeightGuard.from_specs([(p, torch.tensor([True, False, True]))])
    assert guard.fallback_reason(torch.optim.Adam([p])) == "a complex parameter"
    q = nn.Parameter(torch.zeros(3))
    guard = WeightGuard.from_specs([(q, torch.tensor([True, False, True]))])
    assert guard.fallback_reason(torch.optim.AdamW([q], differentiable=True)) == "differentiable=True"


def general_steps_then_fused(outside: str):
    """An AdamW that stepped without the guard's fused step (its state is non-zero on frozen entries),
    then fused steps: the guard must zero that state first, or the frozen entries would move."""
    net, trainable = model_and_masks()
    before = net[0].weight.detach().clone()
    guard = WeightGuard.from_specs(specs(net, trainable))
    opt = torch.optim.SGD(guard.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)
    other = torch.optim.SGD(guard.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)

    def general():
        opt.zero_grad()
        loss_of(net, torch.randn(8, 6)).backward()
        guard.mask_gradients(); opt.step(); guard.restore_frozen()

    def fused():
        opt.zero_grad()
        loss_of(net, torch.randn(8, 6)).backward()
        guard.step(opt)

    if outside == "before":
        general(); general()
    fused()
    if outside == "between":
        general()
    if outside == "load_state_dict":  # a state with momentum on frozen entries, loaded by hand
        other.zero_grad(); loss_of(net, torch.randn(8, 6)).backward(); guard.mask_gradients(); other.step()
        guard.restore_frozen()
        opt.load_state_dict(other.state_dict())
    fused(); fused()
    return net, trainable, before, guard, opt


@pytest.mark.parametrize("outside", ["before", "between", "load_state_dict"])
def test_an_optimizer_that_stepped_outside_the_fused_step_has_its_frozen_state_zeroed_first(outside):
    net, trainable, before, guard, opt = general_steps_then_fused(outside)
    assert torch.equal(bits(net[0].weight)[~trainable], bits(before)[~trainable])
    buf = opt.state[net[0].weight]["momentum_buffer"]
    assert not buf[~trainable].any() and buf[trainable].any()
    guard.close()
    assert not opt._optimizer_step_pre_hooks


def test_weight_decay_is_put_back_even_when_the_step_raises():
    net, trainable = model_and_masks()
    before = net[0].weight.detach().clone()
    guard = WeightGuard.from_specs(specs(net, trainable))
    opt = torch.optim.AdamW(guard.parameters(), lr=0.05, weight_decay=0.5)

    def boom(*_):
        raise KeyboardInterrupt
    handle = opt.register_step_pre_hook(boom)
    loss_of(net, torch.randn(8, 6)).backward()
    with pytest.raises(KeyboardInterrupt):
        guard.step(opt)
    assert opt.param_groups[0]["weight_decay"] == 0.5
    assert torch.equal(bits(net[0].weight)[~trainable], bits(before)[~trainable])
    handle.remove()
    guard.step(opt)
    assert torch.equal(bits(net[0].weight)[~trainable], bits(before)[~trainable])


def test_fully_frozen_parameters_handed_to_the_optimizer_are_left_alone():
    net, trainable = model_and_masks()
    before = copy.deepcopy(net.state_dict())
    guard = WeightGuard.from_specs(specs(net, trainable))
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.5)  # a hand-written loop's mistake
    loss_of(net, torch.randn(8, 6)).backward()
    guard.step(opt)
    assert torch.equal(net[2].weight, before["2.weight"]) and torch.equal(net[2].bias, before["2.bias"])


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**16), steps=st.integers(1, 4),
       lr=st.floats(1e-4, 1.0), wd=st.sampled_from([0.0, 1e-4, 0.1, 2.0]))
def test_property_no_frozen_entry_ever_moves_on_the_fused_path(name, seed, steps, lr, wd):
    net, trainable = model_and_masks(seed=seed)
    before = net[0].weight.detach().clone()
    guard = WeightGuard.from_specs(specs(net, trainable))
    opt = CONFIGS[name](guard.parameters())
    for g in opt.param_groups:
        g["lr"], g["weight_decay"] = lr, wd
    for _ in range(steps):
        opt.zero_grad()
        loss_of(net, torch.randn(8, 6)).backward()
        guard.step(opt)
        assert torch.equal(bits(net[0].weight)[~trainable], bits(before)[~trainable])


@pytest.mark.parametrize("policy", ["first_task", "per_task"])
@pytest.mark.parametrize("optimizer", [None, "adamw", "sgd_wd"])
def test_packnet_trains_bit_identically_on_both_paths(optimizer, policy):
    """Two tasks with a conv net and BatchNorm: every weight, buffer and owner map equal on both paths."""
    make = {None: None,
            "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2),
            "sgd_wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                                 weight_decay=5e-4)}[optimizer]
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 6 * 6, 3))
        pn = PackNet(net, prune_ratio=0.5, shared_policy=policy)
        pn.fused_step = fused
        gen = torch.Generator().manual_seed(0)
        for t in range(2):
            data = [(torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen))
                    for _ in range(4)]
            pn.train_task(t, data, 2, optimizer=make, progress=False)
            pn.prune(t)
            pn.retrain(t, data, 1, optimizer=make, progress=False)
            pn.freeze(t)
        results.append(pn.state_dict())
    fused_sd, general_sd = results
    for key in ("model", "owner"):
        for name, v in fused_sd[key].items():
            assert torch.equal(bits(v) if v.is_floating_point() else v,
                               bits(general_sd[key][name]) if v.is_floating_point() else general_sd[key][name]), \
                f"{key} {name}"


def test_adams_second_moments_on_frozen_entries_are_kept_at_one_and_refilled(monkeypatch):
    """0 there would be as exact (the first moment is 0) but slow: torch's CPU sqrt is several times slower
    on 0. A zero gradient decays them by beta2 per step, so they are set to 1 again every REFILL_EVERY."""
    import packnet.freezing as freezing

    monkeypatch.setattr(freezing, "REFILL_EVERY", 3)
    net, trainable = model_and_masks()
    before = net[0].weight.detach().clone()
    guard, opt = run(net, trainable, CONFIGS["AdamW amsgrad"], steps=9, fused=True)
    state = opt.state[net[0].weight]
    assert not state["exp_avg"][~trainable].any()
    beta2 = opt.param_groups[0]["betas"][1]
    v = state["exp_avg_sq"][~trainable]
    decayed = torch.ones_like(v).mul_(beta2).mul_(beta2)  # refilled after steps 1, 4 and 7, then 2 steps
    assert torch.equal(v, decayed)
    assert torch.equal(state["max_exp_avg_sq"][~trainable], torch.ones_like(v))
    assert torch.equal(bits(net[0].weight)[~trainable], bits(before)[~trainable])
