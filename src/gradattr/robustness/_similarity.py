"""How alike two attribution maps are, per sample: the measures of the sanity checks and class sensitivity.

Adebayo et al. (2018, Sec. 3) compare a map with the map of a randomised model by Spearman rank correlation
of the signed map and of its absolute value ("with and without absolute values": a sign flip that keeps
the salient features counts as a change only in the first) and by SSIM of the maps scaled to [0, 1];
Ghorbani et al. (2019) add the top-k intersection, the share of the k most important features two maps
agree on. Both are surveyed in Nielsen et al., "Robust Explainability", IEEE SPM 2022. Every measure is a
function ``(a, b, top) -> Tensor(B)`` over maps of shape (B, ...), with ``top`` the k of the top-k
intersection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from gradattr.metrics import spearman_per_sample, ssim, topk_intersection
from gradattr.metrics.similarity import GAUSSIAN_SIZE

Measure = Callable[[Tensor, Tensor, int], Tensor]


def _spearman(a: Tensor, b: Tensor, top: int) -> Tensor:
    """Spearman rank correlation of the signed maps."""
    return spearman_per_sample(a, b)


def _spearman_abs(a: Tensor, b: Tensor, top: int) -> Tensor:
    """Spearman rank correlation of |a| and |b| (Adebayo et al.'s "absolute value" variant)."""
    return spearman_per_sample(a.abs(), b.abs())


def _ssim(a: Tensor, b: Tensor, top: int) -> Tensor:
    """SSIM of the maps, each scaled to [0, 1] by its own minimum and maximum (Adebayo et al.'s code:
    ``normalize_image`` of the signed map, then scikit-image's SSIM with Gaussian weights, averaged over
    channels), in the window of :func:`ssim_window`. Maps (B, H, W) or (B, C, H, W)."""
    return ssim(a, b, window=ssim_window(a.shape), normalise=True)


def _topk(a: Tensor, b: Tensor, top: int) -> Tensor:
    """Share of the ``top`` features of largest |R| both maps pick."""
    return topk_intersection(a, b, top)


MEASURES: dict[str, Measure] = {
    "spearman": _spearman,
    "spearman_abs": _spearman_abs,
    "ssim": _ssim,
    "topk_intersection": _topk,
}
"""Name -> measure; every value lies in [-1, 1] (top-k intersection in [0, 1]), 1 for identical maps."""

SMALLEST_SSIM_WINDOW = 3


def ssim_window(shape: Sequence[int]) -> str | int:
    """Wang et al.'s 11 x 11 Gaussian window where the maps (shape (B, [C,] H, W)) are that large; for smaller
    maps (8 x 8 digits) a uniform window of the largest odd size up to 7 (scikit-image's default) that fits.
    The uniform fallback is our choice: the Gaussian window needs 11 x 11 pixels."""
    side = min(shape[-2:])
    if side >= GAUSSIAN_SIZE:
        return "gaussian"
    return min(7, side if side % 2 else side - 1)


def default_measures(shape: Sequence[int]) -> tuple[str, ...]:
    """All measures for image maps (B, H, W) or (B, C, H, W) with H, W >= 3; all but SSIM otherwise."""
    images = len(shape) in (3, 4) and min(shape[-2:]) >= SMALLEST_SSIM_WINDOW
    return tuple(name for name in MEASURES if images or name != "ssim")


TOP_FRACTION = 0.1
"""Default k of the top-k intersection as a share of the features per sample (our choice; Ghorbani et al.
use k = 1000 of 299 x 299 pixels, ~1 %, which on 8 x 8 digits would be a single pixel)."""


def check_measures(measures: Sequence[str] | None) -> tuple[str, ...] | None:
    """``measures`` validated against :data:`MEASURES`; ``None`` stays ``None`` (:func:`default_measures`
    once the maps' shape is known)."""
    if measures is None:
        return None
    names = (measures,) if isinstance(measures, str) else tuple(measures)
    unknown = [m for m in names if m not in MEASURES]
    if unknown or not names:
        raise ValueError(f"unknown or no measures {unknown}; choose from {', '.join(MEASURES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"measures are listed twice: {list(names)}")
    return names


def resolve_top(features: int, top: int | None) -> int:
    """k of the top-k intersection: ``top`` checked against the ``features`` per sample, or
    ``max(1, round(TOP_FRACTION * features))`` for ``None``."""
    if top is None:
        return max(1, round(TOP_FRACTION * features))
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= features:
        raise ValueError(f"top_features must be an int in 1..{features} (the features per sample), got {top!r}")
    return top


def pairwise(maps: Tensor, measure: Measure, top: int) -> Tensor:
    """``measure`` between every pair of maps of each sample, in one vectorised call.

    Args:
        maps: (B, K, ...): K maps per sample.
        measure: one of :data:`MEASURES`' values.
        top: k of the top-k intersection.

    Returns:
        Tensor(B, K, K), symmetric, float64: entry [b, i, j] = measure(maps[b, i], maps[b, j]).

    Example:
        >>> pairwise(torch.randn(2, 3, 8), MEASURES["spearman"], 1).shape
        torch.Size([2, 3, 3])
    """
    batch, count = maps.shape[:2]
    first, second = torch.triu_indices(count, count, device=maps.device)
    a = maps[:, first].reshape(batch * len(first), *maps.shape[2:])
    b = maps[:, second].reshape(batch * len(first), *maps.shape[2:])
    values = measure(a, b, top).reshape(batch, len(first)).double()
    matrix = torch.empty(batch, count, count, dtype=torch.float64, device=maps.device)
    matrix[:, first, second] = values
    matrix[:, second, first] = values
    return matrix
