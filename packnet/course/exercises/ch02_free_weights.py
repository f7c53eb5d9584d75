"""Chapter 2 exercises: what may learn, masking gradients exactly, and a step that frozen weights survive.

Reference answers: :func:`packnet.trainable_mask`, :meth:`packnet.WeightGuard.mask_gradients` (the bitwise
masking of a partly trainable parameter, ``packnet/freezing.py``), and the :class:`packnet.WeightGuard` protocol
around ``optimizer.step()`` (mask the gradients, step, restore the frozen entries).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from packnet.freezing import WeightGuard
from packnet.masks import INT_OF_SIZE, bit_pattern, trainable_mask

from .checking import call, exercise, expect_equal, fail, generator, py_random


def _owner_case(seed: int) -> tuple[Tensor, int, bool, str]:
    g, rng = generator(200 + seed), py_random(200 + seed)
    shape = [(rng.randrange(1, 9),), (rng.randrange(1, 6), rng.randrange(1, 7)),
             (rng.randrange(1, 3), rng.randrange(1, 4), 3, 3)][seed % 3]
    if seed == 7:
        shape = (0, 3)  # an empty layer
    owner = torch.randint(0, 6, shape, generator=g, dtype=torch.uint8)
    if seed == 4:
        owner.zero_()  # the first task: everything free
    k, retraining = rng.randrange(1, 6), seed % 2 == 1
    return owner, k, retraining, (f"an owner map of shape {tuple(shape)}, k = {k}, retraining = {retraining} "
                                  f"(case {seed})")


def _weights(n: int, what: str = "") -> str:
    """``"1 free weight"``, ``"3 free weights"``: ``what`` goes before the noun."""
    return f"{n} {what + ' ' if what else ''}weight{'' if n == 1 else 's'}"


def _owners_of(owner: Tensor, where: Tensor) -> list[int]:
    return sorted({int(v) for v in owner[where].tolist()})


@exercise("2.1", "trainable_mask",
          points=1, library=("packnet.masks.trainable_mask",),
          title="which weights may change", reference="packnet.trainable_mask",
          hint="before pruning the k-th task trains the free weights (owner == 0); after pruning it re-trains "
               "only the weights it kept (owner == k). Compare the owner map, e.g. owner == 0.")
def check_trainable_mask(fn: Callable[..., Any]) -> str:
    n_cases = 40
    for seed in range(n_cases):
        owner, k, retraining, case = _owner_case(seed)
        before = owner.clone()
        got = call(fn, owner, k, retraining=retraining, case=case)
        if not torch.equal(owner, before):
            fail("your function changed the owner map; a mask is computed from it, the map stays as it is",
                 case=case)
        expected = trainable_mask(owner, k, retraining=retraining)
        if isinstance(got, Tensor) and got.shape == expected.shape and got.dtype != torch.bool:
            fail(f"the mask should be a bool tensor (True = may change), got dtype {got.dtype}: a comparison "
                 "such as owner == 0 gives one", case=case)
        if isinstance(got, Tensor) and got.shape == expected.shape and got.dtype == torch.bool:
            allowed, denied = got & ~expected, ~got & expected
            if bool(allowed.any()):
                owners = _owners_of(owner, allowed)
                n_free = int((allowed & (owner == 0)).sum())
                others = [v for v in owners if v != 0 and not (v == k and not retraining)]
                n_others = int((allowed & (owner != 0) & ((owner != k) | retraining)).sum())
                problems = []
                if retraining and n_free:
                    problems.append(f"{_weights(n_free, 'free')} change: after pruning the free weights include "
                                    "the ones just pruned, which must stay exactly 0 until the next task, so only "
                                    f"the task's own weights (owner == {k}) re-train")
                if not retraining and k in owners:
                    problems.append(f"{_weights(int((allowed & (owner == k)).sum()))} with owner value "
                                    f"{k} change: task {k} owns nothing until it is pruned, so in this random map those "
                                    "belong to another task; before pruning only free weights (owner == 0) train")
                if n_others:
                    problems.append(f"{_weights(n_others)} owned by other tasks (owner values {others}) "
                                    "change: they are frozen")
                fail(f"{'while re-training' if retraining else 'before pruning'} it lets "
                     + "; it also lets ".join(problems), case=case)
            if bool(denied.any()):
                what = f"of the weights task {k} kept (owner == {k})" if retraining else "free weights (owner == 0)"
                fail(f"it freezes {int(denied.sum())} {what}: those are exactly the ones that must learn in this "
                     "phase", case=case)
        expect_equal(got, expected, case=case, what="the trainable mask")
    return f"{n_cases} random owner maps agree with packnet.trainable_mask"


# ---------------------------------------------------------------------------------------------------- 2.2
def _reference_mask_gradients_(params: list[Tensor], trainable: list[Tensor]) -> None:
    """What WeightGuard.mask_gradients does to a partly trainable parameter: AND the gradient's bits with
    all-ones (trainable) / all-zeros (frozen), which writes +0.0 whatever was there."""
    for p, m in zip(params, trainable):
        if p.grad is not None:
            p.grad.view(INT_OF_SIZE[p.element_size()]).bitwise_and_(bit_pattern(m, p))


def _grad_case(seed: int) -> tuple[list[nn.Parameter], list[Tensor], str]:
    g, rng = generator(220 + seed), py_random(220 + seed)
    dtype = torch.float64 if seed % 5 == 4 else torch.float32
    n = rng.randrange(1, 5)
    shapes = [tuple(rng.randrange(1, 6) for _ in range(rng.randrange(1, 4))) for _ in range(n)]
    params, masks = [], []
    for i, shape in enumerate(shapes):
        p = nn.Parameter(torch.randn(shape, generator=g, dtype=dtype))
        grad = torch.randn(shape, generator=g, dtype=dtype)
        if seed % 3 != 0:  # NaN, +-inf, -0.0 and +0.0 scattered over frozen and trainable entries alike
            special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0], dtype=dtype)
            pick = torch.rand(shape, generator=g) < 0.3
            which = torch.randint(0, 5, shape, generator=g)
            grad = torch.where(pick, special[which], grad)
        p.grad = grad
        kind = rng.random()
        if kind < 0.15:
            mask = torch.ones(shape, dtype=torch.bool)
        elif kind < 0.3:
            mask = torch.zeros(shape, dtype=torch.bool)
        else:
            mask = torch.rand(shape, generator=g) < 0.5
        params.append(p)
        masks.append(mask)
    if seed % 7 == 6:
        params[0].grad = None  # a parameter that took no part in the backward pass
    specials = "" if seed % 3 == 0 else ", gradients with NaN, ±inf and -0.0"
    return params, masks, (f"{n} parameters of shapes {shapes}, {dtype}{specials} (case {seed})")


def _bits_equal(a: Tensor, b: Tensor) -> Tensor:
    """Entry by entry: the same value, NaN equal to NaN, -0.0 different from +0.0."""
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    return same & (torch.signbit(a) == torch.signbit(b))


@exercise("2.2", "mask_gradients_",
          points=2, library=("packnet.freezing.WeightGuard.mask_gradients",),
          title="zero the gradients of frozen entries, exactly",
          reference="packnet.WeightGuard.mask_gradients",
          hint="a frozen entry's gradient must become exactly +0.0, in place (p.grad stays the same "
               "tensor). Multiplying by the mask does not give +0.0 for a NaN, an inf or a negative "
               "gradient; a parameter without a gradient is left alone.")
def check_mask_gradients(fn: Callable[..., Any]) -> str:
    n_cases = 30
    for seed in range(n_cases):
        params, masks, case = _grad_case(seed)
        grads = [p.grad for p in params]
        grads_before = [None if gr is None else gr.clone() for gr in grads]
        ptrs = [None if gr is None else gr.data_ptr() for gr in grads]
        values_before = [p.detach().clone() for p in params]
        masks_before = [m.clone() for m in masks]
        call(fn, params, masks, case=case)
        expected_params = [nn.Parameter(v.clone()) for v in values_before]
        for p, gr in zip(expected_params, grads_before):
            p.grad = None if gr is None else gr.clone()
        _reference_mask_gradients_(expected_params, masks_before)
        if not all(torch.equal(m, b) for m, b in zip(masks, masks_before)):
            fail("your function changed the masks it was given", case=case)
        rows = list(zip(range(len(params)), params, grads, ptrs, grads_before, values_before, masks_before))
        for i, p, gr, ptr, before, value, mask in rows:
            where = f"parameter {i} (shape {tuple(p.shape)})"
            if before is None:
                if p.grad is not None:
                    fail(f"{where} had no gradient (.grad is None) and got one: leave such parameters alone",
                         case=case)
                continue
            if p.grad is None:
                fail(f"the gradient of {where} became None: keep the tensor and write +0.0 into its frozen "
                     "entries", case=case)
            if p.grad is not gr or p.grad.data_ptr() != ptr:
                fail(f"it replaced the gradient of {where} by a new tensor (p.grad.data_ptr() changed) instead of "
                     "changing it in place: the trailing _ of mask_gradients_ promises in place, and whoever holds "
                     "the gradient tensor (a gradient-accumulation buffer, DDP's bucket views) would not see the "
                     "change. `p.grad = p.grad * mask` makes a new tensor; use an in-place operation such as "
                     "masked_fill_", case=case)
            if not _bits_equal(p.detach(), value).all():
                fail(f"it changed the values of {where} itself: only the gradients are to be masked", case=case)
        with_grad = [(i, p.grad, before, mask) for i, p, _, _, before, _, mask in rows if before is not None]
        kept = [_bits_equal(got, before) for _, got, before, _ in with_grad]
        if (all(bool(k[~m].all()) for k, (_, _, _, m) in zip(kept, with_grad))
                and all(bool((got[m] == 0).all()) for _, got, _, m in with_grad)
                and any(bool((~k[m]).any()) for k, (_, _, _, m) in zip(kept, with_grad))):
            fail("it zeroed the gradients of the trainable entries and left the frozen ones: the mask is True "
                 "where a weight MAY change, so write zeros where it is False (~mask)", case=case)
        for k, (i, got, before, mask) in zip(kept, with_grad):
            where = f"parameter {i} (shape {tuple(got.shape)})"
            if not bool(k[mask].all()):
                fail(f"it changed {int((mask & ~k).sum())} gradient entries of {where} that are trainable: "
                     "they must stay exactly as backward() left them (NaN, inf and -0.0 included)", case=case)
            frozen = got[~mask]
            n_nan = int(torch.isnan(frozen).sum())
            n_neg_zero = int(((frozen == 0) & torch.signbit(frozen)).sum())
            if n_nan or n_neg_zero:
                found = " and ".join(part for part in (f"{n_nan} are NaN" if n_nan else "",
                                                       f"{n_neg_zero} are -0.0" if n_neg_zero else "") if part)
                fail(f"of the frozen gradient entries of {where}, {found} instead of +0.0: multiplying by the "
                     "mask does not write zeros, since nan * 0 = nan, inf * 0 = nan and -x * 0 = -0.0. A NaN "
                     "left in a frozen entry still poisons whole-tensor operations (clip_grad_norm_'s total "
                     "norm becomes NaN, and with it every trainable gradient). Write +0.0 instead: "
                     "p.grad.masked_fill_(~mask, 0.0)", case=case)
            if bool((frozen != 0).any()):
                fail(f"{int((frozen != 0).sum())} frozen gradient entries of {where} are still not zero",
                     case=case)
        for i, (p, e) in enumerate(zip(params, expected_params)):
            if e.grad is not None:
                expect_equal(p.grad, e.grad, case=case, what=f"the gradient of parameter {i}")
    return (f"{n_cases} random sets of gradients (NaN, ±inf and -0.0 included) are masked in place exactly as "
            "packnet.WeightGuard.mask_gradients does")


# ---------------------------------------------------------------------------------------------------- 2.3
_OPTIMIZERS: list[tuple[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer], int]] = [
    # (description, factory, unguarded warm-up steps before the guarded ones)
    ("SGD(lr=0.1)", lambda ps: torch.optim.SGD(ps, lr=0.1), 0),
    ("SGD(lr=0.1, momentum=0.9) after 2 steps without protection (non-zero momentum buffers)",
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 2),
    ("SGD(lr=0.1, momentum=0.9, weight_decay=0.01)",
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01), 0),
    ("Adam(lr=0.01)", lambda ps: torch.optim.Adam(ps, lr=0.01), 0),
    ("Adam(lr=0.01, weight_decay=0.01)", lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01), 0),
    ("AdamW(lr=0.01, weight_decay=0.1)", lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1), 0),
]
_STEPS = 3


def _tiny_net(seed: int) -> tuple[list[nn.Parameter], list[Tensor], list[tuple[Tensor, Tensor]]]:
    """Two layers as plain parameters (drawn from a private generator), their trainable masks, and batches."""
    g = generator(seed)
    shapes = [(6, 5), (6,), (3, 6), (3,)]
    params = [nn.Parameter(torch.randn(s, generator=g) * 0.5) for s in shapes]
    masks = [torch.rand(shapes[0], generator=g) < 0.5,   # partly trainable
             torch.zeros(shapes[1], dtype=torch.bool),    # fully frozen (a bias after the first task)
             torch.rand(shapes[2], generator=g) < 0.5,   # partly trainable
             torch.ones(shapes[3], dtype=torch.bool)]     # fully trainable (the task's own head)
    batches = [(torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(8)]
    return params, masks, batches


def _loss(params: list[nn.Parameter], x: Tensor, y: Tensor) -> Tensor:
    w1, b1, w2, b2 = params
    return F.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)


def _reference_guarded_step(optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                            trainable: list[Tensor]) -> None:
    guard = WeightGuard.from_specs(list(zip(params, trainable)))
    guard.mask_gradients()
    optimizer.step()
    guard.restore_frozen()


def _run(step_fn: Callable[..., Any], seed: int, make: Callable[..., torch.optim.Optimizer], warmup: int,
         on_step: Callable[[int, list[nn.Parameter], list[Tensor]], None]) -> list[nn.Parameter]:
    params, masks, batches = _tiny_net(seed)
    opt = make(params)
    for i, (x, y) in enumerate(batches[:warmup + _STEPS]):
        opt.zero_grad(set_to_none=True)
        _loss(params, x, y).backward()
        if i < warmup:
            opt.step()
            continue
        before = [p.detach().clone() for p in params]
        step_fn(opt, params, masks)
        on_step(i - warmup, params, before)
    return params


@exercise("2.3", "guarded_step",
          points=3,
          library=("packnet.freezing.WeightGuard.mask_gradients",
                   "packnet.freezing.WeightGuard.restore_frozen"),
          title="one optimizer step that frozen weights survive, under any optimizer",
          reference="packnet.WeightGuard (mask_gradients, step, restore_frozen)",
          hint="a zero gradient does not stop momentum or weight decay from moving a weight: a step that "
               "frozen weights survive puts their exact old values back once the optimizer has stepped, and "
               "leaves the trainable entries exactly as the optimizer's one step left them.")
def check_guarded_step(fn: Callable[..., Any]) -> str:
    for j, (name, make, warmup) in enumerate(_OPTIMIZERS):
        seed = 240 + j
        ref_steps: list[list[Tensor]] = []  # the reference's parameters after each guarded step
        _run(_reference_guarded_step, seed, make, warmup,
             lambda s, ps, before: ref_steps.append([p.detach().clone() for p in ps]))
        _, masks, _ = _tiny_net(seed)

        def judge(s: int, params: list[nn.Parameter], before: list[Tensor]) -> None:
            case = f"guarded step {s + 1} of {_STEPS}"
            for i, (p, m, old, ref) in enumerate(zip(params, masks, before, ref_steps[s])):
                w = p.detach()
                moved = (w != old) & ~m
                if bool(moved.any()):
                    delta = float((w - old)[moved].abs().max())
                    stuck = bool((~m).any()) and bool(m.any()) and torch.equal(w[m], old[m])
                    extra = (" and the trainable entries did not move at all: the mask is True where a weight "
                             "MAY change, so restore where it is False") if stuck else (
                             ". A zero gradient is not enough: momentum carried over from earlier steps and "
                             "weight decay (SGD's and Adam's weight_decay, AdamW's decoupled decay) move a weight "
                             "whose gradient is 0; write the frozen values back after optimizer.step()")
                    fail(f"{int(moved.sum())} frozen entries of parameter {i} (shape {tuple(p.shape)}) moved under "
                         f"{name}: max |Δw| = {delta:.3g}{extra}", case=case)
                if not torch.equal(w[m], ref[m]):
                    if bool(m.any()) and torch.equal(w[m], old[m]) and not torch.equal(ref[m], old[m]):
                        fail(f"the trainable entries of parameter {i} did not change in this step under {name}: call "
                             "optimizer.step() once, and do not zero the gradients (zero_grad) before it",
                             case=case)
                    delta = float((w[m] - ref[m]).abs().max())
                    fail(f"the trainable entries of parameter {i} (shape {tuple(p.shape)}) differ from the "
                         f"reference step under {name} (max |Δ| = {delta:.3g}): they must get exactly the optimizer's update, so "
                         "leave their gradients and the values step() gives them alone, and step only once",
                         case=case)

        got = _run(lambda opt, ps, ms: call(fn, opt, ps, ms, case=f"a step with {name}"), seed, make, warmup,
                   judge)
        for i, (p, e) in enumerate(zip(got, ref_steps[-1])):
            expect_equal(p.detach(), e, case=f"{_STEPS} steps with {name}", what=f"parameter {i}")
    return (f"{len(_OPTIMIZERS)} optimizers (SGD, momentum with warm buffers, weight decay, Adam, AdamW) × {_STEPS} "
            "steps: frozen entries bit-identical, trainable entries equal to packnet.WeightGuard's step")
