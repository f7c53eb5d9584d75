"""Owner maps and magnitude selection: invariants over random shapes and ratios (hypothesis), and exact counts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from packnet.masks import (claim_kept, free_mask, new_owner_map, owned_mask, owner_counts, trainable_mask,
                           visible_mask)
from packnet.pruning import check_prune_ratio, global_prune_masks, num_to_prune, prune_mask

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
ratios = st.floats(0.0, 0.99, allow_nan=False)


def reference_prune(weight: torch.Tensor, candidates: torch.Tensor, ratio: float) -> torch.Tensor:
    """Full stable sort by (|w|, flat index): what prune_mask must select, computed the slow obvious way."""
    flat, cand = weight.abs().flatten(), candidates.flatten()
    idx = [i for i in sorted(range(flat.numel()), key=lambda i: (flat[i].item(), i)) if cand[i]]
    k = num_to_prune(len(idx), ratio)
    out = torch.zeros_like(cand)
    out[idx[:k]] = True
    return out.view_as(candidates)


def simulate_tasks(shape, task_ratios, seed):
    """Run PackNet's owner-map bookkeeping for several tasks on one random weight tensor."""
    g = torch.Generator().manual_seed(seed)
    owner = new_owner_map(torch.empty(shape))
    for k, ratio in enumerate(task_ratios, start=1):
        weight = torch.randn(shape, generator=g)
        candidates = free_mask(owner)
        pruned = prune_mask(weight, candidates, ratio)
        owner[candidates & ~pruned] = k
    return owner


@settings(max_examples=60, deadline=None)
@given(shapes, st.lists(ratios, min_size=1, max_size=6), st.integers(0, 10_000))
def test_owner_maps_of_tasks_are_disjoint_and_with_the_free_weights_cover_everything(shape, task_ratios, seed):
    owner = simulate_tasks(shape, task_ratios, seed)
    masks = [free_mask(owner)] + [owned_mask(owner, k) for k in range(1, len(task_ratios) + 1)]
    total = torch.stack([m.to(torch.int64) for m in masks]).sum(0)
    assert torch.equal(total, torch.ones(shape, dtype=torch.int64))  # each weight in exactly one set


@settings(max_examples=60, deadline=None)
@given(shapes, st.lists(ratios, min_size=1, max_size=6), st.integers(0, 10_000))
def test_visibility_grows_with_the_task_and_never_shows_free_weights(shape, task_ratios, seed):
    owner = simulate_tasks(shape, task_ratios, seed)
    previous = torch.zeros(shape, dtype=torch.bool)
    for k in range(1, len(task_ratios) + 1):
        vis = visible_mask(owner, k)
        assert not (vis & free_mask(owner)).any()
        assert (previous & ~vis).sum() == 0  # task k sees everything task k-1 saw
        assert torch.equal(vis & ~previous, owned_mask(owner, k))
        previous = vis


@settings(max_examples=80, deadline=None)
@given(shapes, ratios, st.integers(0, 10_000), st.booleans())
def test_prune_mask_matches_a_stable_full_sort(shape, ratio, seed, with_ties):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=g)
    if with_ties:  # few distinct magnitudes, both signs: many ties at the threshold
        weight = torch.randint(-3, 4, shape, generator=g).float()
    candidates = torch.rand(shape, generator=g) < 0.7
    mask = prune_mask(weight, candidates, ratio)
    assert torch.equal(mask, reference_prune(weight, candidates, ratio))
    assert int(mask.sum()) == num_to_prune(int(candidates.sum()), ratio)
    assert not (mask & ~candidates).any()


