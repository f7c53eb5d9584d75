#!/usr/bin/env python
"""Inference without the task id, and one task exported: accuracy, memory and time on the CLI's default runs.

    python benchmarks/task_inference.py                         # Split and Permuted MNIST, seed 0 (~2 min on CPU)
    python benchmarks/task_inference.py --seeds 0 1 2           # more seeds
    python benchmarks/task_inference.py --benchmarks split --n-components 10 --shrinkage 0.2
    python benchmarks/task_inference.py --json                  # one JSON object on stdout

Each run is ``python -m packnet --task-inference`` with the command line's defaults (MLP 784-256-256 with one
head per task, 5 tasks, prune ratio 0.75, 10 + 2 epochs, SGD lr 0.05, batch 64, the offline MNIST sample):
every task is calibrated after it is frozen (on its training set), then every method of
:data:`packnet.task_inference.METHODS` is measured on every task's test set
(:func:`packnet.bench.experiment.evaluate_task_inference`):

* ``task/sample``: the fraction of test inputs whose inferred task is right;
* ``agnostic``: right task **and** right class (the class from the inferred task's network);
* ``task/batch``: 100 random task-homogeneous batches of 32 test inputs per task, one inferred task each;
* ``aware``: the task-aware accuracy (the task given), the ceiling of ``agnostic``;
* memory stored per task, calibration seconds per task, milliseconds per sample (classification included)
  and per batch of 32.

The exported tasks' sizes (``pn.export(t)``, :func:`packnet.export.sparse_size`) follow: dense, and stored
sparse (only the weights task ``t`` sees, with flat indices or a bitmap). A script, not a test: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import cpu_model, table  # noqa: E402


def run(benchmark: str, seed: int, args: argparse.Namespace) -> dict:
    import torch

    from packnet.bench.data import BENCHMARKS
    from packnet.bench.experiment import run_packnet
    from packnet.bench.models import mlp
    from packnet.export import sparse_size

    tasks = BENCHMARKS[benchmark](args.tasks, seed=seed)
    torch.manual_seed(seed)
    model = mlp([t.task_id for t in tasks], tasks[0].num_classes, in_features=math.prod(tasks[0].input_shape))
    options = {"n_components": args.n_components, "shrinkage": args.shrinkage}
    result = run_packnet(model, tasks, prune_ratio=0.75, epochs=args.epochs, retrain_epochs=2, batch_size=64,
                         optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9), device=args.device,
                         seed=seed, progress=False, task_inference=True, task_inference_options=options)
    pn = result.packnet
    exports = []
    for t in pn.tasks:
        start = time.perf_counter()
        exported = pn.export(t)
        exports.append({"task": t, "seconds": time.perf_counter() - start, **sparse_size(exported)})
    return {"benchmark": benchmark, "seed": seed, "aware": result.average_accuracy,
            "task_inference": result.task_inference, "export": exports}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmarks", nargs="+", default=["split", "permuted"], choices=["split", "permuted", "rotated"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--tasks", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n-components", type=int, default=30)
    p.add_argument("--shrinkage", type=float, default=0.1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch

    import packnet

    runs = []
    for benchmark in args.benchmarks:
        for seed in args.seeds:
            print(f"running {benchmark} seed {seed} ...", file=sys.stderr, flush=True)
            runs.append(run(benchmark, seed, args))
    if args.json:
        print(json.dumps({"torch": torch.__version__, "packnet": packnet.__version__, "cpu": cpu_model(),
                          "threads": torch.get_num_threads(), "config": vars(args), "runs": runs}))
        return 0
    print(f"torch {torch.__version__}, packnet {packnet.__version__}, {args.device}, {cpu_model()}, "
          f"{torch.get_num_threads()} threads; n_components {args.n_components}, shrinkage {args.shrinkage}\n")
    rows = []
    for r in runs:
        ti = r["task_inference"]
        for method, f in ti["by_method"].items():
            rows.append([f"{r['benchmark']} seed {r['seed']}", method, f"{100 * f['per_sample_task_accuracy']:.1f}",
                         f"{100 * f['task_agnostic_accuracy']:.1f}", f"{100 * f['batch_task_accuracy']:.1f}",
                         f"{100 * r['aware']:.1f}", f"{1e3 * f['seconds_per_sample']:.3f}",
                         f"{1e3 * f['seconds_per_batch']:.2f}"])
    print("Accuracy (%) and time of task inference on the test sets:")
    print(table(["run", "method", "task/sample", "agnostic", "task/batch", "aware", "ms/sample", "ms/batch32"],
                rows))
    print("\nStored per task (input_density; confidence stores nothing) and calibration time:")
    print(table(["run", "KiB per task", "KiB total", "calibration s/task"],
                [[f"{r['benchmark']} seed {r['seed']}",
                  "/".join(f"{b / 2**10:.0f}" for b in r["task_inference"]["memory_bytes_per_task"]),
                  f"{r['task_inference']['memory_bytes'] / 2**10:.0f}",
                  f"{sum(r['task_inference']['calibration_seconds']) / len(r['export']):.2f}"] for r in runs]))
    print("\nExported tasks (pn.export(t)), KiB: dense / sparse (non-zero values + 4-byte indices) / "
          "bitmap (non-zero values + 1 bit per entry):")
    print(table(["run"] + [f"task {e['task']}" for e in runs[0]["export"]],
                [[f"{r['benchmark']} seed {r['seed']}"]
                 + [" / ".join(f"{e[k] / 2**10:.0f}" for k in ("dense_bytes", "sparse_bytes", "bitmap_bytes"))
                    for e in r["export"]]
                 for r in runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
