"""Complexity metrics: sparseness (Gini), complexity (entropy), effective complexity, against the papers'
definitions written out per sample and feature, and by hand."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from gradattr.metrics import complexity, effective_complexity, sparseness


def gini_reference(maps: np.ndarray) -> list[float]:
    """Chalasani et al. 2020, one sample and one feature at a time."""
    values = []
    for sample in maps:
        a = sorted(abs(float(v)) for v in sample.reshape(-1))
        n, total = len(a), sum(a)
        values.append(0.0 if total == 0 else sum((2 * i - n - 1) * a[i - 1] for i in range(1, n + 1)) / (n * total))
    return values


def entropy_reference(maps: np.ndarray) -> list[float]:
    """Bhatt et al. 2020: entropy of |a| / Σ|a|, natural log, 0 log 0 = 0."""
    values = []
    for sample in maps:
        a = [abs(float(v)) for v in sample.reshape(-1)]
        total = sum(a)
        if total == 0:
            values.append(math.log(len(a)))
            continue
        values.append(-sum(v / total * math.log(v / total) for v in a if v > 0))
    return values


def count_reference(maps: np.ndarray, eps: float) -> list[float]:
    """Nguyen & Martínez 2020: features with |a| > eps."""
    return [float(sum(1 for v in sample.reshape(-1) if abs(float(v)) > eps)) for sample in maps]


def random_maps(seed: int) -> np.ndarray:
    """(B, C, H, W) maps with exact zeros, tiny values and both signs, and one all-zero sample."""
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((6, 3, 5, 4)) * rng.choice([1e-7, 1e-3, 1.0], size=(6, 3, 5, 4))
    maps[rng.random(maps.shape) < 0.3] = 0.0
    maps[2] = 0.0
    return maps


CASES: list[tuple[Callable[..., torch.Tensor], Callable[[np.ndarray], list[float]]]] = [
    (sparseness, gini_reference),
    (complexity, entropy_reference),
    (effective_complexity, lambda maps: count_reference(maps, 1e-5)),
    (lambda maps: effective_complexity(maps, eps=0.0), lambda maps: count_reference(maps, 0.0)),
    (lambda maps: effective_complexity(maps, eps=0.5), lambda maps: count_reference(maps, 0.5)),
]


@pytest.mark.parametrize(("metric", "reference"), CASES)
@pytest.mark.parametrize("as_numpy", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_definition_per_sample(
    metric: Callable[..., torch.Tensor], reference: Callable[[np.ndarray], list[float]], as_numpy: bool, seed: int
) -> None:
    maps = random_maps(seed)
    ours = metric(maps if as_numpy else torch.from_numpy(maps).float())
    expected = reference(maps if as_numpy else torch.from_numpy(maps).float().double().numpy())
    assert ours.dtype == torch.float64 and ours.shape == (6,)
    assert torch.allclose(ours, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_by_hand() -> None:
    n = 5
    one_hot = torch.zeros(1, n)
    one_hot[0, 3] = -2.5
    uniform = torch.full((1, n), 0.7)
    zero = torch.zeros(1, n)
    assert sparseness(one_hot).item() == pytest.approx(1 - 1 / n, abs=1e-15)
    assert sparseness(uniform).item() == pytest.approx(0.0, abs=1e-15)
    assert sparseness(zero).item() == 0.0
    # sorted |a| = (0, 1, 2, 3): weights (-3, -1, 1, 3), Σ = 10, n Σ a = 24
    assert sparseness(torch.tensor([[3.0, 0.0, -2.0, 1.0]])).item() == pytest.approx(10 / 24, abs=1e-15)
    assert complexity(one_hot).item() == 0.0
    assert complexity(uniform).item() == pytest.approx(math.log(n), abs=1e-15)
    assert complexity(zero).item() == pytest.approx(math.log(n), abs=1e-15)
    # p = (1/4, 1/4, 1/2): H = 1.5 log 2
    assert complexity(torch.tensor([[1.0, -1.0, 2.0]])).item() == pytest.approx(1.5 * math.log(2), abs=1e-15)
    assert effective_complexity(torch.tensor([[0.0, 1e-6, 2e-5, -1.0, 1e-5]])).item() == 2.0
    assert effective_complexity(torch.tensor([[0.0, 1e-6, 2e-5, -1.0, 1e-5]]), eps=0).item() == 4.0


def test_invariant_to_scale_and_sign() -> None:
    maps = torch.from_numpy(random_maps(3))
    for metric in (sparseness, complexity):
        assert torch.allclose(metric(maps), metric(-1e3 * maps), rtol=0, atol=1e-12)


def test_integer_maps_are_taken() -> None:
    assert sparseness(np.array([[0, 0, 4]])).item() == pytest.approx(2 / 3, abs=1e-15)


@pytest.mark.parametrize("metric", [sparseness, complexity, effective_complexity])
def test_bad_attributions_raise(metric: Callable[..., torch.Tensor]) -> None:
    with pytest.raises(TypeError, match="attributions"):
        metric([[1.0, 2.0]])
    with pytest.raises(ValueError, match="attributions"):
        metric(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="attributions"):
        metric(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="batch-first"):
        metric(torch.ones(4))
    with pytest.raises(ValueError, match="at least one feature"):
        metric(torch.ones(2, 0))


def test_bad_eps_raises() -> None:
    maps = torch.ones(2, 3)
    for eps in (-1e-5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            effective_complexity(maps, eps=eps)
    for eps in ("1e-5", True, None):
        with pytest.raises(TypeError, match="eps"):
            effective_complexity(maps, eps=eps)  # type: ignore[arg-type]
