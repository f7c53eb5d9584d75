#!/usr/bin/env python
"""What PackNet costs on top of plain PyTorch, measured in one run on the same model and batch.

    python benchmarks/overhead.py                 # full run (~3.5 min on a 2-core CPU)
    python benchmarks/overhead.py --quick         # smoke run (~20 s): fewer repeats, 14 M weights to prune
    python benchmarks/overhead.py --device cuda   # on a GPU (also checks a training step makes no host sync)
    python benchmarks/overhead.py --json          # one JSON object on stdout instead of the tables

Four measurements (see benchmarks/README.md for what each one means):

1. train step   — a PackNet training step of a *second* task (the first one pruned and frozen, so every
                  prunable weight has a partial trainable mask) / the plain step of an identical model copy;
                  MLP 784-1024-1024-10 and the small CNN, batch 128, SGD (momentum 0.9) and AdamW, on both
                  paths: *fused* (``guard.step(opt)``, what ``train_task`` runs) and *general*
                  (``mask_gradients(); opt.step(); restore_frozen()``, the fallback for any optimizer); the
                  time of ``guard.mask_gradients()`` and ``guard.restore_frozen()`` on their own; and the
                  same ratios for MLP widths 256 / 1024 / 4096 (``--widths``), to show how they scale.
2. task forward — one forward inside ``with pn.task(0):`` (entered once) / the plain forward; and the cost of
                  entering and leaving the context.
3. prune        — ``prune_mask`` per layer (every entry a candidate, and half of them) and
                  ``global_prune_masks`` over VGG-16's weight shapes (138 M weights) / one ``torch.kthvalue``
                  pass per tensor.
4. mask bytes   — bytes of mask per prunable weight: PackNet's uint8 owner maps / one bool mask per task.

Methodology: training steps and forwards are timed one call at a time, the sides taking turns call by call
(``--steps`` pairs, the order rotating), with accelerator synchronisation; times are medians and the ratio is
the median of the paired per-call ratios, with their quartiles as a noise indicator. ``guard.mask_gradients``
/ ``restore_frozen`` alone and ``pn.task`` entry use ``torch.utils.benchmark.Timer``, ``--rounds`` rounds of
``--number`` iterations; the prune passes are timed once each, ``--prune-repeats`` times, alternating.
This is a script, not a test: it asserts nothing and always exits 0 unless it crashes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.benchmark import Timer

try:
    import packnet
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import packnet
from packnet import PackNet, TaskHeads, global_prune_masks, owned_mask, prune_mask
from packnet.pruning import prune_masks
from packnet.bench.models import mlp, small_cnn

from _common import cpu_model, sync, table  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

TRAIN_GOAL = 1.05
FORWARD_GOAL = 1.02
PRUNE_GOAL = 1.5
PRUNE_RATIO = 0.75
BATCH = 128

# VGG-16 (ImageNet): the weight tensors of its 13 convolutions and 3 fully connected layers, 138.3 M weights.
VGG16_CONV = [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3),
              (256, 256, 3, 3), (256, 256, 3, 3), (512, 256, 3, 3), (512, 512, 3, 3), (512, 512, 3, 3),
              (512, 512, 3, 3), (512, 512, 3, 3), (512, 512, 3, 3)]
VGG16_FC = [(4096, 25088), (4096, 4096), (1000, 4096)]


# ---------------------------------------------------------------------------------------------- reporting
@dataclass
class Row:
    section: str
    name: str
    packnet: float  # seconds (bytes/weight for the mask rows)
    baseline: float
    ratio: float
    goal: Optional[float] = None  # ratio goal; None: informative only
    unit: str = "s"
    spread: Optional[tuple[float, float]] = None  # min and max of the per-round ratios
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        return None if self.goal is None else self.ratio <= self.goal


@dataclass
class Report:
    env: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    scaling: list[dict[str, Any]] = field(default_factory=list)
    sync_checks: list[dict[str, Any]] = field(default_factory=list)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt_value(v: float, unit: str) -> str:
    if unit != "s":
        return f"{v:.3g} {unit}"
    if v >= 1:
        return f"{v:.3f} s"
    if v >= 1e-3:
        return f"{v * 1e3:.3f} ms"
    return f"{v * 1e6:.1f} us"





def print_report(rep: Report) -> None:
    print("PackNet overhead benchmark")
    for k, v in rep.env.items():
        print(f"  {k:18s} {v}")
    print()
    header = ["measurement", "packnet", "baseline", "ratio", "spread", "goal", "met?"]
    body = []
    for r in rep.rows:
        spread = f"{r.spread[0]:.3f}..{r.spread[1]:.3f}" if r.spread else ""
        goal = f"<= {r.goal:g}" if r.goal is not None else "-"
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        body.append([f"{r.section}: {r.name}", fmt_value(r.packnet, r.unit), fmt_value(r.baseline, r.unit),
                     f"{r.ratio:.3f}", spread, goal, met])
    print(table(header, body))
    print("spread: q1..q3 of the paired per-call ratios (train step, task forward); min..max over the "
          "repeats (prune)")
    notes = [f"  [{r.section}: {r.name}] {r.note}" for r in rep.rows if r.note]
    if notes:
        print("\nnotes:\n" + "\n".join(notes))
    if rep.breakdown:
        print("\nwhere the training-step overhead goes (each part timed on its own, same rounds):")
        header = ["case", "plain step", "fused step", "general step", "mask_gradients", "restore_frozen",
                  "mask+restore / plain"]
        body = [[b["case"], fmt_value(b["plain_step_s"], "s"), fmt_value(b["fused_step_s"], "s"),
                 fmt_value(b["packnet_step_s"], "s"), fmt_value(b["mask_gradients_s"], "s"),
                 fmt_value(b["restore_frozen_s"], "s"), f"{100 * b['guard_fraction']:.1f} %"]
                for b in rep.breakdown]
        print(table(header, body))
    if rep.scaling:
        widths = sorted({s["hidden"] for s in rep.scaling})
        print("\nhow the train-step ratio grows with width (MLP 784-h-h-10, batch 128, task 0 frozen):")
        header = ["optimizer", "path"] + [f"h={h}" for h in widths]
        cells = {(s["optimizer"], s["path"], s["hidden"]): s for s in rep.scaling}
        body = []
        for opt_name in dict.fromkeys(s["optimizer"] for s in rep.scaling):
            for path in PATHS:
                body.append([opt_name, path] + [f"{cells[opt_name, path, h]['ratio']:.3f}"
                                                if (opt_name, path, h) in cells else "-" for h in widths])
        first = [s for s in rep.scaling if s["path"] == "fused" and s["optimizer"] == rep.scaling[0]["optimizer"]]
        body.append(["(weights)", ""] + [f"{next(s['weights'] for s in first if s['hidden'] == h) / 1e6:.2f} M"
                                         for h in widths])
        body.append(["(plain step)", ""] + [fmt_value(next(s["plain_step_s"] for s in first if s["hidden"] == h),
                                                      "s") for h in widths])
        print(table(header, body))
    if rep.sync_checks:
        print("\nCUDA host-device synchronisation check (one PackNet step under set_sync_debug_mode('error')):")
        for c in rep.sync_checks:
            print(f"  {c['case']}: {c['result']}")
    ncpu = os.cpu_count() or 1
    start = float(rep.env.get("load average", "0").split()[0])
    end = float(rep.env.get("load average (end)", "0").split()[0])
    # The end figure includes this script's own threads; anything well beyond them is someone else.
    if start > 0.5 * ncpu or end > int(rep.env["threads"]) + 0.5 * ncpu:
        print(f"\nWARNING: 1-minute load average {start:.1f} at start, {end:.1f} at end, on {ncpu} logical CPUs: "
              "other processes competed for the CPU, so these times and ratios are noisy; re-run on a quiet "
              "machine.")


# ---------------------------------------------------------------------------------------------- timing
def interleaved(timers: dict[str, Timer], numbers: dict[str, int], rounds: int) -> dict[str, list[float]]:
    """Per-iteration times of each timer, one per round; the order of the timers is flipped every round.

    ``Timer.timeit`` warms up (``max(number // 100, 2)`` iterations) before each measured block, so each side
    starts its block with warm caches even though the sides alternate.
    """
    names = list(timers)
    for n in names:  # warm-up: lazy init, allocator, optimizer state
        timers[n].timeit(max(2, numbers[n] // 2))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            times[n].append(timers[n].timeit(numbers[n]).median)
    return times


def paired(base: list[float], pk: list[float]) -> tuple[float, float, float, tuple[float, float]]:
    """Median baseline, median packnet, median of the paired ratios, and their spread: the quartiles
    (q1, q3) when there are many pairs (per-call timings), (min, max) over a few rounds or repeats."""
    ratios = [p / b for p, b in zip(pk, base)]
    if len(ratios) >= 20:
        q = statistics.quantiles(ratios, n=4)
        spread = (q[0], q[2])
    else:
        spread = (min(ratios), max(ratios))
    return statistics.median(base), statistics.median(pk), statistics.median(ratios), spread


def alternating(fns: dict[str, Callable[[], Any]], iterations: int, device: torch.device) -> dict[str, list[float]]:
    """Wall times of single calls, the sides taking turns call by call (the order rotating every iteration).

    A training step here takes milliseconds, and a shared 2-core machine drifts by several percent within a
    second: timing blocks of steps side after side lets that drift into the ratio. Pairing single calls
    made milliseconds apart, many times over, leaves it out — the median of the paired ratios is stable to
    about a percent where block medians moved by five.
    """
    names = list(fns)
    for fn in fns.values():  # warm-up: lazy init, allocator, optimizer state
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iterations):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            sync(device)
            t0 = time.perf_counter()
            fns[n]()
            sync(device)
            times[n].append(time.perf_counter() - t0)
    return times


def as_function(stmt: str, g: dict[str, Any]) -> Callable[[], None]:
    """``stmt`` (one line of statements) as a function of no arguments over the names in ``g``."""
    namespace = dict(g)
    exec("def _fn():\n    " + stmt, namespace)
    return namespace["_fn"]


def timed_once(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call (for multi-second operations, where Timer's per-call warm-up would triple the run)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- scenario
def build_models(kind: str, device: torch.device, hidden: int = 1024) -> nn.Module:
    if kind == "mlp":
        return mlp(range(2), 10, hidden=(hidden, hidden)).to(device)  # 784-1024-1024-10: 1.86 M weights
    return small_cnn(range(2), 10).to(device)


def second_task_scenario(kind: str, device: torch.device, seed: int, hidden: int = 1024):
    """PackNet with task 0 trained (3 steps), pruned (75 %) and frozen; plus a deep copy of the model then.

    Returns ``(pn, model, plain, x, y)``; ``plain`` is an independent ``nn.Module`` with the same weights.
    """
    torch.manual_seed(seed)
    model = build_models(kind, device, hidden)
    pn = PackNet(model, prune_ratio=PRUNE_RATIO)
    x = torch.randn(BATCH, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (BATCH,), device=device)
    pn.start_task(0)
    with pn.training(0) as guard:
        opt = torch.optim.SGD(guard.parameters(), lr=0.01, momentum=0.9)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            guard.mask_gradients()
            opt.step()
            guard.restore_frozen()
    pn.prune(0)
    pn.freeze(0)
    # A plain copy of the same weights (PackNet attaches nothing to the model: owner maps live in `pn`).
    plain = copy.deepcopy(model)
    return pn, model, plain, x, y


def set_active(model: nn.Module, task: int) -> None:
    for m in model.modules():
        if isinstance(m, TaskHeads):
            m.active = task


def mirror(src: nn.Module, dst: nn.Module) -> None:
    """Give ``dst`` the train/eval modes and requires_grad flags ``src`` has inside ``pn.training``.

    So the baseline computes exactly the same forward and backward (BatchNorm frozen in eval mode, no
    gradients for the frozen biases / other heads): the only difference left is the guard.
    """
    for a, b in zip(src.modules(), dst.modules()):
        b.training = a.training
    for a, b in zip(src.parameters(), dst.parameters()):
        b.requires_grad_(a.requires_grad)


OPTIMIZERS: dict[str, Callable[[list], torch.optim.Optimizer]] = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2),
}

PLAIN_STEP = "popt.zero_grad(set_to_none=True); F.cross_entropy(plain(x), y).backward(); popt.step()"
FUSED_STEP = "opt.zero_grad(set_to_none=True); F.cross_entropy(model(x), y).backward(); guard.step(opt)"
GENERAL_STEP = ("gopt.zero_grad(set_to_none=True); F.cross_entropy(model(x), y).backward(); "
                "guard.mask_gradients(); gopt.step(); guard.restore_frozen()")
PATHS = {"fused": FUSED_STEP, "general": GENERAL_STEP}
"""The two PackNet steps: ``guard.step(opt)`` (what ``train_task`` runs for SGD / Adam / AdamW) and the
general path any optimizer can take. Each has its own optimizer, so neither disturbs the other's state."""


def bench_task_forward(kind: str, args: argparse.Namespace, pn: PackNet, model: nn.Module, plain: nn.Module,
                       x: torch.Tensor, rep: Report, device: torch.device) -> None:
    """2. task forward: ``pn.task(0)`` entered once, then plain-speed forwards; plus entering it."""
    label = {"mlp": "MLP 784-1024-1024-10", "cnn": "small CNN"}[kind]
    fwd_plain = copy.deepcopy(plain)
    fwd_plain.eval()
    set_active(fwd_plain, 0)
    g = {"torch": torch, "F": F, "pn": pn, "model": model, "plain": fwd_plain, "x": x}
    log(f"[{kind}] task forward")
    ctx = pn.task(0)
    ctx.__enter__()
    try:
        fns = {"plain": as_function("with torch.no_grad(): plain(x)", g),
               "packnet": as_function("with torch.no_grad(): model(x)", g)}
        t = alternating(fns, 2 * args.steps, device)
    finally:
        ctx.__exit__(None, None, None)
    b, p, ratio, spread = paired(t["plain"], t["packnet"])
    rep.rows.append(Row("task forward", f"{kind} forward in pn.task(0)", p, b, ratio, FORWARD_GOAL,
                        spread=spread))
    entry = Timer("with pn.task(0): pass", globals=g, num_threads=args.threads)
    entry_times = [entry.timeit(args.number).median for _ in range(args.rounds)]
    e = statistics.median(entry_times)
    rep.rows.append(Row("task forward", f"{kind} pn.task(0) enter+exit", e, b, e / b, None,
                        note=f"entering and leaving the context once costs {e / b:.2f} plain forwards "
                             f"of {label} (batch {BATCH}); ratio = that count, no goal"))


def bench_train_step(kind: str, args: argparse.Namespace, device: torch.device, rep: Report, *,
                     hidden: int = 1024, steps: Optional[int] = None, main: bool = True) -> None:
    """1. the training step of task 1 with task 0 frozen: plain, fused and general, interleaved.

    ``main``: the headline rows (with goals), the task forward and the breakdown; otherwise only the
    width-scaling entries.
    """
    pn, model, plain, x, y = second_task_scenario(kind, device, args.seed, hidden)
    if main:
        bench_task_forward(kind, args, pn, model, plain, x, rep, device)
    steps = steps or args.steps
    pn.start_task(1)
    ctx = pn.training(1)
    guard = ctx.__enter__()
    try:
        n_partial = len(guard.partial)
        mirror(model, plain)
        set_active(plain, 1)
        for opt_name in args.optimizers:
            log(f"[{kind} {hidden if kind == 'mlp' else ''}] train step, {opt_name}")
            opt = OPTIMIZERS[opt_name](guard.parameters())
            gopt = OPTIMIZERS[opt_name](guard.parameters())
            popt = OPTIMIZERS[opt_name](list(plain.parameters()))
            assert guard.fallback_reason(opt) is None, guard.fallback_reason(opt)
            g = {"torch": torch, "F": F, "model": model, "plain": plain, "x": x, "y": y, "opt": opt,
                 "gopt": gopt, "popt": popt, "guard": guard}
            fns = {"plain": as_function(PLAIN_STEP, g)}
            fns.update({path: as_function(stmt, g) for path, stmt in PATHS.items()})
            t = alternating(fns, steps, device)
            if main:  # both are idempotent, so they can be timed on their own right after the steps
                timers = {n: Timer(f"guard.{n}()", globals=g, num_threads=args.threads)
                          for n in ("mask_gradients", "restore_frozen")}
                t.update(interleaved(timers, dict.fromkeys(timers, args.number * 5), args.rounds))
            weights = sum(p.numel() for p in model.parameters())
            for path in PATHS:
                b, p, ratio, spread = paired(t["plain"], t[path])
                if main:
                    rep.rows.append(Row("train step", f"{kind} {opt_name}, {path}", p, b, ratio,
                                        TRAIN_GOAL if path == "fused" else None, spread=spread,
                                        note=("fused: guard.step(opt), what train_task runs; general: "
                                              "mask_gradients(); step(); restore_frozen(), any optimizer"
                                              if (opt_name, path, kind) == (args.optimizers[0], "general",
                                                                            "mlp") else "")))
                if kind == "mlp":
                    rep.scaling.append({"optimizer": opt_name, "path": path, "hidden": hidden,
                                        "weights": weights, "plain_step_s": b, "ratio": ratio,
                                        "spread": spread})
            if main:
                b = statistics.median(t["plain"])
                p = statistics.median(t["general"])
                mg, rf = statistics.median(t["mask_gradients"]), statistics.median(t["restore_frozen"])
                rep.breakdown.append({
                    "case": f"{kind} {opt_name}", "plain_step_s": b, "packnet_step_s": p, "extra_s": p - b,
                    "fused_step_s": statistics.median(t["fused"]),
                    "mask_gradients_s": mg, "restore_frozen_s": rf, "guard_fraction": (mg + rf) / b,
                    "partial_parameters": n_partial,
                })
                if device.type == "cuda":
                    for path, stmt in PATHS.items():
                        rep.sync_checks.append(cuda_sync_check(f"{kind} {opt_name} {path}", stmt, g))
    finally:
        ctx.__exit__(None, None, None)


def bench_scaling(args: argparse.Namespace, device: torch.device, rep: Report) -> None:
    """How the train-step ratio moves with the MLP's width: the same scenario at each hidden width."""
    for hidden in args.widths:
        if hidden == 1024:
            continue  # measured with the headline rows
        # About the same time at every width: a step's cost grows like hidden squared.
        steps = min(4 * args.steps, max(20, round(args.steps * (1024 / hidden) ** 2)))
        bench_train_step("mlp", args, device, rep, hidden=hidden, steps=steps, main=False)


def cuda_sync_check(case: str, stmt: str, g: dict[str, Any]) -> dict[str, Any]:
    """Run one PackNet step with CUDA's sync debug mode set to raise on any host-device synchronisation."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        exec(stmt, dict(g))
        result = {"case": case, "synchronizes": False, "result": "no host-device sync (ok)"}
    except RuntimeError as err:
        result = {"case": case, "synchronizes": True, "result": f"SYNCHRONIZES: {str(err).splitlines()[0]}"}
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    return result


# ---------------------------------------------------------------------------------------------- 3. prune
def bench_prune(args: argparse.Namespace, device: torch.device, rep: Report) -> None:
    shapes = VGG16_CONV if args.quick else VGG16_CONV + VGG16_FC
    gen = torch.Generator(device=device).manual_seed(args.seed)
    weights = [torch.empty(s, device=device).normal_(0, 0.01, generator=gen) for s in shapes]
    cands = [torch.ones(s, dtype=torch.bool, device=device) for s in shapes]
    # A later task's view: half the entries (at random) already owned by earlier tasks, so not candidates.
    halves = [torch.empty(s, device=device).uniform_(generator=gen) < 0.5 for s in shapes]
    n = sum(w.numel() for w in weights)
    ks = [int(round(PRUNE_RATIO * w.numel())) for w in weights]
    what = f"{len(shapes)} VGG-16 {'conv ' if args.quick else ''}weight tensors, {n / 1e6:.1f} M weights"
    log(f"[prune] {what}")

    def kth_pass() -> None:
        for w, k in zip(weights, ks):
            torch.kthvalue(w.flatten(), k)

    def layer_pass() -> None:  # what pn.prune(t) runs with pruning="layer": one workspace for all layers
        prune_masks(weights, cands, PRUNE_RATIO, scope="layer")

    def layer_half_pass() -> None:
        prune_masks(weights, halves, PRUNE_RATIO, scope="layer")

    def global_pass() -> None:
        global_prune_masks(weights, cands, PRUNE_RATIO)

    # Warm-up on a small tensor (first-call costs), not on the big ones: one pass of all three takes seconds.
    small_w, small_c = weights[:2], cands[:2]
    torch.kthvalue(small_w[1].flatten(), 10)
    prune_mask(small_w[1], small_c[1], PRUNE_RATIO)
    prune_mask(small_w[1], halves[1], PRUNE_RATIO)
    global_prune_masks(small_w, small_c, PRUNE_RATIO)
    passes = {"kthvalue": kth_pass, "layer": layer_pass, "layer_half": layer_half_pass, "global": global_pass}
    times: dict[str, list[float]] = {k: [] for k in passes}
    for r in range(args.prune_repeats):
        order = list(passes) if r % 2 == 0 else list(passes)[::-1]
        for name in order:
            times[name].append(timed_once(passes[name], device))
    b = times["kthvalue"]
    for name, label in (("layer", "per-layer prune_masks"), ("layer_half", "per-layer, half candidates"),
                        ("global", "global_prune_masks")):
        base, pk, ratio, spread = paired(b, times[name])
        notes = {"layer": f"{what}; baseline: one torch.kthvalue per tensor, times summed",
                 "layer_half": "a later task: half the entries (at random) owned by earlier tasks, not candidates"}
        rep.rows.append(Row("prune", f"{label}, {n / 1e6:.0f} M weights", pk, base, ratio,
                            PRUNE_GOAL if name == "layer" else None, spread=spread, note=notes.get(name, "")))
    del weights, cands, halves


# ---------------------------------------------------------------------------------------------- 4. mask bytes
def bench_mask_bytes(args: argparse.Namespace, rep: Report) -> None:
    """Owner-map bytes per prunable weight after T tasks (measured) vs one bool mask per task (materialised)."""
    log("[mask bytes]")
    torch.manual_seed(args.seed)
    t_max = 10
    model = mlp(range(t_max), 10, hidden=(256, 256))
    pn = PackNet(model, prune_ratio=PRUNE_RATIO)
    params = dict(model.named_parameters())
    n_weights = sum(params[name].numel() for name in pn.prunable_names)
    for t in range(t_max):
        pn.start_task(t)
        pn.prune(t)  # no training needed to assign owners; prune then freeze, as prune_and_freeze does
        pn.freeze(t)
        T = t + 1
        if T in (1, 4, 10):
            owner_bytes = sum(o.numel() * o.element_size() for o in pn.owner.values())
            bool_bytes = sum(m.numel() * m.element_size()
                             for o in pn.owner.values() for k in range(1, T + 1) for m in [owned_mask(o, k)])
            pk, base = owner_bytes / n_weights, bool_bytes / n_weights
            rep.rows.append(Row("mask bytes", f"T={T} tasks", pk, base, pk / base, None, unit="B/weight",
                                note=("packnet: uint8 owner maps (pn.owner); baseline: one torch.bool mask per "
                                      "task per weight tensor" if T == 1 else "")))


# ---------------------------------------------------------------------------------------------- main
def environment(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    env = {
        "torch": torch.__version__,
        "packnet": getattr(packnet, "__version__", "?"),
        "python": platform.python_version(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "cpu": f"{cpu_model()}, {os.cpu_count()} logical CPUs",
        "threads": args.threads,
        "mode": "quick" if args.quick else "full",
        "paired steps": args.steps,
        "rounds x number": f"{args.rounds} x {args.number} (mask/restore alone, pn.task entry)",
    }
    if hasattr(os, "getloadavg"):
        env["load average"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return env


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, 14 M weights to prune")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="intra-op threads, the same for both sides (default: torch's, %(default)s here)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds per measurement (7; quick 3)")
    ap.add_argument("--number", type=int, default=None, help="training steps per round (10; quick 3; x5 on cuda)")
    ap.add_argument("--steps", type=int, default=None,
                    help="paired single steps per train-step measurement (150; quick 30; forwards: twice)")
    ap.add_argument("--prune-repeats", type=int, default=None, help="repeats of each prune pass (3; quick 2)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "prune", "bytes"],
                    help="sections to leave out (train also skips the task forward)")
    ap.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    ap.add_argument("--widths", nargs="*", type=int, default=None,
                    help="MLP hidden widths for the scaling table (256 1024 4096; quick: 256 1024)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 7)
    # A CUDA step of these small models takes well under a millisecond: more steps per timed block there.
    args.number = args.number or ((3 if args.quick else 10) * (5 if args.device == "cuda" else 1))
    args.prune_repeats = args.prune_repeats or (2 if args.quick else 3)
    args.steps = args.steps or ((30 if args.quick else 150) * (4 if args.device == "cuda" else 1))
    if args.widths is None:
        args.widths = [256, 1024] if args.quick else [256, 1024, 4096]
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    rep = Report(env=environment(args, device))
    start = time.perf_counter()
    if "train" not in args.skip:
        for kind in ("mlp", "cnn"):
            bench_train_step(kind, args, device, rep)
        bench_scaling(args, device, rep)
        if device.type != "cuda":
            rep.sync_checks = []  # the CUDA sync check only means something on CUDA; skipped on CPU
    if "prune" not in args.skip:
        bench_prune(args, device, rep)
    if "bytes" not in args.skip:
        bench_mask_bytes(args, rep)
    rep.env["wall time"] = f"{time.perf_counter() - start:.1f} s"
    if hasattr(os, "getloadavg"):
        rep.env["load average (end)"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    if args.json:
        out = {"env": rep.env,
               "rows": [{**asdict(r), "met": r.met} for r in rep.rows],
               "breakdown": rep.breakdown,
               "scaling": rep.scaling,
               "cuda_sync_check": rep.sync_checks if device.type == "cuda" else "skipped (not on CUDA)"}
        print(json.dumps(out, indent=2))
    else:
        print_report(rep)
        if device.type != "cuda":
            print("\nCUDA host-device sync check: skipped (device is cpu).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
