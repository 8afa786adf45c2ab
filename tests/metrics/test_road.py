"""ROAD (Rong et al., ICML 2022): noisy linear imputation against hand-solved 3x3 examples and a dense reference
solver, the metric against a per-sample loop, seeding and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from gradattr.metrics.road import NEIGHBOUR_WEIGHTS, linear_imputation, road


def test_centre_pixel_is_the_weighted_mean_of_its_neighbours() -> None:
    image = torch.tensor([[[1.0, 2.0, 4.0], [8.0, 0.0, 16.0], [32.0, 64.0, 128.0]]], dtype=torch.float64)
    removed = torch.zeros(3, 3, dtype=torch.bool)
    removed[1, 1] = True
    # direct neighbours 2, 8, 16, 64 weigh 1/6, diagonal ones 1, 4, 32, 128 weigh 1/12 (weights sum to 1)
    expected = (2 + 8 + 16 + 64) / 6 + (1 + 4 + 32 + 128) / 12
    original = image.clone()
    imputed = linear_imputation(image, removed)
    assert torch.equal(image, original)
    assert float(imputed[0, 1, 1]) == pytest.approx(expected, abs=1e-12)
    assert torch.equal(imputed[~removed.expand_as(image)], image[~removed.expand_as(image)])


def test_two_coupled_corner_pixels_solved_by_hand() -> None:
    """Top-left a = x[0, 0] and its right neighbour c = x[0, 1] removed from
        a c 3
        4 5 6
        7 8 9
    a: neighbours c (1/6), 4 (1/6), 5 (1/12), weight sum 5/12: a = (2c + 2·4 + 5) / 5.
    c: neighbours a (1/6), 3 (1/6), 4 (1/12), 5 (1/6), 6 (1/12), weight sum 2/3: c = (2a + 2·3 + 4 + 2·5 + 6) / 8.
    So 5a = 2c + 13 and 8c = 2a + 26: c = (a + 13) / 4, 10a = a + 13 + 26, a = 13/3 and c = 13/3.
    """
    image = torch.tensor([[[0.0, 0.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
    removed = torch.zeros(3, 3, dtype=torch.bool)
    removed[0, :2] = True
    imputed = linear_imputation(image, removed)
    assert imputed.dtype == torch.float32
    assert imputed[0, 0, :2].tolist() == pytest.approx([13 / 3, 13 / 3], abs=1e-6)


def dense_imputation(image: Tensor, removed: Tensor) -> Tensor:
    """The paper's equations one pixel at a time, solved densely with numpy."""
    channels, height, width = image.shape
    unknown = [(r, c) for r in range(height) for c in range(width) if removed[r, c]]
    position = {pixel: i for i, pixel in enumerate(unknown)}
    system = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown), channels))
    for i, (r, c) in enumerate(unknown):
        for dy, dx, weight in NEIGHBOUR_WEIGHTS:
            if 0 <= r + dy < height and 0 <= c + dx < width:
                system[i, i] += weight
                if removed[r + dy, c + dx]:
                    system[i, position[(r + dy, c + dx)]] -= weight
                else:
                    rhs[i] += weight * image[:, r + dy, c + dx].double().numpy()
    result = image.double().clone()
    for (r, c), value in zip(unknown, np.linalg.solve(system, rhs), strict=True):
        result[:, r, c] = torch.from_numpy(value)
    return result


def test_imputation_matches_the_dense_reference_on_random_images() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(3, 7, 9, generator=generator, dtype=torch.float64)
    removed = torch.rand(7, 9, generator=generator) < 0.6
    torch.testing.assert_close(linear_imputation(image, removed), dense_imputation(image, removed), rtol=0, atol=1e-10)


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 5, 5)).double().eval()


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_matches_a_per_sample_loop(order: str) -> None:
    model = cnn()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 6, 7, generator=generator, dtype=torch.float64)
    attr = torch.randn(3, 2, 6, 7, generator=generator, dtype=torch.float64)
    percentages = (0.0, 0.25, 0.5, 0.9)
    result = road(model, x, attr, percentages=percentages, order=order, noise=0.0, max_elements=200)
    targets = model(x).argmax(1)
    for b in range(3):
        pixels = attr[b].sum(0).reshape(-1).tolist()
        ranking = sorted(range(42), key=lambda i: (-pixels[i] if order == "morf" else pixels[i], i))
        for k, p in enumerate(percentages):
            removed = torch.zeros(42, dtype=torch.bool)
            removed[ranking[: int(p * 42 + 0.5)]] = True
            point = dense_imputation(x[b], removed.view(6, 7)) if removed.any() else x[b]
            with torch.no_grad():
                logits = model(point.unsqueeze(0))[0]
            assert float(result.curve[b, k]) == pytest.approx(float(logits.softmax(0)[targets[b]]), abs=1e-9)
            assert bool(result.correct[b, k]) == (int(logits.argmax()) == int(targets[b]))
    assert result.accuracy[0] == 1.0 and result.per_sample.shape == (3,)


def test_noise_is_seeded_and_independent_of_the_memory_budget() -> None:
    model = cnn()
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(4, 2, 6, 7, generator=generator, dtype=torch.float64)
    attr = torch.randn(4, 2, 6, 7, generator=generator, dtype=torch.float64)
    first = road(model, x, attr, seed=3)
    torch.testing.assert_close(road(model, x, attr, seed=3, max_elements=84).curve, first.curve, rtol=0, atol=1e-12)
    assert not torch.equal(road(model, x, attr, seed=4).curve, first.curve)
    assert not torch.equal(road(model, x, attr, noise=0.0).curve, first.curve)


def test_road_errors() -> None:
    model = cnn()
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match="percentages"):
        road(model, x, x, percentages=(0.5, 1.0))
    with pytest.raises(ValueError, match="images"):
        road(model, x.flatten(1), x.flatten(1))
    with pytest.raises(ValueError, match="attr"):
        road(model, x, x[:, :, :3])
    with pytest.raises(ValueError, match="order"):
        road(model, x, x, order="both")
