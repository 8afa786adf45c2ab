"""Feature groups: patch masks, arbitrary masks, and the sums and removals Sensitivity-n makes with them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradattr
from gradattr.groups import as_grouping
from gradattr.metrics import draw_subsets


def test_patches_on_a_small_image_by_hand() -> None:
    expected = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    assert torch.equal(gradattr.patches((1, 4, 4), 2), expected.unsqueeze(0))
    assert torch.equal(gradattr.patches((1, 4, 4), (2, 2)), expected.unsqueeze(0))
    assert gradattr.patches((1, 4, 4), 2).dtype == torch.long


def test_patches_group_channels_and_follow_the_paper_on_mnist() -> None:
    mask = gradattr.patches((3, 4, 4), 2)
    assert mask.shape == (3, 4, 4)
    assert torch.equal(mask[0], mask[1]) and torch.equal(mask[0], mask[2])
    mnist = gradattr.patches((1, 28, 28), 4)
    assert int(mnist.max()) + 1 == 49
    assert torch.equal(torch.bincount(mnist.reshape(-1)), torch.full((49,), 16))


def test_patches_at_uneven_edges_are_smaller() -> None:
    mask = gradattr.patches((1, 5, 5), 2)
    sizes = torch.bincount(mask.reshape(-1)).view(3, 3)
    assert torch.equal(sizes, torch.tensor([[4, 4, 2], [4, 4, 2], [2, 2, 1]]))
    assert torch.equal(gradattr.patches((10,), 4), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2]))


def test_rectangular_patches_over_the_trailing_dimension() -> None:
    mask = gradattr.patches((2, 3, 4), (1, 2))
    assert torch.equal(mask[1], torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]))
    assert torch.equal(mask[0], mask[1])


@pytest.mark.parametrize(
    ("shape", "size", "match"),
    [
        ((1, 4, 4), 0, "positive"),
        ((4,), (2, 2), "more dimensions"),
        ((1, 4, 4), (2, -1), "positive"),
        ((), 2, "non-empty"),
    ],
)
def test_bad_patches(shape: tuple, size: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gradattr.patches(shape, size)


def test_token_mask_extends_over_the_embedding_and_channel_mask_broadcasts() -> None:
    tokens = as_grouping(torch.tensor([0, 1, 1]), (3, 4), torch.device("cpu"))
    assert tokens.num_groups == 2
    assert torch.equal(tokens.ids, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]))
    pixels = as_grouping(torch.arange(4).view(1, 2, 2), (3, 2, 2), torch.device("cpu"))
    assert torch.equal(pixels.ids, torch.arange(4).repeat(3))


def test_group_sums_by_hand() -> None:
    grouping = as_grouping(gradattr.patches((1, 4, 4), 2), (1, 4, 4), torch.device("cpu"))
    r = torch.arange(16, dtype=torch.float64).view(1, 16)
    # patch 0 holds features 0, 1, 4, 5; patch 1: 2, 3, 6, 7; patch 2: 8, 9, 12, 13; patch 3: 10, 11, 14, 15
    assert torch.equal(grouping.sums(r), torch.tensor([[10.0, 18.0, 42.0, 50.0]], dtype=torch.float64))


class Recorder(nn.Module):
    """Linear on a flattened (1, 4, 4) input that keeps every batch it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.linear(x.flatten(1))


def test_removals_set_exactly_the_chosen_patches_to_the_baseline() -> None:
    torch.manual_seed(0)
    model = Recorder()
    x = torch.rand(2, 1, 4, 4) + 1.0  # no feature equals the baseline by chance
    groups = gradattr.patches((1, 4, 4), 2)
    r = (x + 3.0) * model.linear.weight[1].detach().view(1, 1, 4, 4)  # exact for removals to -3
    model.seen.clear()
    result = gradattr.sensitivity_n(model, x, r, target=1, ns=[2], num_subsets=6, feature_groups=groups, baseline=-3.0)
    rows = torch.cat(model.seen[1:])  # the first call evaluates the inputs themselves
    subsets = draw_subsets(4, 2, 6, seed=0)
    assert rows.shape == (2 * 6, 1, 4, 4)
    for b in range(2):
        for k, subset in enumerate(subsets.tolist()):
            expected = x[b].clone()
            for group in subset:
                expected[groups == group] = -3.0
            assert torch.equal(rows[b * 6 + k], expected)
    assert (result.per_sample > 0.999).all()  # linear model, exact attributions: patch sums exact too


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (torch.tensor([[0, 1], [3, 3]]), ValueError, r"contiguous 0\.\.G-1; ids 2 are unused"),
        (torch.tensor([[0, -1], [1, 1]]), ValueError, "1 of 4 features have a negative id"),
        (torch.zeros(3, 3, dtype=torch.long), ValueError, r"shape \(3, 3\) does not fit .* \(2, 2\)"),
        (torch.zeros(2, 2, dtype=torch.bool), TypeError, "integer group ids"),
        ([[0, 1], [2, 3]], TypeError, "integer tensor"),
    ],
)
def test_bad_masks(mask: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        as_grouping(mask, (2, 2), torch.device("cpu"))
