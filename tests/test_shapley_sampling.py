"""Shapley value sampling against exact Shapley values by enumeration (and Captum's exact ShapleyValues)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from captum.attr import ShapleyValues
from torch import Tensor, nn

import gradattr

from zoo import TwoInputNet

DTYPE = torch.float64


class Interactions(nn.Module):
    """Four features with pairwise and triple interactions: Shapley values differ from every gradient map."""

    def forward(self, x: Tensor) -> Tensor:
        a, b, c, d = x.unbind(1)
        return torch.stack([torch.relu(a * 2 - b) + a * c - torch.tanh(b * c * d), a + d], dim=1)


def exact_shapley(model: nn.Module, x: Tensor, baseline: Tensor, target: int, groups: Tensor) -> Tensor:
    """φ_g = mean over all G! orderings of the marginal gain of group g (features of a group set together);
    returns per-group values, shape (B, G)."""
    num_groups = int(groups.max()) + 1
    phi = torch.zeros(x.shape[0], num_groups, dtype=x.dtype)
    for order in itertools.permutations(range(num_groups)):
        present = torch.zeros(num_groups, dtype=torch.bool)
        previous = model(baseline.expand_as(x))[:, target]
        for g in order:
            present[g] = True
            point = torch.where(present[groups], x, baseline)
            score = model(point)[:, target]
            phi[:, g] += score - previous
            previous = score
    return phi / math.factorial(num_groups)


X = torch.tensor([[1.0, -0.5, 2.0, 0.3], [-1.0, 1.5, 0.2, 1.1], [0.4, 0.4, -0.8, 2.0]], dtype=DTYPE)
BASELINE = torch.tensor([0.1, 0.2, -0.3, 0.0], dtype=DTYPE)


def test_converges_to_exact_shapley_values() -> None:
    model = Interactions()
    exact = exact_shapley(model, X, BASELINE, 0, torch.arange(4))
    captum_exact = ShapleyValues(model).attribute(X, baselines=BASELINE.unsqueeze(0), target=0)
    # the enumeration is right (Captum returns float32 results: two float32 roundings)
    torch.testing.assert_close(captum_exact.double(), exact, rtol=2.5e-7, atol=1e-7)
    errors = []
    for samples in (50, 3200):
        got = gradattr.attribute(model, X, "shapley_sampling", target=0, baseline=BASELINE, samples=samples)
        errors.append(float((got - exact).abs().max()))
    assert errors[1] < 0.05 and errors[1] < errors[0] / 3  # error shrinks like 1/sqrt(samples)


def test_completeness_holds_for_any_number_of_samples() -> None:
    model = Interactions()
    got = gradattr.attribute(model, X, "shapley_sampling", target=0, baseline=BASELINE, samples=1)
    with torch.no_grad():
        delta = model(X)[:, 0] - model(BASELINE.expand_as(X))[:, 0]
    torch.testing.assert_close(got.sum(1), delta, rtol=1e-12, atol=1e-12)


def test_additive_model_is_exact_with_one_sample() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 2).to(DTYPE)
    x = torch.randn(5, 6, dtype=DTYPE)
    got = gradattr.attribute(model, x, "shapley_sampling", target=1, baseline=0.5, samples=1)
    torch.testing.assert_close(got, model.weight[1].detach() * (x - 0.5), rtol=1e-12, atol=1e-12)


def test_feature_groups_share_their_value_evenly() -> None:
    """Groups {0, 2} and {1, 3}: two orderings, enumerated exactly by 2 x 2! / 2... any ordering set that
    covers both is exact, and a group's value is spread evenly over its two features."""
    model = Interactions()
    groups = torch.tensor([0, 1, 0, 1])
    exact = exact_shapley(model, X, BASELINE, 0, groups)
    got = gradattr.attribute(
        model, X, "shapley_sampling", target=0, baseline=BASELINE, samples=400, feature_groups=groups
    )
    torch.testing.assert_close(got[:, [0, 2]].sum(1), exact[:, 0], rtol=0, atol=0.05)
    torch.testing.assert_close(got[:, 0], got[:, 2], rtol=0, atol=0)
    torch.testing.assert_close(got.sum(1), exact.sum(1), rtol=1e-12, atol=1e-12)


def test_patches_on_images_and_two_inputs() -> None:
    torch.manual_seed(0)
    model = TwoInputNet().to(DTYPE)
    image, vector = torch.randn(2, 1, 6, 6, dtype=DTYPE), torch.randn(2, 4, dtype=DTYPE)
    patches = gradattr.patches((1, 6, 6), 3)
    r_image, r_vector = gradattr.attribute(
        model, (image, vector), "shapley_sampling", target=2, samples=3, feature_groups=(patches, None)
    )
    with torch.no_grad():
        delta = model(image, vector)[:, 2] - model(torch.zeros_like(image), torch.zeros_like(vector))[:, 2]
    torch.testing.assert_close(r_image.sum((1, 2, 3)) + r_vector.sum(1), delta, rtol=1e-10, atol=1e-12)
    assert torch.unique(r_image[0, 0, :3, :3]).numel() == 1  # one value per 3x3 patch


def test_batching_and_seed() -> None:
    model = Interactions()
    a = gradattr.attribute(model, X, "shapley_sampling", target=0, samples=4, seed=5)
    b = gradattr.attribute(model, X, "shapley_sampling", target=0, samples=4, seed=5, batch_size=3)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.equal(a, gradattr.attribute(model, X, "shapley_sampling", target=0, samples=4, seed=6))


def test_bad_options() -> None:
    model = Interactions()
    with pytest.raises(ValueError, match="samples must be an int >= 1"):
        gradattr.attribute(model, X, "shapley_sampling", samples=0)
    with pytest.raises(ValueError, match="contiguous"):
        gradattr.attribute(model, X, "shapley_sampling", feature_groups=torch.tensor([0, 2, 2, 0]))
    with pytest.raises(ValueError, match="one mask"):
        gradattr.attribute(
            TwoInputNet(),
            (torch.randn(1, 1, 6, 6), torch.randn(1, 4)),
            "shapley_sampling",
            feature_groups=torch.zeros(4, dtype=torch.long),
        )
