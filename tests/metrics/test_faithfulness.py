"""Faithfulness correlation (Bhatt et al. 2020) and monotonicity (Arya et al. 2019): slow references written
from the papers (loops, float64), the identity with Sensitivity-n at one n, exactness on a linear model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradattr
from gradattr import metrics
from gradattr.metrics import draw_subsets


def mlp(features: int = 12, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype).eval()


def inputs(batch: int, features: int, seed: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(batch, features, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def score(model: nn.Module, point: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return float(model(point.unsqueeze(0))[0, target])


def reference_faithfulness(model, x, attr, target, size, num_subsets, seed, groups=None, baseline=0.0) -> np.ndarray:
    """Bhatt et al. (2020): per sample, Pearson over random subsets of Σ_S R and f(x) - f(x_[S=x̄])."""
    flat_groups = torch.arange(x[0].numel()) if groups is None else groups.reshape(-1)
    subsets = draw_subsets(int(flat_groups.max()) + 1, size, num_subsets, seed)
    values = []
    for b in range(x.shape[0]):
        sums, drops = [], []
        for subset in subsets:
            chosen = torch.isin(flat_groups, subset)
            point = x[b].reshape(-1).clone()
            point[chosen] = baseline
            sums.append(float(attr[b].reshape(-1)[chosen].sum()))
            drops.append(score(model, x[b], target) - score(model, point.reshape(x[b].shape), target))
        values.append(np.corrcoef(sums, drops)[0, 1])
    return np.array(values)


def reference_monotonicity(model, x, attr, target, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """AIX360's ``monotonicity_metric`` (Arya et al. 2019): insert features into the baseline (zero) in order of
    increasing attribution; monotonic when the target's output never drops. Returns (indicator, fraction)."""
    flat_groups = torch.arange(x[0].numel()) if groups is None else groups.reshape(-1)
    count = int(flat_groups.max()) + 1
    indicators, fractions = [], []
    for b in range(x.shape[0]):
        coefs = np.array([float(attr[b].reshape(-1)[flat_groups == g].sum()) for g in range(count)])
        point = torch.zeros(x[b].numel(), dtype=x.dtype)
        probs = []
        for index in np.argsort(coefs, kind="stable"):
            chosen = flat_groups == int(index)
            point[chosen] = x[b].reshape(-1)[chosen]
            probs.append(score(model, point.reshape(x[b].shape), target))
        steps = np.diff(probs) >= 0
        indicators.append(float(np.all(steps)))
        fractions.append(float(np.mean(steps)) if steps.size else math.nan)
    return np.array(indicators), np.array(fractions)


# -- faithfulness correlation ------------------------------------------------------------------------------


