"""SSIM between maps (Wang et al. 2004): equal maps, scikit-image's ``structural_similarity`` in both window
settings, Adebayo et al.'s [0, 1] scaling, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from gradattr.metrics import ssim


def maps(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def related(a: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A map that shares structure with ``a``: scaled, shifted and noisy."""
    return 0.7 * a + 0.2 + 0.5 * maps(*a.shape, seed=seed)


def skimage_ssim(a: np.ndarray, b: np.ndarray, window: str | int, data_range: float) -> float:
    channel_axis = 0 if a.ndim == 3 else None
    if window == "gaussian":
        options = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    else:
        options = {"win_size": window}
    return float(structural_similarity(a, b, data_range=data_range, channel_axis=channel_axis, **options))


@pytest.mark.parametrize("window", ["gaussian", 7, 3])
@pytest.mark.parametrize("shape", [(3, 16, 20), (2, 3, 12, 13)])
def test_equal_maps_score_one(window, shape: tuple[int, ...]) -> None:
    a = maps(*shape)
    assert ssim(a, a, window=window).tolist() == pytest.approx([1.0] * shape[0], abs=1e-12)
    constant = torch.full(shape, 0.5, dtype=torch.float64)
    assert ssim(constant, constant, window=window).tolist() == pytest.approx([1.0] * shape[0], abs=1e-12)


@pytest.mark.parametrize("window", ["gaussian", 7, 5])
@pytest.mark.parametrize("shape", [(3, 16, 20), (2, 3, 12, 13)])
def test_matches_scikit_image(window, shape: tuple[int, ...]) -> None:
    """Gaussian window: scikit-image with Wang et al.'s settings; w x w: scikit-image's defaults. Default data
    range: the two maps' joint range per sample, handed to scikit-image explicitly."""
    a = maps(*shape)
    b = related(a)
    ours = ssim(a, b, window=window)
    expected = []
    for i in range(shape[0]):
        both = torch.cat([a[i].reshape(-1), b[i].reshape(-1)])
        joint = float(both.max() - both.min())
        expected.append(skimage_ssim(a[i].numpy(), b[i].numpy(), window, joint))
    assert ours.tolist() == pytest.approx(expected, abs=1e-12)
    assert min(expected) > -1 and max(expected) < 0.99  # a real comparison, not the equal-maps case


def test_normalise_scales_each_map_to_the_unit_range() -> None:
    """Adebayo et al.: min-max scale each map, then SSIM with L = 1 (here: scikit-image on the scaled maps)."""
    a = maps(2, 14, 14)
    b = 5.0 * related(a) - 3.0  # another scale and offset: only the [0, 1] scaling makes them comparable
    ours = ssim(a, b, normalise=True)
    expected = []
    for i in range(2):
        unit_a = (a[i] - a[i].min()) / (a[i].max() - a[i].min())
        unit_b = (b[i] - b[i].min()) / (b[i].max() - b[i].min())
        expected.append(skimage_ssim(unit_a.numpy(), unit_b.numpy(), "gaussian", 1.0))
    assert ours.tolist() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(ssim(a, a * 4 + 1, normalise=True), torch.ones(2, dtype=torch.float64), atol=1e-12)


def test_data_range_per_sample_and_symmetry() -> None:
    a, b = maps(2, 12, 12), related(maps(2, 12, 12), seed=3)
    levels = torch.tensor([2.0, 8.0])
    ours = ssim(a, b, data_range=levels)
    expected = [skimage_ssim(a[i].numpy(), b[i].numpy(), "gaussian", float(levels[i])) for i in range(2)]
    assert ours.tolist() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(ours, ssim(b, a, data_range=levels), atol=1e-14)
    assert ssim(a, b, data_range=2.0)[0].item() == pytest.approx(expected[0], abs=1e-12)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ssim(maps(2, 12, 12), maps(2, 12, 11)), ValueError, "maps have different shapes"),
        (lambda: ssim(maps(2, 12), maps(2, 12)), ValueError, r"shape \(B, H, W\) or \(B, C, H, W\)"),
        (lambda: ssim(maps(2, 8, 12), maps(2, 8, 12)), ValueError, "smaller than the 11 x 11 window"),
        (lambda: ssim(maps(2, 12, 12), maps(2, 12, 12), window=4), ValueError, "odd int >= 3"),
        (lambda: ssim(maps(2, 12, 12), maps(2, 12, 12), window="box"), ValueError, "window must be 'gaussian'"),
        (lambda: ssim(maps(2, 12, 12), maps(2, 12, 12), data_range=0.0), ValueError, "data_range must be finite"),
        (lambda: ssim(maps(2, 12, 12), maps(2, 12, 12), data_range=torch.ones(3)), ValueError, "one per sample"),
        (lambda: ssim(torch.ones(2, 12, 12, dtype=torch.long), maps(2, 12, 12)), TypeError, "floating point"),
        (lambda: ssim(maps(2, 12, 12) * float("nan"), maps(2, 12, 12)), ValueError, "NaN or infinite"),
    ],
)
def test_bad_arguments(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
