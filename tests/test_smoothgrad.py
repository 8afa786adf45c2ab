"""SmoothGrad, SmoothGrad² and VarGrad: exact against a plain loop over the same noise, analytic in
expectation on a quadratic model, the base method at sigma = 0."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import gradattr

DTYPE = torch.float64


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3)).to(DTYPE)


class Quadratic(nn.Module):
    """S(x) = Σ_i x_i²: gradient 2x, so every SmoothGrad variant has a closed-form expectation."""

    def forward(self, x: Tensor) -> Tensor:
        return (x**2).sum(1)


X = torch.randn(4, 5, generator=torch.Generator().manual_seed(7), dtype=DTYPE)


def loop_reference(model: nn.Module, x: Tensor, method: str, samples: int, sigma: float, seed: int, **options):
    """One attribute call per noise draw, noise drawn as documented: a CPU generator, copy by copy."""
    generator = torch.Generator().manual_seed(seed)
    target = model(x).argmax(1)
    scale = sigma * (x.amax(1, keepdim=True) - x.amin(1, keepdim=True))
    maps = torch.stack(
        [
            gradattr.attribute(
                model,
                x + torch.randn(x.shape, generator=generator, dtype=x.dtype) * scale,
                method,
                target=target,
                **options,
            )
            for _ in range(samples)
        ]
    )
    return {"smoothgrad": maps.mean(0), "smoothgrad_sq": maps.square().mean(0), "vargrad": maps.var(0, correction=0)}


@pytest.mark.parametrize("base", ["saliency", "gradient_x_input", "deeplift"])
def test_equals_a_loop_over_the_same_noise(base: str) -> None:
    model = mlp()
    expected = loop_reference(model, X, base, samples=7, sigma=0.2, seed=3)
    for variant, value in expected.items():
        for batch_size in (None, 4, 9):  # one copy per chunk, two, all
            got = gradattr.attribute(
                model, X, "smoothgrad", base=base, samples=7, sigma=0.2, seed=3, variant=variant, batch_size=batch_size
            )
            torch.testing.assert_close(got, value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("base", "options"),
    [
        ("saliency", {}),
        ("integrated_gradients", {"steps": 7}),
        ("deeplift", {}),
        ("guided_backprop", {}),
        ("occlusion", {}),
    ],
)
def test_sigma_zero_is_the_base_method(base: str, options: dict) -> None:
    model = mlp()
    expected = gradattr.attribute(model, X, base, **options)
    got = gradattr.attribute(model, X, "smoothgrad", base=base, sigma=0.0, samples=3, **options)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    variance = gradattr.attribute(model, X, "smoothgrad", base=base, sigma=0.0, variant="vargrad", samples=3, **options)
    assert variance.abs().max() < 1e-28  # rounding of the mean of identical values only (ulp² scale)


def test_expectations_on_a_quadratic_model() -> None:
    """With noise n ~ N(0, σ²): E[2(x+n)] = 2x, E[(2(x+n))²] = 4(x² + σ²), Var[2(x+n)] = 4σ².
    Tolerance: 5 standard errors of the n-sample mean."""
    x = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=DTYPE)
    sigma_rel, samples = 0.1, 20000
    sigma = sigma_rel * 3.0  # the sample's range is 2 - (-1) = 3
    options = {"base": "saliency", "abs": False, "samples": samples, "sigma": sigma_rel}
    mean = gradattr.attribute(Quadratic(), x, "smoothgrad", **options)
    square = gradattr.attribute(Quadratic(), x, "smoothgrad", variant="smoothgrad_sq", **options)
    var = gradattr.attribute(Quadratic(), x, "smoothgrad", variant="vargrad", **options)
    se_mean = 2 * sigma / math.sqrt(samples)
    torch.testing.assert_close(mean, 2 * x, rtol=0, atol=5 * se_mean)
    se_square = torch.sqrt(32 * sigma**2 * x**2 + 32 * sigma**4) / math.sqrt(samples)  # Var[(2(x+n))²] / n
    assert ((square - 4 * (x**2 + sigma**2)).abs() <= 5 * se_square).all()
    torch.testing.assert_close(var, torch.full_like(x, 4 * sigma**2), rtol=5 * math.sqrt(2 / samples), atol=0)


def test_target_is_the_clean_inputs_class() -> None:
    model = mlp()
    target = model(X).argmax(1)
    torch.testing.assert_close(
        gradattr.attribute(model, X, "smoothgrad", samples=5),
        gradattr.attribute(model, X, "smoothgrad", samples=5, target=target),
    )


def test_seed_determines_the_result() -> None:
    model = mlp()
    a = gradattr.attribute(model, X, "smoothgrad", samples=5, seed=1)
    assert torch.equal(a, gradattr.attribute(model, X, "smoothgrad", samples=5, seed=1))
    assert not torch.equal(a, gradattr.attribute(model, X, "smoothgrad", samples=5, seed=2))


def test_layer_attribution_and_baselines_reach_the_base() -> None:
    """Noise on the embedding output; DeepLIFT as base takes the baseline."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    tokens = torch.randint(0, 10, (3, 3))
    r = gradattr.attribute(model, tokens, "smoothgrad", base="deeplift", baseline=0.1, layer="0", samples=4)
    assert r.shape == (3, 3, 4) and torch.isfinite(r).all()
    zero_noise = gradattr.attribute(model, tokens, "smoothgrad", base="deeplift", baseline=0.1, layer="0", sigma=0.0)
    torch.testing.assert_close(zero_noise, gradattr.attribute(model, tokens, "deeplift", baseline=0.1, layer="0"))


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"base": "gradcam"}, ValueError, "base must be one of"),
        ({"base": "smoothgrad"}, ValueError, "base must be one of"),
        ({"steps": 5}, TypeError, "smoothgrad got unknown option.*base saliency: abs; steps is an option of"),
        ({"samples": 0}, ValueError, "samples must be an int >= 1"),
        ({"sigma": -0.1}, ValueError, "sigma must be a finite number >= 0"),
        ({"variant": "mean"}, ValueError, "variant must be 'smoothgrad' or 'smoothgrad_sq' or 'vargrad', got str"),
        ({"baseline": 0.5}, ValueError, "does not use a baseline"),
    ],
)
def test_bad_options(options: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        gradattr.attribute(mlp(), X, "smoothgrad", **options)
