"""Random logit test (Sixt et al. 2020): a reference written from the paper (loop over samples, scipy's
Spearman), low similarity where classes use disjoint features, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import gradattr
from gradattr import metrics


def halves_model(shared: bool = False) -> nn.Module:
    """Two classes on 8 x 8 images: class 0 reads the top half, class 1 the bottom half (or, ``shared``, both
    read the whole image with proportional weights)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2, bias=False)).double().eval()
    with torch.no_grad():
        weights = torch.rand(64, dtype=torch.float64) + 0.5
        if shared:
            model[1].weight.copy_(torch.stack([weights, 2 * weights]))
        else:
            top = torch.arange(64) < 32
            model[1].weight.copy_(torch.stack([weights * top, weights * ~top]))
    return model


def images(batch: int = 4) -> torch.Tensor:
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def reference_random_logit(model, x, method, target, classes, seed) -> np.ndarray:
    """Sixt et al. (2020), with Spearman: per sample, a class c' != c uniformly at random (the draw of
    the metric's seed: u uniform in 0..C-2, c' = u if u < c else u + 1), then sim(R^c, R^c')."""
    draws = torch.randint(0, classes - 1, (x.shape[0],), generator=torch.Generator().manual_seed(seed))
    values = []
    for b in range(x.shape[0]):
        u = int(draws[b])
        other = u if u < target[b] else u + 1
        assert other != target[b]
        own = gradattr.attribute(model, x[b : b + 1], method=method, target=int(target[b]))
        theirs = gradattr.attribute(model, x[b : b + 1], method=method, target=other)
        values.append(spearmanr(own.reshape(-1).numpy(), theirs.reshape(-1).numpy()).statistic)
    return np.array(values)


def test_random_logit_matches_the_papers_definition() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 5)).double().eval()
    x = torch.randn(8, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 4, 4, 0, 2])
    got = metrics.random_logit(model, x, "gradient_x_input", target, similarity="spearman", seed=5)
    expected = reference_random_logit(model, x, "gradient_x_input", target.tolist(), 5, 5)
    assert got.dtype == torch.float64 and got.shape == (8,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    again = metrics.random_logit(model, x, "gradient_x_input", target, similarity="spearman", seed=5)
    assert torch.equal(got, again)


@pytest.mark.parametrize("similarity", ["ssim", "spearman_abs", "topk_intersection"])
def test_classes_on_disjoint_features_give_dissimilar_explanations(similarity: str) -> None:
    x = images()
    disjoint = metrics.random_logit(halves_model(), x, "saliency", similarity=similarity)
    shared = metrics.random_logit(halves_model(shared=True), x, "saliency", similarity=similarity)
    assert (disjoint < 0.2).all(), disjoint
    assert (shared > 0.99).all(), shared


def test_random_logit_takes_a_callable_and_numpy_inputs() -> None:
    model, x = halves_model(), images(3)
    seen: list[torch.Tensor] = []

    def explainer(model: nn.Module, points: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        seen.append(target)
        return gradattr.attribute(model, points, method="saliency", target=target)

    got = metrics.random_logit(model, x.numpy(), explainer, target=0, similarity="spearman_abs")
    assert seen[0].tolist() == [0, 0, 0] and seen[1].tolist() == [1, 1, 1]  # two classes: the other is 1
    assert (got < 0).all()


def test_random_logit_errors() -> None:
    with pytest.raises(ValueError, match="similarity"):
        metrics.random_logit(halves_model(), images(2), "saliency", similarity="pearson")
    with pytest.raises(ValueError, match="C >= 2"):
        metrics.random_logit(nn.Linear(4, 1).double(), torch.rand(2, 4, dtype=torch.float64), "saliency")
