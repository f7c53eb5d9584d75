"""The pruning criterion seam: scores other than |w|, separate from the scope (per layer or global)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import assert_same_state, batches, conv_bn_net, learn, snapshot
from packnet import PackNet, global_prune_masks, prune_mask
from packnet.pruning import magnitude, prune_masks


def reference_masks(scores: list[torch.Tensor], candidates: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """The k lowest-scoring candidates over all tensors, ties to earlier tensors then lower flat indices: a sort."""
    entries = [(float(s.flatten()[i]), layer, i) for layer, (s, c) in enumerate(zip(scores, candidates))
               for i in c.flatten().nonzero().flatten().tolist()]
    chosen = sorted(entries)[: int(round(ratio * len(entries)))]
    masks = [torch.zeros(c.numel(), dtype=torch.bool) for c in candidates]
    for _, layer, i in chosen:
        masks[layer][i] = True
    return [m.view_as(c) for m, c in zip(masks, candidates)]


def random_case(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(5, 7, generator=g), torch.randn(13, generator=g).round(decimals=1)]  # ties in layer 2
    candidates = [torch.rand(w.shape, generator=g) < 0.7 for w in weights]
    return weights, candidates


@pytest.mark.parametrize("seed", range(8))
def test_the_default_is_bit_identical_to_ranking_by_magnitude(seed):
    weights, candidates = random_case(seed)
    scores = [magnitude("w", w) for w in weights]
    for ratio in (0.0, 0.3, 0.75):
        for w, c, s in zip(weights, candidates, scores):
            assert torch.equal(prune_mask(w, c, ratio), prune_mask(w, c, ratio, scores=s))
            assert torch.equal(prune_mask(w, c, ratio), reference_masks([s], [c], ratio)[0])
        default = global_prune_masks(weights, candidates, ratio)
        assert all(torch.equal(a, b) for a, b in zip(default, global_prune_masks(weights, candidates, ratio,
                                                                                 scores=scores)))
        assert all(torch.equal(a, b) for a, b in zip(default, reference_masks(scores, candidates, ratio)))


@pytest.mark.parametrize("seed", range(8))
def test_a_custom_criterion_prunes_the_lowest_scores_per_layer_and_globally(seed):
    weights, candidates = random_case(seed)
    g = torch.Generator().manual_seed(100 + seed)
    scores = [torch.rand(w.shape, generator=g) * (1 + layer) for layer, w in enumerate(weights)]
    for ratio in (0.25, 0.6):
        per_layer = prune_masks(weights, candidates, ratio, scope="layer", scores=scores)
        for w, c, s, m in zip(weights, candidates, scores, per_layer):
            assert torch.equal(m, reference_masks([s], [c], ratio)[0])
        together = prune_masks(weights, candidates, ratio, scope="global", scores=scores)
        assert all(torch.equal(a, b) for a, b in zip(together, reference_masks(scores, candidates, ratio)))


def test_scores_must_be_shaped_like_the_weight_non_negative_and_not_nan():
    w, c = torch.randn(6), torch.ones(6, dtype=torch.bool)
    with pytest.raises(ValueError, match="shape"):
        prune_mask(w, c, 0.5, scores=torch.ones(5))
    with pytest.raises(ValueError, match="non-negative"):
        prune_mask(w, c, 0.5, scores=torch.tensor([1.0, -1.0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="non-negative"):
        global_prune_masks([w], [c], 0.5, scores=[torch.tensor([1.0, float("nan"), 0, 0, 0, 0])])
    # only the candidates' scores matter: a negative score on a weight another task owns is never used
    assert int(prune_mask(w, c & (torch.arange(6) > 0), 0.4, scores=torch.tensor([-1.0, 1, 2, 3, 4, 5])).sum()) == 2


def test_packnet_default_equals_the_magnitude_criterion_bit_for_bit():
    results = []
    for criterion in (None, magnitude):
        torch.manual_seed(0)
        pn = PackNet(conv_bn_net(), prune_ratio=0.6, prune_criterion=criterion)
        for t in range(2):
            learn(pn, t, batches(t))
        results.append(({n: o.clone() for n, o in pn.owner.items()}, pn.module.state_dict()))
    (owner_a, state_a), (owner_b, state_b) = results
    assert all(torch.equal(owner_a[n], owner_b[n]) for n in owner_a)
    assert all(torch.equal(state_a[n], state_b[n]) for n in state_a)


def test_packnet_prunes_by_its_criterion_and_calls_it_with_each_prunable_weight():
    torch.manual_seed(0)
    seen = []

    def by_position(name: str, weight: torch.Tensor) -> torch.Tensor:
        """Scores that ignore the values: the last entries in flat order are kept."""
        seen.append((name, tuple(weight.shape)))
        return torch.arange(weight.numel(), dtype=torch.float32).view_as(weight)

    pn = PackNet(conv_bn_net(), prune_ratio=0.5, prune_criterion=by_position)
    pn.train_task(0, batches(0), 1, progress=False)
    pruned = pn.prune(0)
    assert [name for name, _ in seen] == pn.prunable_names
    for name in pn.prunable_names:
        owner = pn.owner[name].flatten()
        n = owner.numel()
        assert pruned[name] == round(0.5 * n)
        assert torch.equal(owner, (torch.arange(n) >= pruned[name]).to(torch.uint8))  # the first half freed


def test_a_criterion_with_bad_scores_is_refused_and_prune_changes_nothing():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5, prune_criterion=lambda name, w: w)  # w can be negative
    pn.train_task(0, batches(0), 1, progress=False)
    before = snapshot(pn)
    with pytest.raises(ValueError, match="non-negative"):
        pn.prune(0)
    assert_same_state(before, snapshot(pn))
    assert pn.stage == "training"


def test_a_criterion_must_be_callable():
    with pytest.raises(TypeError, match="prune_criterion must be a callable"):
        PackNet(nn.Linear(2, 2), prune_criterion="magnitude")
