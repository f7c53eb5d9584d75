"""Chapter 5 exercises: which weights a task sees, and a task view that changes the weights in place and back.

Reference answers: :func:`packnet.visible_mask`, and :func:`packnet.masks.apply_visibility_` with
:func:`packnet.masks.restore_` (what :meth:`packnet.PackNet.task` does to every prunable weight).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

from packnet.masks import apply_visibility_, restore_, visible_mask

from .checking import ExerciseFailed, call, exercise, expect_equal, fail, generator, py_random


def _shape(rng: Any, seed: int) -> tuple[int, ...]:
    if seed % 12 == 11:
        return (0,)  # an empty layer: nothing to see, nothing to hide
    return [(rng.randrange(1, 9),), (rng.randrange(1, 7), rng.randrange(1, 7)),
            (rng.randrange(1, 4), rng.randrange(1, 3), 3, 3)][seed % 3]


def _owner(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 7, shape, generator=g).to(torch.uint8)  # free (0) and tasks 1..6


@exercise("5.1", "visible_mask",
          points=1, library=("packnet.masks.visible_mask",),
          title="the weights a task sees", reference="packnet.visible_mask",
          hint="the k-th task learned sees exactly the weights of the tasks learned up to it, itself included. "
               "Owner 0 means free (no task's weight: pruned, or never used), and owners above k were trained "
               "after task k was frozen.")
def check_visible_mask(fn: Callable[..., Any]) -> str:
    n_cases = 40
    for seed in range(n_cases):
        g, rng = generator(500 + seed), py_random(500 + seed)
        shape = _shape(rng, seed)
        owner, k = _owner(shape, g), rng.randrange(1, 7)
        if seed == 0:  # the extreme owner values, and the largest k an owner map allows
            owner, k = torch.tensor([0, 1, 2, 254, 255], dtype=torch.uint8), 255
        elif seed == 1:
            owner, k = torch.tensor([0, 1, 2, 3, 255], dtype=torch.uint8), 1
        values = sorted(set(owner.flatten().tolist()))
        case = f"an owner map of shape {tuple(owner.shape)} with values {values} and k = {k} (case {seed})"
        before = owner.clone()
        got = call(fn, owner, k, case=case)
        if not torch.equal(owner, before):
            fail("your function changed the owner map; a mask is computed from it, never written into it", case=case)
        expected = visible_mask(owner, k)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == torch.bool:
            free = owner == 0
            if bool((got & free).any()):
                fail("free weights (owner 0) are visible: a free weight belongs to no task (pruned, or never "
                     "used) and is hidden from every task", case=case,
                     hint="a comparison with k alone also lets owner 0 through: free is not a task")
            if bool((~got & (owner == k)).any()):
                fail(f"task {k}'s own weights (owner == {k}) are hidden: a task sees its own weights too",
                     case=case)
            if bool((~got & (owner >= 1) & (owner < k)).any()):
                fail(f"weights of earlier tasks (owners 1..{k - 1}) are hidden: task {k} was trained on top of them, "
                     "so it must see them", case=case)
            if bool((got & (owner > k)).any()):
                fail(f"weights of later tasks (owner > {k}) are visible: they were trained after task {k} was "
                     "frozen", case=case)
        expect_equal(got, expected, case=case, what="the visibility mask")
    return f"{n_cases} random owner maps (free weights and owners up to 255 included) agree with packnet.visible_mask"


@contextlib.contextmanager
def _reference_task_view(weights: list[torch.Tensor], owners: list[torch.Tensor], k: int) -> Iterator[None]:
    """Exercise 5.2's reference: what :meth:`packnet.PackNet.task` does to each prunable weight."""
    backups: list[torch.Tensor] = []
    try:
        for w, owner in zip(weights, owners):
            backups.append(apply_visibility_(w, owner, k))
        yield
    finally:
        for w, backup in zip(weights, backups):
            restore_(w, backup)


