"""Benchmarks and the experiment runner: what measures PackNet, not PackNet itself.

* :mod:`packnet.bench.data` — continual-learning task sequences (Split / Permuted / Rotated MNIST) as
  :class:`~packnet.bench.data.Task` objects; a new benchmark dataset goes here.
* :mod:`packnet.bench.transforms` — turning those tasks into inputs for ImageNet-style networks.
* :mod:`packnet.bench.models` — small reference networks with per-task heads.
* :mod:`packnet.bench.metrics` — average accuracy, forgetting, backward transfer.
* :mod:`packnet.bench.experiment` — one PackNet run end to end
  (:func:`~packnet.bench.experiment.run_packnet`).
* :mod:`packnet.bench.baselines` — fine-tuning, EWC, independent networks, joint training.
* :mod:`packnet.bench.cli` — the command line behind ``python -m packnet``.

Everything here builds on the algorithm in :mod:`packnet`; the algorithm never imports this package.
"""
