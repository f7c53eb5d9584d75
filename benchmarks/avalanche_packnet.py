#!/usr/bin/env python
"""Avalanche's PackNet on the data and initial weights saved by ``benchmarks/compare.py`` (its worker).

Run with the Python of a virtual environment that has ``avalanche-lib==0.6.0`` (it does not import
``packnet``)::

    /tmp/avl-venv/bin/python benchmarks/avalanche_packnet.py --data DATA.pt --config '{"epochs": 10, ...}'

``compare.py`` starts it as a subprocess and reads its last stdout line: ``RESULT_JSON {...}``.

What it runs, all Avalanche 0.6.0 API:

* model: the same MLP as ``packnet.bench.models.mlp`` (``Flatten``, ``Linear(784, 256)``, ``ReLU``,
  ``Linear(256, 256)``, ``ReLU``, one ``Linear(256, 2)`` head per task) with the same initial weights, wrapped
  in ``avalanche.models.packnet.PackNetModel``, which replaces every ``nn.Linear`` by a PackNet layer (a ``uint8``
  ``task_index`` and two ``bool`` masks per weight). ``PackNetModel`` calls its wrappee with the input only, so
  per-task heads have to be a ``PackNetModule`` themselves (the hook its docstring names for custom modules):
  :class:`PackNetTaskHeads` routes to the active task's head and is never pruned, like ``packnet.TaskHeads``.
* data: one task-aware Avalanche dataset per task (``_make_taskaware_tensor_classification_dataset`` with
  ``task_labels=i``), ``benchmark_from_datasets(train=..., test=...)`` + ``with_task_labels`` +
  ``with_classes_timeline`` (the model adaptation of ``PackNetModel``, a ``MultiTaskModule``, reads
  ``classes_in_this_experience``, which ``benchmark_from_datasets`` alone does not set).
* strategy: ``avalanche.training.PackNet`` (``SupervisedTemplate`` + ``PackNetPlugin``) with
  ``SGD(lr, momentum=0.9)``, ``train_mb_size=64``, ``train_epochs=E + R``, ``post_prune_epochs=R``,
  ``prune_proportion=0.75``: E epochs on the free weights, prune, R fine-tuning epochs, ``freeze_pruned``.
* evaluation: ``strategy.eval(test experiences seen so far)`` after each task with an ``EvaluationPlugin`` of
  ``accuracy_metrics(experience=True)`` and no logger (task-aware: ``PackNetModel`` activates the task of each
  mini-batch's task label).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import torch
from torch import nn

from _common import peak_rss_bytes, sync, warm_up  # noqa: E402  (this script's folder is on sys.path)

RESULT_PREFIX = "RESULT_JSON "


def run_once(blob, cfg, device, train_stream, test_stream, n_classes, task_ids, heads_cls) -> dict:
    """One experiment from the saved initial weights: train every task, evaluate the seen ones after each."""
    import avalanche
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.models.packnet import PackNetModel, PackNetModule
    from avalanche.training import PackNet
    from avalanche.training.plugins import EvaluationPlugin

    # ---- the same MLP, the same initial weights (state-dict keys as packnet.bench.models.mlp's)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        heads_cls(256, n_classes, task_ids))
    missing, unexpected = net.load_state_dict(blob["init_state"], strict=False)
    if unexpected or any(not k.startswith("5._") for k in missing):  # only the heads' own state buffers
        raise RuntimeError(f"initial weights do not fit: missing {missing}, unexpected {unexpected}")
    net.to(device)
    torch.manual_seed(cfg["seed"])  # every repeat shuffles alike (Avalanche's loaders draw from torch's RNG)

    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    memory = {"rss_before": peak_rss_bytes()}
    t0, c0 = time.perf_counter(), time.process_time()
    model = PackNetModel(net).to(device)  # wraps every nn.Linear outside the heads in place
    lr = cfg["lr"]
    strategy = PackNet(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9),
        post_prune_epochs=cfg["retrain_epochs"], prune_proportion=cfg["prune_ratio"],
        train_mb_size=cfg["batch_size"], train_epochs=cfg["epochs"] + cfg["retrain_epochs"],
        eval_mb_size=1000, device=device,
        evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]))
    train_seconds, train_cpu, eval_seconds = time.perf_counter() - t0, time.process_time() - c0, 0.0

    T = len(train_stream)
    R: list[list[float | None]] = [[None] * T for _ in range(T)]
    steps = 0
    for i, exp in enumerate(train_stream):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        strategy.train(exp, num_workers=0)
        sync(device)
        t1, c1 = time.perf_counter(), time.process_time()
        steps += strategy.clock.train_exp_iterations
        metrics = strategy.eval(test_stream[: i + 1], num_workers=0)
        sync(device)
        train_seconds += t1 - t0
        train_cpu += c1 - c0
        eval_seconds += time.perf_counter() - t1
        for j, test_exp in enumerate(test_stream[: i + 1]):
            key = f"Top1_Acc_Exp/eval_phase/test_stream/Task{test_exp.task_label:03d}/Exp{j:03d}"
            R[i][j] = float(metrics[key])
    memory["peak_rss"] = peak_rss_bytes()
    if device.type == "cuda":
        memory["cuda_peak"] = torch.cuda.max_memory_allocated(device)

    # ---- what Avalanche stores for PackNet: the buffers of its PackNet modules
    pn_layers = [m for m in model.modules() if isinstance(m, PackNetModule) and hasattr(m, "task_index")]
    mask_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    per_layer = sorted(f"{n} {b.dtype}".replace("torch.", "") for n, b in pn_layers[0].named_buffers()
                       if b.numel() > 1)
    prunable = sum(m.wrappee.weight.numel() for m in pn_layers)
    # Avalanche's own bookkeeping after T tasks: weights per task_index value (T = free for the next task)
    owners = torch.cat([m.task_index.flatten().cpu() for m in pn_layers]).bincount(minlength=256)
    return {
        "method": "avalanche", "accuracy_matrix": R, "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu, "steps": steps, "eval_seconds": eval_seconds, "memory": memory,
        "mask_bytes": mask_bytes, "prunable_weights": prunable,
        "mask_detail": f"all module buffers; per PackNet layer {per_layer} ({len(pn_layers)} layers)",
        "owners": {str(k): int(v) for k, v in enumerate(owners.tolist()) if v},
        "epochs_per_task": {"train": cfg["epochs"], "retrain": cfg["retrain_epochs"]}, "lr": lr,
        "avalanche": avalanche.__version__, "torch": torch.__version__,
        "api": "avalanche.models.packnet.PackNetModel + avalanche.training.PackNet "
               "(SupervisedTemplate + PackNetPlugin)",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the file compare.py wrote with torch.save")
    ap.add_argument("--config", required=True, help="JSON: epochs, retrain_epochs, batch_size, lr, ...")
    args = ap.parse_args()
    cfg = json.loads(args.config)
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    warnings.filterwarnings("ignore")  # Avalanche's import-time warnings (optional solvers, deprecations)

    from avalanche.benchmarks import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
    from avalanche.benchmarks.scenarios.task_aware import with_task_labels
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.models.packnet import PackNetModule

    class PackNetTaskHeads(PackNetModule):
        """One ``nn.Linear`` head per task; forwards through the head of the active task. Never pruned.

        ``PackNetModel`` forwards its lifecycle calls (prune, freeze_pruned, activate_task) to every
        ``PackNetModule`` inside it, so this module's state machine follows the model's and ``active_task``
        is the task of the current mini-batch.
        """

        def __init__(self, in_features: int, out_features: int, task_ids: list[int]) -> None:
            super().__init__()
            self.heads = nn.ModuleDict({str(t): nn.Linear(in_features, out_features) for t in task_ids})

        def _prune(self, prune_proportion: float) -> None:
            pass  # heads are never pruned (as in packnet.TaskHeads)

        def _freeze_pruned(self) -> None:
            pass  # a head learns only while its task is active: no other task's gradient reaches it

        def _activate_task(self, task_id: int) -> None:
            pass  # the base class records active_task

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.heads[str(self.active_task)](x)

    blob = torch.load(args.data)
    device = torch.device(cfg["device"])
    task_ids = [t["task_id"] for t in blob["tasks"]]
    n_classes = len(blob["tasks"][0]["classes"])

    # ---- data (not timed): one task-aware dataset per task, task label = task id
    train_sets = [_make_taskaware_tensor_classification_dataset(t["x_train"], t["y_train"], targets=t["y_train"],
                                                                task_labels=t["task_id"]) for t in blob["tasks"]]
    test_sets = [_make_taskaware_tensor_classification_dataset(t["x_test"], t["y_test"], targets=t["y_test"],
                                                               task_labels=t["task_id"]) for t in blob["tasks"]]
    bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(train=train_sets, test=test_sets)))
    train_stream, test_stream = list(bench.train_stream), list(bench.test_stream)

    warm_up(device)
    runs = [run_once(blob, cfg, device, train_stream, test_stream, n_classes, task_ids, PackNetTaskHeads)
            for _ in range(cfg["repeats"])]
    print(RESULT_PREFIX + json.dumps(runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
