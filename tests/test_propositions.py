"""The theory of Ancona et al. (ICLR 2018, Sec. 3-4) as property tests on random networks (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import gradattr

from zoo import FunctionalMLP, completeness_gap

SMOOTH = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus, "elu": F.elu, "relu": F.relu}


def random_mlp(seed: int, sizes: list[int], activation, bias: bool = True) -> FunctionalMLP:
    torch.manual_seed(seed)
    model = FunctionalMLP(sizes, activation, bias=bias).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # larger weights: more units switch between the inputs and the baseline
    return model


def random_inputs(seed: int, batch: int, features: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.randn(batch, features, generator=generator, dtype=torch.float64)


networks = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**20),
        "hidden": st.lists(st.integers(2, 12), min_size=1, max_size=3),
        "features": st.integers(1, 8),
        "classes": st.integers(1, 4),
    }
)


def sizes_of(net: dict) -> list[int]:
    return [net["features"], *net["hidden"], net["classes"]]


@settings(max_examples=25, deadline=None)
@given(net=networks)
def test_prop1_epsilon_lrp_equals_gradient_x_input_on_relu_nets(net: dict) -> None:
    """Prop. 1: on ReLU networks (with biases) eps-LRP -> Gradient*Input as eps -> 0."""
    model = random_mlp(net["seed"], sizes_of(net), F.relu)
    x = random_inputs(net["seed"], 4, net["features"])
    target = net["seed"] % net["classes"]
    lrp = gradattr.attribute(model, x, method="epsilon_lrp", target=target, epsilon=1e-12)
    gxi = gradattr.attribute(model, x, method="gradient_x_input", target=target)
    torch.testing.assert_close(lrp, gxi, rtol=1e-6, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(net=networks)
def test_prop2_deeplift_equals_gradient_x_input_on_bias_free_relu_nets(net: dict) -> None:
    """Prop. 2: DeepLIFT (Rescale, zero baseline) == Gradient*Input on bias-free ReLU networks, exactly."""
    model = random_mlp(net["seed"], sizes_of(net), F.relu, bias=False)
    x = random_inputs(net["seed"], 4, net["features"])
    target = net["seed"] % net["classes"]
    deeplift = gradattr.attribute(model, x, method="deeplift", target=target)
    gxi = gradattr.attribute(model, x, method="gradient_x_input", target=target)
    torch.testing.assert_close(deeplift, gxi, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(net=networks, activation=st.sampled_from(sorted(SMOOTH)), random_baseline=st.booleans())
def test_deeplift_completeness_is_exact(net: dict, activation: str, random_baseline: bool) -> None:
    """Summation-to-delta: Σ_i R_i = S_c(x) - S_c(x̄) for DeepLIFT, exact (float64, < 1e-6 relative)."""
    model = random_mlp(net["seed"], sizes_of(net), SMOOTH[activation])
    x = random_inputs(net["seed"], 5, net["features"])
    baseline = random_inputs(net["seed"] + 7, 1, net["features"]) if random_baseline else torch.zeros_like(x[:1])
    target = net["seed"] % net["classes"]
    r = gradattr.attribute(model, x, method="deeplift", target=target, baseline=baseline)
    assert completeness_gap(model, x, baseline, r, target).max() < 1e-6


@settings(max_examples=10, deadline=None)
@given(net=networks, activation=st.sampled_from(sorted(SMOOTH)))
def test_integrated_gradients_completeness_error_vanishes_with_steps(net: dict, activation: str) -> None:
    """IG completeness holds up to the Riemann error, which shrinks as the number of steps grows."""
    model = random_mlp(net["seed"], sizes_of(net), SMOOTH[activation])
    x = random_inputs(net["seed"], 3, net["features"])
    baseline = torch.zeros_like(x[:1])
    target = net["seed"] % net["classes"]
    with torch.no_grad():
        delta = (model(x) - model(baseline))[:, target]
    gaps = []
    for steps in (10, 100, 3000):
        r = gradattr.attribute(model, x, method="integrated_gradients", target=target, steps=steps)
        scale = r.abs().sum(1) + 1e-3  # the total attribution mass: the Riemann error is a fraction of it
        gaps.append(((r.sum(1) - delta).abs() / scale).max())
    assert gaps[2] < 1e-2  # O(1/m): each ReLU kink the path crosses costs up to one step's share
    assert gaps[2] <= gaps[0] + 1e-12


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", "deeplift", "epsilon_lrp", "occlusion"])
def test_all_methods_give_w_times_x_on_a_linear_model(method: str) -> None:
    """On S(x) = W x + b every method except saliency gives w_ci x_i (zero baseline)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.Flatten()).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    target = torch.arange(8) % 4
    expected = model[0].weight.detach()[target] * x
    result = gradattr.attribute(model, x, method=method, target=target)
    torch.testing.assert_close(result, expected, rtol=1e-6 if method == "epsilon_lrp" else 1e-12, atol=1e-12)


def test_saliency_is_the_absolute_weight_on_a_linear_model() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 4).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    result = gradattr.attribute(model, x, method="saliency", target=1)
    torch.testing.assert_close(result, model.weight.detach()[1].abs().expand(3, 6), rtol=0, atol=0)


@settings(max_examples=15, deadline=None)
@given(net=networks, activation=st.sampled_from(sorted(SMOOTH)))
def test_deeplift_equals_integrated_gradients_with_one_hidden_layer(net: dict, activation: str) -> None:
    """With one layer of nonlinearities the Rescale multiplier is the mean slope along the straight path,
    so DeepLIFT equals IG in the limit m -> ∞ (Ancona et al., Sec. 3.2)."""
    model = random_mlp(net["seed"], [net["features"], net["hidden"][0], net["classes"]], SMOOTH[activation])
    x = random_inputs(net["seed"], 3, net["features"])
    target = net["seed"] % net["classes"]
    deeplift = gradattr.attribute(model, x, method="deeplift", target=target)
    ig = gradattr.attribute(model, x, method="integrated_gradients", target=target, steps=4000)
    scale = deeplift.abs().max() + 1e-3
    assert (deeplift - ig).abs().max() / scale < 5e-3


def test_deeplift_approximates_integrated_gradients_on_deeper_nets() -> None:
    """Deeper, DeepLIFT approximates IG: the paper reports correlations near 1."""
    correlations = []
    for seed in range(5):
        model = random_mlp(seed, [10, 16, 16, 3], torch.tanh)
        x = random_inputs(seed, 16, 10)
        deeplift = gradattr.attribute(model, x, method="deeplift", target=0)
        ig = gradattr.attribute(model, x, method="integrated_gradients", target=0, steps=200)
        pair = torch.stack([deeplift.flatten(), ig.flatten()])
        correlations.append(torch.corrcoef(pair)[0, 1])
    assert min(correlations) > 0.9
