"""PackNet: many tasks in one network by iterative pruning (Mallya & Lazebnik, CVPR 2018).

Train a task on the free weights, prune the smallest, re-train the survivors, freeze them, repeat; run any
task exactly with ``with pn.task(t):``.
"""

from .capacity import capacity_schedule, equal_share_schedule, format_capacity, tasks_that_fit
from .freezing import WeightGuard
from .heads import TaskHeads
from .masks import claim_kept, free_mask, owned_mask, owner_counts, trainable_mask, visible_mask
from .packnet import PackNet
from .pruning import global_prune_masks, num_to_prune, prune_mask
from .roles import DEFAULT_PRUNABLE

__version__ = "0.1.0"

__all__ = [
    "PackNet",
    "TaskHeads",
    "WeightGuard",
    "DEFAULT_PRUNABLE",
    "capacity_schedule",
    "equal_share_schedule",
    "tasks_that_fit",
    "format_capacity",
    "free_mask",
    "owned_mask",
    "visible_mask",
    "trainable_mask",
    "claim_kept",
    "owner_counts",
    "prune_mask",
    "global_prune_masks",
    "num_to_prune",
]