@settings(max_examples=40, deadline=None)
@given(st.lists(shapes, min_size=1, max_size=4), ratios, st.integers(0, 10_000), st.booleans())
def test_global_prune_matches_a_stable_sort_over_all_layers(layer_shapes, ratio, seed, with_ties):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randint(-3, 4, s, generator=g).float() if with_ties else torch.randn(s, generator=g)
               for s in layer_shapes]
    candidates = [torch.rand(s, generator=g) < 0.8 for s in layer_shapes]
    masks = global_prune_masks(weights, candidates, ratio)
    # Reference: concatenate in layer order and prune with the per-layer rule on the concatenation.
    flat = reference_prune(torch.cat([w.flatten() for w in weights]), torch.cat([c.flatten() for c in candidates]),
                           ratio)
    assert torch.equal(torch.cat([m.flatten() for m in masks]), flat)


def test_global_prune_handles_tiny_and_huge_magnitudes_exactly():
    weights = [torch.tensor([1e-30, 3e38, -2.5, 0.0]), torch.tensor([7.0, 1e-45, -1e-30])]
    candidates = [torch.ones(4, dtype=torch.bool), torch.ones(3, dtype=torch.bool)]
    masks = global_prune_masks(weights, candidates, 0.5)  # prunes round(3.5) = 4 smallest
    assert [m.tolist() for m in masks] == [[True, False, False, True], [False, True, True]]


def test_prune_mask_ratio_zero_prunes_nothing_and_ties_break_by_index():
    w = torch.tensor([0.5, 0.5, 0.5, 0.5])
    assert prune_mask(w, torch.ones(4, dtype=torch.bool), 0.0).tolist() == [False] * 4
    assert prune_mask(w, torch.ones(4, dtype=torch.bool), 0.5).tolist() == [True, True, False, False]


@pytest.mark.parametrize("bad", [1.0, -0.01, float("nan"), "0.5", None, True])
def test_check_prune_ratio_refuses_values_outside_the_half_open_interval(bad):
    with pytest.raises(ValueError, match="prune_ratio"):
        check_prune_ratio(bad)


def test_trainable_mask_before_and_after_pruning():
    owner = torch.tensor([0, 1, 2, 2, 0], dtype=torch.uint8)
    assert trainable_mask(owner, 2, retraining=False).tolist() == [True, False, False, False, True]
    assert trainable_mask(owner, 2, retraining=True).tolist() == [False, False, True, True, False]


def test_visible_mask_for_the_255th_task_and_owner_counts():
    owner = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)
    assert visible_mask(owner, 255).tolist() == [False, True, True, True]
    assert visible_mask(owner, 254).tolist() == [False, True, True, False]
    assert owner_counts(owner)[[0, 1, 254, 255]].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="1 to 255"):
        visible_mask(owner, 256)


def test_owner_map_costs_one_byte_per_weight():
    owner = new_owner_map(torch.empty(100, 30))
    assert owner.dtype == torch.uint8 and owner.element_size() * owner.numel() == 3000


def test_nan_candidates_never_select_a_non_candidate():
    w = torch.tensor([0.5, -0.7, float("nan"), float("nan"), float("nan"), float("nan")])
    cand = torch.tensor([False, False, True, True, True, True])
    assert not (prune_mask(w, cand, 0.5) & ~cand).any()
    assert not (global_prune_masks([w], [cand], 0.5)[0] & ~cand).any()


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(1, 255), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_claim_kept_gives_the_survivors_to_the_task_and_changes_nothing_else(shape, k, pruned_share, seed):
    g = torch.Generator().manual_seed(seed)
    owner = torch.randint(0, k, shape, generator=g).to(torch.uint8)  # tasks 1..k-1 and free weights
    before = owner.clone()
    candidates = free_mask(owner)
    pruned = candidates & (torch.rand(shape, generator=g) < pruned_share)
    after = claim_kept(owner, candidates, pruned, k)
    assert torch.equal(owner, before)  # pure: the input is not modified
    assert after.dtype == torch.uint8 and after.shape == owner.shape
    assert torch.equal(owned_mask(after, k), candidates & ~pruned)  # survivors: the task's own
    assert torch.equal(free_mask(after), pruned)  # pruned: free again, nothing else became free
    assert torch.equal(after[~candidates], owner[~candidates])  # earlier tasks keep their weights
    counts, counts_before = owner_counts(after), owner_counts(owner)
    assert int(counts[k]) == int((candidates & ~pruned).sum())
    assert int(counts.sum()) == owner.numel() and torch.equal(counts[1:k], counts_before[1:k])