def test_faithfulness_correlation_matches_the_papers_definition() -> None:
    model, x = mlp(), inputs(6, 12)
    attr = gradattr.attribute(model, x, method="integrated_gradients", target=2)
    got = metrics.faithfulness_correlation(model, x, attr, target=2, subset_size=4, num_subsets=30, seed=3)
    expected = reference_faithfulness(model, x, attr, 2, 4, 30, 3)
    assert got.dtype == torch.float64 and got.shape == (6,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_faithfulness_correlation_over_feature_groups_matches_the_reference() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 2)).double().eval()
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    attr = gradattr.attribute(model, x, method="gradient_x_input", target=1)
    groups = gradattr.patches((1, 6, 6), 2)
    got = metrics.faithfulness_correlation(
        model, x, attr, target=1, subset_size=3, num_subsets=20, feature_groups=groups, seed=1, baseline=0.5
    )
    expected = reference_faithfulness(model, x, attr, 1, 3, 20, 1, groups=groups, baseline=0.5)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_faithfulness_correlation_is_sensitivity_n_at_one_n(dtype: torch.dtype) -> None:
    model, x = mlp(dtype=dtype), inputs(8, 12, dtype=dtype)
    attr = gradattr.attribute(model, x, method="saliency", target=0)
    got = metrics.faithfulness_correlation(model, x, attr, target=0, subset_size=5, num_subsets=40, seed=7)
    reference = gradattr.sensitivity_n(model, x, attr, target=0, ns=[5], num_subsets=40, seed=7)
    torch.testing.assert_close(got, reference.per_sample[:, 0], rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", "deeplift"])
def test_every_gradient_method_is_perfectly_faithful_on_a_linear_model(method: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(20, 4).double()
    x = inputs(10, 20)
    target = torch.arange(10) % 4
    attr = gradattr.attribute(model, x, method=method, target=target)
    got = metrics.faithfulness_correlation(model, x, attr, target=target, subset_size=6)
    assert (got > 1 - 1e-9).all(), got


def test_faithfulness_correlation_takes_numpy_and_defaults_to_a_tenth_of_the_features() -> None:
    model, x = mlp(30, dtype=torch.float32), inputs(3, 30, dtype=torch.float32)
    attr = gradattr.attribute(model, x, method="gradient_x_input", target=1)
    got = metrics.faithfulness_correlation(model, x.double().numpy(), attr.numpy(), target=1)
    reference = gradattr.sensitivity_n(model, x, attr, target=1, ns=[3], num_subsets=100, seed=0)
    torch.testing.assert_close(got, reference.per_sample[:, 0], rtol=0, atol=1e-12)


# -- monotonicity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_elements", [None, 25])
def test_monotonicity_matches_aix360s_definition(max_elements: int | None) -> None:
    model, x = mlp(), inputs(12, 12)
    attr = gradattr.attribute(model, x, method="gradient_x_input", target=1)
    indicator, fraction = reference_monotonicity(model, x, attr, 1)
    got = metrics.monotonicity(model, x, attr, target=1, max_elements=max_elements)
    got_fraction = metrics.monotonicity(model, x, attr, target=1, reduce="fraction", max_elements=max_elements)
    np.testing.assert_allclose(got.numpy(), indicator, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_fraction.numpy(), fraction, rtol=0, atol=1e-6)
    assert 0 < fraction.mean() < 1


def test_monotonicity_over_groups_matches_the_reference() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Softplus(), nn.Linear(8, 1)).double().eval()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    attr = gradattr.attribute(model, x, method="integrated_gradients")
    groups = gradattr.patches((1, 4, 4), 2)
    indicator, fraction = reference_monotonicity(model, x, attr, 0, groups=groups)
    np.testing.assert_allclose(metrics.monotonicity(model, x, attr, feature_groups=groups).numpy(), indicator)
    got = metrics.monotonicity(model, x, attr, feature_groups=groups, reduce="fraction")
    np.testing.assert_allclose(got.numpy(), fraction, rtol=0, atol=1e-6)


def test_monotonicity_on_a_linear_model_holds_exactly_when_no_contribution_is_negative() -> None:
    torch.manual_seed(0)
    model = nn.Linear(10, 1).double()
    positive = model.weight.detach().sign() * torch.rand(4, 10, dtype=torch.float64)  # every w_i x_i >= 0
    mixed = inputs(4, 10)
    x = torch.cat([positive, mixed])
    attr = gradattr.attribute(model, x, method="gradient_x_input")
    got = metrics.monotonicity(model, x, attr)
    assert got.tolist() == [1.0] * 4 + [0.0] * 4  # inserting a feature adds w_i x_i = R_i to the output


def test_monotonicity_options() -> None:
    model, x = mlp(), inputs(3, 12)
    attr = torch.zeros(3, 12, dtype=torch.float64)
    assert (metrics.monotonicity(model, x, attr, tolerance=1e9) == 1).all()
    single = nn.Linear(1, 2).double()
    one = inputs(2, 1)
    assert metrics.monotonicity(single, one, one, target=0).tolist() == [1.0, 1.0]
    assert metrics.monotonicity(single, one, one, target=0, reduce="fraction").isnan().all()
    with pytest.raises(ValueError, match="reduce"):
        metrics.monotonicity(model, x, attr, reduce="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tolerance"):
        metrics.monotonicity(model, x, attr, tolerance=-1.0)
