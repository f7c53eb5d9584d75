"""Small models, data and state snapshots shared by the library tests."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from packnet import PackNet, TaskHeads


def conv_bn_net(n_tasks: int = 3, classes: int = 3) -> nn.Sequential:
    """Conv → BatchNorm → ReLU → Linear → LayerNorm → heads: every kind of layer PackNet must handle."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 6 * 6, 32), nn.LayerNorm(32), nn.ReLU(),
        TaskHeads(32, classes, task_ids=range(n_tasks)),
    )


def batches(seed: int, n: int = 4, size: int = 16, classes: int = 3, shape=(1, 8, 8)) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, *shape, generator=g), torch.randint(0, classes, (size,), generator=g))
            for _ in range(n)]


OPTIMIZERS: dict[str, Callable] = {
    "sgd_momentum_wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.05),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}


def learn(pn: PackNet, t: Any, data: list, optimizer: Callable | None = None, epochs: int = 2) -> None:
    """The four steps for one task."""
    pn.train_task(t, data, epochs, optimizer=optimizer, progress=False)
    pn.prune(t)
    pn.retrain(t, data, 1, optimizer=optimizer, progress=False)
    pn.freeze(t)


def snapshot(pn: PackNet) -> dict:
    """Everything a failed call must leave unchanged."""
    return {
        "model": {k: v.detach().clone() for k, v in pn.model.state_dict().items()},
        "owner": {k: v.clone() for k, v in pn.owner.items()},
        "tasks": list(pn.tasks), "current": pn.current, "stage": pn.stage,
        "training": [m.training for m in pn.model.modules()],
        "requires_grad": [p.requires_grad for p in pn.model.parameters()],
        "shared": copy.deepcopy(pn._shared_snapshots),
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert a["tasks"] == b["tasks"] and a["current"] == b["current"] and a["stage"] == b["stage"]
    assert a["training"] == b["training"] and a["requires_grad"] == b["requires_grad"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["owner"]:
        assert torch.equal(a["owner"][k], b["owner"][k]), k
    assert a["shared"].keys() == b["shared"].keys()
