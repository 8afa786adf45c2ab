"""Infidelity (Yeh et al. 2019): exact zeros on linear models, closed-form expectations, Captum's ``infidelity``
on the same perturbations, the square-removal draw, seeding, errors and model hygiene."""

from __future__ import annotations

import math

import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import infidelity_perturb_func_decorator
from torch import nn

import gradattr
from gradattr.metrics import infidelity


def linear(features: int, outputs: int = 3, image: tuple[int, ...] | None = None) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.Linear(features, outputs)
    return (nn.Sequential(nn.Flatten(), layer) if image else layer).double().eval()


def tanh_mlp(features: int = 6) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, 10), nn.Tanh(), nn.Linear(10, 3)).double().eval()


def inputs(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


# -- exact zeros ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("perturbation", ["gaussian", "noisy_baseline", "square"])
@pytest.mark.parametrize("normalise", [False, True])
def test_gradient_of_a_linear_model_is_exact_under_any_perturbation(perturbation: str, normalise: bool) -> None:
    """S(x) - S(x - I) = wᵀI = IᵀΦ for Φ = w (signed saliency): every squared error is 0."""
    model, x = linear(2 * 5 * 5, image=(2, 5, 5)), inputs(4, 2, 5, 5)
    phi = gradattr.attribute(model, x, "saliency", target=1, abs=False)
    options = {"perturbation": perturbation, "samples": 30, "baseline": 0.3, "normalise": normalise}
    assert (infidelity(model, x, phi, target=1, **options) < 1e-28).all()


@pytest.mark.parametrize("perturbation", ["gaussian", "square"])
def test_gradient_x_input_of_a_linear_model_is_exact_relative_to_the_baseline(perturbation: str) -> None:
    """With I measured relative to x - x̄, IᵀΦ = Σ (x_i - x'_i) w_i for Φ = (x - x̄) w: exact again (for the
    square, I is the 0/1 removal mask: Yeh et al.'s binary I)."""
    model, x = linear(3 * 6 * 6, image=(3, 6, 6)), inputs(3, 3, 6, 6)
    phi = gradattr.attribute(model, x, "gradient_x_input", target=2)
    result = infidelity(model, x, phi, target=2, perturbation=perturbation, samples=30, multiply_by_inputs=True)
    assert (result < 1e-28).all()
    absolute = infidelity(model, x, phi, target=2, perturbation=perturbation, samples=30)
    assert (absolute > 1e-3).all()  # the same map read in input units does not predict the drops


# -- closed-form expectations --------------------------------------------------------------------------------


def test_gaussian_infidelity_of_a_linear_model_has_its_closed_form() -> None:
    """S linear, I ~ N(0, σ²): INFD = E[(Iᵀ(Φ - w))²] = σ² ‖Φ - w‖². The estimate over K draws is σ²‖v‖²
    times a mean of K χ²₁ variables, of relative standard deviation √(2/K) = 1.4 % at K = 10⁴: checked within
    5 %, 3.5 standard deviations. With the optimal scaling β, the error left is that of w projected onto Φ:
    σ² (‖w‖² - (Φᵀw)² / ‖Φ‖²)."""
    model, x, sigma = linear(8), inputs(2, 8), 0.3
    w = model.weight[0].detach()
    phi = torch.randn(2, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = infidelity(model, x, phi, target=0, sigma=sigma, samples=10_000)
    expected = sigma**2 * (phi - w).square().sum(1)
    assert torch.allclose(result, expected, rtol=0.05), (result, expected)
    scaled = infidelity(model, x, phi, target=0, sigma=sigma, samples=10_000, normalise=True)
    projected = sigma**2 * (w.square().sum() - (phi @ w) ** 2 / phi.square().sum(1))
    assert torch.allclose(scaled, projected, rtol=0.05), (scaled, projected)


def test_square_sides_are_drawn_in_proportion_to_their_positions() -> None:
    """Φ = 0 on S(x) = Σ x_i with x = 1, x̄ = 0: each draw scores (s² C)², s the square's side. A single side
    checks that the square lies inside the map and spans every channel; sides {1, 2} on a 2 x 2 map are
    drawn 4 : 1 (four positions of the 1 x 1 square, one of the 2 x 2), so E = 0.8 · 1 + 0.2 · 16 = 4 (uniform
    sides would give 8.5); the draw's standard deviation 6 over 5000 samples gives 0.085: checked within 0.4."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 4, 1, bias=False)).double()
    nn.init.ones_(model[1].weight)
    x = torch.ones(3, 2, 5, 4, dtype=torch.float64)
    side3 = infidelity(model, x, torch.zeros_like(x), perturbation="square", square_sizes=[3], samples=20)
    assert side3.tolist() == [(9.0 * 2) ** 2] * 3
    small = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False)).double()
    nn.init.ones_(small[1].weight)
    x = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    mixed = infidelity(small, x, torch.zeros_like(x), perturbation="square", square_sizes=[1, 2], samples=5000)
    assert torch.allclose(mixed, torch.full_like(mixed, 4.0), atol=0.4), mixed


# -- Captum ----------------------------------------------------------------------------------------------


class Recorder:
    """A perturbation (inputs, generator) -> x' = x - σ ε that keeps what it returned, to hand Captum the same
    points; some features of x equal the baseline, where the relative perturbation falls back to x - x'."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.drawn: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        perturbed = x - self.sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        self.drawn.append(perturbed)
        return perturbed

    def sample_major(self) -> torch.Tensor:
        """The recorded x' in Captum's order: row b * K + k."""
        stacked = torch.stack(self.drawn)  # (K, B, ...)
        return stacked.transpose(0, 1).reshape(-1, *stacked.shape[2:])


@pytest.mark.parametrize("normalise", [False, True])
@pytest.mark.parametrize("multiply_by_inputs", [False, True])
def test_matches_captum_on_the_same_perturbations(normalise: bool, multiply_by_inputs: bool) -> None:
    model, samples = tanh_mlp(), 12
    x = inputs(4, 6)
    x[:, 0] = 0.25  # equal to the baseline: Captum's safe division, ours alike
    target = model(x).argmax(1)
    method = "gradient_x_input" if multiply_by_inputs else "saliency"
    phi = gradattr.attribute(model, x, method, target)
    recorder = Recorder(sigma=0.2)
    ours = infidelity(
        model, x, phi, target, perturbation=recorder, samples=samples, baseline=0.25,
        multiply_by_inputs=multiply_by_inputs, normalise=normalise,
    )  # fmt: skip
    points = recorder.sample_major()
    if multiply_by_inputs:
        perturb = infidelity_perturb_func_decorator(True)(lambda inputs, baselines: points)
    else:

        def perturb(inputs: torch.Tensor, baselines: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return inputs - points, points

    theirs = captum_infidelity(
        model, perturb, x, phi, baselines=torch.full_like(x, 0.25), target=target, n_perturb_samples=samples,
        normalize=normalise,
    )  # fmt: skip
    assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-15), (ours, theirs)


# -- seeding and chunking --------------------------------------------------------------------------------------


@pytest.mark.parametrize("perturbation", ["gaussian", "noisy_baseline", "square"])
def test_same_seed_same_result_at_any_batch_size(perturbation: str) -> None:
    model = nn.Sequential(nn.Flatten(), tanh_mlp(16)).double()
    x = inputs(3, 1, 4, 4)
    phi = gradattr.attribute(model, x, "saliency")
    options = {"perturbation": perturbation, "samples": 9, "seed": 2}
    first = infidelity(model, x, phi, **options)
    for batch_size in (3, 7, 1000):
        assert torch.allclose(first, infidelity(model, x, phi, batch_size=batch_size, **options), rtol=1e-12)
    assert not torch.equal(first, infidelity(model, x, phi, **{**options, "seed": 3}))


# -- errors and the model ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, x, r: infidelity(m, x, r[:, :5]), ValueError, r"attributions have shape \(2, 5\); expected"),
        (lambda m, x, r: infidelity(m, x, r.long()), TypeError, r"attributions must be floating point"),
        (lambda m, x, r: infidelity(m, x, r * math.nan), ValueError, r"attributions contain NaN"),
        (lambda m, x, r: infidelity(m, x, r, samples=0), ValueError, r"samples must be an int >= 1"),
        (lambda m, x, r: infidelity(m, x, r, sigma=-0.1), ValueError, r"sigma must be a finite number > 0"),
        (lambda m, x, r: infidelity(m, x, r, perturbation="blur"), ValueError, r"unknown perturbation 'blur'"),
        (
            lambda m, x, r: infidelity(m, x, r, perturbation="square", square_sizes=[7]),
            ValueError,
            r"square size 7 does not fit the inputs' extents \(6,\)",
        ),
        (
            lambda m, x, r: infidelity(m, x, r, perturbation="square", square_sizes=3),
            TypeError,
            r"square_sizes must be a non-empty sequence",
        ),
        (
            lambda m, x, r: infidelity(m, x, r, perturbation=lambda p, g: p[:1]),
            ValueError,
            r"the perturbation returned \(1, 6\); expected a tensor of the inputs' shape \(2, 6\)",
        ),
        (lambda m, x, r: infidelity(m, x, r, baseline=torch.zeros(5)), ValueError, r"baseline of shape \(5,\)"),
        (lambda m, x, r: infidelity(m, x, r, target=[0]), ValueError, r"one class index per sample"),
    ],
)
def test_bad_arguments(call, error: type, match: str) -> None:
    x = inputs(2, 6)
    with pytest.raises(error, match=match):
        call(tanh_mlp(), x, torch.ones_like(x))


def test_model_comes_back_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    model[4].bias.requires_grad_(False)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    x = inputs(4, 6)
    with pytest.warns(UserWarning, match="training mode"):
        first = infidelity(model, x, torch.ones_like(x), samples=5)
    assert torch.equal(first, infidelity(model.eval(), x, torch.ones_like(x), samples=5))  # eval both times
    model.train()
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
