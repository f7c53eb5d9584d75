"""packnet.bench.transforms: MNIST digits as 3×32×32 inputs for ImageNet-style networks, and per-task subsets."""

from __future__ import annotations

import pytest
import torch

from packnet.bench.data import Task, split_mnist
from packnet.bench.transforms import to_rgb32, transform_task


@pytest.fixture(scope="module")
def task() -> Task:
    return split_mnist(1)[0]


def test_to_rgb32_centres_the_digit_and_copies_it_to_three_channels():
    x = torch.rand(4, 1, 28, 28)
    y = to_rgb32(x)
    assert y.shape == (4, 3, 32, 32) and y.dtype == x.dtype and y.is_contiguous()
    for c in range(3):
        assert torch.equal(y[:, c:c + 1, 2:30, 2:30], x)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.count_nonzero(y[:, :, border]) == 0


def test_to_rgb32_puts_the_odd_pixel_of_margin_bottom_right():
    y = to_rgb32(torch.ones(1, 1, 29, 30), size=32)
    assert torch.equal(y[0, 0].sum(1) > 0, torch.arange(32).ge(1) & torch.arange(32).lt(30))  # rows 1..29
    assert torch.equal(y[0, 0].sum(0) > 0, torch.arange(32).ge(1) & torch.arange(32).lt(31))  # cols 1..30


def test_to_rgb32_output_does_not_alias_the_input():
    x = torch.zeros(2, 1, 32, 32)
    y = to_rgb32(x)
    y.fill_(1.0)
    assert torch.count_nonzero(x) == 0


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (28, 28), (2, 1, 33, 28)])
def test_to_rgb32_rejects_images_it_cannot_convert(shape):
    with pytest.raises(ValueError):
        to_rgb32(torch.zeros(shape))


def test_transform_task_keeps_identity_and_the_whole_test_set(task):
    small = transform_task(task, to_rgb32, train_size=64, seed=3)
    assert (small.task_id, small.name, small.classes) == (task.task_id, task.name, task.classes)
    assert len(small.train) == 64 and len(small.test) == len(task.test)
    assert torch.equal(small.test.tensors[0], to_rgb32(task.test.tensors[0]))
    assert torch.equal(small.test.tensors[1], task.test.tensors[1])


def test_transform_task_subset_keeps_images_with_their_labels(task):
    small = transform_task(task, to_rgb32, train_size=50, seed=1)
    originals = {x.numpy().tobytes(): int(y) for x, y in zip(*task.train.tensors)}
    for x, y in zip(*small.train.tensors):
        assert originals[x[:1, 2:30, 2:30].contiguous().numpy().tobytes()] == int(y)
    assert len({x.numpy().tobytes() for x in small.train.tensors[0]}) == 50  # drawn without replacement


def test_transform_task_subset_is_seeded(task):
    a = transform_task(task, to_rgb32, train_size=40, seed=0)
    b = transform_task(task, to_rgb32, train_size=40, seed=0)
    c = transform_task(task, to_rgb32, train_size=40, seed=1)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_transform_task_without_train_size_keeps_every_example_in_order(task):
    full = transform_task(task, to_rgb32)
    assert torch.equal(full.train.tensors[0], to_rgb32(task.train.tensors[0]))
    assert torch.equal(full.train.tensors[1], task.train.tensors[1])


@pytest.mark.parametrize("size", [0, -1, 10**6, 2.5, True])
def test_transform_task_rejects_impossible_train_sizes(task, size):
    with pytest.raises(ValueError, match="train_size"):
        transform_task(task, to_rgb32, train_size=size)


def test_transform_task_leaves_the_original_task_untouched(task):
    before = task.train.tensors[0].clone()
    small = transform_task(task, to_rgb32, train_size=10)
    small.train.tensors[0].fill_(7.0)
    small.train.tensors[1].fill_(1)
    assert torch.equal(task.train.tensors[0], before)
