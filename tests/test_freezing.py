"""WeightGuard: frozen entries bit-identical after any torch.optim optimizer; trainable entries really learn."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from packnet import WeightGuard

OPTIMIZERS = {
    "SGD momentum + weight decay": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    "SGD nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "Adam + weight decay": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1),
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.5),
    "RMSprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5, weight_decay=0.1),
    "Adagrad": lambda ps: torch.optim.Adagrad(ps, lr=0.1, weight_decay=0.1),
    "NAdam": lambda ps: torch.optim.NAdam(ps, lr=0.05, weight_decay=0.1),
    "Adamax": lambda ps: torch.optim.Adamax(ps, lr=0.05, weight_decay=0.1),
}
if hasattr(torch.optim, "Adafactor"):  # factored second moments look at whole rows and columns
    OPTIMIZERS["Adafactor"] = lambda ps: torch.optim.Adafactor(ps, lr=0.05, weight_decay=0.1)


def layer_and_masks():
    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    trainable = torch.rand(5, 6) < 0.5
    return layer, trainable


def run_steps(layer, guard, optimizer, steps=5, protect=True):
    opt = optimizer(guard.parameters())
    for _ in range(steps):
        opt.zero_grad()
        layer(torch.randn(8, 6)).pow(2).sum().backward()
        if protect:
            guard.mask_gradients()
        opt.step()
        if protect:
            guard.restore_frozen()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_frozen_entries_are_bit_identical_after_any_optimizer(name):
    layer, trainable = layer_and_masks()
    before = copy.deepcopy(layer.state_dict())
    guard = WeightGuard.from_specs([(layer.weight, trainable), (layer.bias, False)])
    run_steps(layer, guard, OPTIMIZERS[name])
    assert torch.equal(layer.weight[~trainable], before["weight"][~trainable])
    assert torch.equal(layer.bias, before["bias"])
    assert not torch.equal(layer.weight[trainable], before["weight"][trainable])


@pytest.mark.parametrize("name", ["SGD momentum + weight decay", "AdamW", "Adam + weight decay"])
def test_masking_gradients_alone_lets_frozen_weights_drift(name):
    """Why restore_frozen exists: with weight decay, zero gradients do not mean zero updates."""
    layer, trainable = layer_and_masks()
    before = layer.weight.detach().clone()
    guard = WeightGuard.from_specs([(layer.weight, trainable), (layer.bias, True)])
    opt = OPTIMIZERS[name](guard.parameters())
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 6)).pow(2).sum().backward()
        guard.mask_gradients()
        opt.step()
    assert not torch.equal(layer.weight[~trainable], before[~trainable])


def test_protection_does_not_change_the_update_of_trainable_entries():
    """One step from the same state: restoring frozen entries leaves the trainable entries' update untouched."""
    for name in ["SGD momentum + weight decay", "AdamW"]:
        layer, trainable = layer_and_masks()
        free_only = copy.deepcopy(layer)
        guard = WeightGuard.from_specs([(layer.weight, trainable), (layer.bias, True)])
        torch.manual_seed(1)
        run_steps(layer, guard, OPTIMIZERS[name], steps=1)
        # Reference: same steps with gradients masked by hand, no restore.
        ref_guard = WeightGuard.from_specs([(free_only.weight, trainable), (free_only.bias, True)])
        torch.manual_seed(1)
        opt = OPTIMIZERS[name](ref_guard.parameters())
        for _ in range(1):
            opt.zero_grad()
            free_only(torch.randn(8, 6)).pow(2).sum().backward()
            free_only.weight.grad *= trainable
            opt.step()
        assert torch.equal(layer.weight[trainable], free_only.weight[trainable])


def test_guard_sorts_parameters_by_role():
    layer, trainable = layer_and_masks()
    other = nn.Linear(2, 2)
    guard = WeightGuard.from_specs([
        (layer.weight, trainable), (layer.bias, torch.ones(5, dtype=torch.bool)),
        (other.weight, torch.zeros(2, 2, dtype=torch.bool)), (other.bias, False)])
    assert guard.parameters() == [layer.bias, layer.weight]
    assert list(guard.frozen_parameters()) == [other.weight, other.bias]


def test_mask_shape_mismatch_is_refused():
    layer, _ = layer_and_masks()
    with pytest.raises(ValueError, match="shape"):
        WeightGuard.from_specs([(layer.weight, torch.ones(3, dtype=torch.bool))])


def test_frozen_parameters_handed_to_an_optimizer_anyway_are_restored():
    layer, trainable = layer_and_masks()
    before = layer.bias.detach().clone()
    guard = WeightGuard.from_specs([(layer.weight, trainable), (layer.bias, False)])
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.5)  # a hand-written loop's mistake
    layer(torch.randn(4, 6)).sum().backward()
    guard.mask_gradients()
    opt.step()
    guard.restore_frozen()
    assert torch.equal(layer.bias, before)


def test_masked_gradients_are_exactly_zero_even_where_they_were_inf_or_nan():
    """A NaN left in a frozen entry's gradient would poison gradient-norm clipping of the trainable ones."""
    layer, trainable = layer_and_masks()
    guard = WeightGuard.from_specs([(layer.weight, trainable)])
    layer.weight.grad = torch.full_like(layer.weight, float("nan"))
    layer.weight.grad[0, 0] = float("inf")
    guard.mask_gradients()
    frozen_grads = layer.weight.grad[~trainable]
    assert torch.equal(frozen_grads, torch.zeros_like(frozen_grads))
    assert (~torch.isfinite(layer.weight.grad[trainable])).all()  # trainable entries untouched


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_restore_is_bit_exact_for_every_float_width_including_special_values(dtype):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.tensor([1.5, -0.0, float("inf"), float("nan"), -2.0, 3.0], dtype=dtype))
    trainable = torch.tensor([True, False, False, False, True, False])
    before = p.detach().clone()
    guard = WeightGuard.from_specs([(p, trainable)])
    with torch.no_grad():
        p.add_(1.0).neg_()
    guard.restore_frozen()
    bits = {2: torch.int16, 8: torch.int64}[p.element_size()]
    assert torch.equal(p.detach()[~trainable].view(bits), before[~trainable].view(bits))  # -0.0 and NaN bits too
    assert torch.equal(p.detach()[trainable], -(before[trainable] + 1))
