"""1 process vs 2 processes (torchrun, DistributedDataParallel) on the same PackNet experiment.

Runs ``python -m packnet --json`` once as a single process and once under
``torchrun --nproc_per_node=2``, with the same global batch, and prints wall time (of the experiment itself,
excluding interpreter start-up), average accuracy and forgetting side by side, plus the ratio.

    python benchmarks/distributed.py                 # CPU, gloo; Split-MNIST, 5 tasks
    python benchmarks/distributed.py --device cuda   # one GPU per process, nccl (needs 2 GPUs)
    python benchmarks/distributed.py --threads 1     # pin each process to one CPU thread (fair on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

import torch


def run(nproc: int, threads: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "packnet", "--json", *extra]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "packnet", "--json", *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", default="mlp")
    p.add_argument("--epochs", default="10")
    args = p.parse_args()
    extra = ["--device", args.device, "--model", args.model, "--epochs", args.epochs]
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs ({cpu}), device {args.device}, "
          f"{args.threads} thread(s) per process, median of {args.repeats}")
    rows = {}
    for nproc in (1, 2):
        runs = [run(nproc, args.threads, extra) for _ in range(args.repeats)]
        seconds = sorted(r["seconds"] for r in runs)[len(runs) // 2]
        rows[nproc] = (seconds, runs[0]["average_accuracy"], max(runs[0]["forgetting"]))
    print(f"{'processes':>10} {'seconds':>9} {'avg acc':>8} {'max forgetting':>15}")
    for nproc, (s, acc, f) in rows.items():
        print(f"{nproc:>10} {s:>9.2f} {100 * acc:>7.2f}% {f:>15.1f}")
    print(f"2-process time / 1-process time: {rows[2][0] / rows[1][0]:.2f}")


if __name__ == "__main__":
    main()