def test_claim_kept_ignores_pruned_entries_outside_the_candidates():
    owner = torch.tensor([1, 0, 0, 2], dtype=torch.uint8)
    candidates = torch.tensor([False, True, True, False])
    pruned = torch.tensor([True, True, False, True])
    assert claim_kept(owner, candidates, pruned, 3).tolist() == [1, 0, 3, 2]


def test_claim_kept_refuses_bad_owner_values_and_shapes():
    owner = new_owner_map(torch.empty(2, 3))
    free = free_mask(owner)
    assert claim_kept(owner, free, free, 255).tolist() == [[0] * 3] * 2  # everything pruned: all free
    assert claim_kept(owner, free, ~free, 255).tolist() == [[255] * 3] * 2  # nothing pruned: the 255th task's
    for bad in (0, 256):
        with pytest.raises(ValueError, match="1 to 255"):
            claim_kept(owner, free, ~free, bad)
    with pytest.raises(ValueError, match="shape"):
        claim_kept(owner, free.flatten(), ~free, 1)


def test_packnet_prune_updates_the_owner_map_with_claim_kept():
    from torch import nn

    from packnet import PackNet

    torch.manual_seed(0)
    pn = PackNet(nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)), prune_ratio=0.5)
    data = [(torch.randn(8, 5), torch.randint(0, 3, (8,)))]
    for t in range(3):
        pn.train_task(t, data, epochs=1, progress=False)
        before = {n: o.clone() for n, o in pn.owner.items()}
        pn.prune(t)
        for name, w in dict(pn.module.named_parameters()).items():
            if name in pn.owner:
                pruned = free_mask(pn.owner[name])
                expected = claim_kept(before[name], free_mask(before[name]), pruned, t + 1)
                assert torch.equal(pn.owner[name], expected)
                assert torch.equal(w[pruned], torch.zeros_like(w[pruned]))
        pn.freeze(t)


@pytest.mark.parametrize("with_ties", [False, True])
@pytest.mark.parametrize("candidates_kind", ["all", "half"])
def test_the_radix_select_gives_prune_mask_exactly_the_kthvalue_threshold(monkeypatch, with_ties, candidates_kind):
    """Large layers take the radix select (RADIX_MIN): same masks as torch.kthvalue's threshold, with ties,
    zeros, -0.0, +inf and NaN among the weights."""
    import packnet.pruning as pruning

    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        shape = (int(torch.randint(1, 40, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g)))
        w = (torch.randint(-4, 5, shape, generator=g).float() * 0.25 if with_ties
             else torch.randn(shape, generator=g))
        flat = w.view(-1)
        for v in (-0.0, 0.0, float("inf"), float("nan"))[: trial % 5]:
            flat[int(torch.randint(0, flat.numel(), (1,), generator=g))] = v
        cand = (torch.ones(shape, dtype=torch.bool) if candidates_kind == "all"
                else torch.rand(shape, generator=g) < 0.5)
        ratio = float(torch.rand((), generator=g)) * 0.99
        scores = torch.nan_to_num(w, nan=1.0).abs().neg().mul(-0.5)  # a criterion's (some are -0.0)
        monkeypatch.setattr(pruning, "RADIX_MIN", 1 << 40)
        expected = prune_mask(w, cand, ratio), prune_mask(w, cand, ratio, scores=scores)
        monkeypatch.setattr(pruning, "RADIX_MIN", 0)
        assert torch.equal(prune_mask(w, cand, ratio), expected[0]), (trial, shape, ratio)
        assert torch.equal(prune_mask(w, cand, ratio, scores=scores), expected[1]), (trial, shape, ratio)
