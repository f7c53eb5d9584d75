"""Chapter 3 exercises: how many weights to prune, the per-layer mask, and one global threshold.

Reference answers: :func:`packnet.num_to_prune`, :func:`packnet.prune_mask`, :func:`packnet.global_prune_masks`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from packnet.pruning import global_prune_masks, num_to_prune, prune_mask

from .checking import call, exercise, expect_equal, fail, generator, py_random

# Ratios whose product with n lands just below or on a .5 in floating point: int() and math.ceil() get them wrong.
_TRICKY = [(100, 0.29), (100, 0.57), (10, 0.25), (10, 0.35), (1000, 0.001), (3, 0.5), (5, 0.5), (7, 0.0),
           (1, 0.5), (0, 0.75), (1000, 0.75), (12, 0.875)]


@exercise("3.1", "num_to_prune",
          points=1, library=("packnet.pruning.num_to_prune",),
          title="how many weights a ratio prunes", reference="packnet.num_to_prune",
          hint="the count is prune_ratio * n rounded to the *nearest* integer. In floating point a product such "
               "as 0.29 * 100 lands just below a whole number (28.999999999999996): converting to an int "
               "drops the fraction and loses one weight, and rounding up gains one.")
def check_num_to_prune(fn: Callable[..., Any]) -> str:
    rng = py_random(31)
    cases = _TRICKY + [(rng.randrange(0, 5000), round(rng.random() * 0.99, 3)) for _ in range(60)]
    for n, r in cases:
        got = call(fn, n, r, case=f"n = {n}, prune_ratio = {r}")
        expect_equal(got, num_to_prune(n, r), case=f"n = {n}, prune_ratio = {r}", what="the count")
    return f"{len(cases)} cases agree with packnet.num_to_prune"


def _layer_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, float, str]:
    g, rng = generator(seed), py_random(seed)
    shape = [(rng.randrange(1, 7),), (rng.randrange(1, 9), rng.randrange(1, 9)),
             (rng.randrange(1, 4), rng.randrange(1, 3), 3, 3)][seed % 3]
    if seed % 4 == 3:  # few distinct magnitudes, both signs: ties at the threshold
        weight = (torch.randint(-2, 3, shape, generator=g) * 0.5).float()
    else:
        weight = torch.randn(shape, generator=g)
    candidates = torch.rand(shape, generator=g) < (1.0 if seed % 5 == 0 else 0.7)
    ratio = [0.0, 0.25, 0.5, 0.75, 0.9, round(rng.random() * 0.99, 2)][seed % 6]
    return weight, candidates, ratio, (f"a weight of shape {tuple(shape)} with {int(candidates.sum())} candidates "
                                      f"and prune_ratio {ratio} (case {seed})")


@exercise("3.2", "layer_prune_mask",
          points=2, library=("packnet.pruning.prune_mask",),
          title="the per-layer pruning mask", reference="packnet.prune_mask",
          hint="score the candidates by |w| (non-candidates can never be pruned), take the num_to_prune(n, r) "
               "smallest; on equal magnitudes prune the lower flat index first (a stable sort of the scores "
               "does exactly that).")
def check_layer_prune_mask(fn: Callable[..., Any]) -> str:
    n_cases = 48
    for seed in range(n_cases):
        weight, candidates, ratio, case = _layer_case(seed)
        w_before, c_before = weight.clone(), candidates.clone()
        got = call(fn, weight, candidates, ratio, case=case)
        if not (torch.equal(weight, w_before) and torch.equal(candidates, c_before)):
            fail("your function changed its inputs; pruning only decides, it must not modify the weights",
                 case=case)
        expected = prune_mask(weight, candidates, ratio)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == torch.bool:
            if bool((got & ~candidates).any()):
                fail("it prunes entries that are not candidates (weights another task owns)", case=case)
            if int(got.sum()) != int(expected.sum()):
                fail(f"it prunes {int(got.sum())} weights, expected exactly {int(expected.sum())} = "
                     f"num_to_prune({int(candidates.sum())}, {ratio})", case=case)
        expect_equal(got, expected, case=case, what="the pruning mask")
    return f"{n_cases} random layers (ties included) agree with packnet.prune_mask"


@exercise("3.3", "global_prune_masks",
          points=3, library=("packnet.pruning.global_prune_masks",),
          title="one magnitude threshold for every layer",
          reference="packnet.global_prune_masks",
          hint="rank the candidates of all layers together by |w| and prune the num_to_prune(N, r) smallest "
               "of all N; on equal magnitudes prune earlier layers first, then lower flat indices.")
def check_global_prune_masks(fn: Callable[..., Any]) -> str:
    n_cases = 24
    for seed in range(n_cases):
        g, rng = generator(300 + seed), py_random(300 + seed)
        n_layers = rng.randrange(1, 4)
        shapes = [(rng.randrange(1, 6), rng.randrange(1, 6)) for _ in range(n_layers)]
        scale = [rng.choice([0.1, 1.0, 3.0]) for _ in range(n_layers)]  # layers of different magnitudes
        if seed % 4 == 3:
            weights = [(torch.randint(-2, 3, s, generator=g) * 0.5).float() for s in shapes]
        else:
            weights = [torch.randn(s, generator=g) * k for s, k in zip(shapes, scale)]
        candidates = [torch.rand(s, generator=g) < 0.8 for s in shapes]
        ratio = [0.25, 0.5, 0.75, 0.9][seed % 4]
        case = (f"{n_layers} layers of shapes {shapes}, {sum(int(c.sum()) for c in candidates)} candidates in all, "
                f"prune_ratio {ratio} (case {seed})")
        got = call(fn, weights, candidates, ratio, case=case)
        expected = global_prune_masks(weights, candidates, ratio)
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            fail(f"expected a list of {len(expected)} masks, one per layer, got "
                 f"{type(got).__name__}{'' if not hasattr(got, '__len__') else f' of length {len(got)}'}",
                 case=case)
        total_got = sum(int(m.sum()) for m in got if isinstance(m, torch.Tensor))
        total = sum(int(m.sum()) for m in expected)
        if total_got != total:
            fail(f"it prunes {total_got} weights in all, expected {total} = num_to_prune(N, {ratio}) over all "
                 "layers together (not per layer)", case=case)
        per_layer = [prune_mask(w, c, ratio) for w, c in zip(weights, candidates)]
        if (n_layers > 1 and not all(torch.equal(p, e) for p, e in zip(per_layer, expected))
                and all(isinstance(m, torch.Tensor) and m.shape == p.shape and torch.equal(m, p)
                        for m, p in zip(got, per_layer))):
            fail("these are per-layer masks: each layer pruned its own fraction. Here one magnitude threshold "
                 "is shared by all layers, so a layer of large weights keeps more than a layer of small ones",
                 case=case)
        for i, (m, e) in enumerate(zip(got, expected)):
            expect_equal(m, e, case=case, what=f"the mask of layer {i}")
    return f"{n_cases} random sets of layers agree with packnet.global_prune_masks"
