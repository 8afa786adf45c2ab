"""Golden values of the paper's reference tests (SPEC.md): f(x) = ReLU(ReLU(x1 - 1) - ReLU(x2))."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr


class Functional(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(F.relu(x[:, :1] - 1) - F.relu(x[:, 1:]))


class ReusedModule(nn.Module):
    """The same function with one ``nn.ReLU`` module called three times."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.relu(x[:, :1] - 1) - self.relu(x[:, 1:]))


MODELS = [Functional, ReusedModule]
AT_3_1 = [
    ("saliency", {}, (1.0, 1.0), 0.0),
    ("gradient_x_input", {}, (3.0, -1.0), 0.0),
    ("integrated_gradients", {"steps": 100}, (1.5, -0.5), 1e-9),
    ("epsilon_lrp", {}, (3.0, -1.0), 1e-3),
    ("deeplift", {}, (2.0, -1.0), 1e-12),
    ("occlusion", {}, (1.0, -1.0), 0.0),
    ("occlusion", {"window": 2}, (0.5, 0.5), 0.0),
]


@pytest.mark.parametrize("model_class", MODELS)
@pytest.mark.parametrize(("method", "options", "expected", "atol"), AT_3_1)
def test_golden_values_at_3_1(model_class, method, options, expected, atol) -> None:
    x = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    result = gradattr.attribute(model_class(), x, method=method, **options)
    torch.testing.assert_close(result, torch.tensor([expected], dtype=torch.float64), atol=atol, rtol=0)


def test_epsilon_lrp_golden_is_the_epsilon_formula() -> None:
    """eps-LRP at (3, 1) exactly: g = f(z)/(z + eps) at z = 2, 1 (inner) and 1 (outer)."""
    eps = 1e-4
    x = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    outer = 1 / (1 + eps)
    expected = torch.tensor([[3 * outer * 2 / (2 + eps), -1 * outer * 1 / (1 + eps)]], dtype=torch.float64)
    result = gradattr.attribute(Functional(), x, method="epsilon_lrp", epsilon=eps)
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=0)


INPUT_METHODS = [m for m in gradattr.METHODS if m not in gradattr.LAYER_METHODS]
"""Methods that attribute the inputs directly (Grad-CAM needs a convolutional layer)."""


@pytest.mark.parametrize("model_class", MODELS)
@pytest.mark.parametrize("method", [m for m in INPUT_METHODS if m != "deconvnet"])
def test_all_zero_where_the_network_is_dead(model_class, method) -> None:
    """Deconvnet is left out: its ReLU backward ignores the forward sign, so dead units pass signal."""
    x = torch.tensor([[-10.0, -5.0]], dtype=torch.float64)
    result = gradattr.attribute(model_class(), x, method=method)
    assert torch.equal(result.abs(), torch.zeros_like(x))


@pytest.mark.parametrize("model_class", MODELS)
def test_nonzero_baseline(model_class) -> None:
    """x = (3, 2.5), x̄ = (2, 0): f(x) = 0, f(x̄) = 1."""
    x = torch.tensor([[3.0, 2.5]], dtype=torch.float64)
    baseline = torch.tensor([2.0, 0.0], dtype=torch.float64)
    ig = gradattr.attribute(model_class(), x, method="integrated_gradients", baseline=baseline, steps=100)
    torch.testing.assert_close(ig, torch.tensor([[0.66, -1.65]], dtype=torch.float64), atol=1e-9, rtol=0)
    dl = gradattr.attribute(model_class(), x, method="deeplift", baseline=baseline)
    torch.testing.assert_close(dl, torch.tensor([[2 / 3, -5 / 3]], dtype=torch.float64), atol=1e-12, rtol=0)
    exact_ig = gradattr.attribute(model_class(), x, method="integrated_gradients", baseline=baseline, steps=30000)
    torch.testing.assert_close(exact_ig, dl, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_class", MODELS)
def test_guided_backprop_and_deconvnet_golden(model_class) -> None:
    """At (3, 1) the outer ReLU gets z = 1 and passes 1; the x2 path carries -1, which both rules stop.
    At the dead point (-10, -5) Guided Backprop stops everything, Deconvnet still passes the positive 1."""
    x = torch.tensor([[3.0, 1.0], [-10.0, -5.0]], dtype=torch.float64)
    guided = gradattr.attribute(model_class(), x, method="guided_backprop")
    deconv = gradattr.attribute(model_class(), x, method="deconvnet")
    torch.testing.assert_close(guided, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(deconv, torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64), rtol=0, atol=0)


def test_batch_of_golden_points_matches_one_by_one() -> None:
    """Samples of a batch are attributed independently (and the shared baseline broadcasts). SmoothGrad is
    left out: its noise is drawn for the whole batch, so a sample's draw depends on its position."""
    x = torch.tensor([[3.0, 1.0], [-10.0, -5.0], [3.0, 2.5], [1.5, -0.3]], dtype=torch.float64)
    for method in [m for m in INPUT_METHODS if m != "smoothgrad"]:
        batch = gradattr.attribute(Functional(), x, method=method)
        single = torch.cat([gradattr.attribute(Functional(), row[None], method=method) for row in x])
        torch.testing.assert_close(batch, single, rtol=1e-12, atol=1e-12)
