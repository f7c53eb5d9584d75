"""Input transforms that let the MNIST benchmarks feed ImageNet-style networks (ResNet, VGG).

torchvision's ResNet-18 and VGG read 3-channel images whose side survives five halvings; MNIST digits are
1×28×28. :func:`to_rgb32` pads a digit to 32×32 (as LeNet-5 did) and repeats its grey channel three times, and
:func:`transform_task` applies such a transform to a whole :class:`~packnet.bench.data.Task`, optionally keeping a
random subset of its training images so that a large network trains in seconds on a CPU.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from .data import Task

__all__ = ["to_rgb32", "transform_task"]


def to_rgb32(x: Tensor, size: int = 32) -> Tensor:
    """Grey images ``(N, 1, H, W)`` → RGB images ``(N, 3, size, size)``: zero-padded around, grey copied to R, G, B.

    The image is centred (an odd margin puts the extra pixel at the bottom/right), values are unchanged, and
    the result is a new contiguous tensor.

    Args:
        x: a batch of one-channel images no larger than ``size`` on either side, e.g. MNIST's 1×28×28.
        size: the side of the output.

    Returns:
        A tensor of shape ``(N, 3, size, size)`` and ``x``'s dtype.

    Examples:
        >>> x = torch.rand(5, 1, 28, 28)
        >>> y = to_rgb32(x)
        >>> tuple(y.shape)
        (5, 3, 32, 32)
        >>> torch.equal(y[:, 2:3, 2:30, 2:30], x), float(y[:, :, 0].abs().sum())
        (True, 0.0)
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"to_rgb32 takes one-channel images (N, 1, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"images of {h}x{w} do not fit in {size}x{size}: crop or resize them first")
    top, left = (size - h) // 2, (size - w) // 2
    padded = F.pad(x, (left, size - w - left, top, size - h - top))
    return padded.expand(-1, 3, -1, -1).contiguous()


def transform_task(task: Task, transform: Callable[[Tensor], Tensor], *, train_size: Optional[int] = None,
                   seed: int = 0) -> Task:
    """A copy of ``task`` whose train and test images went through ``transform``, on a subset of its training set.

    Args:
        task: a task of :mod:`packnet.bench.data` (``split_mnist(...)[i]`` and the like).
        transform: maps a batch of images to a batch of images, e.g. :func:`to_rgb32`.
        train_size: keep this many training examples, drawn at random without replacement (``None``: all).
            The test set is always kept whole.
        seed: seeds the draw, so the same seed gives the same subset on every machine.

    Returns:
        A new :class:`~packnet.bench.data.Task` with the same id, name and classes.

    Examples:
        >>> from packnet.bench.data import split_mnist
        >>> task = transform_task(split_mnist(1)[0], to_rgb32, train_size=100)
        >>> len(task.train), len(task.test), tuple(task.train.tensors[0].shape[1:]), task.name
        (100, 200, (3, 32, 32), 'digits 0/1')
    """
    x_train, y_train = task.train.tensors
    x_test, y_test = task.test.tensors
    if train_size is not None:
        if isinstance(train_size, bool) or not isinstance(train_size, int) or not 1 <= train_size <= len(y_train):
            raise ValueError(f"train_size must be an int from 1 to {len(y_train)} (the task's training set), "
                             f"got {train_size!r}")
        keep = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed))[:train_size]
        x_train, y_train = x_train[keep], y_train[keep]
    return Task(task.task_id, task.name, TensorDataset(transform(x_train), y_train.clone()),
                TensorDataset(transform(x_test), y_test.clone()), task.classes)
