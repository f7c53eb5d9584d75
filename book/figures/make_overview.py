"""Draw the book's landing-page figure: one layer's weights shared out across 3 tasks by PackNet.

Run from anywhere (it writes next to itself)::

    python book/figures/make_overview.py        # -> book/figures/packnet_overview.png

Nothing is drawn by hand: a tiny ``nn.Linear(12, 8)`` really goes through PackNet's lifecycle for three tasks
(train on the free weights → prune → re-train → freeze), and every panel is that layer's actual **owner map**
(``pn.owner``) at that moment, with the weights that may change in that step (``packnet.masks.trainable_mask``,
what :class:`~packnet.WeightGuard` enforces) marked by a dot. The data are random; only the bookkeeping matters.

Importing this module does nothing (pytest's ``--doctest-modules`` imports it).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "packnet_overview.png"

IN_FEATURES, OUT_FEATURES = 12, 8
N_TASKS = 3
PRUNE_RATIO = 0.5
STEPS = ("train", "prune", "re-train", "freeze")
TASK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c")  # tab10: blue, orange, green
FREE_COLOR = "#ececec"


def record_lifecycle(seed: int = 0):
    """Run PackNet on a tiny linear layer; return one snapshot per (task, step), in order.

    Each snapshot is ``(owner, trainable, pruned_now)`` for the layer's weight: the owner map (``uint8``), the
    bool mask of weights that may change in that step (``None`` once frozen), and the weights freed by this
    step's pruning (``None`` for other steps).
    """
    import torch
    from torch import nn

    from packnet import PackNet
    from packnet.masks import trainable_mask

    torch.manual_seed(seed)
    layer = nn.Linear(IN_FEATURES, OUT_FEATURES)
    pn = PackNet(layer, prune_ratio=PRUNE_RATIO)
    name = pn.prunable_names[0]
    snapshots = []
    for t in range(N_TASKS):
        x = torch.randn(64, IN_FEATURES)
        y = torch.randint(0, OUT_FEATURES, (64,))
        data = [(x, y)]
        k = t + 1  # owner value of task t

        pn.train_task(t, data, epochs=5, progress=False)
        owner = pn.owner[name].clone()
        snapshots.append((owner, trainable_mask(owner, k, retraining=False), None))

        before = pn.owner[name].clone()
        pn.prune(t)
        owner = pn.owner[name].clone()
        pruned_now = (before == 0) & (owner == 0)  # were free (trained), still free: pruned
        snapshots.append((owner, None, pruned_now))

        pn.retrain(t, data, epochs=5, progress=False)
        owner = pn.owner[name].clone()
        snapshots.append((owner, trainable_mask(owner, k, retraining=True), None))

        pn.freeze(t)
        snapshots.append((pn.owner[name].clone(), None, None))
    return snapshots


def _rgb(owner, trainable, task_index):
    """Colour image of an owner map: free = light grey, task j = its colour; weights training now = light tint."""
    import numpy as np
    from matplotlib.colors import to_rgb

    owner = owner.numpy()
    img = np.empty(owner.shape + (3,))
    img[:] = to_rgb(FREE_COLOR)
    for j, color in enumerate(TASK_COLORS, start=1):
        img[owner == j] = to_rgb(color)
    if trainable is not None:
        tint = 0.55 * np.array(to_rgb(TASK_COLORS[task_index])) + 0.45
        img[trainable.numpy() & (owner == 0)] = tint
    return img


def draw(snapshots, path: Path = OUTPUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    plt.rcParams.update({"font.size": 10, "svg.hashsalt": "packnet", "path.simplify": True})
    fig, axes = plt.subplots(N_TASKS, len(STEPS), figsize=(10.5, 6.6), constrained_layout=True)
    for i, (owner, trainable, pruned_now) in enumerate(snapshots):
        t, s = divmod(i, len(STEPS))
        ax = axes[t, s]
        ax.imshow(_rgb(owner, trainable, t), interpolation="nearest")
        if trainable is not None:
            rows, cols = np.nonzero(trainable.numpy())
            ax.scatter(cols, rows, s=7, c="black", marker="o", linewidths=0)
        if pruned_now is not None:
            rows, cols = np.nonzero(pruned_now.numpy())
            ax.scatter(cols, rows, s=16, c=TASK_COLORS[t], marker="x", linewidths=1.0)
        counts = np.bincount(owner.numpy().ravel(), minlength=N_TASKS + 1)
        free = 100 * counts[0] / owner.numel()
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#999999")
        if t == 0:
            ax.set_title(f"{s + 1}. {STEPS[s]}", fontsize=12, fontweight="bold")
        if s == 0:
            ax.set_ylabel(f"task {t}", fontsize=12, fontweight="bold", color=TASK_COLORS[t])
        note = {
            "train": "free weights learn",
            "prune": f"smallest {int(100 * PRUNE_RATIO)}% freed (x)",
            "re-train": "kept weights learn",
            "freeze": f"{free:.3g}% still free",
        }[STEPS[s]]
        ax.set_xlabel(note, fontsize=9)

    legend = [Patch(facecolor=c, edgecolor="#999999", label=f"owned by task {j}")
              for j, c in enumerate(TASK_COLORS)]
    legend.append(Patch(facecolor=FREE_COLOR, edgecolor="#999999", label="free"))
    legend.append(plt.Line2D([], [], marker="o", color="black", linestyle="", markersize=3,
                             label="may change in this step"))
    fig.legend(handles=legend, loc="outside lower center", ncol=len(legend), frameon=False)
    fig.suptitle(f"PackNet on one layer ({OUT_FEATURES}×{IN_FEATURES} weights, prune ratio {PRUNE_RATIO}): "
                 "each weight belongs to at most one task", fontsize=12)
    # Metadata pinned so that re-running the script gives a byte-identical PNG (no spurious diffs).
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def main() -> None:
    snapshots = record_lifecycle()
    path = draw(snapshots)
    final = snapshots[-1][0]
    shares = [int((final == k).sum()) for k in range(N_TASKS + 1)]
    print(f"wrote {path} (final shares: free {shares[0]}, " +
          ", ".join(f"task {k - 1} {n}" for k, n in enumerate(shares) if k) + f" of {final.numel()} weights)")


if __name__ == "__main__":
    main()
