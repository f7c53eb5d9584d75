"""Small reference networks for the MNIST benchmarks: an MLP and a CNN, each with per-task heads.

Both end in a :class:`~packnet.TaskHeads`, as in the paper's setting where each task has its own classifier
on top of the shared, pruned trunk.
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence

from torch import nn

from packnet.heads import TaskHeads

__all__ = ["mlp", "small_cnn"]


def _head(width: int, classes_per_task: int, task_ids: Iterable[Hashable], shared_head: bool) -> nn.Module:
    return nn.Linear(width, classes_per_task) if shared_head else TaskHeads(width, classes_per_task, task_ids=task_ids)


def mlp(task_ids: Iterable[Hashable], classes_per_task: int, hidden: Sequence[int] = (256, 256),
        in_features: int = 28 * 28, shared_head: bool = False) -> nn.Sequential:
    """A fully connected trunk (``Flatten`` → ``Linear`` + ``ReLU`` per hidden width) with one head per task.

    Args:
        task_ids: ids of the tasks to create heads for.
        classes_per_task: width of every head.
        hidden: widths of the hidden layers.
        in_features: input size after flattening (``math.prod(task.input_shape)``; MNIST's 784 by default).
        shared_head: one ``Linear`` output layer for all tasks instead of :class:`~packnet.TaskHeads` (it is
            then an ordinary prunable layer under PackNet).

    Examples:
        >>> mlp(range(5), 2)[-1].heads["4"]
        Linear(in_features=256, out_features=2, bias=True)
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(_head(width, classes_per_task, task_ids, shared_head))
    return nn.Sequential(*layers)


def small_cnn(task_ids: Iterable[Hashable], classes_per_task: int, channels: Sequence[int] = (16, 32),
              hidden: int = 128, shared_head: bool = False,
              input_shape: Sequence[int] = (1, 28, 28)) -> nn.Sequential:
    """A CNN for ``C×H×W`` images (MNIST's 1×28×28 by default): (``Conv2d`` 3×3 → ``BatchNorm2d`` → ``ReLU``
    → ``MaxPool2d``) per width, then ``Linear`` → ``ReLU`` and one head per task.

    Args:
        task_ids: ids of the tasks to create heads for.
        classes_per_task: width of every head.
        channels: output channels of the convolution blocks.
        hidden: width of the fully connected layer.
        shared_head: one ``Linear`` output layer for all tasks instead of :class:`~packnet.TaskHeads`.
        input_shape: ``(channels, height, width)`` of one input, e.g. a task's
            :attr:`~packnet.bench.data.Task.input_shape`.

    Examples:
        >>> import torch
        >>> net = small_cnn(range(2), 2); net[-1].active = 0
        >>> net(torch.zeros(3, 1, 28, 28)).shape
        torch.Size([3, 2])
        >>> rgb = small_cnn(range(2), 5, input_shape=(3, 32, 32)); rgb[-1].active = 1
        >>> rgb(torch.zeros(3, 3, 32, 32)).shape
        torch.Size([3, 5])
    """
    c_in, height, width = input_shape
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, height, width = c, height // 2, width // 2
    layers += [nn.Flatten(), nn.Linear(c_in * height * width, hidden), nn.ReLU(),
               _head(hidden, classes_per_task, task_ids, shared_head)]
    return nn.Sequential(*layers)
