"""Structural similarity (SSIM) between attribution maps, per sample (Wang et al., IEEE TIP 2004).

Adebayo et al. ("Sanity Checks for Saliency Maps", NeurIPS 2018) compare the maps of a trained and a
randomised model by SSIM (after scaling each map to [0, 1]) beside the Spearman rank correlation; rank
correlation and top-k intersection live in :mod:`gradattr.metrics.agreement`.

For two maps a, b and every position of a window w (weights summing to 1) that lies fully inside the map,

    SSIM = ((2 μ_a μ_b + C1)(2 σ_ab + C2)) / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2)),

μ, σ² and σ_ab the window's weighted means, variances and covariance, C1 = (0.01 L)², C2 = (0.03 L)², L the
data range (Wang et al.'s constants and 11 x 11 Gaussian window of σ = 1.5); the score of a map is the mean over
those positions (their mean SSIM), and over channels. This is the same number as scikit-image's
``structural_similarity`` with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` (window
``"gaussian"``), or with its defaults and ``win_size=w`` (window w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

K1 = 0.01
K2 = 0.03
GAUSSIAN_SIGMA = 1.5
GAUSSIAN_SIZE = 11
"""Wang et al.'s window: an 11 x 11 circular-symmetric Gaussian with standard deviation 1.5."""


def ssim(
    a: Tensor,
    b: Tensor,
    *,
    window: str | int = "gaussian",
    data_range: float | Tensor | None = None,
    normalise: bool = False,
) -> Tensor:
    """Mean structural similarity of ``a[i]`` and ``b[i]`` for each sample i, in [-1, 1]; 1 for equal maps.

    Args:
        a, b: maps of the same shape, (B, H, W) or (B, C, H, W), H and W at least the window's size. With
            channels, SSIM is computed per channel and averaged over the channels (scikit-image's
            ``channel_axis``); to compare one 2-D heat map per sample, reduce the channels first (e.g. sum).
        window: ``"gaussian"``: Wang et al.'s 11 x 11 Gaussian window, σ = 1.5, with population (weighted)
            moments; or an odd int w >= 3: a uniform w x w window with sample (unbiased) variances, as
            scikit-image's default (w = 7).
        data_range: L, a number > 0 or a Tensor(B) of them. Default: per sample, the range of the two maps
            together, max(a, b) - min(a, b) (1 after ``normalise``); where it is 0 (both maps one equal
            constant) L = 1, so equal constant maps score 1.
        normalise: scale each map of each sample to [0, 1] by its minimum and maximum first (Adebayo et al.);
            a constant map becomes 0.

    Returns:
        Tensor(B), float64, on the maps' device.

    Raises:
        ValueError / TypeError: maps of different shapes, of 2 or more than 4 dimensions, not floating or not
            finite, smaller than the window, a bad window or a data range that is not positive.

    Example:
        >>> import torch
        >>> from gradattr.metrics import ssim
        >>> maps = torch.rand(2, 16, 16)
        >>> ssim(maps, maps).tolist()
        [1.0, 1.0]
    """
    a, b = _checked_maps(a, b)
    kernel, sample_correction = _window(window, a)
    if normalise:
        a, b = _unit_range(a), _unit_range(b)
    batch = a.shape[0]
    levels = _data_range(data_range, a, b, normalise).view(batch, 1, 1)
    c1, c2 = (K1 * levels) ** 2, (K2 * levels) ** 2
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = (_window_means(image, kernel) for image in (a, b, a * a, b * b, a * b))
    var_a = (mean_aa - mean_a**2) * sample_correction
    var_b = (mean_bb - mean_b**2) * sample_correction
    cov = (mean_ab - mean_a * mean_b) * sample_correction
    score = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    return score.mean(dim=(1, 2))


def _window_means(maps: Tensor, kernel: Tensor) -> Tensor:
    """Weighted means over every window position inside the map: (B, C, H, W) -> (B, C, positions)."""
    batch, channels, height, width = maps.shape
    means = F.conv2d(maps.reshape(batch * channels, 1, height, width), kernel)
    return means.view(batch, channels, -1)


def _checked_maps(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Both maps as float64 (B, C, H, W) (a missing channel dimension added)."""
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {value.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"maps have different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() not in (3, 4):
        raise ValueError(f"maps must have shape (B, H, W) or (B, C, H, W), got {tuple(a.shape)}")
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise ValueError("maps contain NaN or infinite values")
    a, b = a.detach().double(), b.detach().double()
    return (a.unsqueeze(1), b.unsqueeze(1)) if a.dim() == 3 else (a, b)


def _window(window: str | int, maps: Tensor) -> tuple[Tensor, float]:
    """The 2-D window (1, 1, w, w), float64 on the maps' device, and the variance factor (1 or n / (n - 1))."""
    if window == "gaussian":
        size = GAUSSIAN_SIZE
        offsets = torch.arange(size, dtype=torch.float64, device=maps.device) - size // 2
        line = torch.exp(-(offsets**2) / (2 * GAUSSIAN_SIGMA**2))
        line = line / line.sum()
        kernel, correction = torch.outer(line, line), 1.0
    elif isinstance(window, int) and not isinstance(window, bool) and window >= 3 and window % 2 == 1:
        size = window
        kernel = torch.full((size, size), 1.0 / size**2, dtype=torch.float64, device=maps.device)
        correction = size**2 / (size**2 - 1)
    else:
        raise ValueError(f"window must be 'gaussian' or an odd int >= 3, got {window!r}")
    height, width = maps.shape[-2:]
    if height < size or width < size:
        raise ValueError(
            f"maps of {height} x {width} are smaller than the {size} x {size} window; use a smaller window"
        )
    return kernel.view(1, 1, size, size), correction


def _unit_range(maps: Tensor) -> Tensor:
    """Each sample's map scaled to [0, 1] by its own minimum and maximum (a constant map becomes 0)."""
    flat = maps.reshape(maps.shape[0], -1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    spread = high - low
    scaled = (flat - low) / torch.where(spread > 0, spread, torch.ones_like(spread))
    return scaled.view_as(maps)


def _data_range(data_range: float | Tensor | None, a: Tensor, b: Tensor, normalised: bool) -> Tensor:
    """L per sample, Tensor(B) float64."""
    batch = a.shape[0]
    if data_range is None:
        if normalised:
            return torch.ones(batch, dtype=torch.float64, device=a.device)
        both = torch.cat([a.reshape(batch, -1), b.reshape(batch, -1)], dim=1)
        spread = both.amax(1) - both.amin(1)
        return torch.where(spread > 0, spread, torch.ones_like(spread))
    if isinstance(data_range, Tensor):
        levels = data_range.detach().to(a.device, torch.float64).reshape(-1)
        if levels.numel() == 1:
            levels = levels.expand(batch)
    elif isinstance(data_range, (int, float)) and not isinstance(data_range, bool):
        levels = torch.full((batch,), float(data_range), dtype=torch.float64, device=a.device)
    else:
        raise TypeError(f"data_range must be a number, a Tensor(B) or None, got {type(data_range).__name__}")
    if levels.shape != (batch,) or not bool((levels > 0).all()) or not bool(torch.isfinite(levels).all()):
        raise ValueError(
            f"data_range must be finite and > 0, one value or one per sample ({batch}), got {data_range!r}"
        )
    return levels


__all__ = ["ssim"]
