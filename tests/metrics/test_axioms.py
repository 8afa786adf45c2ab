"""Non-sensitivity (Nguyen & Martínez 2020) and input invariance (Kindermans et al. 2017): references written
from the papers (loops, float64) and Kindermans et al.'s finding on a small MLP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradattr
from gradattr import metrics


def mlp(features: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, 3)).double().eval()


def inputs(batch: int, features: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, features, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def reference_non_sensitivity(model, x, attr, target, baseline, eps, output_eps, groups=None) -> np.ndarray:
    """|{i: |R_i| <= eps} Δ {i: removing x_i leaves the output within output_eps}|, one feature at a time."""
    flat_groups = torch.arange(x[0].numel()) if groups is None else groups.reshape(-1)
    values = []
    with torch.no_grad():
        for b in range(x.shape[0]):
            reference = float(model(x[b : b + 1])[0, target])
            mismatches = 0
            for g in range(int(flat_groups.max()) + 1):
                chosen = flat_groups == g
                point = x[b].reshape(-1).clone()
                point[chosen] = baseline
                changed = abs(reference - float(model(point.reshape(1, *x.shape[1:]))[0, target])) > output_eps
                zero = abs(float(attr[b].reshape(-1)[chosen].sum())) <= eps
                mismatches += int(zero == changed)  # zero attribution but changed, or non-zero and unchanged
            values.append(mismatches)
    return np.array(values, dtype=np.float64)


# -- non-sensitivity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_elements", [None, 7])
def test_non_sensitivity_matches_the_papers_definition(max_elements: int | None) -> None:
    model = mlp()
    x = inputs(6, 10)
    x[:, 3] = 0.0  # at the baseline: removing it changes nothing
    attr = torch.randn(6, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    attr[:, :4] = 0.0
    got = metrics.non_sensitivity(model, x, attr, target=2, eps=1e-5, output_eps=1e-3, max_elements=max_elements)
    expected = reference_non_sensitivity(model, x, attr, 2, 0.0, 1e-5, 1e-3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    assert expected.min() > 0
    share = metrics.non_sensitivity(model, x, attr, target=2, output_eps=1e-3, normalise=True)
    np.testing.assert_allclose(share.numpy(), expected / 10, rtol=0, atol=1e-12)


def test_non_sensitivity_over_groups_matches_the_reference() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 2)).double().eval()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    attr = gradattr.attribute(model, x, method="saliency", target=1)
    attr[:, :, :2, :2] = 0.0
    groups = gradattr.patches((1, 4, 4), 2)
    got = metrics.non_sensitivity(model, x, attr, target=1, baseline=0.5, feature_groups=groups)
    expected = reference_non_sensitivity(model, x, attr, 1, 0.5, 1e-5, 1e-5, groups=groups)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_gradient_x_input_of_a_linear_model_with_unused_features_is_exactly_non_sensitive() -> None:
    torch.manual_seed(0)
    model = nn.Linear(12, 3).double()
    with torch.no_grad():
        model.weight[:, ::3] = 0.0  # the model ignores every third feature
    x = inputs(5, 12) + 2.0  # no feature at the baseline
    attr = gradattr.attribute(model, x, method="gradient_x_input", target=0)
    assert (metrics.non_sensitivity(model, x, attr, target=0) == 0).all()
    uniform = torch.ones_like(x)  # blames the unused features too
    assert (metrics.non_sensitivity(model, x, uniform, target=0) == 4).all()


# -- input invariance --------------------------------------------------------------------------------------


def kindermans_mlp() -> nn.Module:
    """A small ReLU MLP on 4 x 4 "images" in [0, 1], as Kindermans et al.'s MNIST network (Flatten first)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)).double().eval()


def images(batch: int = 6) -> torch.Tensor:
    return torch.rand(batch, 1, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


SHIFT = -1.0  # Kindermans et al.: [0, 1] -> [-1, 0]


def test_shifted_model_compensates_the_shift_in_the_first_bias_and_leaves_the_model_alone() -> None:
    model, x = kindermans_mlp(), images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shifted = metrics.shifted_model(model, x, SHIFT)
    first = model[1]
    torch.testing.assert_close(
        shifted[1].bias, first.bias - first.weight @ torch.full((16,), SHIFT, dtype=torch.float64)
    )
    torch.testing.assert_close(shifted[1].weight, first.weight)
    torch.testing.assert_close(shifted(x + SHIFT), model(x), rtol=0, atol=1e-12)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("method", "options", "shift_baseline", "invariant"),
    [
        ("saliency", {}, True, True),
        ("gradient_x_input", {}, True, False),
        ("integrated_gradients", {"steps": 32}, False, False),
        ("integrated_gradients", {"steps": 32}, True, True),
        ("deeplift", {}, False, False),
        ("deeplift", {}, True, True),
    ],
)
def test_input_invariance_reproduces_kindermans_et_al(method, options, shift_baseline, invariant) -> None:
    model, x = kindermans_mlp(), images()
    result = metrics.input_invariance(
        model, x, method, SHIFT, target=1, method_options=options, shift_baseline=shift_baseline
    )
    reference_maps = gradattr.attribute(model, x, method=method, target=1, **options)
    shifted = metrics.shifted_model(model, x, SHIFT)
    moved_options = dict(options)
    if shift_baseline and method in ("integrated_gradients", "deeplift"):
        moved_options["baseline"] = SHIFT
    moved_maps = gradattr.attribute(shifted, x + SHIFT, method=method, target=1, **moved_options)
    expected = [float((reference_maps[b] - moved_maps[b]).abs().max()) for b in range(x.shape[0])]
    np.testing.assert_allclose(result.per_sample.numpy(), expected, rtol=0, atol=1e-6)
    assert (result.output_gap < 1e-12).all()
    assert result.invariant().tolist() == [invariant] * x.shape[0]
    if method == "gradient_x_input":  # R_2 - R_1 = m ⊙ ∇f exactly
        gradient = gradattr.attribute(model, x, method="saliency", target=1, abs=False)
        torch.testing.assert_close(result.shifted - result.original, SHIFT * gradient)


def test_input_invariance_takes_a_callable_and_an_unpadded_convolution() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)).double().eval()
    x = images(3)

    def gradient(model: nn.Module, points: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        return gradattr.attribute(model, points, method="saliency", target=target, abs=False)

    result = metrics.input_invariance(model, x, gradient, 0.5)
    assert result.invariant().all() and (result.output_gap < 1e-12).all()


def test_input_invariance_refuses_models_whose_first_layer_cannot_absorb_the_shift() -> None:
    padded = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 2)).double()
    with pytest.raises(ValueError, match="padding"):
        metrics.shifted_model(padded, images(2), -1.0)
    nonlinear_first = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(16, 2)).double()
    with pytest.raises(ValueError, match="constant"):
        metrics.shifted_model(nonlinear_first, images(2) - 0.5, -1.0)
    normalised_first = nn.Sequential(nn.Flatten(), nn.LayerNorm(16), nn.Linear(16, 2)).double()
    with pytest.raises(ValueError, match="LayerNorm"):
        metrics.shifted_model(normalised_first, images(2), -1.0)
