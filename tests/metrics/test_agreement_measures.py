"""Agreement between maps per sample: Spearman with average ranks, top-k intersection (Pearson kept)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

from gradattr.metrics import average_ranks, pearson_per_sample, spearman_per_sample, topk_intersection


def test_average_ranks_share_ties() -> None:
    ranks = average_ranks(torch.tensor([[3.0, 1.0, 1.0, 2.0, 5.0, 5.0, 5.0]]))
    assert ranks.tolist() == [[4.0, 1.5, 1.5, 3.0, 6.0, 6.0, 6.0]]


def test_spearman_matches_scipy_with_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (6, 2, 5), generator=generator).float()  # many ties
    b = torch.randn(6, 2, 5, generator=generator)
    ours = spearman_per_sample(a, b)
    reference = [spearmanr(a[i].reshape(-1), b[i].reshape(-1)).statistic for i in range(6)]
    assert torch.allclose(ours, torch.tensor(reference, dtype=torch.float64), atol=1e-12)


def test_spearman_sees_monotone_maps_as_equal_where_pearson_does_not() -> None:
    a = torch.linspace(0.1, 3.0, 20).view(1, 20)
    assert spearman_per_sample(a, a.exp()).item() == pytest.approx(1.0)
    assert spearman_per_sample(a, -(a**3)).item() == pytest.approx(-1.0)
    assert pearson_per_sample(a, a.exp()).item() < 0.95


def test_constant_map_has_no_correlation() -> None:
    a = torch.ones(2, 4)
    assert spearman_per_sample(a, torch.randn(2, 4)).isnan().all()


def test_topk_intersection_by_hand() -> None:
    a = torch.tensor([[5.0, -4.0, 3.0, 0.1, 0.2], [1.0, 2.0, 3.0, 4.0, 5.0]])
    b = torch.tensor([[-6.0, 0.0, 0.0, 3.5, 2.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    # sample 0: top-2 |a| = {0, 1}, |b| = {0, 3} -> 1 shared; top-3: {0, 1, 2} vs {0, 3, 4} -> 1 shared
    # sample 1: top-2 {3, 4} vs {0, 1} -> 0; top-3 {2, 3, 4} vs {0, 1, 2} -> 1
    assert topk_intersection(a, b, 2).tolist() == [0.5, 0.0]
    assert topk_intersection(a, b, 3).tolist() == pytest.approx([1 / 3, 1 / 3])
    assert topk_intersection(a, a, 4).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: topk_intersection(torch.ones(2, 5), torch.ones(2, 5), 0), r"k must be an int in 1\.\.5"),
        (lambda: topk_intersection(torch.ones(2, 5), torch.ones(2, 5), 6), r"k must be an int in 1\.\.5"),
        (lambda: topk_intersection(torch.ones(2, 5), torch.ones(2, 4), 1), "different shapes"),
        (lambda: spearman_per_sample(torch.ones(2, 5), torch.ones(3, 5)), "different shapes"),
    ],
)
def test_bad_arguments(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_spearman_is_a_correlation() -> None:
    generator = torch.Generator().manual_seed(1)
    values = spearman_per_sample(torch.randn(50, 30, generator=generator), torch.randn(50, 30, generator=generator))
    assert all(-1.0 <= v <= 1.0 for v in values.tolist()) and not any(math.isnan(v) for v in values.tolist())
