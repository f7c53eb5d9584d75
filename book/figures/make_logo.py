"""Draw the book's logo (top of the left sidebar): a layer's weights packed by three tasks, and the name.

Run from anywhere (it writes next to itself)::

    python book/figures/make_logo.py            # -> book/figures/logo.png, book/figures/favicon.png

The 4 x 8 grid of weights is shared out exactly as PackNet shares a layer with prune ratio 0.5
(:func:`packnet.capacity_schedule`): task 0 keeps half of it, task 1 a quarter, task 2 an eighth, and an eighth
stays free, in the colours of the landing-page figure (``make_overview.py``); the favicon is the same share-out
on a 4 x 4 grid. ``_config.yml`` points at both (``logo:``, ``html: favicon:``). The background is transparent
and the name is drawn in task 0's blue, which reads on the theme's light and dark modes alike.

Importing this module does nothing (pytest's ``--doctest-modules`` imports it).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "logo.png"
FAVICON = HERE / "favicon.png"

ROWS, COLS = 4, 8
PRUNE_RATIO = 0.5
TASK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c")  # as in make_overview.py
FREE_COLOR = "#dddddd"
TEXT_COLOR = TASK_COLORS[0]


def owner_grid(rows: int = ROWS, cols: int = COLS, prune_ratio: float = PRUNE_RATIO) -> list[list[int]]:
    """Owner value of each cell (0 free, k for task k - 1), filled column by column from the left.

    Examples:
        >>> grid = owner_grid()
        >>> [sum(row.count(k) for row in grid) for k in (1, 2, 3, 0)]
        [16, 8, 4, 4]
        >>> owner_grid(4, 4)[0]
        [1, 1, 2, 3]
    """
    from packnet import capacity_schedule

    n = rows * cols
    owners: list[int] = []
    for row in capacity_schedule(prune_ratio, len(TASK_COLORS)):
        owners += [row["task"] + 1] * round(row["used"] * n)
    owners += [0] * (n - len(owners))
    return [[owners[c * rows + r] for c in range(cols)] for r in range(rows)]


def _draw_grid(ax, grid: list[list[int]], cell: float = 1.0, gap: float = 0.18) -> None:
    from matplotlib.patches import FancyBboxPatch

    rows = len(grid)
    for r, row in enumerate(grid):
        for c, owner in enumerate(row):
            color = TASK_COLORS[owner - 1] if owner else FREE_COLOR
            ax.add_patch(FancyBboxPatch((c * cell + gap / 2, (rows - 1 - r) * cell + gap / 2), cell - gap,
                                        cell - gap, boxstyle="round,pad=0,rounding_size=0.12",
                                        facecolor=color, edgecolor="none"))


def draw(path: Path = OUTPUT, favicon: Path = FAVICON) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Transparent background (the theme's dark mode shows it too); metadata pinned for byte-identical re-runs.
    save = {"transparent": True, "metadata": {"Software": None}}

    fig = plt.figure(figsize=(4.5, 1.55))
    ax = fig.add_axes((0, 0, 1, 1))
    _draw_grid(ax, owner_grid())
    ax.text(COLS + 0.6, ROWS / 2, "PackNet", fontsize=40, fontweight="bold", color=TEXT_COLOR,
            va="center", ha="left", family="DejaVu Sans")
    ax.set_xlim(-0.1, 23.4)
    ax.set_ylim(-0.1, ROWS + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.savefig(path, dpi=100, **save)
    plt.close(fig)

    fig = plt.figure(figsize=(0.64, 0.64))
    ax = fig.add_axes((0, 0, 1, 1))
    _draw_grid(ax, owner_grid(4, 4))
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 4)
    ax.axis("off")
    fig.savefig(favicon, dpi=100, **save)  # 64 x 64 pixels
    plt.close(fig)
    return path, favicon


def main() -> None:
    for path in draw():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