class _Interrupted(Exception):
    """Raised by the checker inside the ``with`` body, to see that the view restores the weights anyway."""


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise "the same float", as :func:`~packnet.course.exercises.checking.expect_equal` means it: equal values
    with equal sign bits (-0.0 is not +0.0), and NaN where the other is NaN."""
    return (((a == b) | (a.isnan() & b.isnan())) & (torch.signbit(a) == torch.signbit(b)))


def _weights(seed: int) -> tuple[list[torch.nn.Parameter], list[torch.Tensor], int, str]:
    """Parameters (requires_grad=True) with -0.0 and NaN planted among the hidden and among the visible entries."""
    g, rng = generator(550 + seed), py_random(550 + seed)
    n = rng.randrange(1, 4)
    shapes = [_shape(rng, seed + i) if seed >= 4 else (6, 7) for i in range(n)]  # first: every owner value
    dtypes = [[torch.float32, torch.float64, torch.float16][(seed + i) % 3] for i in range(n)]
    owners = [_owner(s, g) for s in shapes]
    if seed in (4, 5):  # all free (nothing visible) / all the first task's (everything visible)
        owners = [torch.full(s, seed - 4, dtype=torch.uint8) for s in shapes]
    k = 6 if seed in (4, 5) else rng.randrange(2, 6) if seed < 4 else rng.randrange(1, 7)
    weights = []
    for s, dtype, owner in zip(shapes, dtypes, owners):
        w = torch.randn(s, generator=g).to(dtype)
        flat, visible = w.view(-1), visible_mask(owner, k).view(-1)
        for want in (False, True):
            where = (visible == want).nonzero().flatten().tolist()
            if len(where) >= 2:
                flat[where[0]], flat[where[1]] = -0.0, float("nan")
        weights.append(torch.nn.Parameter(w))
    case = (f"{n} parameters of shapes {shapes} ({', '.join(str(d).replace('torch.', '') for d in dtypes)}), "
            f"owner values {sorted(set(v for o in owners for v in o.flatten().tolist()))}, k = {k} (case {seed})")
    return weights, owners, k, case


def _run_view(view: Any, weights: list[torch.Tensor], interrupt: bool) -> tuple[list[Any], bool]:
    """Enter ``view``, record what the weights are inside, leave (by an exception when ``interrupt``).

    Returns ``(tensor, data_ptr, copy of its values)`` per weight as seen inside (empty if the block never ran),
    and whether the checker's exception came out of the block.
    """
    inside: list[Any] = []
    try:
        with view:
            inside = [(w, w.data_ptr(), w.detach().clone()) for w in weights]
            if interrupt:
                raise _Interrupted("raised inside the with block by the checker")
    except _Interrupted:
        return inside, True
    return inside, False


def _check_in_place(originals: list[torch.Tensor], ptrs: list[int], now: list[tuple[torch.Tensor, int]],
                    case: str, when: str) -> None:
    for i, (w, ptr, (w_now, ptr_now)) in enumerate(zip(originals, ptrs, now)):
        if w_now is not w or ptr_now != ptr:
            fail(f"{when}, parameter {i} is a new tensor (its storage moved): change the weights in place "
                 "(`w.masked_fill_(...)`, `w.copy_(...)`), so that a model holding these parameters sees the "
                 "change; `weights[i] = ...` or `w.data = ...` replaces the tensor instead", case=case)


def _check_inside(inside: list[torch.Tensor], before: list[torch.Tensor], owners: list[torch.Tensor], k: int,
                  case: str) -> None:
    for i, (seen, b, owner) in enumerate(zip(inside, before, owners)):
        expected = b.clone()
        apply_visibility_(expected, owner, k)
        hidden = ~visible_mask(owner, k)
        if bool((~hidden & ~_same(seen, expected)).any()):
            fail(f"inside the block, entries of parameter {i} that task {k} sees were changed; only the hidden ones "
                 f"(free, or owned by a task after {k}) become zero", case=case)
        not_zeroed = hidden & (seen != 0)  # NaN included; -0.0 is checked below
        if bool(not_zeroed.any()):
            finite, later = not_zeroed & ~seen.isnan(), hidden & (owner > k)
            if (bool(finite.any()) and bool((owner[finite] == 0).all()) and bool(later.any())
                    and bool((seen[later] == 0).all())):
                fail(f"inside the block, {int(finite.sum())} free weights (owner 0) of parameter {i} keep their "
                     f"values; the weights of later tasks were zeroed, but free ones must be hidden too: visible "
                     f"means 1 <= owner <= {k}", case=case)
            if bool(_same(seen, b).all()):
                fail(f"inside the block parameter {i} is unchanged: its hidden entries must be zeroed *in place*; "
                     "`w = torch.where(...)` only gives a name to a new tensor", case=case)
            if not bool(finite.any()):
                fail(f"inside the block, a hidden entry of parameter {i} is NaN: multiplying by the mask keeps it "
                     "(NaN * 0 = NaN); set hidden entries to zero instead (`masked_fill_`, `torch.where`)",
                     case=case)
            fail(f"inside the block, {int(not_zeroed.sum())} entries of parameter {i} that task {k} must not see "
                 f"still hold their weights (owner values {sorted(set(owner[not_zeroed].tolist()))})", case=case)
        if bool((hidden & torch.signbit(seen)).any()):
            fail(f"inside the block, hidden entries of parameter {i} are -0.0, not +0.0: `w * mask` keeps the sign "
                 "of a negative weight (-1.5 * 0 = -0.0); set them to 0.0 (`masked_fill_`, `torch.where`)",
                 case=case)
        expect_equal(seen, expected, case=case, what=f"parameter {i} inside the block")


def _check_restored(weights: list[torch.Tensor], before: list[torch.Tensor], inside: list[torch.Tensor],
                    owners: list[torch.Tensor], k: int, case: str, interrupt: bool) -> None:
    when = "after an exception left the block" if interrupt else "after the block"
    for i, (w, b, seen, owner) in enumerate(zip(weights, before, inside, owners)):
        now = w.detach()
        wrong = ~_same(now, b)
        if not bool(wrong.any()):
            continue
        lost = b[wrong]
        if interrupt and bool(_same(now, seen).all()):
            why = ("they are still the masked weights: restore in a `finally:` clause (with @contextmanager, code "
                   "after a bare `yield` does not run when the block raises)")
        elif bool((lost.isnan() | (lost == 0)).all()):
            why = (f"the hidden entries that were -0.0 or NaN did not come back ({int((lost == 0).sum())} -0.0, "
                   f"{int(lost.isnan().sum())} NaN). A restore that computes the old values from the zeroed "
                   "weights, adding the hidden part back or multiplying, cannot give them back (0.0 + -0.0 = "
                   "+0.0, and a NaN kept aside as `w * hidden` or cleaned with `nan_to_num` is gone); keep a copy "
                   "(`w.detach().clone()`) and `copy_` it back")
        elif bool((now[wrong] == 0).all()):
            why = ("the hidden entries are still zero: on exit, copy them back from a copy taken before zeroing "
                   "(`w.detach().clone()`); a view of the same storage (`w.detach()`, `w.data`) is zeroed with "
                   "the weight")
        else:
            why = "keep a copy of every weight (`clone()`) before zeroing it, and `copy_` the copy back"
        fail(f"{when}, parameter {i} differs from before in {int(wrong.sum())} of its {wrong.numel()} entries: "
             f"{why}", case=case)


@exercise("5.2", "task_view",
          points=3,
          library=("packnet.masks.apply_visibility_",
                   "packnet.masks.restore_",
                   "packnet.packnet.PackNet.task"),
          title="a task view that zeroes in place and restores bit for bit",
          reference="packnet.masks.apply_visibility_ / restore_ (packnet.PackNet.task)",
          hint="three things make a task view: it changes the very tensors the model holds (in place, where "
               "autograd does not record it); before changing them it keeps what it needs to give every bit "
               "back (a -0.0 or a NaN cannot be recomputed from a zero); and it gives them back however the "
               "block ends, an exception included.")
def check_task_view(fn: Callable[..., Any]) -> str:
    n_cases = 24
    for seed in range(n_cases):
        for interrupt in (False, True):
            weights, owners, k, case = _weights(seed)
            case += ", the block raising an exception" if interrupt else ""
            originals, ptrs = list(weights), [w.data_ptr() for w in weights]
            before, owners_before = [w.detach().clone() for w in weights], [o.clone() for o in owners]
            try:
                view = call(fn, weights, owners, k, case=case)
                if not (hasattr(view, "__enter__") and hasattr(view, "__exit__")):
                    kind = type(view).__name__
                    fail(f"task_view(...) returned a {kind}, not a context manager"
                         + (": decorate the generator function with @contextlib.contextmanager"
                            if kind == "generator" else ""), case=case)
                inside, propagated = call(_run_view, view, weights, interrupt, case=case)
            except ExerciseFailed as error:
                if "leaf Variable that requires grad" not in str(error):
                    raise
                raise ExerciseFailed(f"{error}\nThe weights are parameters (requires_grad=True): change them "
                                     "under `with torch.no_grad():`, so that autograd does not record it") from None
            if not inside:
                fail("the block never ran: the context manager must yield exactly once", case=case)
            _check_in_place(originals, ptrs, [(w, p) for w, p, _ in inside], case, "inside the block")
            seen = [values for _, _, values in inside]
            _check_inside(seen, before, owners, k, case)
            if interrupt and not propagated:
                fail("the exception raised inside the with block did not come out of it: restore in a `finally:` "
                     "clause and let the exception propagate (do not catch it, or re-raise it)", case=case)
            if not all(torch.equal(o, ob) for o, ob in zip(owners, owners_before)):
                fail("the owner maps changed: the view reads them, it must not write them", case=case)
            _check_in_place(originals, ptrs, [(w, w.data_ptr()) for w in weights], case, "after the block")
            _check_restored(originals, before, seen, owners, k, case, interrupt)
    return (f"{n_cases} random sets of parameters (-0.0 and NaN among hidden and visible entries) agree with "
            "packnet.masks.apply_visibility_ inside the block and are restored bit for bit after it, also when the "
            "block raises")
