"""Max-/avg-sensitivity (Yeh et al. 2019) and the local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018):
analytic values, a plain loop reference, Captum's ``sensitivity_max``, seeding, fixed targets, errors and model
hygiene."""

from __future__ import annotations

import math

import pytest
import torch
from captum.metrics import sensitivity_max
from torch import nn

import gradattr
from gradattr.metrics import avg_sensitivity, local_lipschitz, max_sensitivity

METRICS = (max_sensitivity, avg_sensitivity, local_lipschitz)


def tanh_mlp(features: int = 6, outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, 10), nn.Tanh(), nn.Linear(10, outputs)).double().eval()


def inputs(batch: int, features: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, features, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


class SumOfSquares(nn.Module):
    """f(x) = Σ_i x_i² (one output per sample): saliency |∂f/∂x| = 2|x|."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.square().sum(1)


def uniform_draws(x: torch.Tensor, radius: float, samples: int, seed: int) -> list[torch.Tensor]:
    """The documented draws: δ_k = r (2U - 1), U = torch.rand(x.shape, generator=g), k = 0..K-1."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * radius for _ in range(samples)]


def gaussian_draws(x: torch.Tensor, sigma: float, samples: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(x.shape, generator=generator, dtype=x.dtype) * sigma for _ in range(samples)]


def p_norm(values: list[float], p: float) -> float:
    if math.isinf(p):
        return max(abs(v) for v in values)
    return sum(abs(v) ** p for v in values) ** (1 / p)


# -- analytic values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_constant_explanation_scores_zero(metric) -> None:
    """Saliency of a linear model is |w_c| wherever x is: nothing moves, every score is exactly 0."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    x = inputs(5, 6)
    assert metric(model, x, "saliency", samples=4).tolist() == [0.0] * 5


@pytest.mark.parametrize(("norm", "p"), [("fro", 2.0), ("l1", 1.0), ("inf", math.inf), (3, 3.0)])
@pytest.mark.parametrize("normalise", [False, True])
def test_sum_of_squares_matches_a_plain_loop(norm, p: float, normalise: bool) -> None:
    """Saliency of Σ x_i² is 2|x|: ‖Φ(x + δ) - Φ(x)‖ computed feature by feature from the documented draws."""
    x = inputs(3, 5)
    radius, samples, seed = 0.3, 6, 7
    draws = uniform_draws(x, radius, samples, seed)
    expected_max, expected_avg = [], []
    for b in range(3):
        clean = [2 * abs(v) for v in x[b].tolist()]
        changes = []
        for delta in draws:
            moved = [2 * abs(v + d) for v, d in zip(x[b].tolist(), delta[b].tolist(), strict=True)]
            changes.append(p_norm([m - c for m, c in zip(moved, clean, strict=True)], p))
        scale = p_norm(clean, p) if normalise else 1.0
        expected_max.append(max(changes) / scale)
        expected_avg.append(sum(changes) / samples / scale)
    options = {"radius": radius, "samples": samples, "seed": seed, "norm": norm, "normalise": normalise}
    model = SumOfSquares()
    assert max_sensitivity(model, x, **options).tolist() == pytest.approx(expected_max, rel=1e-12)
    assert avg_sensitivity(model, x, **options).tolist() == pytest.approx(expected_avg, rel=1e-12)


def test_lipschitz_of_sum_of_squares_is_two_without_sign_changes() -> None:
    """Away from 0, |2(x + δ)| - |2x| = 2δ sign(x), so every ratio ‖ΔΦ‖₂ / ‖δ‖₂ is exactly 2."""
    x = inputs(4, 5).sign() * (1 + inputs(4, 5, seed=2).abs())  # |x_i| >= 1, far beyond the noise
    result = local_lipschitz(SumOfSquares(), x, sigma=0.01, samples=5)
    assert result.tolist() == pytest.approx([2.0] * 4, rel=1e-12)


def test_lipschitz_matches_a_plain_loop_near_sign_changes() -> None:
    """Near 0 sign flips shrink ‖ΔΦ‖ below 2‖δ‖: the ratios as the per-draw loop computes them."""
    x = inputs(3, 4) * 0.1
    sigma, samples, seed = 0.2, 8, 3
    expected = []
    for b in range(3):
        ratios = []
        for delta in gaussian_draws(x, sigma, samples, seed):
            moved = [2 * abs(v + d) - 2 * abs(v) for v, d in zip(x[b].tolist(), delta[b].tolist(), strict=True)]
            ratios.append(p_norm(moved, 2) / p_norm(delta[b].tolist(), 2))
        expected.append(max(ratios))
    result = local_lipschitz(SumOfSquares(), x, sigma=sigma, samples=samples, seed=seed)
    assert result.tolist() == pytest.approx(expected, rel=1e-12)
    assert (result <= 2 + 1e-12).all() and (result < 2 - 1e-3).any()  # |ΔΦ_i| <= 2|δ_i|; flips lower it


def test_average_never_exceeds_maximum() -> None:
    model, x = tanh_mlp(), inputs(6, 6)
    options = {"radius": 0.2, "samples": 7, "seed": 4}
    assert (avg_sensitivity(model, x, **options) <= max_sensitivity(model, x, **options)).all()


# -- Captum ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "options"), [("saliency", {}), ("integrated_gradients", {"steps": 8})])
def test_matches_captum_sensitivity_max_on_the_same_draws(method: str, options: dict) -> None:
    """Captum's ``sensitivity_max`` divides by ‖Φ(x)‖ (Frobenius): ours with ``normalise=True``, fed the same
    perturbed points in Captum's sample-major order and the same explanation function."""
    model, x = tanh_mlp(), inputs(4, 6)
    radius, samples, seed = 0.1, 5, 11
    target = model(x).argmax(1)
    draws = torch.stack(uniform_draws(x, radius, samples, seed))  # (K, B, N)
    perturbed = (x.unsqueeze(0) + draws).transpose(0, 1).reshape(-1, 6)  # row b * K + k

    def explain(points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return gradattr.attribute(model, points, method, target, **options)

    theirs = sensitivity_max(explain, x, perturb_func=lambda _: perturbed, n_perturb_samples=samples, target=target)
    ours = max_sensitivity(model, x, method, radius=radius, samples=samples, seed=seed, normalise=True, **options)
    assert torch.allclose(ours, theirs.double(), rtol=1e-10, atol=0)


# -- the explained class, seeding and chunking -------------------------------------------------------------


def test_argmax_target_is_fixed_at_the_clean_input() -> None:
    """On the decision boundary the perturbations change the argmax; the class explained must not change, so
    the (per-class constant) saliency of a linear model stays put: 0, not |w_0| - |w_1|."""
    model = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    x = torch.tensor([[1.0, 1.0 / 3.0 - 1e-3]], dtype=torch.float64)  # class 0 by a hair
    assert int(model(x).argmax()) == 0
    assert max_sensitivity(model, x, radius=0.1, samples=20).item() == 0.0


def test_same_seed_same_result_at_any_batch_size() -> None:
    model, x = tanh_mlp(), inputs(3, 6)
    baseline = inputs(3, 6, seed=9)  # a per-sample baseline must follow its sample into the stacked copies
    options = {"radius": 0.1, "samples": 7, "seed": 5, "steps": 4, "baseline": baseline}
    first = max_sensitivity(model, x, "integrated_gradients", **options)
    assert torch.equal(first, max_sensitivity(model, x, "integrated_gradients", **options))
    for batch_size in (3, 7, 100):  # one copy, two copies and everything per call
        again = max_sensitivity(model, x, "integrated_gradients", batch_size=batch_size, **options)
        assert torch.allclose(first, again, rtol=1e-12, atol=0)
    other = max_sensitivity(model, x, "integrated_gradients", **{**options, "seed": 6})
    assert not torch.equal(first, other)


def test_method_options_named_like_the_metrics_own_reach_the_method() -> None:
    """SmoothGrad's ``samples`` and ``seed`` go through ``method_options``; one copy of the batch per call
    (``batch_size=B``) makes every call the one a plain loop over the draws makes."""
    model, x = tanh_mlp(), inputs(3, 6)
    target = model(x).argmax(1)
    smoothing = {"samples": 3, "seed": 1, "sigma": 0.2}
    draws = uniform_draws(x, 0.1, 4, seed=0)
    clean = gradattr.attribute(model, x, "smoothgrad", target, **smoothing)
    changes = [(gradattr.attribute(model, x + d, "smoothgrad", target, **smoothing) - clean).norm(dim=1) for d in draws]
    expected = torch.stack(changes).amax(0)
    result = max_sensitivity(model, x, "smoothgrad", radius=0.1, samples=4, batch_size=3, method_options=smoothing)
    assert torch.allclose(result, expected, rtol=1e-12, atol=0)


# -- errors and the model ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, x: max_sensitivity(m, x, radius=0.0), ValueError, r"radius must be a finite number > 0"),
        (lambda m, x: avg_sensitivity(m, x, radius=-1), ValueError, r"radius must be a finite number > 0"),
        (lambda m, x: max_sensitivity(m, x, samples=0), ValueError, r"samples must be an int >= 1"),
        (lambda m, x: local_lipschitz(m, x, samples=2.5), TypeError, r"samples must be an int"),
        (lambda m, x: local_lipschitz(m, x, sigma=0), ValueError, r"sigma must be a finite number > 0"),
        (lambda m, x: max_sensitivity(m, x, norm="nuc"), ValueError, r"norm must be one of"),
        (lambda m, x: max_sensitivity(m, x, norm=0.5), ValueError, r"norm must be one of"),
        (lambda m, x: max_sensitivity(m, x, seed=-1), ValueError, r"seed must be an int >= 0"),
        (lambda m, x: max_sensitivity(m, (x,)), TypeError, r"inputs must be one tensor"),
        (lambda m, x: max_sensitivity(m, x[0]), ValueError, r"batch-first"),
        (lambda m, x: max_sensitivity(m, x, "nope"), ValueError, r"unknown method 'nope'"),
        (lambda m, x: max_sensitivity(m, x, steps=3), TypeError, r"saliency got unknown option\(s\) steps"),
        (lambda m, x: max_sensitivity(m, x, target=7), IndexError, r"target 7 is out of range"),
        (
            lambda m, x: max_sensitivity(m, x, method_options={"abs": False}, abs=True),
            TypeError,
            r"method option\(s\) abs given both in method_options and as keywords",
        ),
    ],
)
def test_bad_arguments(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call(tanh_mlp(), inputs(2, 6))


@pytest.mark.parametrize("metric", METRICS)
def test_model_comes_back_unchanged(metric) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    model[0].weight.requires_grad_(False)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    x = inputs(4, 6)
    with pytest.warns(UserWarning, match="training mode"):
        first = metric(model, x, samples=3)
    second = metric(model.eval(), x, samples=3)
    assert torch.equal(first, second)  # computed in eval mode both times: dropout off, running statistics
    model.train()
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # batch-norm statistics too
    assert all(p.grad is None for p in model.parameters())
